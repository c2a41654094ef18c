//! Versioned wire framing: one version byte, then postcard. Decoding is total:
//! hostile bytes give a `WireError`, never a panic or an unbounded allocation.

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::event::Envelope;

/// The current wire version. Bump it when a change is not append-only.
/// Version 2: contacts travel sealed (`SealedContact`), not in the clear.
pub const WIRE_VERSION: u8 = 2;

/// No single frame (an envelope, a kiosk message) may exceed this.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("empty frame")]
    Empty,
    #[error("unsupported wire version {0} (this build speaks {WIRE_VERSION})")]
    UnsupportedVersion(u8),
    #[error("frame of {0} bytes exceeds the size limit")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(postcard::Error),
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

/// Encodes `msg` as `[WIRE_VERSION, postcard bytes...]`.
pub fn encode<T: Serialize + ?Sized>(msg: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(WIRE_VERSION);
    encode_into(msg, out)
}

fn encode_into<T: Serialize + ?Sized>(msg: &T, out: Vec<u8>) -> Vec<u8> {
    // Our messages contain no types postcard cannot serialise (no maps with
    // non-string keys, no `serialize_any`), so this cannot fail.
    postcard::to_extend(msg, out).expect("wire types are postcard-serialisable")
}

/// Decodes a frame produced by [`encode`], rejecting other versions, frames
/// over [`MAX_FRAME_BYTES`] and trailing garbage.
pub fn decode<'a, T: Deserialize<'a>>(frame: &'a [u8]) -> Result<T, WireError> {
    decode_with_limit(frame, MAX_FRAME_BYTES)
}

/// [`decode`] with another size limit (session frames carry whole batches).
pub fn decode_with_limit<'a, T: Deserialize<'a>>(
    frame: &'a [u8],
    max_bytes: usize,
) -> Result<T, WireError> {
    if frame.len() > max_bytes {
        return Err(WireError::TooLarge(frame.len()));
    }
    let (&version, body) = frame.split_first().ok_or(WireError::Empty)?;
    if version != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let (msg, rest) = postcard::take_from_bytes(body).map_err(WireError::Malformed)?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes(rest.len()));
    }
    Ok(msg)
}

pub fn encode_envelope(env: &Envelope) -> Vec<u8> {
    encode(env)
}

pub fn decode_envelope(frame: &[u8]) -> Result<Envelope, WireError> {
    decode(frame)
}

#[cfg(test)]
mod tests;
