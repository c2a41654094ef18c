//! Standard Webhooks (<https://www.standardwebhooks.com/>): a channel's
//! signing secret (`whsec_` and base64) and the signature of one message —
//! `v1,` and the base64 of HMAC-SHA256 over `"{id}.{timestamp}.{body}"` —
//! so a receiver verifies what it is sent with any Standard Webhooks
//! library.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a Standard Webhooks secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new signing secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> String {
    let key: [u8; 32] = crate::pii::random();
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The HMAC key a `whsec_…` secret stands for.
pub fn key_of(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    STANDARD.decode(b64).ok().filter(|k| !k.is_empty())
}

/// `v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_standard_webhooks_test_vector() {
        // From the Standard Webhooks reference library's own tests.
        let key = key_of("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").expect("key");
        assert_eq!(
            sign(
                &key,
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn secrets_are_fresh_and_decode_to_32_bytes() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with(SECRET_PREFIX));
        assert_eq!(key_of(&a).map(|k| k.len()), Some(32));
        for bad in ["whsec_", "whsec_***", ""] {
            assert_eq!(key_of(bad), None, "{bad:?}");
        }
    }
}
