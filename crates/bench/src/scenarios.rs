//! The scenarios.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use nymd_proto::Recipient;
use serde_json::{json, Value};

use crate::apps;
use crate::child::{LocalnetProc, NymdProc, Row};
use crate::floor::{measure_floor, round, Floor};
use crate::procfs::{machine, pss_bytes, rss_bytes, CpuMark};
use crate::Args;

const MB: f64 = 1024.0 * 1024.0;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn sum(rows: &[Row], name: &str) -> u64 {
    rows.iter().map(|r| r.counter(name)).sum()
}

fn delta(after: &[Row], before: &[Row], name: &str) -> u64 {
    sum(after, name).saturating_sub(sum(before, name))
}

/// Nym's default Poisson rates per identity: main stream + loop cover.
fn configured_rate() -> f64 {
    let c = nymd_mixnet::ClientConfig::default();
    1.0 / c.message_sending_average_delay.as_secs_f64()
        + 1.0 / c.loop_cover_average_delay.as_secs_f64()
}

/// Run what `args` asks for and return the JSON document.
pub async fn run_all(args: &Args) -> anyhow::Result<Value> {
    let mut doc = json!({
        "schema": "nymd-bench/1",
        "machine": machine(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "derivation": args.derivation,
        "smoke": args.smoke,
        "window_s": args.window,
        "warmup_s": args.warmup,
        "localnet": {"mixnodes_per_layer": args.mixnodes_per_layer, "gateways": 2,
                     "nice_idle_fanout": args.localnet_nice, "nice_throughput_latency": 0,
                     "delays": "off (forward at once)"},
    });

    let floor: Option<Floor> = if ["crypto", "throughput", "socks"]
        .iter()
        .any(|s| args.wants(s))
    {
        eprintln!("crypto floor ({} s per operation)...", args.crypto_secs);
        let s = args.crypto_secs;
        let f = tokio::task::spawn_blocking(move || measure_floor(s))
            .await
            .context("crypto floor")?;
        doc["crypto"] = f.json();
        Some(f)
    } else {
        None
    };

    let need_net = ["idle", "throughput", "latency", "fanout", "socks"]
        .iter()
        .any(|s| args.wants(s));
    if !need_net {
        return Ok(doc);
    }
    let net = LocalnetProc::start(
        args.localnet_bin.as_deref(),
        args.localnet_nice,
        args.mixnodes_per_layer,
        false,
    )
    .await?;
    eprintln!("localnet at {} (pid {})", net.api_url, net.pid);
    let result = run_net(args, &net, floor.as_ref(), &mut doc).await;
    net.stop().await;
    result?;
    Ok(doc)
}

async fn run_net(
    args: &Args,
    net: &LocalnetProc,
    floor: Option<&Floor>,
    doc: &mut Value,
) -> anyhow::Result<()> {
    if args.wants("idle") {
        let mut rows = Vec::new();
        // Against the full mixnet while it can carry the load.
        for &n in args.idle_full_counts.iter().filter(|n| **n > 0) {
            eprintln!("idle: {n} identities ({}, full mixnet)...", args.derivation);
            rows.push(idle(args, net, "full", n, &args.derivation).await?);
        }
        // Against gateways that drop what they are sent: nymd's own cost
        // and schedule, whatever this machine's mixnet could carry.
        let sink = LocalnetProc::start(
            args.localnet_bin.as_deref(),
            0,
            args.mixnodes_per_layer,
            true,
        )
        .await?;
        let mut run = async || -> anyhow::Result<()> {
            for &n in args.idle_counts.iter().filter(|n| **n > 0) {
                eprintln!("idle: {n} identities ({}, sink)...", args.derivation);
                rows.push(idle(args, &sink, "sink", n, &args.derivation).await?);
            }
            for &n in args.idle_stock_counts.iter().filter(|n| **n > 0) {
                eprintln!("idle: {n} identities (stock, sink)...");
                rows.push(idle(args, &sink, "sink", n, "stock").await?);
            }
            Ok(())
        };
        let r = run().await;
        sink.stop().await;
        r?;
        doc["idle"] = Value::Array(rows);
    }
    if ["throughput", "latency", "socks"]
        .iter()
        .any(|s| args.wants(s))
    {
        // Moving packets is the mixnet's work here: give it a fair share.
        let fair = LocalnetProc::start(
            args.localnet_bin.as_deref(),
            0,
            args.mixnodes_per_layer,
            false,
        )
        .await?;
        let r = packets(args, &fair, floor, doc).await;
        fair.stop().await;
        r?;
    }
    if args.wants("fanout") {
        eprintln!(
            "fan-out: {} connections over {} identities...",
            args.fanout_connections, args.fanout_identities
        );
        doc["fanout"] = fanout(args, net).await?;
    }
    Ok(())
}

async fn packets(
    args: &Args,
    net: &LocalnetProc,
    floor: Option<&Floor>,
    doc: &mut Value,
) -> anyhow::Result<()> {
    if args.wants("throughput") {
        eprintln!("throughput...");
        doc["throughput"] = throughput(args, net, floor).await?;
    }
    if args.wants("latency") {
        eprintln!("latency (poisson off)...");
        let a = latency(args, net, false).await?;
        eprintln!("latency (poisson on)...");
        let b = latency(args, net, true).await?;
        doc["latency"] = json!([a, b]);
    }
    if args.wants("socks") {
        doc["socks"] = crate::socks::socks(args, net, floor).await?;
    }
    Ok(())
}

async fn idle(
    args: &Args,
    net: &LocalnetProc,
    mixnet: &str,
    n: usize,
    derivation: &str,
) -> anyhow::Result<Value> {
    let mut c = NymdProc::spawn(&net.api_url, true, true, derivation, args.outbox).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pss0 = pss_bytes(c.pid).unwrap_or(0);
    let init_secs = c.init(n, "idle").await?;
    c.wait_running(true).await?;
    tokio::time::sleep(secs(args.warmup)).await;
    let s0 = c.stats().await?;
    let m0 = CpuMark::now(&[c.pid, net.pid]);
    tokio::time::sleep(secs(args.window)).await;
    let s1 = c.stats().await?;
    let m1 = CpuMark::now(&[c.pid, net.pid]);
    let pss = pss_bytes(c.pid).unwrap_or(0);
    let rss = rss_bytes(c.pid).unwrap_or(0);
    c.quit().await;

    let (cores, elapsed) = m1.cores_since(&m0);
    let nymd_cores = cores.first().copied().unwrap_or(0.0);
    let net_cores = cores.get(1).copied().unwrap_or(0.0);
    let sent = delta(&s1, &s0, "cover_packets_sent") + delta(&s1, &s0, "real_packets_sent");
    let loops = delta(&s1, &s0, "cover_packets_received");
    let nf = n.max(1) as f64;
    let achieved = sent as f64 / elapsed / nf;
    let configured = configured_rate();
    let ratio = achieved / configured;
    let marginal = (pss.saturating_sub(pss0)) as f64 / nf;
    Ok(json!({
        "identities": n,
        "derivation": derivation,
        "mixnet": mixnet,
        "init_s": round(init_secs),
        "window_s": round(elapsed),
        "nymd_cores": (nymd_cores * 1000.0).round() / 1000.0,
        "cpu_ms_per_s_per_identity": round(nymd_cores * 1000.0 / nf),
        "identities_per_core": round(if nymd_cores > 0.0 { nf / nymd_cores } else { 0.0 }),
        // Identities' worth of the full default schedule per core of CPU
        // (CPU per packet is constant, so this is what a core carries when
        // the schedule is kept exactly).
        "identities_per_core_at_full_rate":
            round(if nymd_cores > 0.0 { nf * ratio / nymd_cores } else { 0.0 }),
        "configured_pkts_per_s": round(configured),
        "achieved_pkts_per_s": round(achieved),
        "achieved_ratio": (ratio * 1000.0).round() / 1000.0,
        "schedule_intact": ratio >= 0.95,
        "loops_received_per_s": round(loops as f64 / elapsed / nf),
        "pss_mb_before": round(pss0 as f64 / MB),
        "pss_mb": round(pss as f64 / MB),
        "rss_mb": round(rss as f64 / MB),
        "marginal_pss_mb_per_identity": (marginal / MB * 100.0).round() / 100.0,
        "localnet_cores": (net_cores * 1000.0).round() / 1000.0,
    }))
}

async fn throughput(
    args: &Args,
    net: &LocalnetProc,
    floor: Option<&Floor>,
) -> anyhow::Result<Value> {
    let mut tx = NymdProc::spawn(&net.api_url, false, false, &args.derivation, args.outbox).await?;
    let mut rx = NymdProc::spawn(&net.api_url, false, false, &args.derivation, args.outbox).await?;
    tx.init(1, "tx").await?;
    rx.init(1, "rx").await?;
    let txr = tx.wait_running(false).await?;
    let rxr = rx.wait_running(false).await?;
    let (a, b) = match (txr.first(), rxr.first()) {
        (Some(a), Some(b)) => (a.clone(), b.clone()),
        _ => anyhow::bail!("throughput identities missing"),
    };
    let to: Recipient = b.address.parse().context("receiver address")?;
    let (mut a_send, mut a_recv) = apps::open(&a.websocket).await?;
    let (_b_send, mut b_recv) = apps::open(&b.websocket).await?;

    let received = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(tokio::sync::Notify::new());
    let stop = Arc::new(AtomicBool::new(false));
    let (r, dl, pr) = (received.clone(), delivered.clone(), progress.clone());
    let recv_task = tokio::spawn(async move {
        while let Ok(m) = b_recv.next_message().await {
            r.fetch_add(m.len() as u64, Ordering::Relaxed);
            dl.fetch_add(1, Ordering::Relaxed);
            pr.notify_one();
        }
    });
    let drain_task = tokio::spawn(async move { while a_recv.next_message().await.is_ok() {} });
    let (st, dl, pr) = (stop.clone(), delivered.clone(), progress.clone());
    const MESSAGE: usize = 64 * 1024;
    // Messages in flight at most: Nym has no congestion control, so an app
    // that outruns the mixnet only buys retransmissions; a small window
    // keeps the pipe full without flooding the localnet.
    let window = args.throughput_window as u64;
    let send_task = tokio::spawn(async move {
        let mut i = 0u64;
        while !st.load(Ordering::Relaxed) {
            while i >= dl.load(Ordering::Relaxed) + window {
                let _ = tokio::time::timeout(Duration::from_millis(50), pr.notified()).await;
                if st.load(Ordering::Relaxed) {
                    return;
                }
            }
            let mut m = vec![0x5a_u8; MESSAGE];
            m[..8].copy_from_slice(&i.to_be_bytes());
            i += 1;
            if a_send.send(&to, m).await.is_err() {
                break;
            }
        }
    });

    tokio::time::sleep(secs(args.warmup)).await;
    let s0 = tx.stats().await?;
    let r0 = received.load(Ordering::Relaxed);
    let m0 = CpuMark::now(&[tx.pid, rx.pid, net.pid]);
    tokio::time::sleep(secs(args.window)).await;
    let s1 = tx.stats().await?;
    let r1 = received.load(Ordering::Relaxed);
    let m1 = CpuMark::now(&[tx.pid, rx.pid, net.pid]);
    stop.store(true, Ordering::Relaxed);
    send_task.abort();
    recv_task.abort();
    drain_task.abort();
    tx.quit().await;
    rx.quit().await;

    let (cores, elapsed) = m1.cores_since(&m0);
    let c = |i: usize| cores.get(i).copied().unwrap_or(0.0);
    let pkts = delta(&s1, &s0, "real_packets_sent") as f64 / elapsed;
    let retx = delta(&s1, &s0, "retransmissions") as f64 / elapsed;
    let goodput = (r1.saturating_sub(r0)) as f64 / elapsed / 1e6;
    let floor_pps = floor
        .map(|f| {
            if args.derivation == "stock" {
                f.data_stock.per_core()
            } else {
                f.data_fast.per_core()
            }
        })
        .unwrap_or(0.0);
    let per_core = if c(0) > 0.0 { pkts / c(0) } else { 0.0 };
    let ratio = |x: f64| {
        if floor_pps > 0.0 {
            (x / floor_pps * 1000.0).round() / 1000.0
        } else {
            0.0
        }
    };
    Ok(json!({
        "message_bytes": MESSAGE,
        "messages_in_flight": args.throughput_window,
        "window_s": round(elapsed),
        "packets_per_s": round(pkts),
        "retransmissions_per_s": round(retx),
        "goodput_mb_per_s": (goodput * 1000.0).round() / 1000.0,
        "sender_nymd_cores": (c(0) * 1000.0).round() / 1000.0,
        "receiver_nymd_cores": (c(1) * 1000.0).round() / 1000.0,
        "localnet_cores": (c(2) * 1000.0).round() / 1000.0,
        "packets_per_sender_core_s": round(per_core),
        "floor_packets_per_core_s": round(floor_pps),
        "ratio_vs_floor": ratio(pkts),
        "ratio_vs_floor_per_core": ratio(per_core),
    }))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn latency(args: &Args, net: &LocalnetProc, poisson: bool) -> anyhow::Result<Value> {
    let mut c =
        NymdProc::spawn(&net.api_url, poisson, false, &args.derivation, args.outbox).await?;
    c.init(2, "lat").await?;
    let rows = c.wait_running(poisson).await?;
    let (a, b) = match (rows.first(), rows.get(1)) {
        (Some(a), Some(b)) => (a.clone(), b.clone()),
        _ => anyhow::bail!("latency identities missing"),
    };
    let to: Recipient = b.address.parse().context("receiver address")?;
    let (mut a_send, _a_recv) = apps::open(&a.websocket).await?;
    let (_b_send, mut b_recv) = apps::open(&b.websocket).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut samples = Vec::with_capacity(args.latency_messages);
    let mut lost = 0usize;
    for i in 0..args.latency_messages {
        let mut m = vec![0u8; 1024];
        m[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let t = Instant::now();
        a_send.send(&to, m).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), b_recv.next_message()).await {
                Ok(Ok(got)) if got.get(..8) == Some(&(i as u64).to_be_bytes()[..]) => {
                    samples.push(t.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                Ok(Ok(_)) => continue, // a late earlier message
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    lost += 1;
                    break;
                }
            }
        }
    }
    c.quit().await;
    samples.sort_by(|x, y| x.total_cmp(y));
    let mean = samples.iter().sum::<f64>() / samples.len().max(1) as f64;
    Ok(json!({
        "variant": if poisson { "poisson on (default rates), delays off" } else { "poisson off, delays off" },
        "messages": args.latency_messages,
        "lost": lost,
        "message_bytes": 1024,
        "p50_ms": round(percentile(&samples, 0.5)),
        "p99_ms": round(percentile(&samples, 0.99)),
        "mean_ms": round(mean),
        "min_ms": round(samples.first().copied().unwrap_or(0.0)),
        "max_ms": round(samples.last().copied().unwrap_or(0.0)),
    }))
}

async fn fanout(args: &Args, net: &LocalnetProc) -> anyhow::Result<Value> {
    let f = args.fanout_identities.max(1);
    let mut c = NymdProc::spawn(&net.api_url, false, true, &args.derivation, args.outbox).await?;
    c.init(f, "fan").await?;
    let rows = c.wait_running(false).await?;
    tokio::time::sleep(secs(args.warmup)).await;
    let pss0 = pss_bytes(c.pid).unwrap_or(0);
    let m0 = CpuMark::now(&[c.pid]);
    tokio::time::sleep(secs(args.window)).await;
    let m1 = CpuMark::now(&[c.pid]);

    let t = Instant::now();
    let mut readers = Vec::with_capacity(args.fanout_connections);
    for i in 0..args.fanout_connections {
        let row = &rows[i % rows.len()];
        let (s, mut r) = apps::open(&row.websocket).await?;
        readers.push(tokio::spawn(async move {
            let _keep = s;
            while r.next_message().await.is_ok() {}
        }));
    }
    let connect_s = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let apps_seen: u64 = c.stats().await?.iter().map(|r| r.apps).sum();
    let m2 = CpuMark::now(&[c.pid]);
    tokio::time::sleep(secs(args.window)).await;
    let m3 = CpuMark::now(&[c.pid]);
    let pss1 = pss_bytes(c.pid).unwrap_or(0);
    for r in readers {
        r.abort();
    }
    c.quit().await;

    let (base, _) = m1.cores_since(&m0);
    let (with, _) = m3.cores_since(&m2);
    let base = base.first().copied().unwrap_or(0.0);
    let with = with.first().copied().unwrap_or(0.0);
    Ok(json!({
        "identities": f,
        "connections": args.fanout_connections,
        "connections_seen": apps_seen,
        "connect_s": round(connect_s),
        "cover_traffic": "off (to isolate the connections' cost)",
        "nymd_cores_without": (base * 1000.0).round() / 1000.0,
        "nymd_cores_with": (with * 1000.0).round() / 1000.0,
        "added_cpu_percent": round((with - base) * 100.0),
        "pss_mb_without": round(pss0 as f64 / MB),
        "pss_mb_with": round(pss1 as f64 / MB),
        "added_pss_mb": round(pss1.saturating_sub(pss0) as f64 / MB),
    }))
}
