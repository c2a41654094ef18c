//! The two ends of a kiosk link as I/O-free cores: bytes from the socket go
//! in, events come out, and messages to send come back as sealed frames.
//! Neither reads a clock or draws randomness: nonces are passed in.

use super::frame::{self, Frame, FrameReader, KioskError};
use super::msg::{Down, Hello, HelloReply, Refusal, Up};
use super::seal::{LinkKey, NONCE_BYTES, Sealer, SessionKeys};
use crate::ids::DeviceId;

/// What the device's end of a link reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceEvent {
    /// The edge answered the Hello: the link is sealed from now on; send
    /// `Up::Ready` first.
    Opened,
    /// The edge refused the device (in the clear); it closes the connection.
    Refused(Refusal),
    Down(Down),
}

enum DeviceState {
    AwaitChallenge,
    Open { tx: Sealer, rx: Sealer },
    Closed,
}

/// The device's end of one connection.
pub struct DeviceLink {
    device: DeviceId,
    key: LinkKey,
    nonce: [u8; NONCE_BYTES],
    state: DeviceState,
    reader: FrameReader,
}

impl core::fmt::Debug for DeviceLink {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceLink")
            .field("device", &self.device)
            .field("open", &self.is_open())
            .finish()
    }
}

impl DeviceLink {
    /// A link on a fresh connection, and the `Hello` to send first. `nonce`
    /// must be fresh random bytes (the board's RNG).
    pub fn start(device: DeviceId, key: LinkKey, nonce: [u8; NONCE_BYTES]) -> (DeviceLink, Frame) {
        let hello = frame::encode_plain(&Hello { device, nonce })
            .expect("a Hello is far below the frame limit");
        let link = DeviceLink {
            device,
            key,
            nonce,
            state: DeviceState::AwaitChallenge,
            reader: FrameReader::new(),
        };
        (link, hello)
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, DeviceState::Open { .. })
    }

    /// Takes bytes from the socket; see [`FrameReader::push`].
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        self.reader.push(bytes)
    }

    /// The next event from the bytes pushed so far. After an error the link
    /// is closed and reports nothing more.
    pub fn poll_event(&mut self) -> Option<Result<DeviceEvent, KioskError>> {
        if matches!(self.state, DeviceState::Closed) {
            return None;
        }
        let result = match self.reader.next_frame()? {
            Ok(mut body) => self.on_frame(&mut body),
            Err(e) => Err(e),
        };
        if result.is_err() || matches!(result, Ok(DeviceEvent::Refused(_))) {
            self.state = DeviceState::Closed;
        }
        Some(result)
    }

    fn on_frame(&mut self, body: &mut [u8]) -> Result<DeviceEvent, KioskError> {
        match &mut self.state {
            DeviceState::AwaitChallenge => match frame::decode_plain(body)? {
                HelloReply::Challenge { nonce } => {
                    let keys = SessionKeys::derive(&self.key, &self.device, &self.nonce, &nonce);
                    self.state = DeviceState::Open {
                        tx: keys.up,
                        rx: keys.down,
                    };
                    Ok(DeviceEvent::Opened)
                }
                HelloReply::Refused(r) => Ok(DeviceEvent::Refused(r)),
            },
            DeviceState::Open { rx, .. } => rx.open(body).map(DeviceEvent::Down),
            DeviceState::Closed => Err(KioskError::Protocol),
        }
    }

    /// Seals a message to the edge; only once the link is open.
    pub fn seal(&mut self, msg: &Up) -> Result<Frame, KioskError> {
        match &mut self.state {
            DeviceState::Open { tx, .. } => tx.seal(msg),
            _ => Err(KioskError::Protocol),
        }
    }
}

/// What the edge's end of a link reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeEvent {
    /// A device introduced itself: look its key up and answer with
    /// [`EdgeLink::challenge`], or [`EdgeLink::refuse`] it.
    Hello {
        device: DeviceId,
    },
    /// The device's first sealed frame opened: it holds the key. Its `Ready`
    /// comes next as an `Up`.
    Authenticated {
        device: DeviceId,
    },
    Up(Up),
}

enum EdgeState {
    AwaitHello,
    AwaitKey {
        device: DeviceId,
        nonce: [u8; NONCE_BYTES],
    },
    AwaitReady {
        device: DeviceId,
        tx: Sealer,
        rx: Sealer,
    },
    Open {
        device: DeviceId,
        tx: Sealer,
        rx: Sealer,
    },
    Closed,
}

