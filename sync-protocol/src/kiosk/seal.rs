//! Sealing kiosk frames: the session keys from the device's link key and
//! both nonces (HKDF-SHA256), and ChaCha20-Poly1305 over every frame with an
//! implicit per-direction counter as the nonce (see the module doc of
//! [`super`]).

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::frame::{self, Frame, KioskError};
use super::{FRAME_HEADER_BYTES, KIOSK_VERSION};
use crate::ids::DeviceId;

/// Bytes of each side's per-connection nonce.
pub const NONCE_BYTES: usize = 32;

/// Bytes of the Poly1305 tag at the end of every sealed frame.
pub const TAG_BYTES: usize = 16;

/// HKDF salt: names this protocol and its version, so no other use of a
/// link key derives the same session keys.
pub const KDF_SALT: &[u8] = b"pahlawan-kiosk-link-v1";

/// After this many frames in one direction a session refuses to seal or
/// open more; the device reconnects (new nonces, new keys). Far beyond any
/// real session (one frame a second for 136 years), it keeps the counter
/// from ever wrapping.
pub const MAX_FRAMES_PER_DIRECTION: u64 = 1 << 32;

/// A device's 256-bit pre-shared link key: the secret half of its
/// credential. Its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkKey(pub [u8; 32]);

impl core::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("LinkKey(<redacted>)")
    }
}

/// The two session keys of one connection.
pub(super) struct SessionKeys {
    pub up: Sealer,
    pub down: Sealer,
}

impl SessionKeys {
    /// HKDF-SHA256(salt, ikm = link key, info = device ‖ device nonce ‖ edge
    /// nonce) → device → edge key ‖ edge → device key.
    pub fn derive(
        key: &LinkKey,
        device: &DeviceId,
        device_nonce: &[u8; NONCE_BYTES],
        edge_nonce: &[u8; NONCE_BYTES],
    ) -> SessionKeys {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(KDF_SALT), &key.0);
        let mut okm = [0u8; 64];
        hk.expand_multi_info(&[device.as_bytes(), device_nonce, edge_nonce], &mut okm)
            .expect("64 bytes is far below HKDF-SHA256's 8160-byte limit");
        let (up, down) = okm.split_at(32);
        SessionKeys {
            up: Sealer::new(up),
            down: Sealer::new(down),
        }
    }
}

/// One direction of a session: seals (or opens) frame `next`, then `next+1`.
/// The same type serves both ends of a direction.
pub struct Sealer {
    aead: ChaCha20Poly1305,
    next: u64,
}

impl core::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sealer").field("next", &self.next).finish()
    }
}

impl Sealer {
    fn new(key: &[u8]) -> Sealer {
        let mut k = [0u8; 32];
        k.copy_from_slice(key);
        Sealer {
            aead: ChaCha20Poly1305::new(&Key::from(k)),
            next: 0,
        }
    }

    /// Jumps the counter, to test the limit without sealing 2^32 frames.
    #[cfg(test)]
    pub(super) fn skip_to(&mut self, next: u64) {
        self.next = next;
    }

    /// Frames sealed (or opened) so far in this direction.
    pub fn count(&self) -> u64 {
        self.next
    }

    fn take_nonce(&mut self) -> Result<Nonce, KioskError> {
        if self.next >= MAX_FRAMES_PER_DIRECTION {
            return Err(KioskError::Exhausted);
        }
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&self.next.to_le_bytes());
        self.next += 1;
        Ok(Nonce::from(n))
    }

    /// `[len][version][ChaCha20-Poly1305(postcard(msg))][tag]`, the first
    /// three bytes as associated data.
    pub fn seal<T: Serialize>(&mut self, msg: &T) -> Result<Frame, KioskError> {
        let (mut out, payload_len) = frame::encode_with_room(msg, TAG_BYTES)?;
        let nonce = self.take_nonce()?;
        let (aad, payload) = out.split_at_mut(FRAME_HEADER_BYTES + 1);
        let tag = self
            .aead
            .encrypt_inout_detached(&nonce, aad, (&mut payload[..payload_len]).into())
            .map_err(|_| KioskError::TooLarge(payload_len))?;
        // `encode_with_room` left exactly TAG_BYTES free.
        let _ = out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens a frame body (`[version][ciphertext][tag]`, as the reader gives
    /// it) in place and decodes it. Any failure is final for the link.
    pub fn open<T: for<'a> Deserialize<'a>>(&mut self, body: &mut [u8]) -> Result<T, KioskError> {
        frame::payload(body)?;
        if body.len() < 1 + TAG_BYTES {
            return Err(KioskError::Unauthentic);
        }
        let nonce = self.take_nonce()?;
        let len = (body.len() as u16).to_be_bytes();
        let aad = [len[0], len[1], KIOSK_VERSION];
        let split = body.len() - 1 - TAG_BYTES;
        let (ciphertext, tag) = body[1..].split_at_mut(split);
        let tag = Tag::try_from(&*tag).map_err(|_| KioskError::Unauthentic)?;
        self.aead
            .decrypt_inout_detached(&nonce, &aad, (&mut *ciphertext).into(), &tag)
            .map_err(|_| KioskError::Unauthentic)?;
        frame::decode_payload(ciphertext)
    }
}
