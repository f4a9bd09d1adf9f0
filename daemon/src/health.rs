//! Liveness pings through the daemon's own channels.
//!
//! systemd's watchdog (`WatchdogSec=`) should only be fed while the daemon
//! does its work, not merely while a timer fires. So each long-lived loop
//! (the control server's accept loop, every identity's runner) holds the
//! receiving end of a ping channel and answers every [`Ping`] from the same
//! `select!` that serves its real work. A loop that is wedged — a deadlock,
//! a task that stopped being polled, a panic — leaves its ping unanswered
//! and the watchdog goes unfed.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// A liveness question: the loop answers by sending `()`.
pub type Ping = oneshot::Sender<()>;

/// Pings buffered per loop; a check waits for room like any sender.
pub const PING_BUFFER: usize = 4;

/// A ping channel.
pub fn channel() -> (mpsc::Sender<Ping>, mpsc::Receiver<Ping>) {
    mpsc::channel(PING_BUFFER)
}

/// Run `fut` to completion while answering pings, so a loop that waits on
/// something slow (a gateway handshake, a full send queue) still counts as
/// alive: it is waiting, not stuck.
pub async fn answering<F: Future>(pings: &mut mpsc::Receiver<Ping>, fut: F) -> F::Output {
    tokio::pin!(fut);
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            out = &mut fut => return out,
            p = pings.recv(), if open => match p {
                Some(p) => { let _ = p.send(()); }
                None => open = false,
            },
        }
    }
}

/// Why a ping got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PingError {
    /// The loop ended (its receiver is gone): it stopped or panicked.
    #[error("its loop has ended")]
    Gone,
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Ping one loop and wait for its answer, at most `deadline`.
pub async fn ping(tx: &mpsc::Sender<Ping>, deadline: Duration) -> Result<(), PingError> {
    let round_trip = async {
        let (p, answer) = oneshot::channel();
        tx.send(p).await.map_err(|_| PingError::Gone)?;
        answer.await.map_err(|_| PingError::Gone)
    };
    match tokio::time::timeout(deadline, round_trip).await {
        Ok(r) => r,
        Err(_) => Err(PingError::Timeout(deadline)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_serving_loop_answers_and_a_stuck_one_does_not() {
        let (tx, mut rx) = channel();
        let server = tokio::spawn(async move {
            answering(&mut rx, tokio::time::sleep(Duration::from_millis(300))).await;
            // Then "stuck": holds the receiver without reading it.
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(rx);
        });
        let d = Duration::from_millis(200);
        assert_eq!(ping(&tx, d).await, Ok(()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(ping(&tx, d).await, Err(PingError::Timeout(d)));
        server.abort();
        let _ = server.await;
        assert_eq!(ping(&tx, d).await, Err(PingError::Gone));
    }
}
