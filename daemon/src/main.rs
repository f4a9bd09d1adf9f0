//! The `nymd` binary: parses the command line and runs the daemon library.

use clap::Parser;
use nymd::cli::{Cli, Command};
use nymd::config::{Environment, DEFAULT_CONFIG_TOML};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(Command::PrintDefaultConfig) = cli.command {
        print!("{DEFAULT_CONFIG_TOML}");
        return std::process::ExitCode::SUCCESS;
    }
    let env = Environment::from_process(is_root());
    let settings = match nymd::run::resolve(&cli, &env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nymd: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(&settings.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("nymd")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nymd: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(nymd::run::run(settings)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("nymd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn is_root() -> bool {
    // The effective uid of this process, from /proc (no libc call needed).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NYMD_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
