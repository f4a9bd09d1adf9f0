//! The connection to nymd: connects, subscribes, polls the details events do
//! not carry, runs the operator's requests, and reconnects with a backoff
//! when the daemon is not there or goes away. Everything it learns goes to
//! the UI as [`Update`]s.
//!
//! Two connections per session: one carries only the subscription and is
//! read by its own task (a frame read must never be cancelled halfway), the
//! other carries requests (`Status` every [`STATUS_EVERY`], `Topology`, and
//! start/stop/restart), each awaited to its end.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use nymd_ipc::client::{Client, ClientError};
use nymd_ipc::{Event, RequestBody, ResponseBody, ServerMessage};
use tokio::sync::mpsc;

use crate::state::{DownReason, Op, Update};

/// Name sent in `Hello`.
pub const CLIENT_NAME: &str = concat!("nym-tui ", env!("CARGO_PKG_VERSION"));

/// How often the details (RTT, reconnects, bandwidth, apps, uptime) are
/// asked for: often enough to look live, rare enough to cost nothing.
pub const STATUS_EVERY: Duration = Duration::from_secs(2);

/// How often the full topology is asked for again.
pub const TOPOLOGY_EVERY: Duration = Duration::from_secs(30);

/// First and longest delay between connection attempts. The longest is
/// short: an operator watching a restarting daemon wants it back soon, and
/// a failed attempt on a Unix socket costs next to nothing.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// See [`BACKOFF_MIN`].
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A request of the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// What to do.
    pub op: Op,
    /// To which identity.
    pub id: String,
}

impl Command {
    fn body(&self) -> RequestBody {
        let id = self.id.clone();
        match self.op {
            Op::Start => RequestBody::Start { id },
            Op::Stop => RequestBody::Stop { id },
            Op::Restart => RequestBody::Restart { id },
        }
    }
}

/// Exponential backoff between attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: BACKOFF_MIN,
            attempt: 0,
        }
    }
}

impl Backoff {
    /// The delay before the next attempt; doubles up to [`BACKOFF_MAX`].
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        self.attempt += 1;
        d
    }

    /// Failed attempts so far.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Start again after a connection that worked.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// How a session ended.
enum End {
    /// The UI is gone: stop.
    UiGone,
    /// Try again.
    Down { reason: DownReason, was_up: bool },
}

/// What the operator sees for a failed connection or request.
pub fn down_reason(e: &ClientError, socket: &std::path::Path) -> DownReason {
    let path = socket.display();
    match e {
        ClientError::Connect { source, .. } => match source.kind() {
            io::ErrorKind::NotFound => {
                DownReason::NotRunning(format!("nymd is not running: no control socket at {path}"))
            }
            io::ErrorKind::ConnectionRefused => {
                DownReason::NotRunning(format!("nymd is not running: nobody listens on {path}"))
            }
            io::ErrorKind::PermissionDenied => DownReason::PermissionDenied(format!(
                "permission denied on {path}: operators are members of group nymd \
                 (sudo usermod -aG nymd $USER, then log in again)"
            )),
            _ => DownReason::NotRunning(format!("cannot connect to nymd at {path}: {source}")),
        },
        ClientError::Remote(r) => DownReason::Refused(match &r.hint {
            Some(h) => format!("nymd refused: {} ({h})", r.message),
            None => format!("nymd refused: {}", r.message),
        }),
        other => DownReason::Lost(format!("connection to nymd lost: {other}")),
    }
}

