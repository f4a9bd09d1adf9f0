//! The dashboard's model.
//!
//! [`State`] holds what the daemon told us, and changes only through
//! [`State::apply`] with an [`Update`] that the connection task made from a
//! control message. [`Ui`] holds what the operator chose (view, selection,
//! chart options) and changes only through [`Ui::apply`] with a
//! [`UiAction`] from the key handler. Neither knows anything of layout or of
//! the terminal; drawing reads `&State` (see [`crate::view`]).

mod history;

use std::time::Duration;

pub use history::{History, Sample, Series, HISTORY_LEN};
use nymd_ipc::{
    Event, IdentityInfo, IdentityState, Snapshot, Socks5Counters, Socks5Info, Tier, TopologyBrief,
    TopologySummary, TrafficCounters, Welcome,
};

/// Something the connection task learnt; the only way [`State`]'s data
/// changes.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Connected and greeted.
    Connected(Welcome),
    /// Not connected; the connection task tries again after `retry_in`.
    Down {
        /// Why.
        reason: DownReason,
        /// Delay before the next attempt.
        retry_in: Duration,
        /// Failed attempts in a row.
        attempt: u32,
    },
    /// The subscription's first message.
    Snapshot(Snapshot),
    /// A subscription event.
    Event(Event),
    /// The daemon dropped `n` events for us.
    Lagged(u64),
    /// The answer to a periodic `Status` request: every identity in detail.
    Status(Vec<IdentityInfo>),
    /// The answer to a `Topology` request.
    Topology(TopologySummary),
    /// A `Topology` request failed; the text says why.
    TopologyUnavailable(String),
    /// A start/stop/restart request finished.
    ActionDone {
        /// What was asked.
        op: Op,
        /// Of which identity.
        id: String,
        /// `Err` carries the daemon's message (and hint).
        result: Result<(), String>,
    },
}

/// Why the dashboard is not connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// No socket, or nobody listening on it.
    NotRunning(String),
    /// The socket's permissions keep us out.
    PermissionDenied(String),
    /// The daemon refused the connection (e.g. version mismatch).
    Refused(String),
    /// The connection broke.
    Lost(String),
}

impl DownReason {
    /// What the header says.
    pub fn text(&self) -> &str {
        match self {
            Self::NotRunning(s) | Self::PermissionDenied(s) | Self::Refused(s) | Self::Lost(s) => s,
        }
    }
}

/// A lifecycle operation on one identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Start a stopped identity.
    Start,
    /// Stop a running identity.
    Stop,
    /// Stop and start again.
    Restart,
}

impl Op {
    /// The verb, for messages.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
        }
    }
}

/// The connection as the header shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ConnState {
    /// Before the first attempt finished.
    #[default]
    Connecting,
    /// Connected.
    Connected,
    /// Not connected; see the reason.
    Down {
        /// Why.
        reason: DownReason,
        /// Delay before the next attempt.
        retry_in: Duration,
        /// Failed attempts in a row.
        attempt: u32,
        /// Whether we had been connected before: the daemon went away
        /// (reconnecting) rather than was never there.
        was_connected: bool,
    },
}

/// What the daemon said about itself in its welcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonMeta {
    /// Package version of nymd.
    pub version: String,
    /// What this connection may do.
    pub tier: Tier,
    /// Changes when the daemon restarts.
    pub instance_id: String,
}

/// One identity: the daemon's latest picture plus our traffic history.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The latest information (snapshot, status poll, events).
    pub info: IdentityInfo,
    /// Per-second traffic, oldest first.
    pub history: History,
    /// The counters of the last `Traffic` event, to compute the next rate.
    last_counters: Option<TrafficCounters>,
    /// The SOCKS5 counters of the last `Traffic` event (`None`: it had
    /// none, or none came since the identity last (re)started).
    last_socks5: Option<Socks5Counters>,
}

impl Identity {
    fn new(info: IdentityInfo) -> Self {
        Self {
            info,
            history: History::default(),
            last_counters: None,
            last_socks5: None,
        }
    }

