//! The main page: identities, the selected identity's gateway and traffic,
//! and the topology in brief.

use nymd_ipc::{GatewayConnection, IdentityState};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Cell, HighlightSpacing, Paragraph, Row, Sparkline, Table, TableState,
};
use ratatui::Frame;

use super::fmt;
use crate::state::{ConnState, Identity, Scope, Series, State, Unit};

/// Rows of the gateway/traffic band and of the topology box.
const MIDDLE_HEIGHT: u16 = 9;
const TOPOLOGY_HEIGHT: u16 = 6;

pub(super) fn render(frame: &mut Frame, area: Rect, state: &State) {
    let [ids, middle, topo] = Layout::vertical([
        Constraint::Min(5),
        Constraint::Length(MIDDLE_HEIGHT),
        Constraint::Length(TOPOLOGY_HEIGHT),
    ])
    .areas(area);
    render_identities(frame, ids, state);
    // The gateway box wants 36 columns; below 80 the two boxes share the
    // width, so the traffic box keeps room for its numbers.
    let gw_width = if middle.width >= 80 {
        Constraint::Length(36)
    } else {
        Constraint::Ratio(1, 2)
    };
    let [gw, traffic] = Layout::horizontal([gw_width, Constraint::Min(0)]).areas(middle);
    render_gateway(frame, gw, state);
    render_traffic(frame, traffic, state);
    render_topology(frame, topo, state);
}

pub(super) fn state_style(s: &IdentityState) -> Style {
    match s {
        IdentityState::Running => Style::default().fg(Color::Green),
        IdentityState::Starting | IdentityState::Reconnecting => Style::default().fg(Color::Yellow),
        IdentityState::Stopped => Style::default().fg(Color::DarkGray),
        IdentityState::Failed { .. } => Style::default().fg(Color::Red),
    }
}

/// The columns of the identities table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Id,
    State,
    Port,
    Apps,
    Gateway,
    Uptime,
    Sent,
    Recv,
}

impl Col {
    /// Left to right.
    const ORDER: [Col; 8] = [
        Col::Id,
        Col::State,
        Col::Port,
        Col::Apps,
        Col::Gateway,
        Col::Uptime,
        Col::Sent,
        Col::Recv,
    ];
    /// Most important first: a narrow terminal drops from the end.
    const PRIORITY: [Col; 8] = [
        Col::Id,
        Col::State,
        Col::Sent,
        Col::Recv,
        Col::Port,
        Col::Uptime,
        Col::Apps,
        Col::Gateway,
    ];

    fn width(self) -> u16 {
        match self {
            Col::Id => 10,
            Col::State => 12,
            Col::Port => 5,
            Col::Apps => 4,
            Col::Gateway => 11,
            Col::Uptime => 6,
            Col::Sent | Col::Recv => 9,
        }
    }
}

/// The columns that fit in `width` cells (the table's inside, after the
/// selection mark), in display order: the most important ones first.
fn columns(width: u16) -> Vec<Col> {
    let mut used = 0u16;
    let mut keep = Vec::new();
    for c in Col::PRIORITY {
        let need = c.width() + u16::from(!keep.is_empty());
        if used + need > width {
            break;
        }
        used += need;
        keep.push(c);
    }
    Col::ORDER
        .into_iter()
        .filter(|c| keep.contains(c))
        .collect()
}

/// A rate column's value: a bare number of packets (the header says
/// pk/s), or bytes with their unit (the header says /s).
fn rate(i: &Identity, unit: Unit, sent: bool, known: bool) -> String {
    match i.last_sample() {
        Some(s) if known && sent => fmt::in_unit(s.sent(unit), unit),
        Some(s) if known => fmt::in_unit(s.received(unit), unit),
        _ => "–".into(),
    }
}

