//! Reading and writing session frames on an async byte stream (a QUIC
//! stream in both shells): a 4-byte big-endian length, then the versioned
//! wire encoding. Oversized or malformed frames are errors, never
//! allocations of whatever size a peer announces.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use sync_protocol::session::msg::{decode_body, encode_frame, frame_len};
use sync_protocol::wire::WireError;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame: {0}")]
    Wire(#[from] WireError),
}

/// The next frame, or `None` when the peer finished the stream cleanly
/// between frames.
pub async fn read_frame<T: DeserializeOwned, R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<T>, FrameError> {
    let mut header = [0u8; 4];
    match r.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = frame_len(header)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(Some(decode_body(&body)?))
}

pub async fn write_frame<T: Serialize, W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &T,
) -> Result<(), FrameError> {
    w.write_all(&encode_frame(msg)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_protocol::Timestamp;
    use sync_protocol::session::msg::{EdgeMsg, MAX_SESSION_FRAME_BYTES};

    #[tokio::test]
    async fn frames_round_trip_and_hostile_lengths_are_refused() {
        let msg = EdgeMsg::Heartbeat {
            at: Timestamp::from_unix_ms(5),
            backlog: 7,
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &msg).await.expect("write");
        write_frame(&mut buf, &msg).await.expect("write");
        let mut r = buf.as_slice();
        assert_eq!(
            read_frame::<EdgeMsg, _>(&mut r).await.expect("read"),
            Some(msg.clone())
        );
        assert_eq!(
            read_frame::<EdgeMsg, _>(&mut r).await.expect("read"),
            Some(msg)
        );
        assert_eq!(
            read_frame::<EdgeMsg, _>(&mut r).await.expect("clean end"),
            None
        );

        let huge = ((MAX_SESSION_FRAME_BYTES + 1) as u32).to_be_bytes();
        let mut r = &huge[..];
        assert!(matches!(
            read_frame::<EdgeMsg, _>(&mut r).await,
            Err(FrameError::Wire(WireError::TooLarge(_)))
        ));
        let truncated = [0u8, 0, 0, 9, 1, 2];
        let mut r = &truncated[..];
        assert!(matches!(
            read_frame::<EdgeMsg, _>(&mut r).await,
            Err(FrameError::Io(_))
        ));
        let garbage = [0u8, 0, 0, 3, 1, 250, 250];
        let mut r = &garbage[..];
        assert!(matches!(
            read_frame::<EdgeMsg, _>(&mut r).await,
            Err(FrameError::Wire(_))
        ));
    }
}
