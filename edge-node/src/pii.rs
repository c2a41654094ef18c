//! Personal data at rest: contact phone and e-mail are sealed with
//! AES-256-GCM under a key id, with the subject's id as associated data (a
//! sealed contact cannot be moved to another row). Keys come from
//! `PAHLAWAN_PII_KEYS` (JSON) or `<data_dir>/keys/pii-keys.json`; rotation adds
//! a key and re-seals every row under it, older keys stay to open older
//! events. Nothing here ever formats a plaintext contact.

use std::collections::BTreeMap;
use std::path::Path;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::TryRngCore;
use sync_protocol::Contact;

use crate::keyfiles::{KEYS_DIR, PII_KEYS};

/// The environment variable that may hold the keys (same JSON as the file).
pub const ENV_KEYS: &str = "PAHLAWAN_PII_KEYS";
const FORMAT: u8 = 1;
const HEADER: usize = 1 + 4 + 12;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PiiError {
    #[error("no PII keys: set {ENV_KEYS} or run `pahlawan keys init`")]
    NoKeys,
    #[error("PII keys: {0}")]
    BadKeys(String),
    #[error("sealed contact data is damaged or was sealed for another subject")]
    Damaged,
    #[error("sealed under key {0}, which is not configured")]
    UnknownKey(u32),
}

/// The AES-256 keys, by id, and which one seals new data.
#[derive(Clone, PartialEq, Eq)]
pub struct PiiKeys {
    active: u32,
    keys: BTreeMap<u32, [u8; 32]>,
}

impl std::fmt::Debug for PiiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiiKeys")
            .field("active", &self.active)
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// N bytes from the operating system's random source.
pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng
        .try_fill_bytes(&mut b)
        .expect("the operating system's random source is available");
    b
}

#[derive(serde::Serialize, serde::Deserialize)]
struct KeyFile {
    active: u32,
    keys: BTreeMap<String, String>,
}

impl PiiKeys {
    pub fn generate() -> PiiKeys {
        PiiKeys {
            active: 1,
            keys: BTreeMap::from([(1, random())]),
        }
    }

    pub fn active_id(&self) -> u32 {
        self.active
    }

    pub fn ids(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    /// A new key becomes active; the old ones remain for opening.
    pub fn rotate(&mut self) -> u32 {
        let id = self.keys.keys().max().copied().unwrap_or(0) + 1;
        self.keys.insert(id, random());
        self.active = id;
        id
    }

    pub fn from_json(json: &str) -> Result<PiiKeys, PiiError> {
        let f: KeyFile =
            serde_json::from_str(json).map_err(|e| PiiError::BadKeys(e.to_string()))?;
        let mut keys = BTreeMap::new();
        for (id, b64) in f.keys {
            let id: u32 = id
                .parse()
                .map_err(|_| PiiError::BadKeys(format!("key id {id:?}")))?;
            let bytes = STANDARD
                .decode(b64)
                .map_err(|_| PiiError::BadKeys(format!("key {id} is not base64")))?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| PiiError::BadKeys(format!("key {id} is not 32 bytes")))?;
            keys.insert(id, key);
        }
        if !keys.contains_key(&f.active) {
            return Err(PiiError::BadKeys(format!(
                "the active key {} is missing",
                f.active
            )));
        }
        Ok(PiiKeys {
            active: f.active,
            keys,
        })
    }

    pub fn to_json(&self) -> String {
        let f = KeyFile {
            active: self.active,
            keys: self
                .keys
                .iter()
                .map(|(id, k)| (id.to_string(), STANDARD.encode(k)))
                .collect(),
        };
        serde_json::to_string_pretty(&f).unwrap_or_default()
    }

    /// From the environment if set, else the data dir's key file.
    pub fn load(data_dir: &Path) -> Result<PiiKeys, PiiError> {
        if let Ok(json) = std::env::var(ENV_KEYS)
            && !json.trim().is_empty()
        {
            return PiiKeys::from_json(&json);
        }
        let path = data_dir.join(KEYS_DIR).join(PII_KEYS);
        match std::fs::read_to_string(&path) {
            Ok(json) => PiiKeys::from_json(&json),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(PiiError::NoKeys),
            Err(e) => Err(PiiError::BadKeys(format!("{}: {e}", path.display()))),
        }
    }

    fn cipher(&self, id: u32) -> Result<Aes256Gcm, PiiError> {
        let key = self.keys.get(&id).ok_or(PiiError::UnknownKey(id))?;
        Aes256Gcm::new_from_slice(key).map_err(|_| PiiError::BadKeys("key length".into()))
    }

    /// `[1][key id, 4 bytes BE][nonce, 12][ciphertext + tag]`.
    pub fn seal(&self, contact: &Contact, subject: &[u8; 16]) -> Vec<u8> {
        self.seal_bytes(&sync_protocol::wire::encode(contact), subject)
    }

