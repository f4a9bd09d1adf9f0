//! Every view rendered from a fixed state into a `TestBackend` and compared
//! with the expected screen in `tests/golden/<name>.txt` (the text of each
//! cell; colours are not compared).
//!
//! After an intended change of the drawing, regenerate with
//! `NYMD_BLESS=1 cargo test -p nym-tui --test views` and review the diff.

use std::path::PathBuf;
use std::time::Duration;

use nym_tui::input::{update_input, Action};
use nym_tui::state::{DownReason, Op, Scope, State, UiAction, Unit, Update, ViewKind};
use nym_tui::view;
use nymd_ipc::{
    AppInfo, Event, GatewayConnection, GatewayStatus, IdentityInfo, IdentityState, NodeInfo,
    Snapshot, Socks5Counters, Tier, TopologyBrief, TopologyLayer, TopologySummary, TrafficCounters,
    Welcome,
};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

const SOCKET: &str = "/run/user/1000/nymd/nymd.sock";
const GW_A: &str = "4kjgWmFU1tcGAZYRZR57yFuVAexjLbJ5M7jvo3X5Hkcf";
const GW_B: &str = "9pT3sYx2LmQe8WvN4RbK7cHjD1aZuF6gE5oVnXwMiCq";

fn screen(state: &State, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    terminal.draw(|f| view::render(f, state)).expect("draw");
    let buf = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..height {
        let mut line = String::new();
        for x in 0..width {
            line.push_str(buf.cell((x, y)).map(|c| c.symbol()).unwrap_or(" "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Every golden screen a test in this file checks. `golden` refuses a name
/// that is not listed, and `no_stale_goldens` refuses a file in
/// `tests/golden/` that is not, so a renamed or removed test cannot leave a
/// golden behind that nothing compares.
const GOLDENS: &[&str] = &[
    "connecting_80x24",
    "failed_identity_80x24",
    "help_observe_80x24",
    "not_running_80x24",
    "observe_stop_refused_80x24",
    "overview_120x32",
    "overview_60x24",
    "overview_80x24",
    "overview_second_bytes_80x24",
    "overview_socks_80x24",
    "reconnecting_80x24",
    "stopped_identity_80x24",
    "topology_80x24",
    "topology_scrolled_80x12",
    "traffic_80x24",
    "traffic_bytes_80x24",
    "traffic_socks_80x24",
    "traffic_total_80x24",
];

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[track_caller]
fn golden(name: &str, actual: &str) {
    assert!(
        GOLDENS.contains(&name),
        "golden {name:?} is not listed in GOLDENS (tui/tests/views.rs)"
    );
    let path = golden_dir().join(format!("{name}.txt"));
    if std::env::var_os("NYMD_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("golden dir")).expect("mkdir");
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let mut diff = String::new();
        for (n, (e, a)) in expected.lines().zip(actual.lines()).enumerate() {
            if e != a {
                diff.push_str(&format!(
                    "line {:>2} expected: {e}\nline {:>2}   actual: {a}\n",
                    n + 1,
                    n + 1
                ));
            }
        }
        panic!(
            "{name}: the screen differs from {}\n{diff}\n--- actual ---\n{actual}\n\
             If the change is intended: NYMD_BLESS=1 cargo test -p nym-tui --test views",
            path.display()
        );
    }
}

fn welcome(tier: Tier) -> Welcome {
    Welcome {
        daemon_version: "0.1.0".into(),
        protocol_version: 1,
        instance_id: "5f0c8a1e".into(),
        features: vec![],
        tier,
    }
}

fn identity(id: &str, port: u16, gw: &str, apps: u64, uptime: u64) -> IdentityInfo {
    IdentityInfo {
        id: id.into(),
        state: IdentityState::Running,
        address: Some(format!("{id}Addr.{id}Enc@{gw}")),
        websocket_host: "127.0.0.1".into(),
        websocket_port: port,
        gateway_id: Some(gw.into()),
        gateway_url: Some("ws://127.0.0.1:43117/".into()),
        gateway_status: Some(GatewayStatus {
            connection: GatewayConnection::Connected,
            rtt_ms: Some(3),
            last_error: None,
            reconnects: 1,
            bandwidth_remaining: Some(1_000_000_000),
        }),
        connected_apps: (0..apps)
            .map(|n| AppInfo {
                connection: n,
                peer: String::new(),
                connected_secs: 0,
            })
            .collect(),
        uptime_secs: Some(uptime),
        counters: TrafficCounters::default(),
        access: None,
        memory: None,
        socks5: None,
    }
}

fn node(layer: u8, n: u8) -> NodeInfo {
    let ids = [
        "7nYxQm2Rk3Lp9sTvW4bC8dHfJ6gA1eZuN5oXiKqMrPs",
        "AbCdE2fGh3JkLm4NpQr5StUv6WxYz7aBc8DeF9gHiJk",
        "Zq1Wx2Ec3Rv4Tb5Yn6Um7Ik8Ol9Pa1Sd2Fg3Hj4Kl5M",
    ];
    let id = ids[usize::from(n) % ids.len()];
    NodeInfo {
        identity: format!("{layer}{}", &id[1..]),
        address: format!(
            "127.0.0.1:{}",
            40_000 + u16::from(layer) * 10 + u16::from(n)
        ),
        performance: 100 - layer - n,
    }
}

fn topology() -> TopologySummary {
    TopologySummary {
        epoch: Some(5),
        fetched_at_unix: 1_700_000_000,
        layers: (1..=3)
            .map(|l| TopologyLayer {
                layer: l,
                nodes: (0..3).map(|n| node(l, n)).collect(),
            })
            .collect(),
        gateways: vec![
            NodeInfo {
                identity: GW_A.into(),
                address: "127.0.0.1:43117".into(),
                performance: 100,
            },
            NodeInfo {
                identity: GW_B.into(),
                address: "127.0.0.1:43118".into(),
                performance: 97,
            },
        ],
    }
}

/// Two identities that have exchanged traffic for 40 seconds.
fn busy(tier: Tier) -> State {
    busy_with_socks(tier, false)
}

/// As [`busy`]; with `socks`, `default` serves SOCKS5 (its `Traffic`
/// events carry SOCKS5 counters) and `second` does not.
fn busy_with_socks(tier: Tier, socks: bool) -> State {
    let mut s = State::new(SOCKET);
    s.apply(Update::Connected(welcome(tier)));
    s.apply(Update::Snapshot(Snapshot {
        identities: vec![
            identity("default", 1977, GW_A, 1, 3725),
            identity("second", 1978, GW_B, 0, 58),
        ],
        topology: Some(TopologyBrief {
            epoch: Some(5),
            layers: 3,
            mixnodes: 9,
            gateways: 2,
        }),
    }));
    s.apply(Update::Topology(topology()));
    let mut a = TrafficCounters::default();
    let mut b = TrafficCounters::default();
    let mut socks5 = Socks5Counters::default();
    for t in 0..41u64 {
        // Every field different, so a golden catches one dropped or
        // swapped: 3 open, 41 accepted, 5 refused, 2 failed.
        socks5.open_connections = 3;
        socks5.connections_total += 1;
        socks5.connections_refused += u64::from(t % 8 == 0);
        socks5.connections_failed += u64::from(t % 20 == 0 && t > 0);
        socks5.bytes_sent += 1_300;
        socks5.bytes_received += 256_000;
        let real = (t * 7) % 13;
        let cover = 4 + t % 3;
        for (c, k) in [(&mut a, 1), (&mut b, 2)] {
            c.real_packets_sent += real * k;
            c.real_bytes_sent += real * k * 2413;
            c.cover_packets_sent += cover;
            c.cover_bytes_sent += cover * 2413;
            c.real_packets_received += (real * k) / 2;
            c.real_bytes_received += (real * k) / 2 * 2000;
            c.cover_packets_received += cover;
            c.cover_bytes_received += cover * 2413;
            c.acks_received += real * k;
            c.retransmissions += u64::from(t % 10 == 0);
            // Gauges: the last frame (t = 40) shows a different, non-zero
            // value for each identity and each gauge (queue 3/6,
            // outbox 1/2, inbox 5/10), so a golden catches a field that is
            // dropped, swapped or drawn as a constant.
            c.queue_depth = (3 + t % 4) * k;
            c.outbox_messages = (t % 3) * k;
            c.inbox_messages = (5 + t % 2) * k;
        }
        for (id, c) in [("default", a), ("second", b)] {
            s.apply(Update::Event(Event::Traffic {
                identity: id.into(),
                counters: c,
                socks5: (socks && id == "default").then_some(socks5),
            }));
        }
    }
    s
}

#[test]
fn overview_80x24() {
    golden("overview_80x24", &screen(&busy(Tier::Operate), 80, 24));
}

#[test]
fn overview_120x32() {
    golden("overview_120x32", &screen(&busy(Tier::Operate), 120, 32));
}

#[test]
fn overview_second_selected_in_bytes() {
    let mut s = busy(Tier::Operate);
    let ids = s.identities.clone();
    s.ui.apply(UiAction::SelectNext, &ids);
    s.ui.apply(UiAction::ToggleUnit, &ids);
    assert_eq!(s.ui.unit, Unit::Bytes);
    golden("overview_second_bytes_80x24", &screen(&s, 80, 24));
}

/// The READMEs (the project's and nym-tui's) show this screen: the
/// fenced block after the marker line must be the overview golden's text.
/// `NYMD_BLESS=1` rewrites the blocks.
#[test]
fn readme_samples_are_the_overview_screen() {
    const MARKER: &str = "<!-- tui/tests/golden/overview_80x24.txt -->\n```\n";
    let now = screen(&busy(Tier::Operate), 80, 24);
    let bless = std::env::var_os("NYMD_BLESS").is_some_and(|v| v == "1");
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for readme in [manifest.join("../README.md"), manifest.join("README.md")] {
        let text = std::fs::read_to_string(&readme).expect("README");
        let start = text.find(MARKER).unwrap_or_else(|| {
            panic!(
                "{}: no line `<!-- tui/tests/golden/overview_80x24.txt -->` before the sample",
                readme.display()
            )
        }) + MARKER.len();
        let Some(len) = text[start..].find("```\n") else {
            panic!("{}: the sample's block is not closed", readme.display());
        };
        if text[start..start + len] == now {
            continue;
        }
        if bless {
            let new = format!("{}{now}{}", &text[..start], &text[start + len..]);
            std::fs::write(&readme, new).expect("write README");
            continue;
        }
        panic!(
            "{}: the sample differs from the overview screen; copy tui/tests/golden/overview_80x24.txt into it, or run NYMD_BLESS=1 cargo test -p nym-tui --test views\n--- README\n{}\n--- screen\n{now}",
            readme.display(),
            &text[start..start + len]
        );
    }
}

/// 60 columns: the identities table keeps ID, state and the rates (then
/// port and uptime) and leaves out what does not fit.
#[test]
fn overview_60x24() {
    golden("overview_60x24", &screen(&busy(Tier::Operate), 60, 24));
}

/// A stopped identity: its rates are zero (not its last ones), its uptime
/// is gone; the header counts one running.
#[test]
fn stopped_identity_80x24() {
    let mut s = busy(Tier::Operate);
    s.apply(Update::Event(Event::IdentityState {
        identity: "second".into(),
        state: IdentityState::Stopped,
    }));
    golden("stopped_identity_80x24", &screen(&s, 80, 24));
}

/// Bytes mode: rates carry their unit once (`4.9kB/s`, not `4.9kB B/s`).
#[test]
fn traffic_bytes_80x24() {
    let mut s = busy(Tier::Operate);
    s.ui.view = ViewKind::Traffic;
    s.ui.unit = Unit::Bytes;
    golden("traffic_bytes_80x24", &screen(&s, 80, 24));
}

#[test]
fn traffic_80x24() {
    let mut s = busy(Tier::Operate);
    s.ui.view = ViewKind::Traffic;
    golden("traffic_80x24", &screen(&s, 80, 24));
}

#[test]
fn traffic_total_80x24() {
    let mut s = busy(Tier::Operate);
    s.ui.view = ViewKind::Traffic;
    s.ui.scope = Scope::Total;
    golden("traffic_total_80x24", &screen(&s, 80, 24));
}

/// An identity that serves SOCKS5 shows its counters (overview: open and
/// bytes; traffic page: every counter); one that does not shows nothing:
/// its screens are those of the same state without any SOCKS5.
#[test]
fn socks5_counters_show_for_an_identity_with_socks_only() {
    let mut s = busy_with_socks(Tier::Operate, true);
    let overview = screen(&s, 80, 24);
    golden("overview_socks_80x24", &overview);
    assert!(
        overview.contains("socks 3 open  sent 53kB  recv 10MB"),
        "{overview}"
    );
    s.ui.view = ViewKind::Traffic;
    let traffic = screen(&s, 80, 24);
    golden("traffic_socks_80x24", &traffic);
    assert!(
        traffic.contains("socks 3 open  41 accepted  6 refused  2 failed  sent 53kB  recv 10MB"),
        "{traffic}"
    );

    // `second` has no SOCKS5: not a trace of it, on either page.
    let mut plain = busy(Tier::Operate);
    for st in [&mut s, &mut plain] {
        let ids = st.identities.clone();
        st.ui.apply(UiAction::SelectNext, &ids);
    }
    for view in [ViewKind::Overview, ViewKind::Traffic] {
        s.ui.view = view;
        plain.ui.view = view;
        let with = screen(&s, 80, 24);
        assert!(!with.contains("socks"), "{with}");
        assert_eq!(with, screen(&plain, 80, 24), "{view:?}");
    }
}

#[test]
fn topology_80x24() {
    let mut s = busy(Tier::Operate);
    s.ui.view = ViewKind::Topology;
    golden("topology_80x24", &screen(&s, 80, 24));
}

#[test]
fn topology_scrolled_80x12() {
    let mut s = busy(Tier::Operate);
    s.ui.view = ViewKind::Topology;
    let ids = s.identities.clone();
    s.ui.apply(UiAction::Scroll(10), &ids);
    golden("topology_scrolled_80x12", &screen(&s, 80, 12));
}

#[test]
fn help_in_the_observe_tier() {
    let mut s = busy(Tier::Observe);
    s.ui.help = true;
    golden("help_observe_80x24", &screen(&s, 80, 24));
}

#[test]
fn stop_in_the_observe_tier_says_why_not() {
    let mut s = busy(Tier::Observe);
    let Action::Notice(text) =
        update_input(KeyEvent::new(KeyCode::Char('x'), KeyModifiers::NONE), &s)
    else {
        panic!("x must not become a request in the observe tier");
    };
    s.ui.notice = Some(nym_tui::state::Notice {
        text,
        is_error: true,
    });
    golden("observe_stop_refused_80x24", &screen(&s, 80, 24));
}

#[test]
fn failed_identity_and_action_result() {
    let mut s = busy(Tier::Operate);
    s.apply(Update::Event(Event::IdentityState {
        identity: "default".into(),
        state: IdentityState::Failed {
            reason: "gateway refused authentication".into(),
        },
    }));
    s.apply(Update::Event(Event::GatewayStatus {
        identity: "default".into(),
        gateway_id: GW_A.into(),
        status: GatewayStatus {
            connection: GatewayConnection::Down,
            rtt_ms: None,
            last_error: Some("gateway refused authentication".into()),
            reconnects: 4,
            bandwidth_remaining: None,
        },
    }));
    s.apply(Update::ActionDone {
        op: Op::Restart,
        id: "second".into(),
        result: Ok(()),
    });
    golden("failed_identity_80x24", &screen(&s, 80, 24));
}

#[test]
fn daemon_not_running() {
    let mut s = State::new(SOCKET);
    s.apply(Update::Down {
        reason: DownReason::NotRunning(format!(
            "nymd is not running: no control socket at {SOCKET}"
        )),
        retry_in: Duration::from_secs(2),
        attempt: 5,
    });
    golden("not_running_80x24", &screen(&s, 80, 24));
}

/// The daemon went away: the last picture stays, but what may have changed
/// since is not claimed: states read "unknown", rates and uptimes "–".
#[test]
fn daemon_went_away_keeps_the_last_picture() {
    let mut s = busy(Tier::Operate);
    s.apply(Update::Down {
        reason: DownReason::Lost("connection to nymd lost: nymd closed the connection".into()),
        retry_in: Duration::from_millis(250),
        attempt: 1,
    });
    golden("reconnecting_80x24", &screen(&s, 80, 24));
}

#[test]
fn connecting() {
    golden("connecting_80x24", &screen(&State::new(SOCKET), 80, 24));
}

/// Small and odd sizes draw without panicking (clipped, not broken).
#[test]
fn any_size_draws() {
    let states = [busy(Tier::Operate), State::new(SOCKET)];
    for s in &states {
        for view in ViewKind::ALL {
            let mut s = s.clone();
            s.ui.view = view;
            s.ui.help = view == ViewKind::Traffic;
            for (w, h) in [(1, 1), (10, 5), (40, 12), (79, 23), (80, 24), (200, 60)] {
                let _ = screen(&s, w, h);
            }
        }
    }
}

#[test]
fn no_stale_goldens() {
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(golden_dir()).expect("golden dir") {
        let name = entry.expect("entry").file_name();
        let name = name.to_string_lossy();
        match name.strip_suffix(".txt") {
            Some(stem) if GOLDENS.contains(&stem) => {}
            _ => stale.push(name.into_owned()),
        }
    }
    assert!(
        stale.is_empty(),
        "files in tui/tests/golden/ that no test compares (delete them or add the test): {stale:?}"
    );
    for name in GOLDENS {
        assert!(
            golden_dir().join(format!("{name}.txt")).is_file(),
            "golden {name}.txt is listed but missing: bless it with NYMD_BLESS=1"
        );
    }
}
