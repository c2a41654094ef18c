//! Web Push as a push service expects it (issue 18): the payload encrypted
//! for one subscription — RFC 8291 over the `aes128gcm` content coding of
//! RFC 8188, one record — and the sender's VAPID identification, RFC 8292
//! (`Authorization: vapid t=<ES256 JWT>, k=<public key>`). Pure functions
//! over aws-lc-rs, the crypto library the edge's TLS already uses; the
//! shell ([`crate::notify`]) sends the bytes.
//!
//! Why not the `web-push` crate: it encrypts through `ece`, whose only
//! backend is OpenSSL, which the edge does not otherwise link and which an
//! ARM64 edge box would have to cross-build. The RFC's own test vector
//! (Appendix A) pins this implementation, and the tests' push service
//! decrypts with Mozilla's `ece`, written by nobody here.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use aws_lc_rs::{aead, agreement, hkdf};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// The record size the body declares (RFC 8188): the whole payload is one
/// record.
pub const RECORD_SIZE: u32 = 4_096;
/// The body's header: salt (16), record size (4), key id length (1), the
/// sender's public key (65).
pub const HEADER_LEN: usize = 16 + 4 + 1 + 65;
/// The largest plaintext: a push service must accept a 4,096-byte body
/// (RFC 8030 §7.2), which holds the header, the plaintext, its one-byte
/// delimiter and the 16-byte tag.
pub const MAX_PLAINTEXT: usize = 4_096 - HEADER_LEN - 1 - 16;
/// A VAPID token's lifetime (RFC 8292 allows at most 24 hours).
pub const VAPID_LIFETIME_SECS: i64 = 12 * 3_600;

const PEM_LABEL: &str = "PRIVATE KEY";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebPushError {
    #[error("p256dh is not an uncompressed P-256 public key in base64url (65 bytes)")]
    BadPublicKey,
    #[error("auth is not 16 bytes in base64url")]
    BadAuth,
    #[error("the payload is {0} bytes, more than the {MAX_PLAINTEXT} a push message holds")]
    TooLarge(usize),
    #[error("the VAPID key is not a PEM PKCS#8 P-256 private key")]
    BadKey,
    #[error("the endpoint has no origin")]
    BadEndpoint,
    #[error("a cryptographic operation failed")]
    Crypto,
}

impl From<aws_lc_rs::error::Unspecified> for WebPushError {
    fn from(_: aws_lc_rs::error::Unspecified) -> WebPushError {
        WebPushError::Crypto
    }
}

/// A browser's push subscription keys (`PushSubscription.getKey`): the user
/// agent's P-256 public key and its authentication secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Subscription {
    pub p256dh: [u8; 65],
    pub auth: [u8; 16],
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Subscription(<keys>)")
    }
}

impl Subscription {
    /// From the base64url strings of `PushSubscription.toJSON().keys`
    /// (padding tolerated); the public key must be a point on the curve.
    pub fn parse(p256dh: &str, auth: &str) -> Result<Subscription, WebPushError> {
        let p256dh: [u8; 65] = b64url(p256dh)
            .and_then(|v| v.try_into().ok())
            .ok_or(WebPushError::BadPublicKey)?;
        let auth: [u8; 16] = b64url(auth)
            .and_then(|v| v.try_into().ok())
            .ok_or(WebPushError::BadAuth)?;
        if p256dh[0] != 4 {
            return Err(WebPushError::BadPublicKey);
        }
        // A point off the curve is refused by the agreement: try one.
        let probe = agreement::PrivateKey::generate(&agreement::ECDH_P256)?;
        let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, &p256dh);
        agreement::agree(&probe, peer, WebPushError::BadPublicKey, |_| Ok(()))?;
        Ok(Subscription { p256dh, auth })
    }
}