    pub fn open(&self, blob: &[u8], subject: &[u8; 16]) -> Result<Contact, PiiError> {
        let plain = self.open_bytes(blob, subject)?;
        sync_protocol::wire::decode(&plain).map_err(|_| PiiError::Damaged)
    }

    /// Seals any personal data or secret of `subject` (a notification
    /// channel's target and signing secret) the way contacts are sealed.
    pub fn seal_bytes(&self, plain: &[u8], subject: &[u8; 16]) -> Vec<u8> {
        let nonce: [u8; 12] = random();
        let cipher = self.cipher(self.active).expect("the active key exists");
        let sealed = cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plain,
                    aad: subject,
                },
            )
            .expect("AES-GCM encryption of a small message cannot fail");
        let mut out = Vec::with_capacity(HEADER + sealed.len());
        out.push(FORMAT);
        out.extend_from_slice(&self.active.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open_bytes(&self, blob: &[u8], subject: &[u8; 16]) -> Result<Vec<u8>, PiiError> {
        if blob.len() < HEADER + 16 || blob[0] != FORMAT {
            return Err(PiiError::Damaged);
        }
        let id = u32::from_be_bytes([blob[1], blob[2], blob[3], blob[4]]);
        let nonce: [u8; 12] = blob[5..HEADER].try_into().map_err(|_| PiiError::Damaged)?;
        self.cipher(id)?
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: &blob[HEADER..],
                    aad: subject,
                },
            )
            .map_err(|_| PiiError::Damaged)
    }

    /// `pahlawan keys rotate`: a new key becomes active in the data dir's
    /// key file (older keys stay to open older data). Returns the new id.
    /// The edge re-seals its rows under it (at start, or within seconds if
    /// running).
    pub fn rotate_file(data_dir: &Path) -> Result<u32, PiiError> {
        if std::env::var(ENV_KEYS).is_ok_and(|v| !v.trim().is_empty()) {
            return Err(PiiError::BadKeys(format!(
                "the keys come from {ENV_KEYS}: rotate them there"
            )));
        }
        let path = data_dir.join(KEYS_DIR).join(PII_KEYS);
        let mut keys = PiiKeys::load(data_dir)?;
        let id = keys.rotate();
        crate::keyfiles::write_file(&path, keys.to_json().as_bytes(), true)
            .map_err(|e| PiiError::BadKeys(e.to_string()))?;
        Ok(id)
    }

    /// The key id a sealed blob was sealed under.
    pub fn key_of(blob: &[u8]) -> Option<u32> {
        (blob.len() >= HEADER && blob[0] == FORMAT)
            .then(|| u32::from_be_bytes([blob[1], blob[2], blob[3], blob[4]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact() -> Contact {
        Contact {
            phone: "+62 812 3456 7890".into(),
            email: "ibu.sari@example.org".into(),
        }
    }

    #[test]
    fn seal_open_rotate_and_refuse_tampering() {
        let mut keys = PiiKeys::generate();
        let subject = [7u8; 16];
        let sealed = keys.seal(&contact(), &subject);
        assert!(
            !sealed.windows(5).any(|w| w == b"+62 8" || w == b"ibu.s"),
            "no plaintext in the blob"
        );
        assert_eq!(keys.open(&sealed, &subject), Ok(contact()));
        assert_eq!(
            keys.open(&sealed, &[8u8; 16]),
            Err(PiiError::Damaged),
            "bound to its subject"
        );
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(keys.open(&flipped, &subject), Err(PiiError::Damaged));
        assert_eq!(keys.open(&sealed[..10], &subject), Err(PiiError::Damaged));
        let old = keys.active_id();
        let new = keys.rotate();
        assert_ne!(old, new);
        assert_eq!(
            keys.open(&sealed, &subject),
            Ok(contact()),
            "old data still opens"
        );
        assert_eq!(PiiKeys::key_of(&keys.seal(&contact(), &subject)), Some(new));
        let reloaded = PiiKeys::from_json(&keys.to_json()).expect("round trip");
        assert_eq!(reloaded, keys);
        let mut only_new = reloaded.clone();
        only_new.keys.remove(&old);
        assert_eq!(
            only_new.open(&sealed, &subject),
            Err(PiiError::UnknownKey(old))
        );
        assert!(
            !format!("{keys:?}").contains(&STANDARD.encode(keys.keys[&new])),
            "Debug shows no key"
        );
    }

    #[test]
    fn bad_key_files_are_refused() {
        for bad in [
            "",
            "{}",
            r#"{"active":2,"keys":{"1":"AAAA"}}"#,
            r#"{"active":1,"keys":{"1":"not base64!"}}"#,
            r#"{"active":1,"keys":{"x":"AAAA"}}"#,
        ] {
            assert!(PiiKeys::from_json(bad).is_err(), "{bad}");
        }
    }
}
