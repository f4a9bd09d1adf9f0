//! The traffic page: real and cover, sent and received, over time, for the
//! selected identity or all of them, in packets or bytes per second.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Sparkline};
use ratatui::Frame;

use super::fmt;
use crate::state::{Scope, Series, State};

pub(super) fn render(frame: &mut Frame, area: Rect, state: &State) {
    let socks5 = state.scoped_socks5();
    // One more line for the SOCKS5 counters, only when the scope has any.
    let summary_height = 6 + u16::from(socks5.is_some());
    let [charts, summary] =
        Layout::vertical([Constraint::Min(4), Constraint::Length(summary_height)]).areas(area);
    let [top, bottom] =
        Layout::vertical([Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)]).areas(charts);
    let [a, b] = Layout::horizontal([Constraint::Ratio(1, 2); 2]).areas(top);
    let [c, d] = Layout::horizontal([Constraint::Ratio(1, 2); 2]).areas(bottom);
    let history = state.scoped_history();
    let unit = state.ui.unit;
    for (series, area) in Series::ALL.iter().zip([a, b, c, d]) {
        let now = history.last().map(|s| s.get(*series, unit)).unwrap_or(0);
        let peak = history.peak(*series, unit);
        let block = Block::bordered().title(format!(
            " {} · {} · peak {} ",
            series.label(),
            fmt::rate(now, unit),
            fmt::rate(peak, unit),
        ));
        let inner = block.inner(area);
        let style = if matches!(series, Series::RealSent | Series::RealRecv) {
            Style::default().fg(Color::Cyan)
        } else {
            Style::default().fg(Color::DarkGray)
        };
        frame.render_widget(block, area);
        frame.render_widget(
            Sparkline::default()
                .data(history.tail(*series, unit, usize::from(inner.width)))
                .max(peak.max(1))
                .style(style),
            inner,
        );
    }

    let c = state.scoped_counters();
    let last = history.last().copied().unwrap_or_default();
    let mut lines = vec![
        Line::from(format!(
            "sent  real {} pk ({})  cover {} pk ({})",
            fmt::count(c.real_packets_sent),
            fmt::bytes(c.real_bytes_sent),
            fmt::count(c.cover_packets_sent),
            fmt::bytes(c.cover_bytes_sent),
        )),
        Line::from(format!(
            "recv  real {} pk ({})  cover {} pk ({})",
            fmt::count(c.real_packets_received),
            fmt::bytes(c.real_bytes_received),
            fmt::count(c.cover_packets_received),
            fmt::bytes(c.cover_bytes_received),
        )),
        Line::from(format!(
            "acks {} (+{}/s)  retransmitted {} (+{}/s)  queue {}  outbox {}  inbox {}",
            fmt::count(c.acks_received),
            fmt::count(last.acks),
            fmt::count(c.retransmissions),
            fmt::count(last.retransmissions),
            fmt::count(if history.is_empty() {
                c.queue_depth
            } else {
                last.queue_depth
            }),
            fmt::count(c.outbox_messages),
            fmt::count(c.inbox_messages),
        )),
    ];
    if let Some(s) = socks5 {
        lines.push(Line::from(format!(
            "socks {} open  {} accepted  {} refused  {} failed  sent {}  recv {}",
            fmt::count(s.open_connections),
            fmt::count(s.connections_total),
            fmt::count(s.connections_refused),
            fmt::count(s.connections_failed),
            fmt::bytes(s.bytes_sent),
            fmt::bytes(s.bytes_received),
        )));
    }
    lines.push(Line::from(match state.ui.scope {
        Scope::Selected => "t: all identities  b: packets/bytes  ↑↓: identity".to_string(),
        Scope::Total => "t: selected identity  b: packets/bytes".to_string(),
    }));
    // Counts since each identity (re)started, not rates: the title names
    // no unit.
    let title = match state.ui.scope {
        Scope::Selected => format!(
            " Totals since the identity started · {} ",
            state
                .selected()
                .map(|i| fmt::cut(&i.info.id, 16))
                .unwrap_or_else(|| "–".into())
        ),
        Scope::Total => " Totals since each identity started · all identities ".into(),
    };
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        summary,
    );
}
