//! Human output: tables, detail views and event lines. JSON output is
//! built in [`crate::commands`] with `serde_json` from the wire types.

use std::fmt::Write as _;

use nymd_ipc::{
    AccessInfo, DaemonInfo, Event, GatewayConnection, GatewayInfo, GatewayStatus, IdentityInfo,
    IdentityState, MemoryInfo, Snapshot, Socks5Info, TopologySummary, TrafficCounters,
};

/// Version of every JSON document nymctl prints. Additions keep it;
/// renames and removals bump it.
pub const SCHEMA_VERSION: u32 = 1;

/// A plain left-aligned table with a header row; columns are separated by
/// two spaces and the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            width[i] = width[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 < cols {
                let pad = width[i].saturating_sub(cell.chars().count());
                let _ = write!(s, "{cell}{}  ", " ".repeat(pad));
            } else {
                s.push_str(cell);
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// `1h02m`, `3d04h`, `45s`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// `1.2 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A state as a word, with the reason for `failed`.
pub fn state(s: &IdentityState) -> String {
    match s {
        IdentityState::Failed { reason } => format!("failed: {reason}"),
        other => other.label().to_owned(),
    }
}

fn short(key: &str) -> String {
    let n = key.chars().count();
    if n <= 12 {
        key.to_owned()
    } else {
        let head: String = key.chars().take(8).collect();
        format!("{head}…")
    }
}

fn gateway_status(s: &GatewayStatus) -> String {
    let mut out = match s.connection {
        GatewayConnection::Connected => "connected".to_owned(),
        GatewayConnection::Reconnecting => "reconnecting".to_owned(),
        GatewayConnection::Down => "down".to_owned(),
    };
    if let Some(rtt) = s.rtt_ms {
        let _ = write!(out, ", rtt {rtt} ms");
    }
    if let Some(e) = &s.last_error {
        let _ = write!(out, ", last error: {e}");
    }
    out
}

/// `list` and `status` without an id.
pub fn identities_table(ids: &[IdentityInfo]) -> String {
    if ids.is_empty() {
        return "no identities (create one with: nymctl init --id NAME)\n".to_owned();
    }
    let rows: Vec<Vec<String>> = ids
        .iter()
        .map(|i| {
            vec![
                i.id.clone(),
                state(&i.state),
                format!("{}:{}", i.websocket_host, i.websocket_port),
                i.connected_apps.len().to_string(),
                i.uptime_secs.map(duration).unwrap_or_else(|| "-".into()),
                i.gateway_id
                    .as_deref()
                    .map(short)
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut out = table(
        &["ID", "STATE", "WEBSOCKET", "APPS", "UPTIME", "GATEWAY"],
        &rows,
    );
    // Every running identity reports the daemon's total; one is enough.
    if let Some(m) = ids.iter().find_map(|i| i.memory.as_ref()) {
        let _ = writeln!(
            out,
            "memory: {} of the {} budget held for what others sent (all identities)",
            bytes(m.daemon_bytes),
            bytes(m.daemon_budget)
        );
    }
    out
}

/// What an identity holds for what others sent it, store by store, and the
/// daemon's total against its budget.
pub fn memory_lines(m: &MemoryInfo, out: &mut String) {
    let _ = writeln!(
        out,
        "memory         {} held for what others sent (nymd: {} of its {} budget)",
        bytes(m.total()),
        bytes(m.daemon_bytes),
        bytes(m.daemon_budget)
    );
    for (what, used, bound) in [
        ("inbox          ", m.inbox_bytes, m.inbox_bound),
        ("to the apps    ", m.received_bytes, m.received_bound),
        ("incomplete     ", m.reassembly_bytes, m.reassembly_bound),
        ("SURBs received ", m.surb_store_bytes, m.surb_store_bound),
        ("reply keys     ", m.reply_key_bytes, m.reply_key_bound),
        ("SOCKS5 buffers ", m.socks_bytes, m.socks_bound),
    ] {
        // No bound: the store is not there (no served SOCKS5 port, or an
        // older daemon).
        if bound > 0 {
            let _ = writeln!(out, "  {what}{} of {}", bytes(used), bytes(bound));
        }
    }
}

fn counters_lines(c: &TrafficCounters, out: &mut String) {
    let _ = writeln!(
        out,
        "real sent      {} packets ({})",
        c.real_packets_sent,
        bytes(c.real_bytes_sent)
    );
    let _ = writeln!(
        out,
        "real received  {} packets ({})",
        c.real_packets_received,
        bytes(c.real_bytes_received)
    );
    let _ = writeln!(
        out,
        "cover sent     {} packets ({})",
        c.cover_packets_sent,
        bytes(c.cover_bytes_sent)
    );
    let _ = writeln!(
        out,
        "cover received {} packets ({})",
        c.cover_packets_received,
        bytes(c.cover_bytes_received)
    );
    let _ = writeln!(
        out,
        "acks           {}\nretransmitted  {}\nqueue          {}\noutbox         {} messages\ninbox          {} messages waiting for an app",
        c.acks_received, c.retransmissions, c.queue_depth, c.outbox_messages, c.inbox_messages
    );
}

/// `status ID`.
pub fn identity_detail(i: &IdentityInfo) -> String {
    let mut out = String::new();
    let dash = || "-".to_owned();
    let _ = writeln!(out, "identity       {}", i.id);
    let _ = writeln!(out, "state          {}", state(&i.state));
    let _ = writeln!(
        out,
        "address        {}",
        i.address.clone().unwrap_or_else(dash)
    );
    let _ = writeln!(
        out,
        "websocket      ws://{}:{}",
        i.websocket_host, i.websocket_port
    );
    let _ = writeln!(
        out,
        "gateway        {}",
        i.gateway_id.clone().unwrap_or_else(dash)
    );
    let _ = writeln!(
        out,
        "gateway url    {}",
        i.gateway_url.clone().unwrap_or_else(dash)
    );
    if let Some(s) = &i.gateway_status {
        let _ = writeln!(out, "gateway status {}", gateway_status(s));
    }
    let _ = writeln!(
        out,
        "uptime         {}",
        i.uptime_secs.map(duration).unwrap_or_else(dash)
    );
    let _ = writeln!(out, "apps           {}", i.connected_apps.len());
    for app in &i.connected_apps {
        let _ = writeln!(
            out,
            "  #{} {} (for {})",
            app.connection,
            app.peer,
            duration(app.connected_secs)
        );
    }
    if let Some(a) = &i.access {
        access_lines(a, &user_name, &mut out);
    }
    counters_lines(&i.counters, &mut out);
    let _ = writeln!(
        out,
        "warnings       {} about what others sent (the log shows a few a minute)\nSURB requests  {} refused",
        i.counters.outside_warnings, i.counters.surb_requests_refused
    );
    if i.counters.reply_keys_expired_on_load + i.counters.reply_surbs_rotated_on_load > 0 {
        let _ = writeln!(
            out,
            "reply state    at start: {} reply keys too old, {} SURBs of a gone key rotation dropped",
            i.counters.reply_keys_expired_on_load, i.counters.reply_surbs_rotated_on_load
        );
    }
    if let Some(m) = &i.memory {
        memory_lines(m, &mut out);
    }
    if let Some(s) = &i.socks5 {
        socks5_lines(s, &i.id, &mut out);
    }
    out
}

/// `socks5 ID`: the identity's SOCKS5 proxy.
pub fn socks5_detail(i: &IdentityInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "identity       {}", i.id);
    match &i.socks5 {
        Some(s) => socks5_lines(s, &i.id, &mut out),
        None => {
            let _ = writeln!(
                out,
                "socks5         none (nymctl socks5 {} enable, then provider ADDRESS|auto)",
                i.id
            );
        }
    }
    out
}

/// An identity's SOCKS5 proxy: where, how, to whom, and its counters.
pub fn socks5_lines(s: &Socks5Info, id: &str, out: &mut String) {
    let status = if !s.enabled {
        format!("disabled (nymctl socks5 {id} enable)")
    } else if s.provider.is_none() {
        format!("not served: no provider (nymctl socks5 {id} provider ADDRESS|auto)")
    } else if s.listening {
        "listening".to_owned()
    } else {
        "not listening (the identity is not running)".to_owned()
    };
    let mode = if s.anonymous {
        "anonymous (reply SURBs; the requester does not learn the address)"
    } else {
        "plain (each connection carries the identity's address)"
    };
    let _ = writeln!(out, "socks5         {}:{} {status}", s.host, s.port);
    let _ = writeln!(out, "socks5 mode    {mode}");
    let _ = writeln!(
        out,
        "provider       {}",
        s.provider.as_deref().unwrap_or("none")
    );
    let _ = writeln!(
        out,
        "connections    {} open (at most {}), {} accepted, {} refused, {} failed",
        s.open_connections,
        s.max_connections,
        s.connections_total,
        s.connections_refused,
        s.connections_failed
    );
    let _ = writeln!(
        out,
        "socks5 bytes   {} sent, {} received",
        bytes(s.bytes_sent),
        bytes(s.bytes_received)
    );
}

/// `access ID`: the identity's websocket and who may connect to it.
pub fn access_detail(i: &IdentityInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "identity       {}", i.id);
    let _ = writeln!(
        out,
        "websocket      ws://{}:{}",
        i.websocket_host, i.websocket_port
    );
    match &i.access {
        Some(a) => access_lines(a, &user_name, &mut out),
        None => out.push_str("users          unknown (nymd predates access control)\n"),
    }
    out
}

/// The local user name of `uid`, if it has one.
fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// Who may connect: users, origins, limits. `name` gives a uid's user
/// name.
pub fn access_lines(a: &AccessInfo, name: &dyn Fn(u32) -> Option<String>, out: &mut String) {
    let users = if a.any_local_user && a.predates_access_control {
        "any local user (identity created before access control)".to_owned()
    } else if a.any_local_user {
        "any local user".to_owned()
    } else {
        let mut who = vec!["root".to_owned(), "nymd's user".to_owned()];
        who.extend(a.allowed_uids.iter().map(|uid| match name(*uid) {
            Some(n) => format!("{n} (uid {uid})"),
            None => format!("uid {uid}"),
        }));
        who.extend(a.allowed_groups.iter().map(|g| format!("group {g}")));
        who.join(", ")
    };
    let _ = writeln!(out, "users          {users}");
    let origins = if a.allowed_origins.is_empty() {
        "none (browser pages are refused)".to_owned()
    } else {
        a.allowed_origins.join(", ")
    };
    let _ = writeln!(out, "origins        {origins}");
    let _ = writeln!(out, "max apps       {}", a.max_apps);
    if a.allow_remote_apps {
        let _ = writeln!(
            out,
            "remote apps    allowed (apps on other machines are not checked for a user)"
        );
    }
}

/// `gateways`.
pub fn gateways_table(gws: &[GatewayInfo]) -> String {
    let rows: Vec<Vec<String>> = gws
        .iter()
        .map(|g| {
            vec![
                g.identity.clone(),
                g.host.clone(),
                g.performance.to_string(),
                g.latency_ms
                    .map(|l| format!("{l} ms"))
                    .unwrap_or_else(|| "-".into()),
                g.ws_url.clone(),
            ]
        })
        .collect();
    table(&["IDENTITY", "HOST", "PERF", "LATENCY", "WEBSOCKET"], &rows)
}

/// `topology`.
pub fn topology(t: &TopologySummary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "epoch {}, fetched at unix time {}",
        t.epoch.map(|e| e.to_string()).unwrap_or_else(|| "?".into()),
        t.fetched_at_unix
    );
    let mut rows = Vec::new();
    for layer in &t.layers {
        for n in &layer.nodes {
            rows.push(vec![
                format!("mix {}", layer.layer),
                n.identity.clone(),
                n.address.clone(),
                n.performance.to_string(),
            ]);
        }
    }
    for n in &t.gateways {
        rows.push(vec![
            "gateway".into(),
            n.identity.clone(),
            n.address.clone(),
            n.performance.to_string(),
        ]);
    }
    out.push_str(&table(&["ROLE", "IDENTITY", "ADDRESS", "PERF"], &rows));
    let mix: usize = t.layers.iter().map(|l| l.nodes.len()).sum();
    let _ = writeln!(
        out,
        "{} layers, {mix} mix nodes, {} gateways",
        t.layers.len(),
        t.gateways.len()
    );
    out
}

/// `daemon info`.
pub fn daemon_info(d: &DaemonInfo) -> String {
    format!(
        "version        {}\nprotocol       {}\ninstance       {}\npid            {}\nuptime         {}\nsocket         {}\nstate dir      {}\nidentities     {} ({} running)\n",
        d.version,
        d.protocol_version,
        d.instance_id,
        d.pid,
        duration(d.uptime_secs),
        d.socket,
        d.state_dir,
        d.identities,
        d.running
    )
}

/// The snapshot at the start of `events`.
pub fn snapshot(s: &Snapshot) -> String {
    let mut out = identities_table(&s.identities);
    if let Some(t) = &s.topology {
        let _ = writeln!(
            out,
            "topology: epoch {}, {} layers, {} mix nodes, {} gateways",
            t.epoch.map(|e| e.to_string()).unwrap_or_else(|| "?".into()),
            t.layers,
            t.mixnodes,
            t.gateways
        );
    }
    out
}

/// Wall-clock time of day, UTC, for event lines.
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

/// One event, without the time prefix.
pub fn event(e: &Event) -> String {
    match e {
        Event::IdentityState { identity, state: s } => format!("{identity}: {}", state(s)),
        Event::IdentityRemoved { identity } => format!("{identity}: removed"),
        Event::GatewayStatus {
            identity,
            gateway_id,
            status,
        } => format!(
            "{identity}: gateway {} {}",
            short(gateway_id),
            gateway_status(status)
        ),
        Event::Traffic {
            identity,
            counters: c,
            socks5,
        } => {
            let mut line = format!(
                "{identity}: sent {} real / {} cover, received {} real / {} cover, {} acks, {} retransmitted, queue {}",
                c.real_packets_sent,
                c.cover_packets_sent,
                c.real_packets_received,
                c.cover_packets_received,
                c.acks_received,
                c.retransmissions,
                c.queue_depth
            );
            if let Some(s) = socks5 {
                line.push_str(&format!(
                    "; socks5 {} open, {} accepted, {} refused, {} failed, {} B sent, {} B received",
                    s.open_connections,
                    s.connections_total,
                    s.connections_refused,
                    s.connections_failed,
                    s.bytes_sent,
                    s.bytes_received
                ));
            }
            line
        }
        Event::TopologyRefreshed(t) => format!(
            "topology refreshed: epoch {}, {} layers, {} mix nodes, {} gateways",
            t.epoch.map(|e| e.to_string()).unwrap_or_else(|| "?".into()),
            t.layers,
            t.mixnodes,
            t.gateways
        ),
        Event::AppConnected { identity, app } => {
            format!(
                "{identity}: app #{} connected from {}",
                app.connection, app.peer
            )
        }
        Event::AppDisconnected {
            identity,
            connection,
        } => format!("{identity}: app #{connection} disconnected"),
        Event::InitProgress {
            identity,
            stage,
            detail,
        } => {
            if detail.is_empty() {
                format!("{identity}: {}", stage.label())
            } else {
                format!("{identity}: {}: {detail}", stage.label())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_trim() {
        let t = table(
            &["A", "BB", "C"],
            &[vec!["xxx".into(), "y".into(), "z".into()]],
        );
        assert_eq!(t, "A    BB  C\nxxx  y   z\n");
    }

    #[test]
    fn access_settings_read_plainly() {
        let name = |uid: u32| (uid == 1000).then(|| "alice".to_owned());
        let mut out = String::new();
        let a = AccessInfo {
            allowed_uids: vec![1000, 1001],
            allowed_groups: vec!["nymapps".into()],
            allowed_origins: vec!["http://localhost:8080".into()],
            max_apps: 64,
            ..AccessInfo::default()
        };
        access_lines(&a, &name, &mut out);
        assert_eq!(
            out,
            "users          root, nymd's user, alice (uid 1000), uid 1001, group nymapps\n\
             origins        http://localhost:8080\n\
             max apps       64\n"
        );
        let old = AccessInfo {
            any_local_user: true,
            predates_access_control: true,
            allow_remote_apps: true,
            max_apps: 1,
            ..AccessInfo::default()
        };
        let mut out = String::new();
        access_lines(&old, &name, &mut out);
        assert!(
            out.starts_with(
                "users          any local user (identity created before access control)\n\
                 origins        none (browser pages are refused)\n"
            ),
            "{out}"
        );
        assert!(out.contains("remote apps    allowed"), "{out}");
    }

    #[test]
    fn memory_reads_store_by_store_against_the_bounds() {
        let m = MemoryInfo {
            inbox_bytes: 4096,
            inbox_bound: 128 << 20,
            received_bound: 64 << 20,
            reassembly_bytes: 1024,
            reassembly_bound: 128 << 20,
            surb_store_bytes: 2048,
            surb_store_bound: 32 << 20,
            reply_key_bytes: 1024,
            reply_key_bound: 32 << 20,
            daemon_bytes: 3 << 20,
            daemon_budget: 1 << 30,
            ..MemoryInfo::default()
        };
        let mut out = String::new();
        memory_lines(&m, &mut out);
        assert_eq!(
            out,
            "memory         8.0 KiB held for what others sent (nymd: 3.0 MiB of its 1.0 GiB budget)\n\
             \x20 inbox          4.0 KiB of 128.0 MiB\n\
             \x20 to the apps    0 B of 64.0 MiB\n\
             \x20 incomplete     1.0 KiB of 128.0 MiB\n\
             \x20 SURBs received 2.0 KiB of 32.0 MiB\n\
             \x20 reply keys     1.0 KiB of 32.0 MiB\n"
        );
        // With a served SOCKS5 port, its buffers too.
        let m = MemoryInfo {
            socks_bytes: 2048,
            socks_bound: 64 << 20,
            ..m
        };
        let mut out = String::new();
        memory_lines(&m, &mut out);
        assert!(
            out.starts_with("memory         10.0 KiB held for what others sent")
                && out.ends_with("\n  SOCKS5 buffers 2.0 KiB of 64.0 MiB\n"),
            "{out}"
        );
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(3725), "1h02m");
        assert_eq!(duration(90_000), "1d01h");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