    fn traffic(&mut self, counters: TrafficCounters, socks5: Option<Socks5Counters>) {
        if let Some(prev) = self.last_counters {
            self.history.push(Sample::between(&prev, &counters));
        }
        self.last_counters = Some(counters);
        self.last_socks5 = socks5;
        self.info.counters = counters;
    }

    /// The SOCKS5 proxy's counters while its port is served: from the
    /// latest `Traffic` event, else from the latest status (a daemon that
    /// sends no SOCKS5 counters in its events); `None` for an identity
    /// without a served SOCKS5 port.
    pub fn socks5(&self) -> Option<Socks5Counters> {
        self.last_socks5.or_else(|| {
            self.info
                .socks5
                .as_ref()
                .filter(|s| s.listening)
                .map(Socks5Info::counters)
        })
    }

    /// The latest per-second sample, if two `Traffic` events came.
    pub fn last_sample(&self) -> Option<&Sample> {
        self.history.last()
    }

    /// Whether the identity sends and receives nothing in `state` (nymd
    /// sends no `Traffic` events for it then, so its last rate would
    /// otherwise stay on screen).
    fn is_idle(state: &IdentityState) -> bool {
        matches!(state, IdentityState::Stopped | IdentityState::Failed { .. })
    }

    /// Take a new state: a stopped or failed identity's rates go to zero
    /// (one zero sample), and its next run counts from its first event.
    fn set_state(&mut self, state: IdentityState) {
        if Self::is_idle(&state) {
            self.last_counters = None;
            self.last_socks5 = None;
            if let Some(last) = self.history.last() {
                let idle = last.idle();
                if *last != idle {
                    self.history.push(idle);
                }
            }
        }
        self.info.state = state;
    }
}

/// A line for the operator at the bottom: an action's outcome or why a key
/// did nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The text.
    pub text: String,
    /// Drawn as an error.
    pub is_error: bool,
}

/// The dashboard's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewKind {
    /// Identities, gateway, traffic and topology at a glance.
    #[default]
    Overview,
    /// Traffic charts.
    Traffic,
    /// Every node of the topology.
    Topology,
}

impl ViewKind {
    /// All pages, in tab order.
    pub const ALL: [ViewKind; 3] = [Self::Overview, Self::Traffic, Self::Topology];

    /// The tab's title.
    pub fn title(self) -> &'static str {
        match self {
            Self::Overview => "Overview",
            Self::Traffic => "Traffic",
            Self::Topology => "Topology",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Overview => 0,
            Self::Traffic => 1,
            Self::Topology => 2,
        }
    }
}

/// Whose traffic the charts show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// The selected identity.
    #[default]
    Selected,
    /// All identities summed.
    Total,
}

/// The charts' unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unit {
    /// Packets per second.
    #[default]
    Packets,
    /// Bytes per second.
    Bytes,
}

/// A change the operator asked for, from [`crate::input`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiAction {
    /// Select the next identity.
    SelectNext,
    /// Select the previous identity.
    SelectPrev,
    /// Show a page.
    Show(ViewKind),
    /// Next page.
    NextView,
    /// Previous page.
    PrevView,
    /// Selected identity / total.
    ToggleScope,
    /// Packets / bytes.
    ToggleUnit,
    /// Show or hide the help.
    ToggleHelp,
    /// Scroll the topology list by this many rows.
    Scroll(i32),
}

/// What the operator chose.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ui {
    /// The page shown.
    pub view: ViewKind,
    /// The selected identity's name; `None` means the first.
    pub selected: Option<String>,
    /// Whose traffic the charts show.
    pub scope: Scope,
    /// Packets or bytes.
    pub unit: Unit,
    /// The help is open.
    pub help: bool,
    /// First row shown of the topology list.
    pub topology_scroll: usize,
    /// The last notice.
    pub notice: Option<Notice>,
}

