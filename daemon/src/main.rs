//! The `nymd` binary: parses the command line and runs the daemon library.

use std::io::Write as _;

use clap::{CommandFactory as _, Parser};
use nymd::cli::{Cli, Command};
use nymd::config::{Environment, DEFAULT_CONFIG_TOML};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::PrintDefaultConfig) => {
            return write_stdout(DEFAULT_CONFIG_TOML.as_bytes());
        }
        Some(Command::Man) => {
            let mut buf = Vec::new();
            if let Err(e) = clap_mangen::Man::new(Cli::command()).render(&mut buf) {
                eprintln!("nymd: cannot render the manual page: {e}");
                return std::process::ExitCode::FAILURE;
            }
            return write_stdout(&buf);
        }
        Some(Command::Completions { shell }) => {
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "nymd", &mut buf);
            return write_stdout(&buf);
        }
        None => {}
    }
    let env = Environment::from_process(is_root());
    let settings = match nymd::run::resolve(&cli, &env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nymd: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    nymd::logging::init(settings.log_format, &settings.log_level);
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

fn write_stdout(bytes: &[u8]) -> std::process::ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nymd: cannot write to stdout: {e}");
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
