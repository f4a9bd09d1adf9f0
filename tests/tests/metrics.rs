//! The metrics endpoint of a real nymd process (`--metrics-listen`), scraped
//! over HTTP as Prometheus does and parsed with a strict OpenMetrics parser
//! (`openmetrics-parser`): the exposition is valid, identities and their
//! states show, and the counters move when alice sends to bob through the
//! embedded localnet. Also: Prometheus' text format without the OpenMetrics
//! `Accept`, 404 elsewhere, and a non-loopback address refused (exit 2)
//! unless `allow_remote_metrics = true`.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use nymd_tests::procs::{bin, nymctl, nymctl_json, Daemon};
use nymd_tests::{free_port, WAIT};
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};

type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

const OPENMETRICS_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// One HTTP exchange: (status line, headers, body).
fn http_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (String, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: nymd-tests\r\n{accept}\r\n"
    )
    .expect("write request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_owned(), headers.to_owned(), body.to_owned())
}

fn scrape(addr: SocketAddr) -> Exposition {
    let (status, headers, body) = http_get(addr, "/metrics", Some(OPENMETRICS_ACCEPT));
    assert_eq!(status, "HTTP/1.1 200 OK", "{headers}\n{body}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{headers}"
    );
    openmetrics_parser::openmetrics::parse_openmetrics(&body)
        .unwrap_or_else(|e| panic!("the exposition does not parse: {e:?}\n{body}"))
}

/// The value of family `name`'s sample whose labels include `labels`.
fn value(m: &Exposition, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let family = m.families.get(name)?;
    family.iter_samples().find_map(|s| {
        let set = s.get_labelset().ok()?;
        if !labels
            .iter()
            .all(|(k, v)| set.get_label_value(k) == Some(*v))
        {
            return None;
        }
        match &s.value {
            OpenMetricsValue::Counter(c) => Some(c.value.as_f64()),
            OpenMetricsValue::Gauge(g) => Some(g.as_f64()),
            OpenMetricsValue::Unknown(u) => Some(u.as_f64()),
            _ => None,
        }
    })
}

