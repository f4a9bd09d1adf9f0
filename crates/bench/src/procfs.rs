//! CPU and memory of a process from procfs.

use std::time::Instant;

/// Clock ticks per second of `/proc/*/stat` (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// utime + stime of `pid` (all threads), seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ... utime is field 14, stime 15 (1-based),
    // i.e. indices 11 and 12 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Proportional set size of `pid`, bytes.
pub fn pss_bytes(pid: u32) -> Option<u64> {
    rollup_field(pid, "Pss:")
}

/// Resident set size of `pid`, bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    rollup_field(pid, "Rss:")
}

fn rollup_field(pid: u32, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU of the calling thread, seconds.
pub fn thread_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// A CPU reading of several processes at one instant.
#[derive(Debug, Clone)]
pub struct CpuMark {
    at: Instant,
    cpu: Vec<f64>,
}

impl CpuMark {
    /// Read the CPU of `pids` now (a vanished process reads as 0).
    pub fn now(pids: &[u32]) -> Self {
        Self {
            at: Instant::now(),
            cpu: pids
                .iter()
                .map(|p| cpu_seconds(*p).unwrap_or(0.0))
                .collect(),
        }
    }

    /// Cores used by each process since `earlier`, and the elapsed seconds.
    pub fn cores_since(&self, earlier: &CpuMark) -> (Vec<f64>, f64) {
        let secs = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        let cores = self
            .cpu
            .iter()
            .zip(&earlier.cpu)
            .map(|(a, b)| (a - b) / secs)
            .collect();
        (cores, secs)
    }
}

/// A short description of the machine.
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    serde_json::json!({
        "cpu_model": model,
        "cpus": cpus,
        "mem_gib": (mem_kb as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": kernel,
        "loadavg_at_start": load,
    })
}
