//! `nym-tui [--socket PATH]`: see the library docs.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// The live dashboard of nymd: identities, gateways, traffic and topology.
/// Keys: ↑↓ select, s/x/r start/stop/restart, 1-3 pages, ? help, q quit.
#[derive(Debug, Parser)]
#[command(name = "nym-tui", version, about, long_about = None)]
struct Cli {
    /// Control socket of nymd [default: /run/nymd/nymd.sock as root, else $XDG_RUNTIME_DIR/nymd/nymd.sock].
    #[arg(long, env = "NYMD_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
}

fn resolve_socket(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag.filter(|p| !p.as_os_str().is_empty()) {
        return Ok(p);
    }
    let is_root = nix::unistd::geteuid().is_root();
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    nymd_ipc::default_socket_path(is_root, xdg.as_deref()).context(
        "no control socket path: XDG_RUNTIME_DIR is not set; pass --socket PATH or set \
         NYMD_SOCKET (a system nymd listens on /run/nymd/nymd.sock)",
    )
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let socket = resolve_socket(cli.socket)?;
    // Two worker threads at most: the dashboard waits on a socket and a
    // terminal, and shares small machines with the daemon it watches.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(nym_tui::app::run(socket))
}