/// The edge's end of one connection.
pub struct EdgeLink {
    state: EdgeState,
    reader: FrameReader,
    /// An `Up` opened with the authenticating frame, reported next.
    held: Option<Up>,
}

impl core::fmt::Debug for EdgeLink {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EdgeLink")
            .field("device", &self.device())
            .finish()
    }
}

impl Default for EdgeLink {
    fn default() -> Self {
        EdgeLink::new()
    }
}

impl EdgeLink {
    pub const fn new() -> EdgeLink {
        EdgeLink {
            state: EdgeState::AwaitHello,
            reader: FrameReader::new(),
            held: None,
        }
    }

    /// The device, once it has proven it holds its key.
    pub fn device(&self) -> Option<DeviceId> {
        match &self.state {
            EdgeState::Open { device, .. } => Some(*device),
            _ => None,
        }
    }

    /// Takes bytes from the socket; see [`FrameReader::push`].
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        self.reader.push(bytes)
    }

    /// The next event. After an error the link is closed: the shell drops
    /// the connection (a failed handshake counts against the device's rate
    /// limit).
    pub fn poll_event(&mut self) -> Option<Result<EdgeEvent, KioskError>> {
        if let Some(up) = self.held.take() {
            return Some(Ok(EdgeEvent::Up(up)));
        }
        if matches!(self.state, EdgeState::Closed) {
            return None;
        }
        let result = match self.reader.next_frame()? {
            Ok(mut body) => self.on_frame(&mut body),
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.state = EdgeState::Closed;
        }
        Some(result)
    }

    /// The state moves out and back in: an error leaves the link `Closed`.
    fn on_frame(&mut self, body: &mut [u8]) -> Result<EdgeEvent, KioskError> {
        match core::mem::replace(&mut self.state, EdgeState::Closed) {
            EdgeState::AwaitHello => {
                let hello: Hello = frame::decode_plain(body)?;
                self.state = EdgeState::AwaitKey {
                    device: hello.device,
                    nonce: hello.nonce,
                };
                Ok(EdgeEvent::Hello {
                    device: hello.device,
                })
            }
            EdgeState::AwaitReady { device, tx, mut rx } => {
                let up: Up = rx.open(body)?;
                if !matches!(up, Up::Ready { .. }) {
                    return Err(KioskError::Protocol);
                }
                self.state = EdgeState::Open { device, tx, rx };
                self.held = Some(up);
                Ok(EdgeEvent::Authenticated { device })
            }
            EdgeState::Open { device, tx, mut rx } => {
                let up: Up = rx.open(body)?;
                self.state = EdgeState::Open { device, tx, rx };
                Ok(EdgeEvent::Up(up))
            }
            // Nothing may arrive while the shell looks the key up.
            EdgeState::AwaitKey { .. } | EdgeState::Closed => Err(KioskError::Protocol),
        }
    }

    /// Answers the `Hello` with the device's key and a fresh random nonce:
    /// returns the `Challenge` frame to send.
    pub fn challenge(
        &mut self,
        key: &LinkKey,
        nonce: [u8; NONCE_BYTES],
    ) -> Result<Frame, KioskError> {
        let EdgeState::AwaitKey {
            device,
            nonce: device_nonce,
        } = self.state
        else {
            return Err(KioskError::Protocol);
        };
        let keys = SessionKeys::derive(key, &device, &device_nonce, &nonce);
        self.state = EdgeState::AwaitReady {
            device,
            tx: keys.down,
            rx: keys.up,
        };
        frame::encode_plain(&HelloReply::Challenge { nonce })
    }

    /// Refuses the device before any key is in use (unknown, revoked, wrong
    /// version, rate-limited): the frame to send before closing. Once the
    /// link is sealed, send `Down::Refused` instead.
    pub fn refuse(&mut self, reason: Refusal) -> Result<Frame, KioskError> {
        match self.state {
            EdgeState::AwaitHello | EdgeState::AwaitKey { .. } | EdgeState::Closed => {
                self.state = EdgeState::Closed;
                frame::encode_plain(&HelloReply::Refused(reason))
            }
            _ => Err(KioskError::Protocol),
        }
    }

    /// Seals a message to the device; only once it has authenticated.
    pub fn seal(&mut self, msg: &Down) -> Result<Frame, KioskError> {
        match &mut self.state {
            EdgeState::Open { tx, .. } => tx.seal(msg),
            _ => Err(KioskError::Protocol),
        }
    }
}
