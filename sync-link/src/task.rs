//! The small tokio pieces both link shells need: a task aborted when its
//! handle is dropped, the stop signal, and the frame reader — a task of its
//! own, so a frame is never cancelled half-read when the loop's `select!`
//! takes another branch.

use serde::de::DeserializeOwned;
use tokio::io::AsyncRead;
use tokio::sync::{mpsc, watch};

use crate::frame::{FrameError, read_frame};

/// Frames read ahead of the loop, at most: the reader waits for room.
pub const READ_AHEAD_FRAMES: usize = 4;

/// Aborts the task when dropped (a session's helper tasks end with it).
#[derive(Debug)]
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves when `stop` flips to true, or when its sender is gone.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// What the reader saw next on the stream.
#[derive(Debug)]
pub enum Frame<M> {
    Msg(M),
    /// The peer finished the stream cleanly between frames.
    End,
    /// A frame whose body does not decode (or announces too many bytes).
    Malformed,
    /// The stream itself failed.
    Failed(FrameError),
}

/// Reads frames of `M` on its own task, [`READ_AHEAD_FRAMES`] ahead.
#[derive(Debug)]
pub struct Reader<M> {
    rx: mpsc::Receiver<Result<Option<M>, FrameError>>,
    _task: AbortOnDrop,
}

impl<M: DeserializeOwned + Send + 'static> Reader<M> {
    pub fn spawn<R: AsyncRead + Unpin + Send + 'static>(mut recv: R) -> Reader<M> {
        let (tx, rx) = mpsc::channel(READ_AHEAD_FRAMES);
        let task = tokio::spawn(async move {
            loop {
                let frame = read_frame::<M, _>(&mut recv).await;
                let last = !matches!(frame, Ok(Some(_)));
                if tx.send(frame).await.is_err() || last {
                    break;
                }
            }
        });
        Reader {
            rx,
            _task: AbortOnDrop(task),
        }
    }

    /// The next frame. Cancel-safe: a frame is either returned or still
    /// queued.
    pub async fn next(&mut self) -> Frame<M> {
        match self.rx.recv().await {
            Some(Ok(Some(m))) => Frame::Msg(m),
            Some(Ok(None)) | None => Frame::End,
            Some(Err(FrameError::Wire(_))) => Frame::Malformed,
            Some(Err(e)) => Frame::Failed(e),
        }
    }
}