/// Everything the views draw.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    /// The control socket, for messages.
    pub socket: String,
    /// The connection.
    pub conn: ConnState,
    /// The daemon we are (or were last) connected to.
    pub daemon: Option<DaemonMeta>,
    /// Identities, sorted by name.
    pub identities: Vec<Identity>,
    /// Topology counts from the snapshot or events.
    pub topology_brief: Option<TopologyBrief>,
    /// The full topology, from `Topology` requests.
    pub topology: Option<TopologySummary>,
    /// Why the topology is missing, if a request failed.
    pub topology_error: Option<String>,
    /// Events the daemon dropped for us, in total.
    pub lagged: u64,
    /// What the operator chose.
    pub ui: Ui,
}

impl State {
    /// A state for a dashboard of the daemon at `socket`.
    pub fn new(socket: impl Into<String>) -> Self {
        Self {
            socket: socket.into(),
            ..Self::default()
        }
    }

    /// The connection's tier, when connected.
    pub fn tier(&self) -> Option<Tier> {
        match self.conn {
            ConnState::Connected => self.daemon.as_ref().map(|d| d.tier),
            _ => None,
        }
    }

    /// The selected identity: the one named in [`Ui::selected`], else the
    /// first.
    pub fn selected(&self) -> Option<&Identity> {
        self.ui
            .selected
            .as_deref()
            .and_then(|id| self.identity(id))
            .or_else(|| self.identities.first())
    }

    /// Index of the selected identity in [`State::identities`].
    pub fn selected_index(&self) -> Option<usize> {
        let sel = self.selected()?;
        self.identities
            .iter()
            .position(|i| i.info.id == sel.info.id)
    }

    /// An identity by name.
    pub fn identity(&self, id: &str) -> Option<&Identity> {
        self.identities.iter().find(|i| i.info.id == id)
    }

    fn identity_mut(&mut self, id: &str) -> Option<&mut Identity> {
        self.identities.iter_mut().find(|i| i.info.id == id)
    }

    /// The history of the charts' scope: the selected identity's, or the sum
    /// over all identities aligned on their latest samples.
    pub fn scoped_history(&self) -> History {
        match self.ui.scope {
            Scope::Selected => self
                .selected()
                .map(|i| i.history.clone())
                .unwrap_or_default(),
            Scope::Total => History::sum(self.identities.iter().map(|i| &i.history)),
        }
    }

    /// Cumulative counters of the charts' scope.
    pub fn scoped_counters(&self) -> TrafficCounters {
        match self.ui.scope {
            Scope::Selected => self.selected().map(|i| i.info.counters).unwrap_or_default(),
            Scope::Total => {
                let mut t = TrafficCounters::default();
                for i in &self.identities {
                    history::add_counters(&mut t, &i.info.counters);
                }
                t
            }
        }
    }

    /// SOCKS5 counters of the charts' scope: the selected identity's, or
    /// the sum over the identities that serve SOCKS5; `None` when none
    /// does.
    pub fn scoped_socks5(&self) -> Option<Socks5Counters> {
        match self.ui.scope {
            Scope::Selected => self.selected().and_then(Identity::socks5),
            Scope::Total => {
                self.identities
                    .iter()
                    .filter_map(Identity::socks5)
                    .reduce(|mut t, c| {
                        t.add(&c);
                        t
                    })
            }
        }
    }

