//! Kiosk framing: `[len: u16 BE][version][payload]` in fixed-size buffers,
//! and a reader that cuts a TCP byte stream into frames without ever holding
//! more than one frame's worth of bytes.

use serde::{Deserialize, Serialize};

use super::{FRAME_HEADER_BYTES, KIOSK_VERSION, MAX_FRAME_BODY_BYTES, MAX_FRAME_BYTES};

/// One whole frame (header included), or one frame's body.
pub type Frame = heapless::Vec<u8, MAX_FRAME_BYTES>;

/// Everything that can go wrong on a kiosk link. Each one closes the link:
/// the device reconnects with fresh keys and resends what is unanswered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KioskError {
    #[error("frame of {0} bytes exceeds the kiosk frame limit")]
    TooLarge(usize),
    #[error("empty frame")]
    Empty,
    #[error("unsupported kiosk version {0} (this build speaks {KIOSK_VERSION})")]
    Version(u8),
    #[error("malformed kiosk message: {0}")]
    Malformed(postcard::Error),
    #[error("{0} trailing bytes after the kiosk message")]
    TrailingBytes(usize),
    /// The frame did not open: wrong key, or altered, replayed, reordered,
    /// truncated or dropped frames.
    #[error("sealed frame failed to open")]
    Unauthentic,
    #[error("frame counter exhausted: the link must be made again")]
    Exhausted,
    #[error("frame out of order for the link's state")]
    Protocol,
}

/// Writes `[len][version][postcard(msg)]` with `extra` bytes of room left
/// after the payload (for a tag). Returns the frame and the payload's length.
pub(super) fn encode_with_room<T: Serialize>(
    msg: &T,
    extra: usize,
) -> Result<(Frame, usize), KioskError> {
    let mut scratch = [0u8; MAX_FRAME_BODY_BYTES];
    let room = MAX_FRAME_BODY_BYTES - 1 - extra;
    // Only a message over the limit fails here (postcard's
    // `SerializeBufferFull`); `tests.rs` shows the largest of each fits.
    let payload = postcard::to_slice(msg, &mut scratch[..room]).map_err(KioskError::Malformed)?;
    let payload_len = payload.len();
    let body_len = 1 + payload_len + extra;
    let mut frame = Frame::new();
    // Fits: header + body_len <= MAX_FRAME_BYTES by the choice of `room`.
    let _ = frame.extend_from_slice(&(body_len as u16).to_be_bytes());
    let _ = frame.push(KIOSK_VERSION);
    let _ = frame.extend_from_slice(&scratch[..payload_len]);
    Ok((frame, payload_len))
}

/// A frame in the clear (the handshake, and tests).
pub fn encode_plain<T: Serialize>(msg: &T) -> Result<Frame, KioskError> {
    encode_with_room(msg, 0).map(|(frame, _)| frame)
}

/// Checks a body's version byte; returns the payload.
pub(super) fn payload(body: &[u8]) -> Result<&[u8], KioskError> {
    let (&version, payload) = body.split_first().ok_or(KioskError::Empty)?;
    if version != KIOSK_VERSION {
        return Err(KioskError::Version(version));
    }
    Ok(payload)
}

/// Decodes a postcard payload that must be consumed whole.
pub(super) fn decode_payload<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, KioskError> {
    let (msg, rest) = postcard::take_from_bytes(payload).map_err(KioskError::Malformed)?;
    if !rest.is_empty() {
        return Err(KioskError::TrailingBytes(rest.len()));
    }
    Ok(msg)
}

/// Decodes a clear frame's body (what [`FrameReader::next_frame`] returns).
pub fn decode_plain<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, KioskError> {
    decode_payload(payload(body)?)
}

/// Cuts a byte stream into frame bodies. It holds at most one whole frame,
/// and refuses a header announcing more than [`MAX_FRAME_BODY_BYTES`] before
/// reading its body.
#[derive(Debug, Clone)]
pub struct FrameReader {
    buf: [u8; MAX_FRAME_BYTES],
    len: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader::new()
    }
}

impl FrameReader {
    pub const fn new() -> FrameReader {
        FrameReader {
            buf: [0; MAX_FRAME_BYTES],
            len: 0,
        }
    }

    /// Takes as many of `bytes` as fit until the frame in hand is complete;
    /// returns how many it took. Call [`FrameReader::next_frame`] until it
    /// gives `None`, then push the rest: a reader always makes progress.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let want = match self.announced() {
            Some(Ok(body)) => FRAME_HEADER_BYTES + body,
            // A bad header is reported by `next_frame`; take nothing more.
            Some(Err(_)) => return 0,
            None => FRAME_HEADER_BYTES,
        };
        let n = want.saturating_sub(self.len).min(bytes.len());
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        // Having just completed the header, take the body too.
        if n < bytes.len() && self.len == FRAME_HEADER_BYTES {
            return n + self.push(&bytes[n..]);
        }
        n
    }

    /// The next whole frame's body, an error if the stream announced an
    /// oversized or empty frame (the stream is then unusable), or `None`
    /// until more bytes arrive.
    pub fn next_frame(&mut self) -> Option<Result<Frame, KioskError>> {
        let body = match self.announced()? {
            Ok(body) => body,
            Err(e) => return Some(Err(e)),
        };
        if self.len < FRAME_HEADER_BYTES + body {
            return None;
        }
        let mut frame = Frame::new();
        // `body` <= MAX_FRAME_BODY_BYTES < Frame's capacity.
        let _ = frame.extend_from_slice(&self.buf[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + body]);
        self.len = 0;
        Some(Ok(frame))
    }

    /// The body length the header in hand announces, once it is whole.
    fn announced(&self) -> Option<Result<usize, KioskError>> {
        if self.len < FRAME_HEADER_BYTES {
            return None;
        }
        let body = u16::from_be_bytes([self.buf[0], self.buf[1]]) as usize;
        Some(match body {
            0 => Err(KioskError::Empty),
            b if b > MAX_FRAME_BODY_BYTES => Err(KioskError::TooLarge(b)),
            b => Ok(b),
        })
    }
}
