//! Keeping secrets out of log lines: [`redact`] masks URL passwords and given secret values in
//! a text, and [`url_passwords`] finds the passwords (raw and %-decoded) to mask.

use url::Url;

use super::check::percent_encoding_ok;

/// Replaces the password of every `scheme://user:password@` in `text` with `***`, and every
/// occurrence of the given secret values too, so an error line can be logged safely.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#', whitespace or quote.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | '\'' | '"') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(secret, "***");
    }
    out
}

/// The passwords of a (comma-separated list of) URL(s), raw and %-decoded.
pub fn url_passwords(value: &str) -> Vec<String> {
    let mut found = Vec::new();
    for node in value.split(',') {
        if let Ok(url) = Url::parse(node.trim())
            && let Some(p) = url.password()
        {
            found.push(p.to_owned());
            if let Ok(decoded) = percent_decode(p) {
                found.push(decoded);
            }
        }
    }
    found
}

fn percent_decode(s: &str) -> Result<String, ()> {
    percent_encoding_ok(s)?;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).map_err(|_| ())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_url_passwords_and_given_secrets() {
        let line = "cannot parse 'postgres://user:pw%zz@h:x/db' nor amqp://g:hunter2@h and pw%zz";
        let r = redact(line, &["pw%zz"]);
        assert!(!r.contains("pw%zz") && !r.contains("hunter2"), "{r}");
        assert!(r.contains("postgres://user:***@h:x/db"), "{r}");
    }
}