/// Run until the UI drops its receiver (or the command sender).
pub async fn run(socket: PathBuf, tx: mpsc::Sender<Update>, mut cmds: mpsc::Receiver<Command>) {
    let mut backoff = Backoff::default();
    loop {
        let (reason, was_up) = match session(&socket, &tx, &mut cmds).await {
            End::UiGone => return,
            End::Down { reason, was_up } => (reason, was_up),
        };
        if was_up {
            backoff.reset();
        }
        let retry_in = backoff.next_delay();
        let down = Update::Down {
            reason,
            retry_in,
            attempt: backoff.attempt(),
        };
        if tx.send(down).await.is_err() {
            return;
        }
        // Wait, answering the operator's requests with "not connected".
        let sleep = tokio::time::sleep(retry_in);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                c = cmds.recv() => {
                    let Some(c) = c else { return };
                    let done = Update::ActionDone {
                        op: c.op,
                        id: c.id,
                        result: Err("not connected to nymd".into()),
                    };
                    if tx.send(done).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Aborts the subscription reader when the session ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn session(
    socket: &std::path::Path,
    tx: &mpsc::Sender<Update>,
    cmds: &mut mpsc::Receiver<Command>,
) -> End {
    let down = |e: &ClientError, was_up| End::Down {
        reason: down_reason(e, socket),
        was_up,
    };
    let mut sub = match Client::connect(socket, CLIENT_NAME).await {
        Ok(c) => c,
        Err(e) => return down(&e, false),
    };
    let mut req = match Client::connect(socket, CLIENT_NAME).await {
        Ok(c) => c,
        Err(e) => return down(&e, false),
    };
    if tx
        .send(Update::Connected(sub.welcome().clone()))
        .await
        .is_err()
    {
        return End::UiGone;
    }
    let sub_id = match sub.send(RequestBody::Subscribe { identity: None }).await {
        Ok(id) => id,
        Err(e) => return down(&e, true),
    };

    // The reader owns the subscription connection; it is only ever
    // aborted together with the whole session.
    let (msg_tx, mut msgs) = mpsc::channel::<Result<ServerMessage, String>>(256);
    let _reader = AbortOnDrop(tokio::spawn(async move {
        loop {
            let item = match sub.next_message().await {
                Ok(Some(m)) => Ok(m),
                Ok(None) => Err("nymd closed the connection".to_string()),
                Err(e) => Err(e.to_string()),
            };
            let last = item.is_err();
            if msg_tx.send(item).await.is_err() || last {
                return;
            }
        }
    }));

    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut topology_tick = tokio::time::interval(TOPOLOGY_EVERY);
    topology_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut have_topology = false;

    loop {
        // Requests run to completion inside a branch's handler, never as a
        // select! future, so none is cut off halfway through a frame.
        #[allow(
            clippy::large_enum_variant,
            reason = "one value per loop turn, moved once; boxing would only add an allocation"
        )]
        enum Wake {
            Msg(Option<Result<ServerMessage, String>>),
            Cmd(Option<Command>),
            Status,
            Topology,
        }
        let wake = tokio::select! {
            m = msgs.recv() => Wake::Msg(m),
            c = cmds.recv() => Wake::Cmd(c),
            _ = status_tick.tick() => Wake::Status,
            _ = topology_tick.tick() => Wake::Topology,
        };
        let update = match wake {
            Wake::Msg(None) => {
                return End::Down {
                    reason: DownReason::Lost("connection to nymd lost".into()),
                    was_up: true,
                }
            }
            Wake::Msg(Some(Err(e))) => {
                return End::Down {
                    reason: DownReason::Lost(format!("connection to nymd lost: {e}")),
                    was_up: true,
                }
            }
            Wake::Msg(Some(Ok(m))) => match m {
                ServerMessage::Snapshot { snapshot, .. } => Some(Update::Snapshot(snapshot)),
                ServerMessage::Event { event, .. } => {
                    if matches!(event, Event::TopologyRefreshed(_)) {
                        have_topology = false;
                        topology_tick.reset_immediately();
                    }
                    Some(Update::Event(event))
                }
                ServerMessage::Lagged { missed, .. } => {
                    // Events were lost: the next status poll, right away,
                    // brings the picture back.
                    status_tick.reset_immediately();
                    Some(Update::Lagged(missed))
                }
                ServerMessage::Response(r) if r.id == sub_id => match r.result {
                    Ok(_) => None,
                    Err(e) => {
                        return End::Down {
                            reason: down_reason(&ClientError::Remote(e), socket),
                            was_up: true,
                        }
                    }
                },
                ServerMessage::Error(e) => {
                    return End::Down {
                        reason: down_reason(&ClientError::Remote(e), socket),
                        was_up: true,
                    }
                }
                ServerMessage::Response(_) | ServerMessage::Welcome(_) => None,
            },
            Wake::Cmd(None) => return End::UiGone,
            Wake::Cmd(Some(c)) => {
                let result = match req.request(c.body()).await {
                    Ok(_) => Ok(()),
                    Err(ClientError::Remote(e)) => Err(match e.hint {
                        Some(h) => format!("{} ({h})", e.message),
                        None => e.message,
                    }),
                    Err(e) => return down(&e, true),
                };
                // The status right after shows the new state at once.
                status_tick.reset_immediately();
                Some(Update::ActionDone {
                    op: c.op,
                    id: c.id,
                    result,
                })
            }
            Wake::Status => match req.request(RequestBody::Status { id: None }).await {
                Ok(ResponseBody::Identities(list)) => {
                    if !have_topology {
                        topology_tick.reset_immediately();
                    }
                    Some(Update::Status(list))
                }
                Ok(_) => None,
                Err(ClientError::Remote(_)) => None,
                Err(e) => return down(&e, true),
            },
            Wake::Topology => match req.request(RequestBody::Topology).await {
                Ok(ResponseBody::Topology(t)) => {
                    have_topology = true;
                    Some(Update::Topology(t))
                }
                Ok(_) => None,
                Err(ClientError::Remote(e)) => {
                    have_topology = false;
                    Some(Update::TopologyUnavailable(e.message))
                }
                Err(e) => return down(&e, true),
            },
        };
        if let Some(u) = update {
            if tx.send(u).await.is_err() {
                return End::UiGone;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let d: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(d[0], BACKOFF_MIN);
        assert_eq!(d[1], BACKOFF_MIN * 2);
        assert_eq!(*d.last().unwrap_or(&Duration::ZERO), BACKOFF_MAX);
        assert_eq!(b.attempt(), 6);
        b.reset();
        assert_eq!(b.next_delay(), BACKOFF_MIN);
    }

    #[test]
    fn a_missing_socket_says_the_daemon_is_not_running() {
        let e = ClientError::Connect {
            path: "/nope".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        let r = down_reason(&e, std::path::Path::new("/nope"));
        assert!(
            matches!(&r, DownReason::NotRunning(t) if t.contains("not running") && t.contains("/nope"))
        );
    }
}
