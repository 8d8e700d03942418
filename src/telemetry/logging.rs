//! The tracing subscriber: JSON (default) or pretty lines, an `EnvFilter`, and the `service`
//! field (`WS_GATEWAY_SERVICE_NAME`) on every JSON line.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::{
    EnvFilter,
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{self, JsonFields, Writer},
    },
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
};

use crate::config::{LogFormat, LogSettings};

/// Installs the global tracing subscriber. Noisy dependencies are capped at WARN unless the
/// filter names them. Calling it twice is harmless (the second call is ignored), so tests can.
pub fn init_tracing(settings: &LogSettings, service: &str) {
    let mut directive = settings.level.clone();
    for noisy in [
        "sqlx",
        "sea_orm",
        "amqprs",
        "tungstenite",
        "async_tungstenite",
        "poem",
        "hyper",
    ] {
        if !directive.contains(noisy) {
            directive.push_str(&format!(",{noisy}=warn"));
        }
    }
    let filter = EnvFilter::try_new(&directive).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match settings.format {
        LogFormat::Json => {
            let inner = format().json().flatten_event(true).with_current_span(false);
            let service =
                serde_json::to_string(service).unwrap_or_else(|_| "\"ws-gateway\"".into());
            let layer = tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(WithService {
                    inner,
                    prefix: format!("{{\"service\":{service},"),
                });
            registry.with(layer).try_init()
        }
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().pretty())
            .try_init(),
    };
}

fn format() -> format::Format {
    format::format()
}

/// Wraps the JSON event format and puts `"service":"<name>"` first on every line.
struct WithService<F> {
    inner: F,
    /// `{"service":"<name>",` written in place of the line's opening brace.
    prefix: String,
}

impl<S, N, F> FormatEvent<S, N> for WithService<F>
where
    F: FormatEvent<S, N>,
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => {
                writer.write_str(&self.prefix)?;
                writer.write_str(rest)
            }
            None => writer.write_str(&line),
        }
    }
}
