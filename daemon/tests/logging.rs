//! Where the real `nymd` binary logs, and in which form.
//!
//! - stderr is a file (and `JOURNAL_STREAM` names something else): text
//!   without a single escape byte, records of an identity inside its
//!   `identity{identity=…}` span; `--log-format json`: one JSON object per
//!   line, the identity in the span's fields.
//! - stderr is "the journal" (`JOURNAL_STREAM` is stderr's device:inode, as
//!   systemd sets it): native records on journald's socket, with
//!   `NYMD_IDENTITY` on the runner's records, on an app session's and on the
//!   mixnet client task's, `PRIORITY` and `SYSLOG_IDENTIFIER=nymd`; nothing
//!   on stderr. journald's socket path is fixed
//!   (`/run/systemd/journal/socket`), so nymd runs in a private mount
//!   namespace (`unshare --mount`, root) where that path is a datagram
//!   socket this test bound. Outside CI, without root, that part is skipped
//!   with a line saying so; under CI it must run.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio_tungstenite::tungstenite::Message;

/// Bound for every wait (a loaded 2-core machine is slow).
const WAIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A config for `--localnet` in `dir`: its own state dir, socket and ports.
fn write_config(dir: &Path) -> PathBuf {
    let config = dir.join("nymd.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = {:?}\nsocket = {:?}\n\
             [identities]\nfirst_port = {}\n\
             [identities.traffic]\ndisable_cover_traffic = true\ndisable_delays = true\n",
            dir.join("state"),
            dir.join("run").join("nymd.sock"),
            free_port()
        ),
    )
    .expect("write config");
    config
}

/// nymd with `--localnet`, killed on drop.
struct Nymd(Child);

impl Nymd {
    fn stop(mut self) {
        let pid = i32::try_from(self.0.id()).expect("pid");
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                assert!(status.success(), "nymd exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nymd did not stop within {WAIT:?}");
    }
}

impl Drop for Nymd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait until `file` has a line containing `needle`; returns the text.
fn wait_for_line(file: &Path, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.lines().any(|l| l.contains(needle)) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no line with {needle:?} in {WAIT:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn nymd(config: &Path, stderr: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nymd"));
    c.arg("--config")
        .arg(config)
        .arg("--localnet")
        .args(extra)
        .env_remove("NYMD_STATE_DIR")
        .env_remove("NYMD_SOCKET")
        .env_remove("NYMD_LOG_FORMAT")
        .env_remove("NO_COLOR")
        .env_remove("NOTIFY_SOCKET")
        .env("NYMD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).expect("stderr file"));
    c
}

#[test]
fn a_file_gets_plain_text_and_json_lines() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = write_config(dir.path());

    // Text: a JOURNAL_STREAM that is not stderr changes nothing.
    let log = dir.path().join("text.log");
    let d = Nymd(
        nymd(&config, &log, &[])
            .env("JOURNAL_STREAM", "1:1")
            .spawn()
            .expect("start nymd"),
    );
    let text = wait_for_line(&log, "websocket listening");
    d.stop();
    let bytes = std::fs::read(&log).expect("log");
    assert!(
        !bytes.contains(&0x1b),
        "escape byte in a log written to a file:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("identity{identity=default}") && l.contains("websocket listening")),
        "the runner's records are in the identity's span:\n{text}"
    );

    // JSON: every line is an object; the identity is in the span.
    let log = dir.path().join("json.log");
    let d = Nymd(
        nymd(&config, &log, &["--log-format", "json"])
            .spawn()
            .expect("start nymd"),
    );
    wait_for_line(&log, "websocket listening");
    d.stop();
    let text = std::fs::read_to_string(&log).expect("log");
    let mut listening = None;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
        if v["fields"]["message"] == "websocket listening" {
            listening = Some(v);
        }
    }
    let v = listening.expect("the runner's websocket record");
    assert_eq!(v["span"]["identity"], "default", "{v}");
    assert_eq!(v["span"]["name"], "identity", "{v}");
}

/// One journal record: field → values (journald allows repeats).
type Record = HashMap<String, Vec<String>>;

/// Parse journald's native protocol: `KEY=value\n`, or `KEY\n` followed by
/// a little-endian u64 length, the value, and `\n`.
fn parse_native(mut b: &[u8]) -> Option<Record> {
    let mut r = Record::new();
    while !b.is_empty() {
        let end = b.iter().position(|c| *c == b'=' || *c == b'\n')?;
        let key = String::from_utf8(b[..end].to_vec()).ok()?;
        let value;
        if b[end] == b'=' {
            let rest = &b[end + 1..];
            let nl = rest.iter().position(|c| *c == b'\n')?;
            value = rest[..nl].to_vec();
            b = &rest[nl + 1..];
        } else {
            let rest = &b[end + 1..];
            let len = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
            let len = usize::try_from(len).ok()?;
            value = rest.get(8..8 + len)?.to_vec();
            if rest.get(8 + len) != Some(&b'\n') {
                return None;
            }
            b = &rest[9 + len..];
        }
        r.entry(key)
            .or_default()
            .push(String::from_utf8_lossy(&value).into_owned());
    }
    Some(r)
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Whether this process may make a private mount namespace.
fn can_unshare_mounts() -> Result<(), String> {
    if !std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        return Err("not root".into());
    }
    match Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("unshare --mount failed: {s}")),
        Err(e) => Err(format!("cannot run unshare: {e}")),
    }
}