fn render_identities(frame: &mut Frame, area: Rect, state: &State) {
    let unit = state.ui.unit;
    // While the daemon is away, what it last said may no longer be true:
    // the state is unknown, and so are the rates and the uptime.
    let known = matches!(state.conn, ConnState::Connected);
    let per = match unit {
        Unit::Packets => " pk/s",
        Unit::Bytes => "/s",
    };
    // Inside the borders, after the selection mark.
    let cols = columns(area.width.saturating_sub(2 + 2));
    let title = |c: Col| match c {
        Col::Id => "ID".to_string(),
        Col::State => "STATE".into(),
        Col::Port => "PORT".into(),
        Col::Apps => "APPS".into(),
        Col::Gateway => "GATEWAY".into(),
        Col::Uptime => "UPTIME".into(),
        Col::Sent => format!("SENT{per}"),
        Col::Recv => format!("RECV{per}"),
    };
    let header = Row::new(cols.iter().map(|c| Cell::from(title(*c))))
        .style(Style::default().add_modifier(Modifier::BOLD));
    let unknown = Style::default().fg(Color::DarkGray);
    let rows: Vec<Row> = state
        .identities
        .iter()
        .map(|i| {
            let info = &i.info;
            let cell = |c: Col| match c {
                Col::Id => Cell::from(fmt::cut(&info.id, 10)),
                Col::State if known => {
                    Cell::from(info.state.label()).style(state_style(&info.state))
                }
                Col::State => Cell::from("unknown"),
                Col::Port => Cell::from(if info.websocket_port == 0 {
                    "–".to_string()
                } else {
                    info.websocket_port.to_string()
                }),
                Col::Apps => Cell::from(if known {
                    format!("{:>4}", info.connected_apps.len())
                } else {
                    format!("{:>4}", "–")
                }),
                Col::Gateway => Cell::from(
                    info.gateway_id
                        .as_deref()
                        .map(|g| fmt::short_key(g, 11))
                        .unwrap_or_else(|| "–".into()),
                ),
                Col::Uptime => Cell::from(format!(
                    "{:>6}",
                    info.uptime_secs
                        .filter(|_| known)
                        .map(fmt::uptime)
                        .unwrap_or_else(|| "–".into())
                )),
                Col::Sent => Cell::from(format!("{:>9}", rate(i, unit, true, known))),
                Col::Recv => Cell::from(format!("{:>9}", rate(i, unit, false, known))),
            };
            let row = Row::new(cols.iter().map(|c| cell(*c)));
            if known {
                row
            } else {
                row.style(unknown)
            }
        })
        .collect();
    let table = Table::new(rows, cols.iter().map(|c| Constraint::Length(c.width())))
        .header(header)
        .block(Block::bordered().title(format!(" Identities ({}) ", state.identities.len())))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("▶ ")
        .highlight_spacing(HighlightSpacing::Always);
    // A local table state: drawing never writes to `State`.
    let mut ts = TableState::default().with_selected(state.selected_index());
    frame.render_stateful_widget(table, area, &mut ts);
}

