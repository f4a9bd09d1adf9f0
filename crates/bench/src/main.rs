//! `nymd-bench`: measures nymd against a local mixnet and prints a table and
//! JSON.
//!
//! Processes: the local mixnet runs as its own `nym-localnet` process, and
//! every scenario runs nymd (the real `Manager`, in-process in a child
//! `nymd-bench --serve`) in a fresh child process, so CPU (utime + stime
//! from `/proc/<pid>/stat`) and memory (PSS from `/proc/<pid>/smaps_rollup`)
//! are nymd's alone. Apps (websocket clients) run in the parent.
//!
//! Scenarios:
//! - `crypto`: the single-core crypto floor: µs per Nym packet (SURB-ACK +
//!   payload encryption + sphinx, as a client builds them) with the fast and
//!   the stock (sphinx-packet) derivation, plus the receive side.
//! - `idle`: N identities at Nym's default rates for a window: CPU, PSS per
//!   identity, achieved vs configured Poisson rate.
//! - `throughput`: one identity, cover and delays off, sending to a second
//!   identity in another nymd: packets/s and goodput vs the crypto floor.
//! - `latency`: 1 KB app→app messages, delays off: p50/p99.
//! - `fanout`: 1,000 idle app websockets across 100 identities.
//! - `socks`: downloads through an identity's SOCKS5 port and a network
//!   requester over the localnet, cover and delays off: time to first
//!   byte, goodput, CPU vs the crypto floor (`socks.rs`).

mod apps;
mod child;
mod floor;
mod procfs;
mod report;
mod scenarios;
mod serve;
mod socks;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

/// Benchmark nymd against a local mixnet.
#[derive(Debug, Parser)]
#[command(name = "nymd-bench", version)]
pub struct Args {
    /// Scenarios to run, comma separated: crypto, idle, throughput,
    /// latency, fanout, socks (or all).
    #[arg(long, default_value = "all", value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// Identity counts of the idle scenario.
    #[arg(long, default_value = "1,10,50,100", value_delimiter = ',')]
    pub idle_counts: Vec<usize>,
    /// Measurement window of the idle, throughput and fan-out scenarios,
    /// seconds (a multiple of 0.5 s keeps counter sampling aligned).
    #[arg(long, default_value_t = 20.0)]
    pub window: f64,
    /// Warm-up after identities are running, seconds.
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    /// Seconds per crypto-floor measurement.
    #[arg(long, default_value_t = 3.0)]
    pub crypto_secs: f64,
    /// Messages of the latency scenario.
    #[arg(long, default_value_t = 200)]
    pub latency_messages: usize,
    /// Messages (64 KiB each) the throughput app keeps in flight.
    #[arg(long, default_value_t = 8)]
    pub throughput_window: usize,
    /// Identities of the fan-out scenario.
    #[arg(long, default_value_t = 100)]
    pub fanout_identities: usize,
    /// App connections of the fan-out scenario (spread evenly).
    #[arg(long, default_value_t = 1000)]
    pub fanout_connections: usize,
    /// Bytes of the socks scenario's download (one connection).
    #[arg(long, default_value_t = 16 << 20)]
    pub socks_bytes: u64,
    /// Sequential 1-byte requests of the socks scenario (each on a new
    /// SOCKS connection) for the time to first byte.
    #[arg(long, default_value_t = 20)]
    pub socks_requests: usize,
    /// Modes of the socks scenario: anonymous (reply SURBs, nymd's
    /// default), plain (the identity's address in Connect).
    #[arg(long, default_value = "anonymous,plain", value_delimiter = ',')]
    pub socks_modes: Vec<String>,
    /// A quick run (< 2 minutes): idle 1,10,50, 8 s windows, 100 latency
    /// messages, 1 s crypto measurements.
    #[arg(long)]
    pub quick: bool,
    /// A smoke run for CI (well under a minute): every scenario at the
    /// smallest size that still exercises it (2 identities, 2 s windows),
    /// then a check that each produced numbers and that the idle schedule
    /// ratio is sane; exits non-zero otherwise. Its figures are not
    /// measurements: the goals are judged on full runs only.
    #[arg(long, conflicts_with = "quick")]
    pub smoke: bool,
    /// Identity counts of the idle scenario against the full mixnet (the
    /// main idle rows use gateways that drop packets; see docs); 0: none.
    #[arg(long, default_value = "1,10", value_delimiter = ',')]
    pub idle_full_counts: Vec<usize>,
    /// Also run the idle scenario with the stock sphinx-packet derivation at
    /// these counts, for a before/after comparison.
    #[arg(long, value_delimiter = ',')]
    pub idle_stock_counts: Vec<usize>,
    /// Derivation of the nymd under test: fast or stock.
    #[arg(long, default_value = "fast")]
    pub derivation: String,
    /// The `nym-localnet` binary (default: next to this binary).
    #[arg(long)]
    pub localnet_bin: Option<PathBuf>,
    /// Niceness added to the localnet process, so that on a small machine
    /// nymd is measured rather than the mixnet's CPU share (0..19).
    #[arg(long, default_value_t = 19)]
    pub localnet_nice: u8,
    /// Mixnodes per layer of the localnet.
    #[arg(long, default_value_t = 1)]
    pub mixnodes_per_layer: usize,
    /// Write the JSON here instead of after the table on stdout.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Internal: run as a nymd child against this nym-api URL.
    #[arg(long, hide = true)]
    pub serve: Option<String>,
    /// Internal: run as the socks scenario's network requester against
    /// this nym-api URL.
    #[arg(long, hide = true)]
    pub serve_exit: Option<String>,
    /// Journal outgoing messages in nymd's persisted outbox (as nymd does
    /// by default); `--outbox false` measures without it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub outbox: bool,
    /// Internal (child): cover traffic on.
    #[arg(long, hide = true, default_value_t = true, action = clap::ArgAction::Set)]
    pub cover: bool,
    /// Internal (child): per-hop delays on.
    #[arg(long, hide = true, default_value_t = true, action = clap::ArgAction::Set)]
    pub delays: bool,
}

