//! The topology page: every mix node by layer and every gateway, with
//! identity, address and performance; `*` marks the gateway the selected
//! identity uses. (Routes take a random node of each layer per packet, so
//! every mix node is in use; the gateway is the one fixed choice.)

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::fmt;
use crate::state::State;

pub(super) fn render(frame: &mut Frame, area: Rect, state: &State) {
    let selected = state.selected().map(|i| i.info.id.clone());
    let selected_gw = state.selected().and_then(|i| i.info.gateway_id.clone());
    let title = match &state.topology {
        Some(t) => format!(
            " Topology · epoch {} · {} · {} gateways ",
            t.epoch.map(|e| e.to_string()).unwrap_or_else(|| "?".into()),
            t.layers
                .iter()
                .map(|l| format!("L{} {}", l.layer, l.nodes.len()))
                .collect::<Vec<_>>()
                .join(" "),
            t.gateways.len()
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
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [table_area, note] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(inner);

    // Fixed columns; the identity takes what is left.
    let fixed = 1 + 5 + 21 + 4 + 14 + 5;
    let id_width = usize::from(table_area.width).saturating_sub(fixed).max(8);
    let mut rows: Vec<Row> = Vec::new();
    for l in &topo.layers {
        for n in &l.nodes {
            rows.push(Row::new(vec![
                Cell::from(" "),
                Cell::from(format!("{}", l.layer)),
                Cell::from(fmt::short_key(&n.identity, id_width)),
                Cell::from(fmt::cut(&n.address, 21)),
                Cell::from(format!("{:>3}", n.performance)),
                Cell::from(""),
            ]));
        }
    }
    for g in &topo.gateways {
        let users: Vec<&str> = state
            .identities
            .iter()
            .filter(|i| i.info.gateway_id.as_deref() == Some(g.identity.as_str()))
            .map(|i| i.info.id.as_str())
            .collect();
        let mine = selected_gw.as_deref() == Some(g.identity.as_str());
        let row = Row::new(vec![
            Cell::from(if mine { "*" } else { " " }),
            Cell::from("gw"),
            Cell::from(fmt::short_key(&g.identity, id_width)),
            Cell::from(fmt::cut(&g.address, 21)),
            Cell::from(format!("{:>3}", g.performance)),
            Cell::from(fmt::cut(&users.join(","), 14)),
        ]);
        rows.push(if mine {
            row.style(
                Style::default()
                    .fg(Color::Green)
                    .add_modifier(Modifier::BOLD),
            )
        } else {
            row
        });
    }
    let visible = usize::from(table_area.height.saturating_sub(1));
    let total = rows.len();
    let max_scroll = total.saturating_sub(visible);
    let scroll = state.ui.topology_scroll.min(max_scroll);
    let rows: Vec<Row> = rows.into_iter().skip(scroll).collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(1),
            Constraint::Length(5),
            Constraint::Min(8),
            Constraint::Length(21),
            Constraint::Length(4),
            Constraint::Length(14),
        ],
    )
    .header(
        Row::new(vec!["", "LAYER", "IDENTITY", "ADDRESS", "PERF", "USED BY"])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    );
    frame.render_widget(table, table_area);
    let shown = if total == 0 {
        "no nodes".to_string()
    } else {
        format!(
            "rows {}-{} of {total}",
            scroll + 1,
            (scroll + visible).min(total)
        )
    };
    frame.render_widget(
        Paragraph::new(format!(
            "{shown} · * gateway of {} · mix nodes are picked per packet",
            selected.as_deref().unwrap_or("–")
        ))
        .style(Style::default().fg(Color::Gray)),
        note,
    );
}