    /// Apply what the connection task learnt.
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Connected(w) => {
                let restarted = self
                    .daemon
                    .as_ref()
                    .is_some_and(|d| d.instance_id != w.instance_id);
                if restarted {
                    // Another daemon process: its counters start again.
                    self.identities.clear();
                    self.topology = None;
                    self.topology_brief = None;
                }
                self.daemon = Some(DaemonMeta {
                    version: w.daemon_version,
                    tier: w.tier,
                    instance_id: w.instance_id,
                });
                self.conn = ConnState::Connected;
            }
            Update::Down {
                reason,
                retry_in,
                attempt,
            } => {
                let was_connected = match &self.conn {
                    ConnState::Connected => true,
                    ConnState::Down { was_connected, .. } => *was_connected,
                    ConnState::Connecting => false,
                };
                self.conn = ConnState::Down {
                    reason,
                    retry_in,
                    attempt,
                    was_connected,
                };
            }
            Update::Snapshot(s) => {
                self.replace_identities(s.identities);
                if s.topology.is_some() {
                    self.topology_brief = s.topology;
                }
            }
            Update::Status(list) => self.replace_identities(list),
            Update::Event(e) => self.event(e),
            Update::Lagged(n) => self.lagged += n,
            Update::Topology(t) => {
                self.topology_brief = Some(TopologyBrief {
                    epoch: t.epoch,
                    layers: u8::try_from(t.layers.len()).unwrap_or(u8::MAX),
                    mixnodes: t.layers.iter().map(|l| l.nodes.len() as u32).sum(),
                    gateways: t.gateways.len() as u32,
                });
                self.topology = Some(t);
                self.topology_error = None;
            }
            Update::TopologyUnavailable(why) => self.topology_error = Some(why),
            Update::ActionDone { op, id, result } => {
                self.ui.notice = Some(match result {
                    Ok(()) => Notice {
                        text: format!("{}: {} done", id, op.verb()),
                        is_error: false,
                    },
                    Err(e) => Notice {
                        text: format!("{}: {} failed: {e}", id, op.verb()),
                        is_error: true,
                    },
                });
            }
        }
    }

    /// Take a full list from the daemon, keeping the traffic history of
    /// identities that are still there.
    fn replace_identities(&mut self, mut list: Vec<IdentityInfo>) {
        list.sort_by(|a, b| a.id.cmp(&b.id));
        let mut old = std::mem::take(&mut self.identities);
        self.identities = list
            .into_iter()
            .map(|info| match old.iter().position(|o| o.info.id == info.id) {
                Some(pos) => {
                    let mut kept = old.swap_remove(pos);
                    let state = info.state.clone();
                    kept.info = info;
                    kept.set_state(state);
                    kept
                }
                None => Identity::new(info),
            })
            .collect();
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::IdentityState { identity, state } => match self.identity_mut(&identity) {
                Some(i) => {
                    if matches!(state, IdentityState::Stopped) {
                        i.info.uptime_secs = None;
                    }
                    i.set_state(state);
                }
                None => {
                    let pos = self
                        .identities
                        .partition_point(|i| i.info.id.as_str() < identity.as_str());
                    self.identities.insert(
                        pos,
                        Identity::new(IdentityInfo {
                            id: identity,
                            state,
                            address: None,
                            websocket_host: String::new(),
                            websocket_port: 0,
                            gateway_id: None,
                            gateway_url: None,
                            gateway_status: None,
                            connected_apps: Vec::new(),
                            uptime_secs: None,
                            counters: TrafficCounters::default(),
                            access: None,
                            memory: None,
                            socks5: None,
                        }),
                    );
                }
            },
            Event::IdentityRemoved { identity } => {
                self.identities.retain(|i| i.info.id != identity);
            }
            Event::GatewayStatus {
                identity,
                gateway_id,
                status,
            } => {
                if let Some(i) = self.identity_mut(&identity) {
                    if !gateway_id.is_empty() {
                        i.info.gateway_id = Some(gateway_id);
                    }
                    i.info.gateway_status = Some(status);
                }
            }
            Event::Traffic {
                identity,
                counters,
                socks5,
            } => {
                if let Some(i) = self.identity_mut(&identity) {
                    i.traffic(counters, socks5);
                }
            }
            Event::TopologyRefreshed(brief) => self.topology_brief = Some(brief),
            Event::AppConnected { identity, app } => {
                if let Some(i) = self.identity_mut(&identity) {
                    i.info
                        .connected_apps
                        .retain(|a| a.connection != app.connection);
                    i.info.connected_apps.push(app);
                }
            }
            Event::AppDisconnected {
                identity,
                connection,
            } => {
                if let Some(i) = self.identity_mut(&identity) {
                    i.info.connected_apps.retain(|a| a.connection != connection);
                }
            }
            // Progress of `nymctl init` elsewhere; the identity appears with
            // its first state event.
            Event::InitProgress { .. } => {}
        }
    }
}

