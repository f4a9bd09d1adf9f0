//! `nym-localnet`: run a local Nym mixnet on loopback until Ctrl-C or
//! SIGTERM. Prints the directory URL (use it as a nym-api URL), the
//! topology file (for `--custom-mixnet`) and every node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use nymd_localnet::{DelayPolicy, Localnet, LocalnetConfig, NodeKind};

/// Run an embedded Nym mixnet (3 mix layers, gateways and a nym-api style
/// directory) on loopback.
#[derive(Debug, Parser)]
#[command(name = "nym-localnet", version)]
struct Args {
    /// Mixnodes in each of the three layers.
    #[arg(long, default_value_t = 1)]
    mixnodes_per_layer: usize,
    /// Gateways (each both entry and exit).
    #[arg(long, default_value_t = 2)]
    gateways: usize,
    /// Cap on the per-hop delay mixnodes honour, in milliseconds.
    #[arg(long, default_value_t = 10_000, conflicts_with = "no_delay")]
    delay_ms: u64,
    /// Forward at once, ignoring the delays in packet headers.
    #[arg(long)]
    no_delay: bool,
    /// Where the directory (nym-api routes) listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    api_addr: SocketAddr,
    /// Directory to write the topology file into (default: a temporary
    /// directory deleted on exit).
    #[arg(long)]
    topology_dir: Option<PathBuf>,
    /// Keep the network (node keys, ports, gateway registrations) in this
    /// folder across restarts.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Print what was started as JSON.
    #[arg(long)]
    json: bool,
    /// Benchmarks: gateways accept and answer clients' packets but drop
    /// them instead of mixing them (measures a client's sending side alone).
    #[arg(long)]
    sink: bool,
}

fn describe(net: &Localnet, json: bool) -> anyhow::Result<String> {
    let nodes: Vec<serde_json::Value> = net
        .nodes()
        .iter()
        .map(|n| {
            let (role, layer) = match n.kind {
                NodeKind::Mixnode { layer } => ("mixnode", Some(layer)),
                NodeKind::Gateway => ("gateway", None),
            };
            serde_json::json!({
                "id": n.id,
                "role": role,
                "layer": layer,
                "identity": n.identity_bs58(),
                "sphinx_key": bs58::encode(n.sphinx_key.as_bytes()).into_string(),
                "mix_address": n.mix_addr.to_string(),
                "ws_url": n.ws_url(),
            })
        })
        .collect();
    if json {
        let doc = serde_json::json!({
            "api_url": net.api_url(),
            "topology_file": net.topology_path().display().to_string(),
            "nodes": nodes,
        });
        return serde_json::to_string_pretty(&doc).context("serialising the summary");
    }
    let mut out = format!(
        "nym-localnet running\n  nym-api:       {}\n  topology file: {}\n",
        net.api_url(),
        net.topology_path().display()
    );
    for n in net.nodes() {
        let what = match n.kind {
            NodeKind::Mixnode { layer } => format!("mixnode L{layer}"),
            NodeKind::Gateway => "gateway   ".to_string(),
        };
        out.push_str(&format!(
            "  [{:>2}] {what}  id {}  mix {}",
            n.id,
            n.identity_bs58(),
            n.mix_addr
        ));
        if let Some(url) = n.ws_url() {
            out.push_str(&format!("  ws {url}"));
        }
        out.push('\n');
    }
    Ok(out)
}

/// SIGTERM and SIGINT, installed before anything is announced so that a
/// signal sent right after the summary is printed stops us gracefully.
struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
                int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    async fn wait(&mut self) -> anyhow::Result<()> {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.int.recv() => {}
            }
            Ok(())
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut signals = StopSignals::install()?;
    let delay = if args.no_delay {
        DelayPolicy::NoDelay
    } else {
        DelayPolicy::Capped(Duration::from_millis(args.delay_ms))
    };
    let config = LocalnetConfig {
        mixnodes_per_layer: args.mixnodes_per_layer,
        gateways: args.gateways,
        delay,
        api_addr: args.api_addr,
        topology_dir: args.topology_dir,
        state_dir: args.state_dir,
        limits: nymd_localnet::Limits {
            drop_client_packets: args.sink,
            ..nymd_localnet::Limits::default()
        },
    };
    let net = Localnet::start(config)
        .await
        .context("starting the local mixnet")?;
    println!("{}", describe(&net, args.json)?);
    signals.wait().await?;
    net.shutdown().await;
    Ok(())
}