fn wait_for(addr: SocketAddr, what: &str, ok: impl Fn(&Exposition) -> bool) -> Exposition {
    let start = Instant::now();
    loop {
        let m = scrape(addr);
        if ok(&m) {
            return m;
        }
        assert!(start.elapsed() < WAIT, "{what} not seen in {WAIT:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn spawn(dir: &Path, api: &str, extra: &[&str], log: &str) -> Daemon {
    let cfg = nymd_tests::procs::write_fast_config(dir, "");
    let socket = dir.join("nymd.sock");
    let state = dir.join("state");
    let mut args = vec![
        "--config".to_owned(),
        cfg.display().to_string(),
        "--state-dir".to_owned(),
        state.display().to_string(),
        "--nym-api".to_owned(),
        api.to_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::spawn(&socket, &args, &dir.join(log))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_parses_and_counts_traffic() {
    let net = nymd_tests::fast_localnet().await;
    let api = net.api_url();
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().to_path_buf();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let listen = addr.to_string();

    tokio::task::spawn_blocking(move || {
        let mut d = spawn(&dir, &api, &["--metrics-listen", &listen], "nymd.log");
        d.wait_ready(WAIT);
        let sock = d.socket.clone();

        // No identities yet: the daemon's gauges are there, all zero.
        let m = scrape(addr);
        for state in [
            "running",
            "starting",
            "reconnecting",
            "failed",
            "stopped",
            "broken",
        ] {
            assert_eq!(
                value(&m, "nymd_identities", &[("state", state)]),
                Some(0.0),
                "identities in state {state}"
            );
        }
        assert!(value(&m, "nymd_app_connections_limit", &[]).is_some_and(|v| v > 0.0));
        assert!(m.families.contains_key("nymd_build"), "build info");
        assert!(
            value(&m, "nymd_memory_budget_limit_bytes", &[]).is_some_and(|v| v > 0.0),
            "memory budget"
        );

        let _alice = nymctl_json(&sock, &["init", "--id", "alice"]);
        let bob = nymctl_json(&sock, &["init", "--id", "bob"]);
        let bob_addr = bob["identity"]["address"]
            .as_str()
            .expect("bob's address")
            .to_owned();
        let m = wait_for(addr, "both identities running and connected", |m| {
            ["alice", "bob"].iter().all(|id| {
                value(
                    m,
                    "nymd_identity_state",
                    &[("identity", id), ("state", "running")],
                ) == Some(1.0)
                    && value(m, "nymd_identity_gateway_connected", &[("identity", id)]) == Some(1.0)
            })
        });
        assert_eq!(
            value(&m, "nymd_identities", &[("state", "running")]),
            Some(2.0)
        );
        let family = m
            .families
            .get("nymd_identity_sent_packets")
            .expect("sent packets family");
        assert_eq!(family.family_type, OpenMetricsType::Counter);
        let sent_before = value(
            &m,
            "nymd_identity_sent_packets",
            &[("identity", "alice"), ("kind", "real")],
        )
        .expect("alice's real packets");
        let bytes_before = value(
            &m,
            "nymd_identity_sent_bytes",
            &[("identity", "alice"), ("kind", "real")],
        )
        .expect("alice's real bytes");

        // Traffic: alice sends bob three messages.
        const MESSAGES: f64 = 3.0;
        for n in 0..3 {
            let out = nymctl(
                &sock,
                &["send", "alice", "--to", &bob_addr, &format!("metrics {n}")],
            );
            assert!(
                out.status.success(),
                "nymctl send: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let m = wait_for(addr, "bob received 3 messages, alice got acks", |m| {
            value(m, "nymd_identity_messages_received", &[("identity", "bob")])
                .is_some_and(|v| v >= MESSAGES)
                && value(m, "nymd_identity_acks_received", &[("identity", "alice")])
                    .is_some_and(|v| v >= MESSAGES)
                && value(
                    m,
                    "nymd_identity_received_packets",
                    &[("identity", "bob"), ("kind", "real")],
                )
                .is_some_and(|v| v >= MESSAGES)
        });
        let sent_after = value(
            &m,
            "nymd_identity_sent_packets",
            &[("identity", "alice"), ("kind", "real")],
        )
        .expect("alice's real packets");
        let bytes_after = value(
            &m,
            "nymd_identity_sent_bytes",
            &[("identity", "alice"), ("kind", "real")],
        )
        .expect("alice's real bytes");
        assert!(
            sent_after >= sent_before + MESSAGES,
            "alice's real packets {sent_before} -> {sent_after}"
        );
        assert!(
            bytes_after > bytes_before,
            "alice's real bytes {bytes_before} -> {bytes_after}"
        );
        assert!(value(
            &m,
            "nymd_identity_received_bytes",
            &[("identity", "bob"), ("kind", "real")]
        )
        .is_some_and(|v| v > 0.0));
        assert!(value(
            &m,
            "nymd_identity_memory_bytes",
            &[("identity", "bob"), ("store", "reassembly")]
        )
        .is_some());
        // Cover traffic is off in this config; the series is there, at 0.
        assert_eq!(
            value(
                &m,
                "nymd_identity_sent_packets",
                &[("identity", "alice"), ("kind", "cover")]
            ),
            Some(0.0)
        );

        // Prometheus' own text format for scrapers that do not ask for
        // OpenMetrics; a strict parser of that format reads it too.
        let (status, headers, body) = http_get(addr, "/metrics", None);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            headers
                .to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{headers}"
        );
        let p = openmetrics_parser::prometheus::parse_prometheus(&body)
            .unwrap_or_else(|e| panic!("Prometheus text does not parse: {e:?}\n{body}"));
        assert!(p.families.contains_key("nymd_identity_sent_packets_total"));

        let (status, _, _) = http_get(addr, "/", None);
        assert_eq!(status, "HTTP/1.1 404 Not Found");

        // A stopped identity keeps its state series; its client's go.
        assert!(nymctl(&sock, &["stop", "bob"]).status.success());
        let m = wait_for(addr, "bob stopped", |m| {
            value(
                m,
                "nymd_identity_state",
                &[("identity", "bob"), ("state", "stopped")],
            ) == Some(1.0)
        });
        assert_eq!(
            value(
                &m,
                "nymd_identity_sent_packets",
                &[("identity", "bob"), ("kind", "real")]
            ),
            None
        );
        assert_eq!(
            value(&m, "nymd_identities", &[("state", "stopped")]),
            Some(1.0)
        );

        let status = d.terminate(WAIT);
        assert!(status.success(), "nymd exit: {status}");
    })
    .await
    .expect("test thread");
    net.shutdown().await;
}

#[test]
fn a_remote_metrics_address_needs_allow_remote_metrics() {
    let tmp = tempfile::tempdir().expect("tmp");
    let socket = tmp.path().join("nymd.sock");
    let out = std::process::Command::new(bin("nymd"))
        .args(["--state-dir"])
        .arg(tmp.path().join("state"))
        .arg("--socket")
        .arg(&socket)
        .args([
            "--nym-api",
            "http://127.0.0.1:9/",
            "--metrics-listen",
            "0.0.0.0:9477",
        ])
        .env_remove("NYMD_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run nymd");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0.0.0.0:9477") && err.contains("allow_remote_metrics = true"),
        "{err}"
    );
    assert!(!socket.exists(), "refused before anything started");

    // Allowed in the config file: it serves (on all addresses; scraped
    // here over loopback).
    let port = free_port();
    let cfg = tmp.path().join("remote.toml");
    std::fs::write(
        &cfg,
        format!("[metrics]\nlisten = \"0.0.0.0:{port}\"\nallow_remote_metrics = true\n"),
    )
    .expect("config");
    let mut d = Daemon::spawn(
        &socket,
        &[
            "--config",
            cfg.to_str().expect("utf-8"),
            "--state-dir",
            tmp.path().join("state").to_str().expect("utf-8"),
            "--nym-api",
            "http://127.0.0.1:9/",
        ],
        &tmp.path().join("remote.log"),
    );
    d.wait_ready(WAIT);
    let m = scrape(SocketAddr::from(([127, 0, 0, 1], port)));
    assert_eq!(
        value(&m, "nymd_identities", &[("state", "running")]),
        Some(0.0)
    );
    let status = d.terminate(WAIT);
    assert!(status.success(), "nymd exit: {status}");
}
