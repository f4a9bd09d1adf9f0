//! A flood of malformed messages from a remote peer produces a bounded
//! number of log lines (issue 13): at most `warnings_per_interval` lines per
//! interval plus one summary line, while every one is counted in the
//! client's statistics. Its own test binary: the process's tracing
//! subscriber counts the lines.

#![allow(clippy::unwrap_used)]

mod hostile;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hostile::support::Client as Raw;
use hostile::*;
use nymd_mixnet::{ClientConfig, CoreConfig};
use nymd_proto::chunking::{NymMessage, PaddedMessage};
use nymd_proto::params::FragmentId;
use nymd_proto::PacketSize;
use rand::RngCore;

/// What the subscriber wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        let v = self.0.lock().map(|v| v.clone()).unwrap_or_default();
        String::from_utf8_lossy(&v)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peer_malformed_flood_gives_a_bounded_number_of_log_lines() {
    const EACH: usize = 250;
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "nymd_mixnet=warn,nymd_client=warn",
        ))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let net = localnet().await;
    let shared = shared_api(&net);
    let topology = net.topology().clone();
    let interval = Duration::from_secs(1);
    let per_interval = 5u32;
    let config = ClientConfig::with_core(CoreConfig {
        warning_interval: interval,
        warnings_per_interval: per_interval,
        ..CoreConfig::for_tests()
    });
    let v = peer(&shared, &net, 0, config).await;
    let mut raw = Raw::register(&net.gateways()[1]).await;
    let to = v.handle.address();
    let capacity = PacketSize::Regular.fragment_capacity();

    let mut packets = Vec::new();
    for i in 0..EACH {
        // Bytes that are no fragment at all (no set-id flag).
        let mut garbage = vec![0u8; capacity];
        raw.rng.fill_bytes(&mut garbage);
        garbage[0] = 0;
        let id = FragmentId {
            set_id: i32::try_from(i + 1).unwrap(),
            position: 1,
        };
        packets.push(forward_fragment(&mut raw, &topology, &to, id, &garbage));
        // A whole one-fragment message with an unknown message type.
        let mut bytes = NymMessage::Plain(b"x".to_vec())
            .pad(capacity)
            .unwrap()
            .into_bytes();
        bytes[0] = 7;
        let fragments = PaddedMessage::new(bytes)
            .split_into_fragments(&mut raw.rng, capacity)
            .unwrap();
        for f in fragments {
            packets.push(forward_fragment(
                &mut raw,
                &topology,
                &to,
                f.id(),
                &f.to_bytes(),
            ));
        }
    }
    let before = captured.lines().len();
    let t0 = Instant::now();
    send_all(&mut raw, &packets).await;
    until("every malformed message was handled", || {
        v.handle.stats().outside_warnings >= 2 * EACH as u64
    })
    .await;
    let elapsed = t0.elapsed();
    // Let the summary of the last interval be written.
    tokio::time::sleep(interval * 2 + Duration::from_millis(500)).await;
    let lines: Vec<String> = captured.lines().split_off(before);
    let windows = (elapsed + interval * 3).as_secs_f64() / interval.as_secs_f64();
    let bound = (windows.ceil() as usize + 1) * (per_interval as usize + 1);
    let summaries = lines
        .iter()
        .filter(|l| l.contains("were not logged"))
        .count();
    eprintln!(
        "{} malformed messages in {elapsed:?}: {} log lines ({summaries} summaries), bound {bound}; counted {}",
        2 * EACH,
        lines.len(),
        v.handle.stats().outside_warnings
    );
    assert!(
        lines.len() <= bound,
        "{} lines for {} malformed messages (bound {bound}):\n{}",
        lines.len(),
        2 * EACH,
        lines.join("\n")
    );
    assert!(summaries >= 1, "a summary line counts the rest: {lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ignored a malformed message")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ignored a malformed fragment")),
        "{lines:?}"
    );
    assert_eq!(v.handle.stats().outside_warnings, 2 * EACH as u64);
    v.handle.shutdown().await;
    net.shutdown().await;
}
