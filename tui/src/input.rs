//! Keys to actions. Reads `&State` (to know the selection and the tier) and
//! changes nothing: the caller applies the [`Action`].

use nymd_ipc::Tier;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::state::{ConnState, Op, State, UiAction, ViewKind};

/// What a key asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Leave.
    Quit,
    /// A change of the dashboard's own state.
    Ui(UiAction),
    /// Ask the daemon to start, stop or restart an identity.
    Request {
        /// Which operation.
        op: Op,
        /// Of which identity.
        id: String,
    },
    /// Say something to the operator (e.g. why a key did nothing).
    Notice(String),
    /// Nothing.
    None,
}

/// The keys, for the help bar and the help page: (keys, what).
pub const KEYS: &[(&str, &str)] = &[
    ("↑↓/jk", "select identity"),
    ("s", "start selected"),
    ("x", "stop selected"),
    ("r", "restart selected"),
    ("1 2 3/Tab", "overview, traffic, topology"),
    ("t", "charts: selected or total"),
    ("b", "charts: packets or bytes"),
    ("PgUp/PgDn", "scroll the topology"),
    ("?", "help"),
    ("q/Esc", "quit"),
];

/// Why start/stop/restart is not allowed now, if it is not.
pub fn read_only_reason(state: &State) -> Option<String> {
    match (&state.conn, state.tier()) {
        (ConnState::Connected, Some(Tier::Operate)) => None,
        (ConnState::Connected, _) => Some(
            "read-only: this connection has the observe tier; start/stop/restart need \
             operate (root, or a member of group nymd: sudo usermod -aG nymd $USER)"
                .into(),
        ),
        _ => Some("read-only: not connected to nymd".into()),
    }
}

/// Map one key to an action.
pub fn update_input(key: KeyEvent, state: &State) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return match key.code {
            KeyCode::Char('c') | KeyCode::Char('d') => Action::Quit,
            _ => Action::None,
        };
    }
    match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Esc if state.ui.help => Action::Ui(UiAction::ToggleHelp),
        KeyCode::Esc => Action::Quit,
        KeyCode::Char('?') | KeyCode::Char('h') | KeyCode::F(1) => Action::Ui(UiAction::ToggleHelp),
        KeyCode::Down | KeyCode::Char('j') => Action::Ui(UiAction::SelectNext),
        KeyCode::Up | KeyCode::Char('k') => Action::Ui(UiAction::SelectPrev),
        KeyCode::Char('1') => Action::Ui(UiAction::Show(ViewKind::Overview)),
        KeyCode::Char('2') => Action::Ui(UiAction::Show(ViewKind::Traffic)),
        KeyCode::Char('3') => Action::Ui(UiAction::Show(ViewKind::Topology)),
        KeyCode::Tab | KeyCode::Right => Action::Ui(UiAction::NextView),
        KeyCode::BackTab | KeyCode::Left => Action::Ui(UiAction::PrevView),
        KeyCode::Char('t') => Action::Ui(UiAction::ToggleScope),
        KeyCode::Char('b') => Action::Ui(UiAction::ToggleUnit),
        KeyCode::PageDown => Action::Ui(UiAction::Scroll(10)),
        KeyCode::PageUp => Action::Ui(UiAction::Scroll(-10)),
        KeyCode::Home => Action::Ui(UiAction::Scroll(i32::MIN)),
        KeyCode::Char('s') => lifecycle(Op::Start, state),
        KeyCode::Char('x') => lifecycle(Op::Stop, state),
        KeyCode::Char('r') => lifecycle(Op::Restart, state),
        _ => Action::None,
    }
}

fn lifecycle(op: Op, state: &State) -> Action {
    if let Some(why) = read_only_reason(state) {
        return Action::Notice(format!("cannot {}: {why}", op.verb()));
    }
    match state.selected() {
        Some(i) => Action::Request {
            op,
            id: i.info.id.clone(),
        },
        None => Action::Notice(format!("cannot {}: no identity selected", op.verb())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Update;
    use nymd_ipc::{IdentityInfo, IdentityState, TrafficCounters, Welcome};

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    fn state(tier: Tier) -> State {
        let mut s = State::new("/run/nymd/nymd.sock");
        s.apply(Update::Connected(Welcome {
            daemon_version: "0.1.0".into(),
            protocol_version: 1,
            instance_id: "i".into(),
            features: vec![],
            tier,
        }));
        s.apply(Update::Status(vec![IdentityInfo {
            id: "alice".into(),
            state: IdentityState::Running,
            address: None,
            websocket_host: "127.0.0.1".into(),
            websocket_port: 1977,
            gateway_id: None,
            gateway_url: None,
            gateway_status: None,
            connected_apps: vec![],
            uptime_secs: None,
            counters: TrafficCounters::default(),
            access: None,
            memory: None,
            socks5: None,
        }]));
        s
    }

    #[test]
    fn operate_tier_may_start_stop_and_restart_the_selected_identity() {
        let s = state(Tier::Operate);
        for (c, op) in [('s', Op::Start), ('x', Op::Stop), ('r', Op::Restart)] {
            assert_eq!(
                update_input(key(KeyCode::Char(c)), &s),
                Action::Request {
                    op,
                    id: "alice".into()
                }
            );
        }
    }

    #[test]
    fn observe_tier_is_read_only_and_says_why() {
        let s = state(Tier::Observe);
        let Action::Notice(text) = update_input(key(KeyCode::Char('x')), &s) else {
            panic!("expected a notice");
        };
        assert!(text.contains("observe tier"), "{text}");
        assert!(text.contains("group nymd"), "{text}");
    }

    #[test]
    fn disconnected_is_read_only() {
        let mut s = state(Tier::Operate);
        s.apply(Update::Down {
            reason: crate::state::DownReason::Lost("x".into()),
            retry_in: std::time::Duration::from_secs(1),
            attempt: 1,
        });
        let Action::Notice(text) = update_input(key(KeyCode::Char('s')), &s) else {
            panic!("expected a notice");
        };
        assert!(text.contains("not connected"), "{text}");
    }

    #[test]
    fn navigation_and_quit() {
        let s = state(Tier::Operate);
        assert_eq!(update_input(key(KeyCode::Char('q')), &s), Action::Quit);
        assert_eq!(
            update_input(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL), &s),
            Action::Quit
        );
        assert_eq!(
            update_input(key(KeyCode::Down), &s),
            Action::Ui(UiAction::SelectNext)
        );
        assert_eq!(
            update_input(key(KeyCode::Char('3')), &s),
            Action::Ui(UiAction::Show(ViewKind::Topology))
        );
        let mut help = s.clone();
        help.ui.help = true;
        assert_eq!(
            update_input(key(KeyCode::Esc), &help),
            Action::Ui(UiAction::ToggleHelp),
            "Esc closes the help first"
        );
    }
}
