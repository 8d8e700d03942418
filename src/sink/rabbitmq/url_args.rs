//! `AMQP_URL` → amqprs connection arguments.
//!
//! amqprs's own `urispec` parser does not percent-decode the vhost, so the usual
//! `amqp://guest:guest@host:5672/%2f` asks for a vhost literally named `%2f`. This follows the
//! RabbitMQ URI spec instead: user, password and vhost are percent-decoded, an absent path
//! means the default vhost `/`.

use amqprs::connection::OpenConnectionArguments;
use url::Url;

use super::PublishError;

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Connection arguments of an `amqp://user:pass@host:port/vhost` URL.
pub fn connection_args(url: &str) -> Result<OpenConnectionArguments, PublishError> {
    let parsed = Url::parse(url).map_err(PublishError::Url)?;
    if parsed.scheme() != "amqp" {
        return Err(PublishError::Scheme(parsed.scheme().to_owned()));
    }
    let host = parsed.host_str().unwrap_or("localhost");
    let port = parsed.port().unwrap_or(5672);
    let user = match parsed.username() {
        "" => "guest".to_owned(),
        u => decode(u),
    };
    let password = parsed.password().map_or_else(|| "guest".to_owned(), decode);
    let vhost = match parsed.path() {
        "" | "/" => "/".to_owned(),
        p => decode(&p[1..]),
    };
    Ok(OpenConnectionArguments::new(host, port, &user, &password)
        .virtual_host(&vhost)
        .finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_vhost_is_percent_decoded() {
        let a = connection_args("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(a.get_virtual_host(), "/");
        assert_eq!(a.get_port(), 5672);
        let a = connection_args("amqp://u:p%40ss@h/prod").unwrap();
        assert_eq!(a.get_virtual_host(), "prod");
        assert_eq!(a.get_host(), "h");
        assert!(connection_args("amqps://h").is_err());
        assert!(connection_args("not a url").is_err());
    }
}