impl Ui {
    /// Apply the operator's choice; `state` is read for the identity list.
    pub fn apply(&mut self, action: UiAction, identities: &[Identity]) {
        match action {
            UiAction::SelectNext | UiAction::SelectPrev => {
                if identities.is_empty() {
                    return;
                }
                let cur = self
                    .selected
                    .as_deref()
                    .and_then(|id| identities.iter().position(|i| i.info.id == id))
                    .unwrap_or(0);
                let next = if action == UiAction::SelectNext {
                    (cur + 1).min(identities.len() - 1)
                } else {
                    cur.saturating_sub(1)
                };
                self.selected = Some(identities[next].info.id.clone());
            }
            UiAction::Show(v) => self.view = v,
            UiAction::NextView => {
                self.view = ViewKind::ALL[(self.view.index() + 1) % ViewKind::ALL.len()];
            }
            UiAction::PrevView => {
                self.view = ViewKind::ALL
                    [(self.view.index() + ViewKind::ALL.len() - 1) % ViewKind::ALL.len()];
            }
            UiAction::ToggleScope => {
                self.scope = match self.scope {
                    Scope::Selected => Scope::Total,
                    Scope::Total => Scope::Selected,
                };
            }
            UiAction::ToggleUnit => {
                self.unit = match self.unit {
                    Unit::Packets => Unit::Bytes,
                    Unit::Bytes => Unit::Packets,
                };
            }
            UiAction::ToggleHelp => self.help = !self.help,
            UiAction::Scroll(n) => {
                self.topology_scroll = if n < 0 {
                    self.topology_scroll
                        .saturating_sub(n.unsigned_abs() as usize)
                } else {
                    self.topology_scroll.saturating_add(n as usize)
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nymd_ipc::{GatewayConnection, GatewayStatus};

    fn info(id: &str) -> IdentityInfo {
        IdentityInfo {
            id: id.into(),
            state: IdentityState::Running,
            address: None,
            websocket_host: "127.0.0.1".into(),
            websocket_port: 1977,
            gateway_id: None,
            gateway_url: None,
            gateway_status: None,
            connected_apps: vec![],
            uptime_secs: Some(5),
            counters: TrafficCounters::default(),
            access: None,
            memory: None,
            socks5: None,
        }
    }

    fn traffic(id: &str, real: u64, cover: u64) -> Update {
        Update::Event(Event::Traffic {
            identity: id.into(),
            counters: TrafficCounters {
                real_packets_sent: real,
                cover_packets_sent: cover,
                ..TrafficCounters::default()
            },
            socks5: None,
        })
    }

    fn socks_traffic(id: &str, open: u64, received: u64) -> Update {
        Update::Event(Event::Traffic {
            identity: id.into(),
            counters: TrafficCounters::default(),
            socks5: Some(Socks5Counters {
                open_connections: open,
                bytes_received: received,
                ..Socks5Counters::default()
            }),
        })
    }

    #[test]
    fn socks5_counters_come_from_events_or_the_status_and_go_with_a_stop() {
        let mut s = State::new("/s");
        let mut served = info("a");
        served.socks5 = Some(Socks5Info {
            enabled: true,
            listening: true,
            open_connections: 1,
            ..Socks5Info::default()
        });
        let mut not_served = info("c");
        not_served.socks5 = Some(Socks5Info {
            enabled: true,
            listening: false,
            ..Socks5Info::default()
        });
        s.apply(Update::Status(vec![served, info("b"), not_served]));
        // Before any event: the status's counters, for a served port only.
        assert_eq!(
            s.identities[0].socks5().map(|c| c.open_connections),
            Some(1)
        );
        assert_eq!(s.identities[1].socks5(), None);
        assert_eq!(s.identities[2].socks5(), None);
        s.apply(socks_traffic("a", 3, 100));
        s.apply(traffic("b", 1, 1));
        assert_eq!(
            s.identities[0].socks5().map(|c| c.open_connections),
            Some(3)
        );
        assert_eq!(s.identities[1].socks5(), None);
        assert_eq!(s.scoped_socks5().map(|c| c.bytes_received), Some(100));
        s.ui.scope = Scope::Total;
        s.apply(socks_traffic("c", 2, 50));
        assert_eq!(
            s.scoped_socks5()
                .map(|c| (c.open_connections, c.bytes_received)),
            Some((5, 150))
        );
        // Stopped: its counters are gone until it serves again.
        s.apply(Update::Event(Event::IdentityState {
            identity: "c".into(),
            state: IdentityState::Stopped,
        }));
        assert_eq!(s.identities[2].socks5(), None);
        assert_eq!(s.scoped_socks5().map(|c| c.open_connections), Some(3));
        s.ui.scope = Scope::Selected;
        let ids = s.identities.clone();
        s.ui.apply(UiAction::SelectNext, &ids);
        assert_eq!(s.scoped_socks5(), None, "b serves no SOCKS5");
    }

    #[test]
    fn traffic_events_become_per_second_samples() {
        let mut s = State::new("/s");
        s.apply(Update::Snapshot(Snapshot {
            identities: vec![info("b"), info("a")],
            topology: None,
        }));
        assert_eq!(s.identities[0].info.id, "a", "sorted by name");
        s.apply(traffic("a", 10, 100));
        assert!(s.identities[0].history.is_empty(), "one event is no rate");
        s.apply(traffic("a", 13, 105));
        s.apply(traffic("a", 20, 110));
        let h = &s.identities[0].history;
        assert_eq!(h.series(Series::RealSent, Unit::Packets), vec![3, 7]);
        assert_eq!(h.series(Series::CoverSent, Unit::Packets), vec![5, 5]);
        // A restart resets the counters: the new value is the delta.
        s.apply(traffic("a", 2, 1));
        assert_eq!(
            s.identities[0]
                .history
                .series(Series::RealSent, Unit::Packets),
            vec![3, 7, 2]
        );
    }

    #[test]
    fn a_stopped_identity_s_rates_go_to_zero() {
        let mut s = State::new("/s");
        s.apply(Update::Status(vec![info("a"), info("b")]));
        for n in [0, 10, 20] {
            s.apply(traffic("a", n, n));
            s.apply(traffic("b", n, n));
        }
        s.apply(Update::Event(Event::IdentityState {
            identity: "a".into(),
            state: IdentityState::Stopped,
        }));
        let a = &s.identities[0];
        assert_eq!(a.last_sample(), Some(&Sample::default()));
        assert_eq!(
            a.history.series(Series::RealSent, Unit::Packets),
            vec![10, 10, 0]
        );
        // The status poll says stopped again: no second zero sample.
        let mut stopped = info("a");
        stopped.state = IdentityState::Stopped;
        s.apply(Update::Status(vec![stopped, info("b")]));
        assert_eq!(s.identities[0].history.len(), 3);
        // The total's newest sample no longer counts it.
        s.apply(traffic("b", 25, 25));
        s.ui.scope = Scope::Total;
        assert_eq!(
            s.scoped_history().last().map(|x| x.real_sent_packets),
            Some(5)
        );
        // Started again, with counters from zero: the first event is no
        // rate, the second is.
        s.apply(Update::Event(Event::IdentityState {
            identity: "a".into(),
            state: IdentityState::Running,
        }));
        s.apply(traffic("a", 2, 2));
        assert_eq!(s.identities[0].history.len(), 3);
        s.apply(traffic("a", 5, 5));
        assert_eq!(
            s.identities[0].last_sample().map(|x| x.real_sent_packets),
            Some(3)
        );
        // A failed identity (found by a status poll) goes to zero too.
        let mut failed = info("b");
        failed.state = IdentityState::Failed {
            reason: "gone".into(),
        };
        s.apply(Update::Status(vec![info("a"), failed]));
        assert_eq!(s.identities[1].last_sample(), Some(&Sample::default()));
    }

    #[test]
    fn status_keeps_history_and_drops_removed_identities() {
        let mut s = State::new("/s");
        s.apply(Update::Status(vec![info("a"), info("b")]));
        s.apply(traffic("a", 0, 0));
        s.apply(traffic("a", 1, 1));
        s.apply(Update::Status(vec![info("a")]));
        assert_eq!(s.identities.len(), 1);
        assert_eq!(s.identities[0].history.len(), 1);
    }

    #[test]
    fn total_sums_identities_on_their_latest_samples() {
        let mut s = State::new("/s");
        s.apply(Update::Status(vec![info("a"), info("b")]));
        for (a, b) in [(0, 0), (1, 10), (3, 30), (6, 60)] {
            s.apply(traffic("a", a, 0));
            s.apply(traffic("b", b, 0));
        }
        s.apply(traffic("a", 10, 0));
        s.ui.scope = Scope::Total;
        assert_eq!(
            s.scoped_history().series(Series::RealSent, Unit::Packets),
            vec![1, 12, 23, 34]
        );
    }

    #[test]
    fn events_add_change_and_remove_identities() {
        let mut s = State::new("/s");
        s.apply(Update::Event(Event::IdentityState {
            identity: "m".into(),
            state: IdentityState::Starting,
        }));
        s.apply(Update::Event(Event::IdentityState {
            identity: "c".into(),
            state: IdentityState::Starting,
        }));
        assert_eq!(s.identities[0].info.id, "c");
        s.apply(Update::Event(Event::GatewayStatus {
            identity: "c".into(),
            gateway_id: "GW".into(),
            status: GatewayStatus {
                connection: GatewayConnection::Connected,
                rtt_ms: Some(4),
                last_error: None,
                reconnects: 1,
                bandwidth_remaining: Some(5),
            },
        }));
        assert_eq!(s.identities[0].info.gateway_id.as_deref(), Some("GW"));
        s.apply(Update::Event(Event::IdentityRemoved {
            identity: "c".into(),
        }));
        assert_eq!(s.identities.len(), 1);
    }

    #[test]
    fn a_restarted_daemon_forgets_the_old_one() {
        let welcome = |instance: &str| Welcome {
            daemon_version: "0.1.0".into(),
            protocol_version: 1,
            instance_id: instance.into(),
            features: vec![],
            tier: Tier::Operate,
        };
        let mut s = State::new("/s");
        s.apply(Update::Connected(welcome("one")));
        s.apply(Update::Status(vec![info("a")]));
        s.apply(Update::Down {
            reason: DownReason::Lost("gone".into()),
            retry_in: Duration::from_secs(1),
            attempt: 1,
        });
        assert!(matches!(
            s.conn,
            ConnState::Down {
                was_connected: true,
                ..
            }
        ));
        assert_eq!(s.tier(), None);
        assert_eq!(s.identities.len(), 1, "stale data stays on screen");
        s.apply(Update::Connected(welcome("two")));
        assert!(s.identities.is_empty());
        assert_eq!(s.tier(), Some(Tier::Operate));
    }

    #[test]
    fn selection_follows_names_and_stays_in_range() {
        let mut s = State::new("/s");
        s.apply(Update::Status(vec![info("a"), info("b"), info("c")]));
        assert_eq!(s.selected().map(|i| i.info.id.as_str()), Some("a"));
        let ids = s.identities.clone();
        s.ui.apply(UiAction::SelectNext, &ids);
        s.ui.apply(UiAction::SelectNext, &ids);
        s.ui.apply(UiAction::SelectNext, &ids);
        assert_eq!(s.selected().map(|i| i.info.id.as_str()), Some("c"));
        s.apply(Update::Status(vec![info("a"), info("b")]));
        assert_eq!(
            s.selected().map(|i| i.info.id.as_str()),
            Some("a"),
            "gone: first"
        );
        let ids = s.identities.clone();
        s.ui.apply(UiAction::SelectPrev, &ids);
        assert_eq!(s.selected_index(), Some(0));
    }
}