struct Journal {
    rx: mpsc::Receiver<Record>,
    seen: Vec<Record>,
}

impl Journal {
    fn expect(&mut self, what: &str, ok: impl Fn(&Record) -> bool) -> Record {
        if let Some(r) = self.seen.iter().find(|r| ok(r)) {
            return r.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self.rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no journal record {what} in {WAIT:?}: {:#?}", self.seen)
            });
            self.seen.push(r.clone());
            if ok(&r) {
                return r;
            }
        }
    }
}

fn has(r: &Record, key: &str, value: &str) -> bool {
    r.get(key).is_some_and(|v| v.iter().any(|x| x == value))
}

fn message_has(r: &Record, text: &str) -> bool {
    r.get("MESSAGE")
        .is_some_and(|v| v.iter().any(|m| m.contains(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_systemd_records_go_to_journald_with_the_identity() {
    if let Err(why) = can_unshare_mounts() {
        let what = format!("journald records need a private mount namespace: {why}");
        assert!(!in_ci(), "precondition missing under CI: {what}");
        eprintln!("skipped: {what}");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let config = write_config(dir.path());

    // The journal's socket, where nymd will look for it in its namespace.
    let (mount_target, mount_source) = if Path::new("/run/systemd").is_dir() {
        ("/run/systemd".to_owned(), dir.path().join("systemd"))
    } else {
        ("/run".to_owned(), dir.path().join("run-root"))
    };
    let socket_dir = if mount_target == "/run" {
        mount_source.join("systemd").join("journal")
    } else {
        mount_source.join("journal")
    };
    std::fs::create_dir_all(&socket_dir).expect("socket dir");
    let journal = UnixDatagram::bind(socket_dir.join("socket")).expect("bind the journal socket");
    journal
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let (tx, rx) = mpsc::channel();
    let stop_reader = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop_reader.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match journal.recv(&mut buf) {
                    Ok(0) => {}
                    Ok(n) => {
                        let r = parse_native(&buf[..n])
                            .unwrap_or_else(|| panic!("not journald's format: {:?}", &buf[..n]));
                        if tx.send(r).is_err() {
                            return;
                        }
                    }
                    Err(_) => {}
                }
            }
        })
    };

    // stderr is "the journal stream": JOURNAL_STREAM names its dev:inode.
    let stderr = dir.path().join("stderr");
    let cmd = nymd(&config, &stderr, &[]);
    let meta = std::fs::metadata(&stderr).expect("stderr file");
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut wrapped = Command::new("unshare");
    wrapped
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg(r#"mount --bind "$1" "$2" && shift 2 && exec "$@""#)
        .arg("sh")
        .arg(&mount_source)
        .arg(&mount_target)
        .arg(program)
        .args(args);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    let d = Nymd(
        wrapped
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .env("NYMD_LOG", "info,nymd_mixnet=debug,nymd_client=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr"))
            .spawn()
            .expect("start nymd in a mount namespace"),
    );
    let mut journal = Journal {
        rx,
        seen: Vec::new(),
    };

    // The runner's record: in the span and with its own field.
    let listening = journal.expect("'websocket listening' of identity default", |r| {
        message_has(r, "websocket listening") && has(r, "NYMD_IDENTITY", "default")
    });
    assert!(
        has(&listening, "PRIORITY", "6"),
        "info is priority 6: {listening:?}"
    );
    assert!(
        has(&listening, "SYSLOG_IDENTIFIER", "nymd"),
        "{listening:?}"
    );
    let addr: std::net::SocketAddr = listening
        .get("NYMD_ADDR")
        .and_then(|v| v.first())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("NYMD_ADDR in {listening:?}"));
    // A record outside any identity has no NYMD_IDENTITY.
    let ready = journal.expect("'control socket ready'", |r| {
        message_has(r, "control socket ready")
    });
    assert!(!ready.contains_key("NYMD_IDENTITY"), "{ready:?}");

    // An app session's record (spawned by the app server) and the mixnet
    // client task's (spawned inside the mixnet crate) carry it too.
    let (mut ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{addr}")),
    )
    .await
    .expect("connect in time")
    .expect("websocket handshake");
    journal.expect("'app connected' of identity default", |r| {
        message_has(r, "app connected") && has(r, "NYMD_IDENTITY", "default")
    });
    ws.send(Message::text(r#"{"type":"selfAddress"}"#))
        .await
        .expect("selfAddress");
    let own = loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("answer in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(&t).expect("json");
            if v["type"] == "selfAddress" {
                break v["address"].as_str().expect("address").to_owned();
            }
        }
    };
    ws.send(Message::text(format!(
        r#"{{"type":"send","message":"to myself","recipient":"{own}"}}"#
    )))
    .await
    .expect("send");
    journal.expect("a mixnet client record of identity default", |r| {
        has(r, "TARGET", "nymd_client::sending")
            && message_has(r, "sending a message")
            && has(r, "NYMD_IDENTITY", "default")
    });
    let _ = ws.close(None).await;
    eprintln!("journal records seen: {}", journal.seen.len());

    d.stop();
    stop_reader.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = reader.join();
    let on_stderr = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert!(
        on_stderr.trim().is_empty(),
        "with the journal, nothing goes to stderr:\n{on_stderr}"
    );
}