/// Base64url without padding, as the Web Push specifications write keys.
pub fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Base64url, padding and unused trailing bits tolerated (as browsers'
/// decoders do).
fn b64url(s: &str) -> Option<Vec<u8>> {
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    LENIENT.decode(s.trim_end_matches('=')).ok()
}

/// The body of a push message carrying `plaintext` to `sub`: a fresh
/// ephemeral key and salt each time.
pub fn encrypt(sub: &Subscription, plaintext: &[u8]) -> Result<Vec<u8>, WebPushError> {
    let key = agreement::PrivateKey::generate(&agreement::ECDH_P256)?;
    let mut salt = [0u8; 16];
    SystemRandom::new().fill(&mut salt)?;
    encrypt_with(sub, plaintext, &key, salt)
}

/// [`encrypt`] with the sender's key and salt given (the RFC's vector).
fn encrypt_with(
    sub: &Subscription,
    plaintext: &[u8],
    sender: &agreement::PrivateKey,
    salt: [u8; 16],
) -> Result<Vec<u8>, WebPushError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(WebPushError::TooLarge(plaintext.len()));
    }
    let sender_public = sender.compute_public_key()?;
    let sender_public = sender_public.as_ref();
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, &sub.p256dh);
    let ecdh: Vec<u8> =
        agreement::agree(sender, peer, WebPushError::BadPublicKey, |s| Ok(s.to_vec()))?;
    // RFC 8291 §3.4: the input keying material from the shared secret and
    // the authentication secret, bound to both public keys.
    let mut key_info = Vec::with_capacity(14 + 65 + 65);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(&sub.p256dh);
    key_info.extend_from_slice(sender_public);
    let prk_key = hkdf::Salt::new(hkdf::HKDF_SHA256, &sub.auth).extract(&ecdh);
    let ikm: [u8; 32] = expand(&prk_key, &key_info)?;
    // RFC 8188 §2.2–2.3: the content encryption key and nonce.
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(&ikm);
    let cek: [u8; 16] = expand(&prk, b"Content-Encoding: aes128gcm\0")?;
    let nonce: [u8; 12] = expand(&prk, b"Content-Encoding: nonce\0")?;
    let mut record = Vec::with_capacity(plaintext.len() + 17);
    record.extend_from_slice(plaintext);
    record.push(2); // the last (and only) record's delimiter, no padding
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &cek)?);
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::empty(),
        &mut record,
    )?;
    let mut body = Vec::with_capacity(HEADER_LEN + record.len());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(65);
    body.extend_from_slice(sender_public);
    body.extend_from_slice(&record);
    Ok(body)
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand<const N: usize>(prk: &hkdf::Prk, info: &[u8]) -> Result<[u8; N], WebPushError> {
    let mut out = [0u8; N];
    let info = [info];
    prk.expand(&info, Len(N))?.fill(&mut out)?;
    Ok(out)
}

/// The edge's VAPID identity: the P-256 key it signs with and the contact
/// (`mailto:` or `https:`) a push service may reach its operator at.
pub struct Vapid {
    key: EcdsaKeyPair,
    subject: String,
}

impl std::fmt::Debug for Vapid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vapid")
            .field("public_key", &self.public_key())
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Vapid {
    /// A new key, as the PEM (PKCS#8) the edge stores.
    pub fn generate_pem() -> Result<String, WebPushError> {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())?;
        let b64 = STANDARD.encode(doc.as_ref());
        let mut pem = format!("-----BEGIN {PEM_LABEL}-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str(&format!("-----END {PEM_LABEL}-----\n"));
        Ok(pem)
    }

    /// The key from its PEM (PKCS#8, as `openssl genpkey -algorithm EC
    /// -pkeyopt ec_paramgen_curve:P-256` writes it too).
    pub fn from_pem(pem: &str, subject: String) -> Result<Vapid, WebPushError> {
        let begin = format!("-----BEGIN {PEM_LABEL}-----");
        let end = format!("-----END {PEM_LABEL}-----");
        let start = pem.find(&begin).ok_or(WebPushError::BadKey)? + begin.len();
        let stop = pem[start..].find(&end).ok_or(WebPushError::BadKey)? + start;
        let b64: String = pem[start..stop].split_whitespace().collect();
        let der = STANDARD.decode(b64).map_err(|_| WebPushError::BadKey)?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map_err(|_| WebPushError::BadKey)?;
        Ok(Vapid { key, subject })
    }

    /// The application server key a page subscribes with
    /// (`applicationServerKey`): the public key, uncompressed, base64url.
    pub fn public_key(&self) -> String {
        b64url_encode(self.key.public_key().as_ref())
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The `Authorization` header for a message to `endpoint` at
    /// `now_unix` (seconds): a JWT for the endpoint's origin that expires
    /// in [`VAPID_LIFETIME_SECS`], and the key that verifies it.
    pub fn authorization(&self, endpoint: &str, now_unix: i64) -> Result<String, WebPushError> {
        let aud = origin(endpoint).ok_or(WebPushError::BadEndpoint)?;
        let header = b64url_encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({
            "aud": aud,
            "exp": now_unix.saturating_add(VAPID_LIFETIME_SECS),
            "sub": self.subject,
        });
        let claims = b64url_encode(claims.to_string().as_bytes());
        let signing_input = format!("{header}.{claims}");
        let sig = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())?;
        Ok(format!(
            "vapid t={signing_input}.{}, k={}",
            b64url_encode(sig.as_ref()),
            self.public_key()
        ))
    }
}

