//! Drawing. Every function here takes `&State` and a frame and changes
//! nothing but the frame, so each view can be rendered from a fixed state
//! into a `TestBackend` and compared with a golden screen
//! (`tests/views.rs`).
//!
//! The screen is a header line (connection, tier, tabs), the page of
//! [`Ui::view`](crate::state::Ui::view), and a bottom line with the keys or
//! the last notice; `?` lays the help over it. Everything is laid out for
//! 80x24 first and grows with the terminal.

pub mod fmt;
mod overview;
mod topology;
mod traffic;

use nymd_ipc::Tier;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

use crate::input::{read_only_reason, KEYS};
use crate::state::{ConnState, State, ViewKind};

/// Draw the whole screen.
pub fn render(frame: &mut Frame, state: &State) {
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    render_header(frame, header, state);
    if state.identities.is_empty() && !matches!(state.conn, ConnState::Connected) {
        render_waiting(frame, body, state);
    } else {
        match state.ui.view {
            ViewKind::Overview => overview::render(frame, body, state),
            ViewKind::Traffic => traffic::render(frame, body, state),
            ViewKind::Topology => topology::render(frame, body, state),
        }
    }
    render_footer(frame, footer, state);
    if state.ui.help {
        render_help(frame, frame.area(), state);
    }
}

fn tabs(state: &State) -> Line<'static> {
    let mut spans = Vec::new();
    for (n, v) in ViewKind::ALL.iter().enumerate() {
        let text = format!(" {} {} ", n + 1, v.title());
        spans.push(if *v == state.ui.view {
            Span::styled(
                text,
                Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD),
            )
        } else {
            Span::raw(text)
        });
    }
    Line::from(spans)
}

fn render_header(frame: &mut Frame, area: Rect, state: &State) {
    let tabs = tabs(state);
    let tabs_width = u16::try_from(tabs.width()).unwrap_or(u16::MAX);
    // The tabs only while connected: when down, the reason needs the room.
    let connected = matches!(state.conn, ConnState::Connected);
    let [left, right] = if connected && area.width >= tabs_width + 30 {
        Layout::horizontal([Constraint::Min(0), Constraint::Length(tabs_width)]).areas(area)
    } else {
        [area, Rect::default()]
    };
    let status = match &state.conn {
        ConnState::Connecting => Line::from(vec![
            Span::styled("nym-tui", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(format!(" · connecting to {}…", state.socket)),
        ]),
        ConnState::Connected => {
            let (version, tier) = match &state.daemon {
                Some(d) => (d.version.as_str(), d.tier),
                None => ("?", Tier::Observe),
            };
            let running = state
                .identities
                .iter()
                .filter(|i| matches!(i.info.state, nymd_ipc::IdentityState::Running))
                .count();
            let tier = match tier {
                Tier::Operate => Span::styled("operate", Style::default().fg(Color::Green)),
                Tier::Observe => {
                    Span::styled("observe, read-only", Style::default().fg(Color::Yellow))
                }
            };
            Line::from(vec![
                Span::styled(
                    format!("nymd {version}"),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::raw(" · "),
                tier,
                Span::raw(format!(" · {running}/{} running", state.identities.len())),
            ])
        }
        ConnState::Down {
            reason,
            retry_in,
            was_connected,
            ..
        } => {
            let what = if *was_connected {
                "reconnecting"
            } else {
                "retrying"
            };
            Line::from(vec![Span::styled(
                format!(
                    "{} · {what} in {}",
                    reason.text(),
                    fmt::duration_short(*retry_in)
                ),
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            )])
        }
    };
    frame.render_widget(Paragraph::new(status), left);
    if right.width > 0 {
        frame.render_widget(Paragraph::new(tabs), right);
    }
}

/// The body before the first connection, or while the daemon is down and
/// nothing is known.
fn render_waiting(frame: &mut Frame, area: Rect, state: &State) {
    let mut lines = vec![
        Line::from(""),
        Line::from(format!("Waiting for nymd at {}", state.socket)),
    ];
    if let ConnState::Down {
        reason,
        retry_in,
        attempt,
        ..
    } = &state.conn
    {
        lines.push(Line::from(""));
        lines.push(Line::styled(
            reason.text().to_string(),
            Style::default().fg(Color::Red),
        ));
        lines.push(Line::from(format!(
            "next attempt in {} (attempt {attempt}); nym-tui reconnects by itself",
            fmt::duration_short(*retry_in)
        )));
        lines.push(Line::from(""));
        lines.push(Line::from(
            "start it: sudo systemctl start nymd, or nymd --localnet to try it out",
        ));
        lines.push(Line::from(
            "elsewhere: nym-tui --socket PATH, or set NYMD_SOCKET",
        ));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(" nymd ")),
        area,
    );
}

fn render_footer(frame: &mut Frame, area: Rect, state: &State) {
    let line = match &state.ui.notice {
        Some(n) => Line::styled(
            n.text.clone(),
            if n.is_error {
                Style::default().fg(Color::Red)
            } else {
                Style::default().fg(Color::Green)
            },
        ),
        None => {
            let key = Style::default().add_modifier(Modifier::BOLD);
            let mut spans = vec![Span::styled("↑↓", key), Span::raw(" select  ")];
            if read_only_reason(state).is_none() {
                for (k, what) in [("s", "start"), ("x", "stop"), ("r", "restart")] {
                    spans.push(Span::styled(k, key));
                    spans.push(Span::raw(format!(" {what}  ")));
                }
            } else {
                spans.push(Span::styled(
                    "read-only",
                    Style::default().fg(Color::Yellow),
                ));
                spans.push(Span::raw("  "));
            }
            for (k, what) in [
                ("1-3", "views"),
                ("t/b", "charts"),
                ("?", "help"),
                ("q", "quit"),
            ] {
                spans.push(Span::styled(k, key));
                spans.push(Span::raw(format!(" {what}  ")));
            }
            Line::from(spans)
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn render_help(frame: &mut Frame, area: Rect, state: &State) {
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(
                    format!("{k:>10}  "),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    if let Some(why) = read_only_reason(state) {
        lines.push(Line::from(""));
        lines.push(Line::styled(why, Style::default().fg(Color::Yellow)));
    }
    let height = u16::try_from(lines.len() + 4).unwrap_or(u16::MAX);
    let [popup] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(area);
    let [popup] = Layout::horizontal([Constraint::Length(60)])
        .flex(Flex::Center)
        .areas(popup);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" Keys · ? or Esc closes ")),
        popup,
    );
}