impl Args {
    fn wants(&self, s: &str) -> bool {
        self.scenarios.iter().any(|x| x == s || x == "all")
    }

    fn apply_quick(&mut self) {
        if self.smoke {
            self.idle_counts = vec![2];
            self.idle_full_counts = vec![2];
            self.idle_stock_counts = Vec::new();
            self.window = 2.0;
            self.warmup = 1.0;
            self.crypto_secs = 0.2;
            self.latency_messages = 10;
            self.throughput_window = 2;
            self.fanout_identities = 2;
            self.fanout_connections = 10;
            self.socks_bytes = 256 << 10;
            self.socks_requests = 3;
            return;
        }
        if !self.quick {
            return;
        }
        self.idle_counts = vec![1, 10, 50];
        self.idle_full_counts = vec![10];
        self.window = 8.0;
        self.warmup = 3.0;
        self.crypto_secs = 1.0;
        self.latency_messages = 100;
        self.socks_bytes = 4 << 20;
        self.socks_requests = 10;
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    if args.derivation == "stock" {
        nymd_proto::sphinx::set_sender_derivation(nymd_proto::sphinx::SenderDerivation::Stock);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    if let Some(api) = args.serve.clone() {
        return rt.block_on(serve::serve(api, args.cover, args.delays, args.outbox));
    }
    if let Some(api) = args.serve_exit.clone() {
        return rt.block_on(socks::serve_exit(api));
    }
    args.apply_quick();
    let started = std::time::Instant::now();
    let doc = rt.block_on(scenarios::run_all(&args))?;
    let table = report::table(&doc);
    println!("{table}");
    let text = serde_json::to_string_pretty(&doc).context("serialising results")?;
    match &args.json {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => println!("{text}"),
    }
    eprintln!("nymd-bench finished in {:.0?}", started.elapsed());
    rt.shutdown_timeout(Duration::from_secs(2));
    if args.smoke {
        let wanted: Vec<&str> = report::SCENARIOS
            .iter()
            .copied()
            .filter(|s| args.wants(s))
            .collect();
        let failures = report::smoke_failures(&doc, &wanted);
        if !failures.is_empty() {
            anyhow::bail!(
                "smoke run: {} check(s) failed:\n  {}",
                failures.len(),
                failures.join("\n  ")
            );
        }
        eprintln!("smoke run: every scenario produced sane numbers");
    }
    Ok(())
}
