//! The human-readable table, and the goals of issue 8 judged from the JSON.

use std::fmt::Write;

use serde_json::Value;

fn f(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Render the results as text tables followed by the goals.
pub fn table(doc: &Value) -> String {
    let mut out = String::new();
    let m = &doc["machine"];
    let _ = writeln!(
        out,
        "machine: {} ({} CPUs, {} GiB), kernel {}, load at start {}",
        s(m, "cpu_model"),
        m["cpus"],
        m["mem_gib"],
        s(m, "kernel"),
        s(m, "loadavg_at_start")
    );
    let _ = writeln!(out, "derivation under test: {}", s(doc, "derivation"));

    if let Some(c) = doc.get("crypto") {
        let _ = writeln!(out, "\ncrypto floor (one thread, CPU time per operation)");
        let _ = writeln!(
            out,
            "  {:<30} {:>10} {:>10} {:>8} {:>14}",
            "operation", "fast µs", "stock µs", "speedup", "fast per core/s"
        );
        for (name, key) in [
            ("loop cover packet (258)", "cover_packet"),
            ("data packet (259)", "data_packet"),
            ("bare sphinx, 4 hops, 2 KB", "sphinx_4hop_regular"),
        ] {
            let r = &c[key];
            let _ = writeln!(
                out,
                "  {:<30} {:>10.1} {:>10.1} {:>7.2}x {:>14.0}",
                name,
                f(&r["fast"], "cpu_us"),
                f(&r["stock"], "cpu_us"),
                f(r, "speedup"),
                f(&r["fast"], "per_core_per_s")
            );
        }
        for (name, key) in [
            ("receive: decrypt a message", "receive_decrypt"),
            ("mixnode: process one hop", "mix_hop"),
            ("fixed-base multiplication", "fixed_base_mul"),
            ("x25519 with a node table", "node_table_x25519"),
        ] {
            let r = &c[key];
            let _ = writeln!(
                out,
                "  {:<30} {:>10.1} {:>10} {:>8} {:>14.0}",
                name,
                f(r, "cpu_us"),
                "",
                "",
                f(r, "per_core_per_s")
            );
        }
        let ceiling = &c["ceiling"];
        let _ = writeln!(
            out,
            "  ceiling at {:.0} packets/s per identity: {:.1} identities per core from the loop cover's crypto alone;\n  its {:.0} multiplications ({:.1} µs) alone {:.1}, the rest of it {:.1} µs",
            f(ceiling, "packets_per_s_per_identity"),
            f(ceiling, "identities_per_core_cover_crypto"),
            f(ceiling, "muls_per_packet"),
            f(ceiling, "muls_us_per_packet"),
            f(ceiling, "identities_per_core_muls_only"),
            f(ceiling, "rest_of_cover_packet_us"),
        );
    }

    if let Some(rows) = doc.get("idle").and_then(Value::as_array) {
        let _ = writeln!(out, "\nidle identities at Nym's default rates");
        let _ = writeln!(
            out,
            "  {:>5} {:<6} {:<5} {:>7} {:>9} {:>8} {:>15} {:>7} {:>8} {:>10} {:>8} {:>9}",
            "N",
            "deriv",
            "mixnet",
            "cores",
            "ms/s/id",
            "ids/core",
            "pkts/s/id (cfg)",
            "ratio",
            "PSS MB",
            "MB/id marg",
            "loops/s",
            "net cores"
        );
        for r in rows {
            let _ = writeln!(
                out,
                "  {:>5} {:<6} {:<5} {:>7.3} {:>9.1} {:>8.1} {:>8.1} ({:>4.0}) {:>7.3} {:>8.1} {:>10.2} {:>8.1} {:>9.3}",
                r["identities"].as_u64().unwrap_or(0),
                s(r, "derivation"),
                s(r, "mixnet"),
                f(r, "nymd_cores"),
                f(r, "cpu_ms_per_s_per_identity"),
                f(r, "identities_per_core"),
                f(r, "achieved_pkts_per_s"),
                f(r, "configured_pkts_per_s"),
                f(r, "achieved_ratio"),
                f(r, "pss_mb"),
                f(r, "marginal_pss_mb_per_identity"),
                f(r, "loops_received_per_s"),
                f(r, "localnet_cores"),
            );
        }
    }

    if let Some(t) = doc.get("throughput") {
        let _ = writeln!(out, "\nthroughput: one identity, cover and delays off");
        let _ = writeln!(
            out,
            "  packets/s {:.0}, goodput {:.3} MB/s, retransmissions/s {:.0}",
            f(t, "packets_per_s"),
            f(t, "goodput_mb_per_s"),
            f(t, "retransmissions_per_s")
        );
        let _ = writeln!(
            out,
            "  cores: sender nymd {:.3}, receiver nymd {:.3}, localnet {:.3}",
            f(t, "sender_nymd_cores"),
            f(t, "receiver_nymd_cores"),
            f(t, "localnet_cores")
        );
        let _ = writeln!(
            out,
            "  floor {:.0} packets/core-s; achieved {:.3}x of it, {:.0} packets per sender core-s = {:.3}x",
            f(t, "floor_packets_per_core_s"),
            f(t, "ratio_vs_floor"),
            f(t, "packets_per_sender_core_s"),
            f(t, "ratio_vs_floor_per_core")
        );
    }

    if let Some(rows) = doc.get("latency").and_then(Value::as_array) {
        let _ = writeln!(out, "\nlatency: 1 KB app→app");
        for r in rows {
            let _ = writeln!(
                out,
                "  {:<40} n={:<4} lost={:<3} p50 {:>7.1} ms  p99 {:>7.1} ms  mean {:>7.1} ms",
                s(r, "variant"),
                r["messages"].as_u64().unwrap_or(0),
                r["lost"].as_u64().unwrap_or(0),
                f(r, "p50_ms"),
                f(r, "p99_ms"),
                f(r, "mean_ms")
            );
        }
    }

    if let Some(fo) = doc.get("fanout") {
        let _ = writeln!(
            out,
            "\nfan-out: {} idle app websockets over {} identities ({} seen)",
            fo["connections"], fo["identities"], fo["connections_seen"]
        );
        let _ = writeln!(
            out,
            "  CPU {:.3} → {:.3} cores (+{:.2} % of a core); PSS {:.1} → {:.1} MB (+{:.1} MB)",
            f(fo, "nymd_cores_without"),
            f(fo, "nymd_cores_with"),
            f(fo, "added_cpu_percent"),
            f(fo, "pss_mb_without"),
            f(fo, "pss_mb_with"),
            f(fo, "added_pss_mb")
        );
    }

    if let Some(sk) = doc.get("socks") {
        let _ = writeln!(
            out,
            "\nsocks5 through the localnet: 1 connection, {} byte download, medians of {} 1-byte requests; cover and delays off",
            sk["download_bytes"], sk["small_requests"]
        );
        let _ = writeln!(
            out,
            "  {:<9} {:>8} {:>8} {:>9} {:>7} {:>7} {:>7} {:>6} {:>6} {:>6} {:>8} {:>8} {:>7}",
            "mode",
            "conn ms",
            "TTFB ms",
            "1st B ms",
            "MB/s",
            "2nd 1/2",
            "pkts/s",
            "nymd",
            "exit",
            "net",
            "pkt/core",
            "floor/c",
            "x floor"
        );
        for r in sk["rows"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let _ = writeln!(
                out,
                "  {:<9} {:>8.1} {:>8.1} {:>9.1} {:>7.3} {:>7.3} {:>7.0} {:>6.3} {:>6.3} {:>6.3} {:>8.0} {:>8.0} {:>6.3}x",
                s(r, "mode"),
                f(r, "connect_ms"),
                f(r, "ttfb_ms"),
                f(r, "first_byte_ms"),
                f(r, "goodput_mb_per_s"),
                f(r, "goodput_second_half_mb_per_s"),
                f(r, "packets_per_s"),
                f(r, "nymd_cores"),
                f(r, "exit_cores"),
                f(r, "localnet_cores"),
                f(r, "packets_per_nymd_core_s"),
                f(r, "floor_packets_per_core_s"),
                f(r, "ratio_vs_floor"),
            );
            if let Some(e) = r.get("download_error").and_then(Value::as_str) {
                let _ = writeln!(
                    out,
                    "  {:<9} download failed after {} of {} bytes: {e}",
                    "", r["download_received_bytes"], r["download_bytes"]
                );
            }
        }
        let _ = writeln!(
            out,
            "  (MB/s: the whole download, 2nd 1/2: its second half; nymd/exit/net: cores; pkt/core: received packets per nymd core-s;\n   floor/c: per core-s of the crypto nymd cannot avoid, a reply SURB {:.1} µs each)",
            f(sk, "surb_build_us")
        );
    }

    // A smoke run's sizes are too small to judge any goal.
    let goals = if doc.get("smoke") == Some(&Value::Bool(true)) {
        Vec::new()
    } else {
        goals(doc)
    };
    if !goals.is_empty() {
        let _ = writeln!(out, "\ngoals (issue 8)");
        for (name, met, detail) in goals {
            let _ = writeln!(
                out,
                "  [{}] {name}: {detail}",
                if met { "met" } else { "NOT met" }
            );
        }
    }
    out
}

/// (goal, met, detail) for what the document measured.
pub fn goals(doc: &Value) -> Vec<(String, bool, String)> {
    let mut g = Vec::new();
    let derivation = s(doc, "derivation");
    if let Some(rows) = doc.get("idle").and_then(Value::as_array) {
        // nymd's own capacity: the rows against the sink (the full mixnet
        // of a 2-core machine saturates long before nymd does).
        let ours: Vec<&Value> = rows
            .iter()
            .filter(|r| s(r, "derivation") == derivation && s(r, "mixnet") == "sink")
            .collect();
        // Identities per core at the largest N whose schedule held.
        if let Some(best) = ours
            .iter()
            .filter(|r| r.get("schedule_intact") == Some(&Value::Bool(true)))
            .max_by_key(|r| r["identities"].as_u64().unwrap_or(0))
        {
            let ipc = f(best, "identities_per_core");
            g.push((
                "≥ 50 idle identities per core, schedule intact".into(),
                ipc >= 50.0,
                format!(
                    "{ipc:.1} per core at N={} (achieved {:.3} of the configured rate)",
                    best["identities"],
                    f(best, "achieved_ratio")
                ),
            ));
        }
        if let Some(best) = ours.iter().max_by(|a, b| {
            f(a, "identities_per_core_at_full_rate")
                .total_cmp(&f(b, "identities_per_core_at_full_rate"))
        }) {
            let ipc = f(best, "identities_per_core_at_full_rate");
            g.push((
                "(normalised) identities' full schedules per core".into(),
                ipc >= 50.0,
                format!(
                    "{ipc:.1} at N={} (N x achieved ratio / cores)",
                    best["identities"]
                ),
            ));
        }
        if let Some(big) = ours
            .iter()
            .max_by_key(|r| r["identities"].as_u64().unwrap_or(0))
        {
            let mb = f(big, "marginal_pss_mb_per_identity");
            g.push((
                "≤ 2 MB marginal memory per idle identity".into(),
                mb <= 2.0,
                format!("{mb:.2} MB at N={}", big["identities"]),
            ));
        }
    }
    if let Some(t) = doc.get("throughput") {
        let r = f(t, "ratio_vs_floor_per_core");
        g.push((
            "one identity ≥ 0.8x the single-core crypto floor".into(),
            r >= 0.8,
            format!(
                "{:.0} packets per sender core-s vs floor {:.0} = {r:.3}x (raw {:.0}/s = {:.3}x)",
                f(t, "packets_per_sender_core_s"),
                f(t, "floor_packets_per_core_s"),
                f(t, "packets_per_s"),
                f(t, "ratio_vs_floor")
            ),
        ));
    }
    if let Some(fo) = doc.get("fanout") {
        let cpu = f(fo, "added_cpu_percent");
        let mb = f(fo, "added_pss_mb");
        g.push((
            "fan-out adds ≤ 5 % CPU and ≤ 50 MB".into(),
            cpu <= 5.0 && mb <= 50.0,
            format!("+{cpu:.2} % CPU, +{mb:.1} MB"),
        ));
    }
    g
}

/// The scenarios, in the order `run_all` runs them.
pub const SCENARIOS: [&str; 6] = ["crypto", "idle", "throughput", "latency", "fanout", "socks"];

/// What a smoke run must show: every scenario in `wanted` produced its
/// section, each figure is a finite number where one is expected (positive
/// where a zero means nothing was measured), and the idle rows kept a sane
/// fraction of the configured Poisson rate. Empty when all hold. The bounds
/// are loose on purpose: a smoke run on a loaded CI machine is not a
/// measurement, it proves that each scenario still runs end to end.
pub fn smoke_failures(doc: &Value, wanted: &[&str]) -> Vec<String> {
    let mut bad = Vec::new();
    let positive = |bad: &mut Vec<String>, v: &Value, what: &str, key: &str| match v
        .get(key)
        .and_then(Value::as_f64)
    {
        Some(x) if x.is_finite() && x > 0.0 => {}
        other => bad.push(format!(
            "{what}.{key}: expected a positive number, got {other:?}"
        )),
    };
    for &scenario in wanted {
        let Some(section) = doc.get(scenario).filter(|v| !v.is_null()) else {
            bad.push(format!("{scenario}: no results"));
            continue;
        };
        match scenario {
            "crypto" => {
                for op in ["cover_packet", "data_packet", "sphinx_4hop_regular"] {
                    for d in ["fast", "stock"] {
                        let what = format!("crypto.{op}.{d}");
                        match section.get(op).and_then(|o| o.get(d)) {
                            Some(v) => positive(&mut bad, v, &what, "cpu_us"),
                            None => bad.push(format!("{what}: missing")),
                        }
                    }
                }
                for op in [
                    "receive_decrypt",
                    "mix_hop",
                    "fixed_base_mul",
                    "node_table_x25519",
                ] {
                    match section.get(op) {
                        Some(v) => positive(&mut bad, v, &format!("crypto.{op}"), "cpu_us"),
                        None => bad.push(format!("crypto.{op}: missing")),
                    }
                }
                match section.get("ceiling") {
                    Some(v) => {
                        for key in [
                            "identities_per_core_cover_crypto",
                            "identities_per_core_muls_only",
                        ] {
                            positive(&mut bad, v, "crypto.ceiling", key);
                        }
                    }
                    None => bad.push("crypto.ceiling: missing".into()),
                }
            }
            "idle" => {
                let rows = section.as_array().map(Vec::as_slice).unwrap_or(&[]);
                if rows.is_empty() {
                    bad.push("idle: no rows".into());
                }
                for r in rows {
                    let what = format!("idle[{} {}]", s(r, "mixnet"), r["identities"]);
                    for key in ["nymd_cores", "achieved_pkts_per_s", "pss_mb"] {
                        positive(&mut bad, r, &what, key);
                    }
                    let ratio = f(r, "achieved_ratio");
                    if !(0.5..=1.5).contains(&ratio) {
                        bad.push(format!(
                            "{what}: achieved {ratio:.3} of the configured Poisson rate (sane: 0.5-1.5)"
                        ));
                    }
                }
            }
            "throughput" => {
                for key in ["packets_per_s", "goodput_mb_per_s", "sender_nymd_cores"] {
                    positive(&mut bad, section, "throughput", key);
                }
            }
            "latency" => {
                let rows = section.as_array().map(Vec::as_slice).unwrap_or(&[]);
                if rows.len() != 2 {
                    bad.push(format!("latency: {} variants, expected 2", rows.len()));
                }
                for r in rows {
                    let what = format!("latency[{}]", s(r, "variant"));
                    positive(&mut bad, r, &what, "p50_ms");
                    let lost = r.get("lost").and_then(Value::as_u64).unwrap_or(u64::MAX);
                    let sent = r.get("messages").and_then(Value::as_u64).unwrap_or(0);
                    if lost >= sent {
                        bad.push(format!("{what}: {lost} of {sent} messages lost"));
                    }
                }
            }
            "fanout" => {
                let want = section.get("connections").and_then(Value::as_u64);
                let seen = section.get("connections_seen").and_then(Value::as_u64);
                if want.is_none() || want != seen {
                    bad.push(format!("fanout: {seen:?} of {want:?} app connections seen"));
                }
                // Idle websockets with cover traffic off may cost less than
                // the clock's tick over a smoke window: a number, maybe 0.
                match section.get("nymd_cores_with").and_then(Value::as_f64) {
                    Some(x) if x.is_finite() && x >= 0.0 => {}
                    other => bad.push(format!(
                        "fanout.nymd_cores_with: expected a number >= 0, got {other:?}"
                    )),
                }
            }
            "socks" => {
                let rows = section["rows"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                if rows.is_empty() {
                    bad.push("socks: no rows".into());
                }
                for r in rows {
                    let what = format!("socks[{}]", s(r, "mode"));
                    if let Some(e) = r.get("download_error").and_then(Value::as_str) {
                        bad.push(format!("{what}: the download failed: {e}"));
                    }
                    for key in ["ttfb_ms", "goodput_mb_per_s", "packets_per_s"] {
                        positive(&mut bad, r, &what, key);
                    }
                    // A short smoke download may cost nymd less than the
                    // clock's tick: a number, maybe 0.
                    match r.get("nymd_cores").and_then(Value::as_f64) {
                        Some(x) if x.is_finite() && x >= 0.0 => {}
                        other => bad.push(format!(
                            "{what}.nymd_cores: expected a number >= 0, got {other:?}"
                        )),
                    }
                }
            }
            other => bad.push(format!("{other}: unknown scenario")),
        }
    }
    bad
}