fn render_gateway(frame: &mut Frame, area: Rect, state: &State) {
    let Some(sel) = state.selected() else {
        frame.render_widget(
            Paragraph::new("no identity").block(Block::bordered().title(" Gateway ")),
            area,
        );
        return;
    };
    let info = &sel.info;
    let width = usize::from(area.width.saturating_sub(2 + 12));
    let label = |l: &str| Span::styled(format!("{l:<11} "), Style::default().fg(Color::Gray));
    let known = matches!(state.conn, ConnState::Connected);
    let status = info.gateway_status.as_ref();
    let (conn_text, conn_style) = match status.map(|s| s.connection).filter(|_| known) {
        Some(GatewayConnection::Connected) => ("connected", Style::default().fg(Color::Green)),
        Some(GatewayConnection::Reconnecting) => {
            ("reconnecting", Style::default().fg(Color::Yellow))
        }
        Some(GatewayConnection::Down) => ("down", Style::default().fg(Color::Red)),
        None => ("unknown", Style::default().fg(Color::DarkGray)),
    };
    let last_error = match (&info.state, status.and_then(|s| s.last_error.as_deref())) {
        (_, Some(e)) => e.to_string(),
        (IdentityState::Failed { reason }, None) => reason.clone(),
        _ => "–".into(),
    };
    let lines = vec![
        Line::from(vec![
            label("id"),
            Span::raw(
                info.gateway_id
                    .as_deref()
                    .map(|g| fmt::short_key(g, width))
                    .unwrap_or_else(|| "–".into()),
            ),
        ]),
        Line::from(vec![
            label("address"),
            Span::raw(fmt::cut(info.gateway_url.as_deref().unwrap_or("–"), width)),
        ]),
        Line::from(vec![
            label("connection"),
            Span::styled(conn_text, conn_style),
        ]),
        Line::from(vec![
            label("rtt"),
            Span::raw(
                status
                    .and_then(|s| s.rtt_ms)
                    .map(|ms| format!("{ms} ms"))
                    .unwrap_or_else(|| "–".into()),
            ),
        ]),
        Line::from(vec![
            label("reconnects"),
            Span::raw(
                status
                    .map(|s| s.reconnects.to_string())
                    .unwrap_or_else(|| "–".into()),
            ),
        ]),
        Line::from(vec![
            label("bandwidth"),
            Span::raw(
                status
                    .and_then(|s| s.bandwidth_remaining)
                    .map(|b| fmt::bytes(u64::try_from(b).unwrap_or(0)))
                    .unwrap_or_else(|| "–".into()),
            ),
        ]),
        Line::from(vec![
            label("last error"),
            Span::styled(
                fmt::cut(&last_error, width),
                if last_error == "–" {
                    Style::default()
                } else {
                    Style::default().fg(Color::Red)
                },
            ),
        ]),
    ];
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(format!(" Gateway · {} ", fmt::cut(&info.id, 20)))),
        area,
    );
}

/// The title naming the charts' scope and unit.
pub(super) fn scope_title(state: &State) -> String {
    let who = match state.ui.scope {
        Scope::Selected => state
            .selected()
            .map(|i| fmt::cut(&i.info.id, 16))
            .unwrap_or_else(|| "–".into()),
        Scope::Total => "all identities".into(),
    };
    format!("{who} · {}", fmt::unit_rate(state.ui.unit))
}

fn render_traffic(frame: &mut Frame, area: Rect, state: &State) {
    let block = Block::bordered().title(format!(" Traffic · {} ", scope_title(state)));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let history = state.scoped_history();
    let unit = state.ui.unit;
    let known = matches!(state.conn, ConnState::Connected);
    let rows = Layout::vertical([Constraint::Length(1); 7]).split(inner);
    for (n, series) in Series::ALL.iter().enumerate() {
        let [label, spark] =
            Layout::horizontal([Constraint::Length(17), Constraint::Min(0)]).areas(rows[n]);
        let now = match history.last() {
            Some(s) if known => fmt::in_unit(s.get(*series, unit), unit),
            Some(_) => "–".into(),
            None => fmt::in_unit(0, unit),
        };
        let style = if matches!(series, Series::RealSent | Series::RealRecv) {
            Style::default().fg(Color::Cyan)
        } else {
            Style::default().fg(Color::DarkGray)
        };
        frame.render_widget(
            Paragraph::new(format!("{:<10} {now:>5}", series.label())),
            label,
        );
        frame.render_widget(
            Sparkline::default()
                .data(history.tail(*series, unit, usize::from(spark.width)))
                .style(style),
            spark,
        );
    }
    let c = state.scoped_counters();
    let queue = history
        .last()
        .map(|s| s.queue_depth)
        .unwrap_or(c.queue_depth);
    let narrow = inner.width < 40;
    frame.render_widget(
        Paragraph::new(format!(
            "acks {}  {} {}  queue {}",
            fmt::count(c.acks_received),
            if narrow { "retx" } else { "retransmitted" },
            fmt::count(c.retransmissions),
            fmt::count(queue)
        )),
        rows[5],
    );
    // Totals, not rates, in the box's unit.
    let (sent, recv) = match unit {
        Unit::Packets => (
            format!(
                "{} pk",
                fmt::count(c.real_packets_sent + c.cover_packets_sent)
            ),
            format!(
                "{} pk",
                fmt::count(c.real_packets_received + c.cover_packets_received)
            ),
        ),
        Unit::Bytes => (
            fmt::bytes(c.real_bytes_sent + c.cover_bytes_sent),
            fmt::bytes(c.real_bytes_received + c.cover_bytes_received),
        ),
    };
    frame.render_widget(
        Paragraph::new(if narrow {
            format!("since start ↑{sent} ↓{recv}")
        } else {
            format!("since start: sent {sent}  recv {recv}")
        }),
        rows[6],
    );
    // The SOCKS5 proxy, on the free row, only for a scope that has one.
    if let Some(s) = state.scoped_socks5() {
        let (open, sent, recv) = (
            fmt::count(s.open_connections),
            fmt::bytes(s.bytes_sent),
            fmt::bytes(s.bytes_received),
        );
        frame.render_widget(
            Paragraph::new(if narrow {
                format!("socks {open} open ↑{sent} ↓{recv}")
            } else {
                format!("socks {open} open  sent {sent}  recv {recv}")
            }),
            rows[4],
        );
    }
}

