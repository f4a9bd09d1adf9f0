//! The main loop: one `select!` over the connection's updates, the
//! terminal's events and termination signals; after each, one frame.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ratatui::crossterm::event::{self, Event as TermEvent};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::conn::{self, Command};
use crate::input::{update_input, Action};
use crate::state::{Notice, State};
use crate::term::{self, Term};
use crate::view;

/// How long the input thread waits for a key before checking whether the
/// UI is still there.
const INPUT_POLL: Duration = Duration::from_millis(200);

/// Run the dashboard against the daemon at `socket` until the operator
/// quits or a termination signal arrives. The terminal is restored on
/// every way out.
pub async fn run(socket: PathBuf) -> anyhow::Result<()> {
    let (update_tx, mut updates) = mpsc::channel(1024);
    let (cmd_tx, cmd_rx) = mpsc::channel::<Command>(16);
    let conn = tokio::spawn(conn::run(socket.clone(), update_tx, cmd_rx));

    let mut term_signal = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("SIGHUP handler")?;

    let (mut terminal, guard) = term::init()?;
    let (key_tx, mut keys) = mpsc::channel::<TermEvent>(64);
    std::thread::Builder::new()
        .name("nym-tui input".into())
        .spawn(move || read_input(key_tx))
        .context("cannot start the input thread")?;

    let mut state = State::new(socket.display().to_string());
    let result = async {
        loop {
            draw(&mut terminal, &state)?;
            tokio::select! {
                u = updates.recv() => {
                    let Some(u) = u else { anyhow::bail!("the connection task stopped") };
                    state.apply(u);
                    // Take what else is queued before drawing again.
                    while let Ok(u) = updates.try_recv() {
                        state.apply(u);
                    }
                }
                ev = keys.recv() => match ev {
                    Some(TermEvent::Key(key)) => {
                        match update_input(key, &state) {
                            Action::Quit => return Ok(()),
                            Action::Ui(a) => {
                                state.ui.notice = None;
                                let ids = std::mem::take(&mut state.identities);
                                state.ui.apply(a, &ids);
                                state.identities = ids;
                            }
                            Action::Request { op, id } => {
                                state.ui.notice = Some(Notice {
                                    text: format!("{id}: {}…", op.verb()),
                                    is_error: false,
                                });
                                let _ = cmd_tx.try_send(Command { op, id });
                            }
                            Action::Notice(text) => {
                                state.ui.notice = Some(Notice { text, is_error: true });
                            }
                            Action::None => {}
                        }
                    }
                    // Resize and the rest: the next draw fits the new size.
                    Some(_) => {}
                    None => anyhow::bail!("the terminal input closed"),
                },
                _ = term_signal.recv() => return Ok(()),
                _ = hangup.recv() => return Ok(()),
            }
        }
    }
    .await;
    drop(guard);
    conn.abort();
    result
}

fn draw(terminal: &mut Term, state: &State) -> anyhow::Result<()> {
    terminal
        .draw(|f| view::render(f, state))
        .context("cannot draw")?;
    Ok(())
}

/// Blocking terminal reads on their own thread; ends when the UI is gone or
/// the terminal fails.
fn read_input(tx: mpsc::Sender<TermEvent>) {
    loop {
        if tx.is_closed() {
            return;
        }
        match event::poll(INPUT_POLL) {
            Ok(false) => continue,
            Ok(true) => match event::read() {
                Ok(ev) => {
                    if tx.blocking_send(ev).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            },
            Err(_) => return,
        }
    }
}
