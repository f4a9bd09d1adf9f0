//! `nymctl`: see the library docs. This file only parses the command line,
//! runs it and turns the outcome into an exit code.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use nymctl::cli::{exit, Cli};
use nymctl::{classify, commands, is_broken_pipe};

fn main() -> ExitCode {
    let cli = Cli::parse(); // usage errors exit 2 here
    let json = cli.json;
    let socket = commands::resolve_socket(cli.socket.clone()).ok();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "nymctl: cannot start: {e}");
            return ExitCode::from(exit::OTHER);
        }
    };
    let result = runtime.block_on(commands::run(cli));
    let Err(err) = result else {
        return ExitCode::from(exit::OK);
    };
    if is_broken_pipe(&err) {
        // `nymctl … | head`: the reader has what it wanted.
        return ExitCode::from(exit::OK);
    }
    let f = classify(&err, socket.as_deref());
    if json {
        let doc = serde_json::json!({
            "schema_version": nymctl::output::SCHEMA_VERSION,
            "error": { "code": f.code, "message": f.message, "hint": f.hint, "exit_code": f.exit },
        });
        let _ = writeln!(std::io::stdout(), "{doc}");
    }
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {}", f.message);
    if let Some(hint) = &f.hint {
        let _ = writeln!(stderr, "hint: {hint}");
    }
    ExitCode::from(f.exit)
}
