//! Files shipped from `systemd/` that must agree with the code.

use std::process::Command;

/// `/etc/nymd/nymd.toml` in the package is `systemd/nymd.toml`; `nymd
/// print-default-config` must reproduce it byte for byte.
#[test]
fn print_default_config_reproduces_the_shipped_sample() {
    let shipped = include_str!("../../systemd/nymd.toml");
    assert_eq!(
        nymd::config::DEFAULT_CONFIG_TOML,
        shipped,
        "systemd/nymd.toml differs from DEFAULT_CONFIG_TOML; regenerate it with \
         `nymd print-default-config > systemd/nymd.toml`"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_nymd"))
        .arg("print-default-config")
        .output()
        .expect("run nymd");
    assert!(out.status.success());
    assert_eq!(out.stdout, shipped.as_bytes());
    // And the sample is a valid config that changes nothing.
    let parsed = nymd::config::ConfigFile::parse(shipped, std::path::Path::new("nymd.toml"))
        .expect("parses");
    assert_eq!(parsed, nymd::config::ConfigFile::default());
}

/// A `KEY=` value of the unit with an M or G suffix, in MiB.
fn memory_mib(unit: &str, key: &str) -> u64 {
    let v = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .unwrap_or_else(|| panic!("the unit sets {key}"));
    let (n, mult) = match v.strip_suffix('G') {
        Some(n) => (n, 1024),
        None => (v.strip_suffix('M').unwrap_or(v), 1),
    };
    n.parse::<u64>().expect("a number") * mult
}

/// The units name the paths and the user the rest of the package uses.
#[test]
fn units_agree_with_sysusers_and_defaults() {
    let unit = include_str!("../../systemd/nymd.service");
    let sysusers = include_str!("../../systemd/sysusers.d/nymd.conf");
    let has = |line: &str| unit.lines().any(|l| l.trim() == line);
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=/usr/bin/nymd",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=nymd",
        "Group=nymd",
        "UMask=0077",
        "StateDirectory=nymd",
        "StateDirectoryMode=0700",
        "RuntimeDirectory=nymd",
        "RuntimeDirectoryMode=0750",
        "ConfigurationDirectory=nymd",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    ] {
        assert!(has(line), "nymd.service lacks {line:?}");
    }
    assert!(unit.lines().any(|l| l.starts_with("WatchdogSec=")));
    // The memory limits leave room above the default budget of what others
    // can make nymd hold (`[daemon] memory_budget_mib`).
    let user_unit = include_str!("../../systemd/user/nymd.service");
    let budget = nymd::config::DEFAULT_MEMORY_BUDGET_MIB;
    for u in [unit, user_unit] {
        let (high, max) = (memory_mib(u, "MemoryHigh="), memory_mib(u, "MemoryMax="));
        assert!(high >= budget + budget / 4, "MemoryHigh={high}M");
        assert!(max >= high + 256, "MemoryMax={max}M");
    }
    assert!(
        !unit.lines().any(|l| l.trim() == "PrivateUsers=yes"),
        "PrivateUsers hides operators' uids from SO_PEERCRED (see the unit)"
    );
    assert!(sysusers
        .lines()
        .any(|l| l.starts_with("u nymd ") && l.contains("/var/lib/nymd")));
    // Under the unit, nymd's defaults land in the unit's directories.
    let env = nymd::config::Environment {
        systemd_state_dir: Some("/var/lib/nymd".into()),
        systemd_runtime_dir: Some("/run/nymd".into()),
        ..Default::default()
    };
    let file = nymd::config::ConfigFile::default();
    assert_eq!(
        nymd::config::resolve_socket(None, &env, &file).expect("socket"),
        std::path::PathBuf::from("/run/nymd/nymd.sock")
    );
}
