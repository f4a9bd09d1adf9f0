//! Child mode: a nymd `Manager` in this process, driven by one JSON command
//! per stdin line, answering one JSON line per command on stdout.
//!
//! Commands: `{"cmd":"init","count":N,"prefix":"id"}` (with
//! `"socks5":{"provider":ADDRESS,"anonymous":BOOL}`: each identity also gets
//! a SOCKS5 port, see `socks.rs`), `{"cmd":"stats"}`, `{"cmd":"quit"}`.

use std::time::{Duration, Instant};

use anyhow::Context;
use nymd::config::IdentitiesSection;
use nymd::manager::{InitRequest, Manager, ProviderChoice, RunState, Socks5Change};
use nymd::store::{IdentityStore, TrafficConfig};
use nymd_mixnet::{Shared, SharedConfig, TopologySource, Url};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn stats_json(m: &Manager) -> Value {
    let rows: Vec<Value> = m
        .list()
        .into_iter()
        .map(|i| {
            let running = i.state == RunState::Running;
            let s = i.stats.map(|s| {
                json!({
                    "real_packets_sent": s.real_packets_sent,
                    "cover_packets_sent": s.cover_packets_sent,
                    "real_packets_received": s.real_packets_received,
                    "real_bytes_received": s.real_bytes_received,
                    "cover_packets_received": s.cover_packets_received,
                    "acks_received": s.acks_received,
                    "retransmissions": s.retransmissions,
                    "messages_received": s.messages_received,
                    "queued_packets": s.queued_packets,
                    "duplicate_fragments": s.duplicate_fragments,
                    "surbs_handed_out": s.surbs_handed_out,
                    "surb_requests_answered": s.surb_requests_answered,
                    "surb_requests_refused": s.surb_requests_refused,
                })
            });
            let socks = i.socks5.as_ref().map(|c| format!("{}:{}", c.host, c.port));
            let socks_stats = i.socks_stats.map(|s| {
                json!({
                    "open": s.open,
                    "total": s.total,
                    "refused": s.refused,
                    "failed": s.failed,
                    "bytes_sent": s.bytes_sent,
                    "bytes_received": s.bytes_received,
                })
            });
            json!({
                "id": i.id,
                "state": format!("{:?}", i.state),
                "running": running,
                "websocket": i.websocket.to_string(),
                "address": i.address,
                "apps": i.connected_apps,
                "stats": s,
                "socks": socks,
                "socks_stats": socks_stats,
            })
        })
        .collect();
    json!({"ok": true, "identities": rows})
}

/// The `[socks5]` section of the `i`th identity of an `init`: the given
/// provider and mode, on a port of this child's range (1000 above its first
/// app port, so that neither nymd's default 1080 nor another child's ports
/// are taken).
fn socks5_change(spec: &Value, first_port: u16, i: u64) -> anyhow::Result<Socks5Change> {
    let provider = spec
        .get("provider")
        .and_then(Value::as_str)
        .context("socks5.provider missing")?;
    let provider: ProviderChoice = provider.parse().context("socks5.provider")?;
    let port = u16::try_from(i)
        .ok()
        .and_then(|i| first_port.checked_add(1_000)?.checked_add(i))
        .context("socks5 port out of range")?;
    Ok(Socks5Change {
        enabled: Some(true),
        port: Some(port),
        provider: Some(provider),
        anonymous: Some(
            spec.get("anonymous")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        ),
    })
}

/// The lowest port of the kernel's range for outgoing connections.
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// The first app port of a child: a range of 2000 picked from its pid, so
/// that concurrent children do not collide, and below the ephemeral range,
/// where an outgoing connection (another identity's gateway link) could
/// take an identity's port between `init`, which checks that it is free,
/// and the identity's start, which binds it. Ranges were once spread up to
/// 58,000: for most pids an identity could then fail to start for good.
fn first_port(pid: u32, ephemeral_low: u32) -> u16 {
    const BASE: u32 = 10_000;
    const SPAN: u32 = 2_000;
    let ranges = ephemeral_low.saturating_sub(BASE) / SPAN;
    let port = BASE + (pid % ranges.max(1)) * SPAN;
    u16::try_from(port).unwrap_or(BASE as u16)
}

/// Run the child until `quit` or end of input.
pub async fn serve(api: String, cover: bool, delays: bool, outbox: bool) -> anyhow::Result<()> {
    let state = tempfile::tempdir().context("state dir")?;
    let store = IdentityStore::open(state.path()).context("identity store")?;
    let shared = Shared::new(SharedConfig {
        default_source: TopologySource::NymApi(vec![Url::parse(&api).context("api url")?]),
        ..SharedConfig::default()
    })
    .context("shared mixnet state")?;
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let first_port = first_port(std::process::id(), ephemeral_low());
    let manager = Manager::new(
        store,
        shared,
        IdentitiesSection {
            first_port,
            traffic: TrafficConfig {
                disable_cover_traffic: !cover,
                disable_delays: !delays,
                persist_outbox: Some(outbox),
                ..TrafficConfig::default()
            },
            ..IdentitiesSection::default()
        },
        cancel.child_token(),
        tracker.clone(),
    );
    manager.load().context("load")?;
    manager.autostart();

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    while let Some(line) = lines.next_line().await.context("reading commands")? {
        let cmd: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        let reply = match cmd.get("cmd").and_then(Value::as_str) {
            Some("init") => {
                let count = cmd.get("count").and_then(Value::as_u64).unwrap_or(1);
                let prefix = cmd.get("prefix").and_then(Value::as_str).unwrap_or("id");
                let socks5 = cmd.get("socks5").filter(|v| !v.is_null());
                let t0 = Instant::now();
                let mut errors = Vec::new();
                for i in 0..count {
                    let socks5 = match socks5.map(|s| socks5_change(s, first_port, i)) {
                        Some(Ok(c)) => Some(c),
                        Some(Err(e)) => {
                            errors.push(format!("{e:#}"));
                            break;
                        }
                        None => None,
                    };
                    let req = InitRequest {
                        id: format!("{prefix}{i:04}"),
                        socks5,
                        ..InitRequest::default()
                    };
                    match tokio::time::timeout(Duration::from_secs(60), manager.init(req)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => errors.push(e.to_string()),
                        Err(_) => errors.push("init timed out".into()),
                    }
                }
                json!({"ok": errors.is_empty(), "errors": errors,
                       "secs": t0.elapsed().as_secs_f64()})
            }
            Some("stats") => stats_json(&manager),
            Some("quit") | None => break,
            Some(other) => json!({"ok": false, "errors": [format!("unknown command {other}")]}),
        };
        let mut text = reply.to_string();
        text.push('\n');
        out.write_all(text.as_bytes()).await.context("stdout")?;
        out.flush().await.context("stdout")?;
    }
    manager.shutdown().await;
    cancel.cancel();
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), tracker.wait()).await;
    Ok(())
}