fn render_topology(frame: &mut Frame, area: Rect, state: &State) {
    let gw = state.selected().and_then(|i| i.info.gateway_id.clone());
    let title = match &state.topology_brief {
        Some(b) => format!(
            " Topology · epoch {} · {} mixnodes · {} gateways ",
            b.epoch.map(|e| e.to_string()).unwrap_or_else(|| "?".into()),
            b.mixnodes,
            b.gateways
        ),
        None => " Topology ".into(),
    };
    let block = Block::bordered().title(title);
    let Some(topo) = &state.topology else {
        let text = match &state.topology_error {
            Some(e) => format!("not available: {e}"),
            None => "waiting for the topology…".into(),
        };
        frame.render_widget(Paragraph::new(text).block(block), area);
        return;
    };
    let node = |id: &str, perf: u8, mark: bool| {
        let text = format!(
            "{}{} {perf}  ",
            if mark { "*" } else { " " },
            fmt::short_key(id, 6)
        );
        if mark {
            Span::styled(
                text,
                Style::default()
                    .fg(Color::Green)
                    .add_modifier(Modifier::BOLD),
            )
        } else {
            Span::raw(text)
        }
    };
    let mut lines = Vec::new();
    for l in &topo.layers {
        let mut spans = vec![Span::raw(format!(
            "layer {}  {:>3} nodes ",
            l.layer,
            l.nodes.len()
        ))];
        spans.extend(
            l.nodes
                .iter()
                .map(|n| node(&n.identity, n.performance, false)),
        );
        lines.push(Line::from(spans));
    }
    let mut spans = vec![Span::raw(format!(
        "gateways {:>3} nodes ",
        topo.gateways.len()
    ))];
    spans.extend(topo.gateways.iter().map(|n| {
        node(
            &n.identity,
            n.performance,
            gw.as_deref() == Some(&n.identity),
        )
    }));
    lines.push(Line::from(spans));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_tables_keep_the_important_columns() {
        use Col::*;
        assert_eq!(columns(76), Col::ORDER.to_vec(), "80 columns: all");
        // 60 columns: 56 inside.
        assert_eq!(columns(56), vec![Id, State, Port, Uptime, Sent, Recv]);
        assert_eq!(columns(42), vec![Id, State, Sent]);
        assert_eq!(columns(32), vec![Id, State]);
        assert_eq!(columns(12), vec![Id]);
        assert_eq!(columns(0), vec![]);
    }
}
