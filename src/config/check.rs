//! Checks of single values before startup goes on: URLs and their schemes, `DATABASE_URL` as the
//! driver will read it, and the longest service name that keeps every queue name within an AMQP
//! short string. Errors name the variable, never the value (it may hold a password).

use std::str::FromStr;

use url::Url;

use super::{ConfigError, invalid};

/// Longest AMQP short string (queue names, routing keys, exchange names).
pub const AMQP_SHORT_STR: usize = 255;
/// Longest `requesting_service` the API accepts (`api/types.rs`, `CreateSubscription`).
pub const MAX_REQUESTING_SERVICE_LEN: usize = 128;

/// The longest `WS_GATEWAY_SERVICE_NAME`: `<name>.<class>.<service>` with the longest class
/// name and the longest requesting service must stay within an AMQP short string.
pub fn max_service_name_len() -> usize {
    let longest_class = crate::event::EventClass::ALL
        .iter()
        .map(|c| c.as_str().len())
        .max()
        .unwrap_or(0);
    AMQP_SHORT_STR - 2 - longest_class - MAX_REQUESTING_SERVICE_LEN
}

/// Checks `DATABASE_URL` as the driver will read it, without connecting; the error never
/// holds the value (it may carry a password).
pub(super) fn check_database_url(value: &str) -> Result<(), ConfigError> {
    const VAR: &str = "DATABASE_URL";
    let scheme = value.split(':').next().unwrap_or_default();
    match scheme {
        "sqlite" => Ok(()),
        "postgres" | "postgresql" => {
            let url = parse_url(VAR, value, &["postgres", "postgresql"])?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(invalid(VAR, "has no host"));
            }
            if url
                .password()
                .is_some_and(|p| percent_encoding_ok(p).is_err())
            {
                return Err(invalid(VAR, "the password has a malformed %-escape"));
            }
            <sea_orm::sqlx::postgres::PgConnectOptions as FromStr>::from_str(value)
                .map(|_| ())
                .map_err(|_| {
                    invalid(
                        VAR,
                        "not a valid postgres connection URL (check its options)",
                    )
                })
        }
        _ => Err(invalid(VAR, "expected a sqlite:// or postgres:// URL")),
    }
}

/// Whether every `%` in `s` starts a two-hex-digit escape.
pub(super) fn percent_encoding_ok(s: &str) -> Result<(), ()> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok =
                b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err(());
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Parses a URL and checks its scheme; the error names the variable, never the value (it may
/// hold a password).
pub(super) fn parse_url(
    var: &'static str,
    value: &str,
    schemes: &[&str],
) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|e| invalid(var, format!("malformed URL: {e}")))?;
    if !schemes.contains(&url.scheme()) {
        return Err(invalid(var, format!("scheme must be one of {schemes:?}")));
    }
    Ok(url)
}
