//! The one loop that drives a session core over a stream, for the edge and
//! the hub alike. Each turn: the shell does its periodic work and feeds the
//! core ([`Shell::prepare`]); what the core queued is written; then the loop
//! waits for the first of a frame from the peer (handed to the core, its
//! action to the shell), the core's deadline (heartbeat or idle timeout),
//! the shell's own wake-up, or the stop signal.
//!
//! When the core ends the session (a refusal, a protocol error, silence),
//! what it queued for the peer (its `Refused`) is sent and the stream
//! finished, so the peer learns why before the connection goes.

use std::future::Future;
use std::time::Duration as StdDuration;

use sync_protocol::Timestamp;
use sync_protocol::session::SessionCore;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::frame::{FrameError, write_frame};
use crate::task::{Frame, Reader, stopped};

/// The loop wakes at least this often, so a shell's periodic work (the
/// hub's lease renewal) is never later than this.
pub const MAX_SLEEP: StdDuration = StdDuration::from_secs(1);

/// How long finishing a stream waits for the peer to have read it all.
pub const FINISH_TIMEOUT: StdDuration = StdDuration::from_secs(2);

/// How a session ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The peer finished its stream.
    PeerFinished,
    /// The stop signal flipped; the stream was finished.
    Stopped,
    /// The core closed the session.
    Closed,
}

/// Whether a shell has more work queued right away (another page to read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    Done,
    More,
}

/// The sending half of a session's stream.
pub trait SendHalf: AsyncWrite + Unpin + Send {
    /// Ends the stream cleanly and waits, at most [`FINISH_TIMEOUT`], until
    /// the peer has it all: closing the connection at once would discard a
    /// last `Refused`.
    fn finish(&mut self) -> impl Future<Output = ()> + Send;
}

impl SendHalf for quinn::SendStream {
    async fn finish(&mut self) {
        if quinn::SendStream::finish(self).is_ok() {
            let _ = tokio::time::timeout(FINISH_TIMEOUT, self.stopped()).await;
        }
    }
}

/// What a side's shell does around its core: the database, the outbox, the
/// leases. The futures are `Send` so a session can run on any worker.
pub trait Shell<C: SessionCore> {
    type Error: From<FrameError> + From<C::Error>;

    /// Before each round of sending: periodic work and feeding the core
    /// what it asks for. [`Work::More`] brings the loop back at once (while
    /// still serving the peer and the stop signal).
    fn prepare(
        &mut self,
        core: &mut C,
        clock: &dyn Clock,
    ) -> impl Future<Output = Result<Work, Self::Error>> + Send;

    /// Carries out what the core asked for after a message.
    fn act(
        &mut self,
        core: &mut C,
        action: C::Action,
        clock: &dyn Clock,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Resolves when the shell has news for the core (the outbox grew, a
    /// registry refresh is due); [`prepare`](Self::prepare) then runs. Must
    /// be cancel-safe: it is dropped whenever another branch wins.
    fn wake(&mut self) -> impl Future<Output = ()> + Send;
}

/// Drives `core` over `recv`/`send` until the session ends. The frames are
/// read on a task of their own, aborted when this returns.
pub async fn drive<C, S, R, W>(
    core: &mut C,
    shell: &mut S,
    recv: R,
    send: &mut W,
    clock: &dyn Clock,
    mut stop: watch::Receiver<bool>,
) -> Result<End, S::Error>
where
    C: SessionCore + Send,
    C::Incoming: Send + 'static,
    C::Outgoing: Send,
    C::Action: Send,
    C::Error: Send,
    S: Shell<C> + Send,
    R: AsyncRead + Unpin + Send + 'static,
    W: SendHalf,
{
    let mut reader = Reader::<C::Incoming>::spawn(recv);
    loop {
        let work = shell.prepare(core, clock).await?;
        while let Some(msg) = core.poll_transmit(clock.now()) {
            write_frame(send, &msg).await?;
        }
        if core.is_closed() {
            send.finish().await;
            return Ok(End::Closed);
        }
        let wake = match work {
            Work::More => StdDuration::ZERO,
            Work::Done => sleep_for(core.poll_timeout(), clock.now()),
        };
        tokio::select! {
            frame = reader.next() => {
                let msg = match frame {
                    Frame::Msg(m) => m,
                    Frame::End => return Ok(End::PeerFinished),
                    Frame::Malformed => {
                        let e = core.refuse_malformed();
                        return Err(ended(core, send, clock, e).await);
                    }
                    Frame::Failed(e) => return Err(e.into()),
                };
                match core.handle(clock.now(), msg) {
                    Ok(action) => shell.act(core, action, clock).await?,
                    Err(e) => return Err(ended(core, send, clock, e).await),
                }
            }
            () = tokio::time::sleep(wake) => {
                if let Err(e) = core.handle_timeout(clock.now()) {
                    return Err(ended(core, send, clock, e).await);
                }
            }
            () = shell.wake() => {}
            () = stopped(&mut stop) => {
                send.finish().await;
                return Ok(End::Stopped);
            }
        }
    }
}

/// How long to sleep until `deadline`: at least a millisecond (no busy
/// loop), at most [`MAX_SLEEP`].
fn sleep_for(deadline: Option<Timestamp>, now: Timestamp) -> StdDuration {
    let max_ms = MAX_SLEEP.as_millis() as i64;
    let ms = deadline.map_or(max_ms, |t| t.since(now).as_ms().clamp(1, max_ms));
    StdDuration::from_millis(ms as u64)
}

/// The core ended the session with `e`: send what it queued for the peer
/// (its refusal) and, if anything went, finish the stream so it arrives.
/// Write errors are moot here: the session is over either way.
async fn ended<C, W, E>(core: &mut C, send: &mut W, clock: &dyn Clock, e: C::Error) -> E
where
    C: SessionCore,
    W: SendHalf,
    E: From<C::Error>,
{
    let mut sent = false;
    while let Some(msg) = core.poll_transmit(clock.now()) {
        if write_frame(send, &msg).await.is_err() {
            break;
        }
        sent = true;
    }
    if sent {
        send.finish().await;
    }
    E::from(e)
}

#[cfg(test)]
mod tests;