/// `scheme://host[:port]` of a URL, the default port left out (the
/// audience a push service compares with its own origin).
pub fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    let authority = authority.to_ascii_lowercase();
    let authority = match (scheme.as_str(), authority.rsplit_once(':')) {
        ("https", Some((host, "443"))) | ("http", Some((host, "80"))) => host.to_string(),
        _ => authority,
    };
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Vec<u8> {
        b64url(s).unwrap_or_default()
    }

    /// RFC 8291, Appendix A: every input given, the body must be the RFC's
    /// byte for byte.
    #[test]
    fn the_rfc_8291_test_vector() {
        let sub = Subscription::parse(
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
            "BTBZMqHH6r4Tts7J_aSIgg",
        )
        .expect("the RFC's subscription");
        let sender = agreement::PrivateKey::from_private_key(
            &agreement::ECDH_P256,
            &d("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"),
        )
        .expect("the RFC's sender key");
        let salt: [u8; 16] = d("DGv6ra1nlYgDCS1FRnbzlw").try_into().unwrap_or_default();
        let body = encrypt_with(
            &sub,
            b"When I grow up, I want to be a watermelon",
            &sender,
            salt,
        )
        .expect("encrypts");
        assert_eq!(
            b64url_encode(&body),
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
        );
    }

    #[test]
    fn bad_subscription_keys_are_refused() {
        let good_key = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
        let good_auth = "BTBZMqHH6r4Tts7J_aSIgg";
        let mut off_curve = d(good_key);
        off_curve[64] ^= 1;
        let mut compressed = d(good_key);
        compressed[0] = 2;
        for (key, auth, want) in [
            ("", good_auth, WebPushError::BadPublicKey),
            ("not base64!", good_auth, WebPushError::BadPublicKey),
            (&good_key[..40], good_auth, WebPushError::BadPublicKey),
            (
                &b64url_encode(&off_curve),
                good_auth,
                WebPushError::BadPublicKey,
            ),
            (
                &b64url_encode(&compressed),
                good_auth,
                WebPushError::BadPublicKey,
            ),
            (good_key, "", WebPushError::BadAuth),
            (good_key, "BTBZMqHH6r4Tts7J_aSI", WebPushError::BadAuth),
            (good_key, "BTBZMqHH6r4Tts7J_aSIg!", WebPushError::BadAuth),
            (good_key, "BTBZMqHH6r4Tts7J_aSIggAA", WebPushError::BadAuth),
        ] {
            assert_eq!(
                Subscription::parse(key, auth).err(),
                Some(want),
                "{key} {auth}"
            );
        }
        // Padding and unused trailing bits are tolerated.
        assert!(Subscription::parse(good_key, "BTBZMqHH6r4Tts7J_aSIgg==").is_ok());
        assert!(Subscription::parse(good_key, "BTBZMqHH6r4Tts7J_aSIgh").is_ok());
    }

    #[test]
    fn a_payload_larger_than_a_push_message_is_refused() {
        let sub = Subscription::parse(
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
            "BTBZMqHH6r4Tts7J_aSIgg",
        )
        .expect("keys");
        let body = encrypt(&sub, &[b'x'; MAX_PLAINTEXT]).expect("the largest fits");
        assert_eq!(body.len(), 4_096);
        assert_eq!(
            encrypt(&sub, &[b'x'; MAX_PLAINTEXT + 1]).err(),
            Some(WebPushError::TooLarge(MAX_PLAINTEXT + 1))
        );
        // Fresh salt and key each time.
        let (a, b) = (encrypt(&sub, b"x"), encrypt(&sub, b"x"));
        assert_ne!(
            a.ok().map(|v| v[..16].to_vec()),
            b.ok().map(|v| v[..16].to_vec())
        );
    }

    #[test]
    fn the_vapid_token_verifies_with_its_key_for_the_endpoints_origin() {
        let pem = Vapid::generate_pem().expect("a key");
        let vapid = Vapid::from_pem(&pem, "mailto:ops@example.org".into()).expect("reads back");
        let header = vapid
            .authorization("https://push.example.net:443/wpush/v2/abc?x=1", 1_000)
            .expect("signs");
        let rest = header.strip_prefix("vapid t=").expect("the vapid scheme");
        let (jwt, k) = rest.split_once(", k=").expect("t and k");
        assert_eq!(k, vapid.public_key());
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value = serde_json::from_slice(&d(parts[1])).unwrap_or_default();
        assert_eq!(claims["aud"], "https://push.example.net");
        assert_eq!(claims["exp"], 1_000 + VAPID_LIFETIME_SECS);
        assert_eq!(claims["sub"], "mailto:ops@example.org");
        let public = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            d(k),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        assert!(public.verify(signed.as_bytes(), &d(parts[2])).is_ok());
        let mut tampered = signed.into_bytes();
        tampered[0] ^= 1;
        assert!(public.verify(&tampered, &d(parts[2])).is_err());
    }

    #[test]
    fn a_key_file_that_is_not_a_p256_pkcs8_key_is_refused() {
        for pem in [
            "",
            "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n",
        ] {
            assert_eq!(
                Vapid::from_pem(pem, String::new())
                    .err()
                    .map(|e| e.to_string()),
                Some(WebPushError::BadKey.to_string()),
                "{pem}"
            );
        }
    }

    #[test]
    fn origins() {
        for (url, want) in [
            (
                "https://fcm.googleapis.com/fcm/send/abc",
                Some("https://fcm.googleapis.com"),
            ),
            ("https://Push.Example:443/x", Some("https://push.example")),
            (
                "https://push.example:8443/x",
                Some("https://push.example:8443"),
            ),
            (
                "http://127.0.0.1:9000/push/1",
                Some("http://127.0.0.1:9000"),
            ),
            ("http://[::1]:80/p", Some("http://[::1]")),
            ("http://[::1]/p", Some("http://[::1]")),
            ("https://u:p@host/x", None),
            ("host/x", None),
            ("https:///x", None),
        ] {
            assert_eq!(origin(url).as_deref(), want, "{url}");
        }
    }
}
