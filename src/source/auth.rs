//! The private stream's `auth` op: `hex(HMAC_SHA256(secret, "GET/realtime" + expires))`.
//!
//! Built fresh on every (re)connect, so `expires` is always `now + auth_expiry_window`.
//! See <https://bybit-exchange.github.io/docs/v5/ws/connect#authentication>.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The signature Bybit expects for `expires` (ms since the epoch).
pub fn sign(secret: &str, expires: u64) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(b"GET/realtime");
    mac.update(expires.to_string().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `auth` request text: `{"req_id":..,"op":"auth","args":[api_key, expires, signature]}`.
pub fn auth_request(req_id: &str, api_key: &str, secret: &str, expires: u64) -> String {
    serde_json::json!({
        "req_id": req_id,
        "op": "auth",
        "args": [api_key, expires, sign(secret, expires)],
    })
    .to_string()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hex_hmac_sha256_of_get_realtime_and_expires() {
        // Reference value computed with Python: hmac.new(b"secret", b"GET/realtime1700000000000",
        // hashlib.sha256).hexdigest()
        let sig = sign("secret", 1_700_000_000_000);
        assert_eq!(
            sig,
            "9baf584ddf7a063dffe910d97ce4eac0cf7064058356de8b8d92f028e5ad936f"
        );
        assert_ne!(sig, sign("secret", 1_700_000_000_001));
        assert_ne!(sig, sign("other", 1_700_000_000_000));
    }

    #[test]
    fn auth_request_carries_key_expires_and_signature() {
        let text = auth_request("a1", "KEY", "secret", 42);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["op"], "auth");
        assert_eq!(v["req_id"], "a1");
        assert_eq!(v["args"][0], "KEY");
        assert_eq!(v["args"][1], 42);
        assert_eq!(v["args"][2], sign("secret", 42));
    }
}
