//! Golden `--help` of every command, from the real binary. Regenerate after
//! an intended change with `NYMD_BLESS=1 cargo test -p nymctl --test help`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use clap::CommandFactory;
use nymctl::cli::Cli;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Every command path: [], ["init"], …, ["daemon", "info"], …
fn command_paths(cmd: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let mut p = prefix.clone();
        p.push(sub.get_name().to_owned());
        command_paths(sub, p, out);
    }
}

#[test]
fn help_of_every_command_matches_golden_files() {
    let bless = std::env::var_os("NYMD_BLESS").is_some_and(|v| v == "1");
    let mut paths = Vec::new();
    command_paths(&Cli::command(), Vec::new(), &mut paths);
    let mut failures = Vec::new();
    let mut names = BTreeSet::new();
    for path in &paths {
        let name = std::iter::once("nymctl".to_owned())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join("-");
        names.insert(name.clone());
        let out = Command::new(env!("CARGO_BIN_EXE_nymctl"))
            .args(path)
            .arg("--help")
            .env_remove("NYMD_SOCKET")
            .env("COLUMNS", "100")
            .output()
            .expect("run nymctl");
        assert!(out.status.success(), "{name} --help failed");
        let text = String::from_utf8(out.stdout).expect("utf-8 help");
        let file = golden_dir().join(format!("{name}.txt"));
        if bless {
            std::fs::create_dir_all(golden_dir()).expect("mkdir");
            std::fs::write(&file, &text).expect("write golden");
            continue;
        }
        match std::fs::read_to_string(&file) {
            Ok(golden) if golden == text => {}
            Ok(golden) => failures.push(format!(
                "{name}: help changed\n--- golden\n{golden}\n--- now\n{text}"
            )),
            Err(_) => failures.push(format!("{name}: missing {}", file.display())),
        }
    }
    if !bless {
        for entry in std::fs::read_dir(golden_dir()).expect("golden dir") {
            let file = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            if let Some(stem) = file.strip_suffix(".txt") {
                if !names.contains(stem) {
                    failures.push(format!("{file}: stale golden file"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nIf the change is intended: NYMD_BLESS=1 cargo test -p nymctl --test help",
        failures.join("\n")
    );
}

#[test]
fn top_level_help_documents_the_exit_codes() {
    let help = Cli::command().render_long_help().to_string();
    for line in [
        "0  success",
        "2  usage error",
        "3  nymd is not running",
        "4  permission denied",
        "5  identity not found",
        "6  nymctl and nymd versions do not match",
    ] {
        assert!(help.contains(line), "missing {line:?}");
    }
}

#[test]
fn the_cli_definition_is_consistent() {
    Cli::command().debug_assert();
}
