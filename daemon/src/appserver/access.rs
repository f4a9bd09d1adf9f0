//! Who may connect to an identity's app port, and how many at once.
//!
//! A connection meets the checks in this order:
//!
//! 1. **Limits**, in the accept loop: at most the identity's `max_apps`
//!    connections (counted from accept, so connections still in the
//!    handshake count too) and at most `[daemon] max_app_connections` over
//!    every identity. One more is closed at once; the port keeps serving.
//! 2. **The peer's user**, before the websocket handshake: the uid that owns
//!    the peer's socket is read from `/proc/self/net/tcp` and `tcp6`
//!    ([`peer_uid`]). Root, nymd's own uid, `allowed_uids` and members of
//!    `allowed_groups` (primary or supplementary group, from the group
//!    database) may connect; with `any_local_user` anyone may. A peer whose
//!    socket is not found is refused unless `any_local_user`. A peer that is
//!    not on this machine (only possible with `allow_remote_apps`) cannot be
//!    checked and is let through; a local peer that connects to a
//!    non-loopback address is still found and checked.
//! 3. **The browser origin**, in the handshake ([`Gate::origin_check`]): a
//!    request with an `Origin` header (every browser sends one, and a page
//!    cannot forge it) is refused with HTTP 403 unless the origin is listed
//!    exactly in `allowed_origins`. Apps that send no `Origin` header are not
//!    affected, as with nym-client.
//!
//! The identity's SOCKS5 port ([`Gate::socks`]) meets the same user check
//! (2.) with its own limit (1.) and no origin check (3.).
//!
//! Refused connections are logged with what to do about them, at most
//! [`LOG_BURST`] lines per [`LOG_WINDOW`] and port, so that a local flood
//! cannot fill the journal; the next line says how many were not logged.
//!
//! `/proc/self/net` rather than `/proc/net`: nymd's unit has
//! `ProcSubset=pid`, which hides `/proc/net` but not the per-process view
//! of the same tables.

use std::io::{self, BufRead};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, StatusCode};

use crate::store::WebsocketConfig;

/// Refusals logged per port within one [`LOG_WINDOW`].
pub const LOG_BURST: u32 = 5;
/// The window of [`LOG_BURST`].
pub const LOG_WINDOW: Duration = Duration::from_secs(60);

/// The socket tables read to find a peer's uid.
const PROC_NET_TCP: [&str; 2] = ["/proc/self/net/tcp", "/proc/self/net/tcp6"];

// === Connection limits ===

/// A count of open connections with a ceiling, shared by whoever holds it.
#[derive(Debug)]
pub struct ConnectionLimit {
    limit: usize,
    open: AtomicUsize,
}

/// One connection counted against a [`ConnectionLimit`]; released on drop.
#[derive(Debug)]
pub struct ConnectionPermit(Arc<ConnectionLimit>);

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnectionLimit {
    /// A limit of `limit` connections (at least 1).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            open: AtomicUsize::new(0),
        })
    }

    /// Count one more connection, unless that would pass the limit.
    pub fn try_take(self: &Arc<Self>) -> Option<ConnectionPermit> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionPermit(self.clone()))
    }

    /// Connections counted now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// The ceiling.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// A connection counted against both the identity's and the daemon's
/// limits, for as long as it is held.
#[derive(Debug)]
pub struct Admission {
    _identity: ConnectionPermit,
    _daemon: ConnectionPermit,
}

// === Refusal log ===

/// Rate limit of the refusal lines of one port.
#[derive(Debug, Default)]
pub struct RefusalLog {
    state: Mutex<LogWindow>,
}

#[derive(Debug, Default)]
struct LogWindow {
    start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl RefusalLog {
    /// Whether a refusal at `now` may be logged: `Some(n)` if so, `n` being
    /// the refusals not logged since the previous line.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        // The state stays consistent whatever panicked while holding it.
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let expired = w
            .start
            .is_none_or(|s| now.saturating_duration_since(s) >= LOG_WINDOW);
        if expired {
            w.start = Some(now);
            w.logged = 0;
        }
        if w.logged < LOG_BURST {
            w.logged += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed = w.suppressed.saturating_add(1);
            None
        }
    }
}

/// ` (N more refused connections were not logged)`, or nothing.
fn suppressed_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more refused connections were not logged)")
    }
}

// === Users ===

/// Which local users may connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRules {
    /// nymd's effective uid (always allowed, like root).
    pub daemon_uid: u32,
    /// Allowed uids.
    pub allowed_uids: Vec<u32>,
    /// Allowed groups, by name.
    pub allowed_groups: Vec<String>,
    /// No check at all.
    pub any_local_user: bool,
}

impl UserRules {
    /// The rules of an identity's `[websocket]` section, for this process.
    pub fn for_this_process(ws: &WebsocketConfig) -> Self {
        Self {
            daemon_uid: nix::unistd::geteuid().as_raw(),
            allowed_uids: ws.allowed_uids.clone(),
            allowed_groups: ws.allowed_groups.clone(),
            any_local_user: ws.any_local_user(),
        }
    }

    /// Whether `uid` may connect. Blocking: it may consult the user and
    /// group databases (NSS), so call it off the async threads.
    pub fn allows(&self, uid: u32) -> bool {
        if self.any_local_user
            || uid == 0
            || uid == self.daemon_uid
            || self.allowed_uids.contains(&uid)
        {
            return true;
        }
        self.allowed_groups
            .iter()
            .any(|name| match nix::unistd::Group::from_name(name) {
                Ok(Some(g)) => crate::control::auth::user_in_group(uid, g.gid.as_raw()),
                Ok(None) => false,
                Err(e) => {
                    tracing::debug!("cannot look up group {name}: {e}");
                    false
                }
            })
    }
}

/// Why a connection was refused before the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The user that owns the peer's socket may not connect.
    User {
        /// Its uid.
        uid: u32,
    },
    /// The peer is on this machine, but its socket was not found (it closed
    /// already, or it lives in another network namespace).
    UnknownUser,
    /// The peer is on another machine and the identity does not allow
    /// remote apps.
    Remote,
}

/// Whether an address is this machine's loopback (v4-mapped included).
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Decide whether the peer of a connection (`peer` connected to our
/// `local` address) may go on to the handshake. Blocking (reads `/proc`,
/// may consult NSS).
pub fn check_peer(
    rules: &UserRules,
    allow_remote_apps: bool,
    peer: SocketAddr,
    local: SocketAddr,
) -> Result<(), Refusal> {
    let loopback = is_loopback(peer.ip());
    if !loopback && !allow_remote_apps {
        return Err(Refusal::Remote);
    }
    if rules.any_local_user {
        return Ok(());
    }
    let uid = match peer_uid(peer, local) {
        Ok(uid) => uid,
        Err(e) => {
            tracing::debug!(%peer, "cannot read the socket tables: {e}");
            None
        }
    };
    match uid {
        Some(uid) if rules.allows(uid) => Ok(()),
        Some(uid) => Err(Refusal::User { uid }),
        // Not a socket of this machine: an app elsewhere, which
        // `allow_remote_apps` lets in unchecked.
        None if !loopback => Ok(()),
        None => Err(Refusal::UnknownUser),
    }
}

// === /proc/net/tcp ===

/// One row of `/proc/net/tcp` or `/proc/net/tcp6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocketEntry {
    /// The socket's own address.
    pub local: SocketAddr,
    /// The address it is connected to (all zero for a listener).
    pub remote: SocketAddr,
    /// The uid that owns the socket.
    pub uid: u32,
}

/// Parse one row of `/proc/net/tcp` or `tcp6`:
///
/// ```text
///   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
///    0: 0100007F:07B9 0100007F:A3C2 01 00000000:00000000 00:00000000 00000000  1000        0 4242 ...
/// ```
///
/// Addresses are 32-bit words in hex, each in host byte order (one word
/// for IPv4, four for IPv6); ports are hex. `None` for the header and for
/// anything else that is not a well-formed row.
pub fn parse_tcp_line(line: &str) -> Option<TcpSocketEntry> {
    let mut fields = line.split_ascii_whitespace();
    let slot = fields.next()?;
    if !slot.ends_with(':') {
        return None;
    }
    let local = parse_endpoint(fields.next()?)?;
    let remote = parse_endpoint(fields.next()?)?;
    // st, tx_queue:rx_queue, tr:tm->when, retrnsmt, then uid.
    let uid = fields.nth(4)?;
    if uid.is_empty() || !uid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let uid = uid.parse().ok()?;
    Some(TcpSocketEntry { local, remote, uid })
}

/// `0100007F:07B9` → 127.0.0.1:1977 (on a little-endian machine).
fn parse_endpoint(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    if port.is_empty() || port.len() > 4 || !port.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let port = u16::from_str_radix(port, 16).ok()?;
    if !addr.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // All ASCII from here on, so byte offsets are character boundaries.
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(i * 8..i * 8 + 8)?;
        // The kernel prints the 32-bit word as it sits in memory, read as a
        // host-order integer: its native bytes are the address bytes.
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The same endpoint, v4-mapped IPv6 written as IPv4.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// The uid of the socket in `table` whose own address is `peer` and which
/// is connected to `local`; rows that do not parse are skipped.
pub fn find_peer_uid(
    table: impl BufRead,
    peer: SocketAddr,
    local: SocketAddr,
) -> io::Result<Option<u32>> {
    let (peer, local) = (canonical(peer), canonical(local));
    for line in table.split(b'\n') {
        let line = line?;
        let Ok(line) = std::str::from_utf8(&line) else {
            continue;
        };
        if let Some(e) = parse_tcp_line(line) {
            if canonical(e.local) == peer && canonical(e.remote) == local {
                return Ok(Some(e.uid));
            }
        }
    }
    Ok(None)
}

/// The uid that owns the socket at the other end of a loopback connection
/// (`peer` connected to our `local`), from this network namespace's socket
/// tables; `None` if no such socket is listed. Blocking.
pub fn peer_uid(peer: SocketAddr, local: SocketAddr) -> io::Result<Option<u32>> {
    for path in PROC_NET_TCP {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            // No IPv6 in this kernel: no tcp6 table.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{path}: {e}"))),
        };
        if let Some(uid) = find_peer_uid(io::BufReader::new(file), peer, local)? {
            return Ok(Some(uid));
        }
    }
    Ok(None)
}

// === Origins ===

/// The first `Origin` header of `request` not in `allowed` (exact match),
/// if any. Browsers send exactly one; a request without one is not from a
/// browser page and passes.
pub fn refused_origin(request: &Request, allowed: &[String]) -> Option<String> {
    request
        .headers()
        .get_all(header::ORIGIN)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .find(|o| !allowed.iter().any(|a| a == o))
}

/// The 403 answer to a refused browser page.
fn forbidden(origin: &str) -> ErrorResponse {
    let mut resp = ErrorResponse::new(Some(format!(
        "nymd: pages from {origin} may not use this port\n"
    )));
    *resp.status_mut() = StatusCode::FORBIDDEN;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Why an origin given to `nymctl access` is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin:?} is not a web origin: {reason}; write it as scheme://host[:port], e.g. http://localhost:8080")]
pub struct OriginError {
    /// What was given.
    pub origin: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Check an origin given to `nymctl access` and write it the way browsers
/// send it: scheme and host in lower case, no default port (`:80` for
/// http, `:443` for https), no path.
pub fn normalize_origin(origin: &str) -> Result<String, OriginError> {
    let err = |reason| OriginError {
        origin: origin.to_owned(),
        reason,
    };
    let (scheme, rest) = origin
        .split_once("://")
        .ok_or_else(|| err("it has no scheme://"))?;
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(err("the scheme is not valid"));
    }
    if rest.is_empty() {
        return Err(err("it has no host"));
    }
    if rest.contains(['/', '?', '#']) {
        return Err(err("an origin has no path, query or fragment"));
    }
    if rest.contains('@') {
        return Err(err("an origin has no user name"));
    }
    if rest
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(err("it contains spaces or control characters"));
    }
    // Host, and a port after the last ':' outside an IPv6 literal.
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if host.is_empty() {
        return Err(err("it has no host"));
    }
    if host.starts_with('[') != host.ends_with(']') {
        return Err(err("the IPv6 address is not closed with ]"));
    }
    if !host.starts_with('[') && host.contains(':') {
        return Err(err("an IPv6 address must be written in brackets"));
    }
    let scheme = scheme.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    let port = match port {
        None => None,
        Some(p) => {
            let n: u16 = p
                .parse()
                .ok()
                .filter(|n| *n > 0 && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| err("the port is not a number from 1 to 65535"))?;
            let default = matches!((scheme.as_str(), n), ("http", 80) | ("https", 443));
            (!default).then_some(n)
        }
    };
    Ok(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

// === The gate of one port ===

/// What a port serves: its log lines say which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// nym-client's websocket API.
    App,
    /// The identity's SOCKS5 proxy (same user checks, its own limit).
    Socks,
}

impl PortKind {
    /// `an app connection` / `a SOCKS connection`.
    fn connection(self) -> &'static str {
        match self {
            Self::App => "an app connection",
            Self::Socks => "a SOCKS connection",
        }
    }
}

/// Every check of one identity's port (see the module docs).
#[derive(Debug)]
pub struct Gate {
    kind: PortKind,
    port: u16,
    /// The identity's name, for log lines that say what to run.
    identity: String,
    identity_limit: Arc<ConnectionLimit>,
    daemon_limit: Arc<ConnectionLimit>,
    users: UserRules,
    allow_remote_apps: bool,
    origins: Vec<String>,
    log: RefusalLog,
}

impl Gate {
    /// The checks of the identity whose `[websocket]` section is `ws`,
    /// counting connections against `daemon_limit` too.
    pub fn new(ws: &WebsocketConfig, identity: &str, daemon_limit: Arc<ConnectionLimit>) -> Self {
        Self {
            kind: PortKind::App,
            port: ws.port,
            identity: identity.to_string(),
            identity_limit: ConnectionLimit::new(ws.max_apps()),
            daemon_limit,
            users: UserRules::for_this_process(ws),
            allow_remote_apps: ws.allow_remote_apps,
            origins: ws.allowed_origins.clone(),
            log: RefusalLog::default(),
        }
    }

    /// The checks of the identity's SOCKS5 port on `port`: the users of
    /// its `[websocket]` section `ws` (and its `allow_remote_apps`), no
    /// origins (SOCKS has none), and `limit` connections at once.
    pub fn socks(
        ws: &WebsocketConfig,
        port: u16,
        identity: &str,
        limit: Arc<ConnectionLimit>,
    ) -> Self {
        Self {
            kind: PortKind::Socks,
            port,
            identity: identity.to_string(),
            identity_limit: limit,
            daemon_limit: ConnectionLimit::new(usize::MAX),
            users: UserRules::for_this_process(ws),
            allow_remote_apps: ws.allow_remote_apps,
            origins: Vec::new(),
            log: RefusalLog::default(),
        }
    }

    /// Connections counted against this port now.
    pub fn open_connections(&self) -> usize {
        self.identity_limit.open()
    }

    /// Room for one more connection from `peer` (hold it while the
    /// connection lives), or `None`: close it.
    pub fn admit(&self, peer: SocketAddr) -> Option<Admission> {
        let Some(identity) = self.identity_limit.try_take() else {
            if let Some(n) = self.log.admit(Instant::now()) {
                let limit = self.identity_limit.limit();
                let port = self.port;
                let note = suppressed_note(n);
                match self.kind {
                    PortKind::App => tracing::warn!(
                        %peer,
                        port,
                        limit,
                        "closing a new app connection: this identity has as many apps connected as it allows (max_apps in its config.toml){note}"
                    ),
                    PortKind::Socks => tracing::warn!(
                        %peer,
                        port,
                        limit,
                        "closing a new SOCKS connection: this identity has as many SOCKS connections (open or still in their handshake) as it allows (max_connections in [socks5] of its config.toml){note}"
                    ),
                }
            }
            return None;
        };
        let Some(daemon) = self.daemon_limit.try_take() else {
            if let Some(n) = self.log.admit(Instant::now()) {
                tracing::warn!(
                    %peer,
                    port = self.port,
                    limit = self.daemon_limit.limit(),
                    "closing a new app connection: nymd has as many app connections as it allows ([daemon] max_app_connections){}",
                    suppressed_note(n)
                );
            }
            return None;
        };
        Some(Admission {
            _identity: identity,
            _daemon: daemon,
        })
    }

    /// Whether the peer of `stream` may go on to the handshake; refusals
    /// are logged. The lookups run on a blocking thread.
    pub async fn check_peer(self: &Arc<Self>, stream: &TcpStream, peer: SocketAddr) -> bool {
        if self.users.any_local_user && (self.allow_remote_apps || is_loopback(peer.ip())) {
            return true;
        }
        let Ok(local) = stream.local_addr() else {
            return false;
        };
        let gate = self.clone();
        let verdict = tokio::task::spawn_blocking(move || {
            check_peer(&gate.users, gate.allow_remote_apps, peer, local)
        })
        .await
        .unwrap_or(Err(Refusal::UnknownUser));
        let Err(refusal) = verdict else {
            return true;
        };
        let Some(n) = self.log.admit(Instant::now()) else {
            return false;
        };
        let port = self.port;
        let id = &self.identity;
        let note = suppressed_note(n);
        let what = self.kind.connection();
        match refusal {
            Refusal::User { uid } => tracing::warn!(
                %peer,
                port,
                uid,
                "refused {what} from uid {uid}: only root, nymd's user and the users and groups allowed for this identity may connect; to allow it: nymctl access {id} --allow-user {uid}{note}"
            ),
            Refusal::UnknownUser => tracing::warn!(
                %peer,
                port,
                "refused {what} whose user cannot be found (the socket closed, or it comes from another network namespace); to let any local user connect: nymctl access {id} --any-local-user{note}"
            ),
            Refusal::Remote => tracing::warn!(
                %peer,
                port,
                "refused {what} from another machine: this identity does not allow remote apps{note}"
            ),
        }
        false
    }

    /// The handshake callback: refuses a browser page whose origin is not
    /// allowed (HTTP 403), and logs it.
    #[allow(
        clippy::result_large_err,
        reason = "the callback's signature is tungstenite's"
    )]
    pub fn origin_check(
        &self,
        peer: SocketAddr,
    ) -> impl FnOnce(&Request, Response) -> Result<Response, ErrorResponse> + Unpin + '_ {
        move |request: &Request, response: Response| {
            let Some(origin) = refused_origin(request, &self.origins) else {
                return Ok(response);
            };
            if let Some(n) = self.log.admit(Instant::now()) {
                let port = self.port;
                let id = &self.identity;
                tracing::warn!(
                    %peer,
                    port,
                    %origin,
                    "refused a browser page from origin {origin}; to allow it: nymctl access {id} --allow-origin {origin}{}",
                    suppressed_note(n)
                );
            }
            Err(forbidden(&origin))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A row as the kernel prints it, for an address of this machine's
    /// byte order.
    fn row(local: SocketAddr, remote: SocketAddr, uid: u32) -> String {
        fn ep(a: SocketAddr) -> String {
            let words: Vec<[u8; 4]> = match a.ip() {
                IpAddr::V4(v4) => vec![v4.octets()],
                IpAddr::V6(v6) => v6
                    .octets()
                    .chunks_exact(4)
                    .map(|c| [c[0], c[1], c[2], c[3]])
                    .collect(),
            };
            let hex: String = words
                .iter()
                .map(|w| format!("{:08X}", u32::from_ne_bytes(*w)))
                .collect();
            format!("{hex}:{:04X}", a.port())
        }
        format!(
            "   3: {} {} 01 00000000:00000000 00:00000000 00000000 {uid:>5}        0 123456 1 0000000000000000 20 4 30 10 -1",
            ep(local),
            ep(remote)
        )
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn parses_ipv4_rows_in_host_byte_order() {
        #[cfg(target_endian = "little")]
        {
            let line = "   0: 0100007F:07B9 0100007F:A3C2 01 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 20 4 30 10 -1";
            let e = parse_tcp_line(line).expect("row");
            assert_eq!(e.local, sa("127.0.0.1:1977"));
            assert_eq!(e.remote, sa("127.0.0.1:41922"));
            assert_eq!(e.uid, 1000);
        }
        let e = parse_tcp_line(&row(sa("10.1.2.3:80"), sa("127.0.0.1:1"), 0)).expect("row");
        assert_eq!(
            (e.local, e.remote, e.uid),
            (sa("10.1.2.3:80"), sa("127.0.0.1:1"), 0)
        );
    }

    #[test]
    fn parses_ipv6_and_v4_mapped_rows() {
        #[cfg(target_endian = "little")]
        {
            // ::1 and ::ffff:127.0.0.1 as the kernel prints them on x86.
            let line = "  1: 00000000000000000000000001000000:8AE3 0000000000000000FFFF00000100007F:07B9 01 00000000:00000000 00:00000000 00000000 65534        0 1 1";
            let e = parse_tcp_line(line).expect("row");
            assert_eq!(e.local, sa("[::1]:35555"));
            assert_eq!(e.remote, sa("[::ffff:127.0.0.1]:1977"));
            assert_eq!(e.uid, 65534);
        }
        let e = parse_tcp_line(&row(sa("[fe80::1:2]:443"), sa("[::1]:9"), 7)).expect("row");
        assert_eq!(e.local, sa("[fe80::1:2]:443"));
    }

    #[test]
    fn rejects_headers_and_damaged_rows() {
        for line in [
            "",
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
            "   0: 0100007F:07B9",
            "   0: 0100007F:07B9 0100007F:A3C2 01 00000000:00000000 00:00000000 00000000",
            "   0: 0100007F:07B9 0100007F:A3C2 01 00000000:00000000 00:00000000 00000000 -1 0 1",
            "   0: 0100007F:07B9 0100007F:A3C2 01 00000000:00000000 00:00000000 00000000 99999999999 0 1",
            "   0: 0100007:07B9 0100007F:A3C2 01 0 0 0 1000",
            "   0: +100007F:07B9 0100007F:A3C2 01 0 0 0 1000",
            "   0: 0100007F:107B9 0100007F:A3C2 01 0 0 0 1000",
            "   0: 0100007F:+7B9 0100007F:A3C2 01 0 0 0 1000",
            "   0: 0100007F07B9 0100007F:A3C2 01 0 0 0 1000",
            "   0 0100007F:07B9 0100007F:A3C2 01 0 0 0 1000",
            "   0: 01000é7F:07B9 0100007F:A3C2 01 0 0 0 1000",
        ] {
            assert_eq!(parse_tcp_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn finds_the_peer_socket_not_ours() {
        let ours = sa("127.0.0.1:1977");
        let peer = sa("127.0.0.1:50000");
        let table = [
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode".to_owned(),
            // The listener and our end of the connection (nymd's uid).
            row(ours, sa("0.0.0.0:0"), 4242),
            row(ours, peer, 4242),
            // Another connection of the same peer port to elsewhere.
            row(peer, sa("127.0.0.1:9"), 1),
            "garbage".to_owned(),
            row(peer, ours, 1000),
        ]
        .join("\n");
        assert_eq!(
            find_peer_uid(table.as_bytes(), peer, ours).expect("read"),
            Some(1000)
        );
        assert_eq!(
            find_peer_uid(table.as_bytes(), sa("127.0.0.1:50001"), ours).expect("read"),
            None
        );
        // A v4-mapped view of either end finds the IPv4 row and back.
        assert_eq!(
            find_peer_uid(
                table.as_bytes(),
                sa("[::ffff:127.0.0.1]:50000"),
                sa("[::ffff:127.0.0.1]:1977")
            )
            .expect("read"),
            Some(1000)
        );
        let v6 = row(
            sa("[::ffff:127.0.0.1]:50002"),
            sa("[::ffff:127.0.0.1]:1977"),
            77,
        );
        assert_eq!(
            find_peer_uid(v6.as_bytes(), sa("127.0.0.1:50002"), ours).expect("read"),
            Some(77)
        );
        // Invalid UTF-8 in the table is skipped, not an error.
        let mut bytes = b"\xff\xfe\n".to_vec();
        bytes.extend_from_slice(row(peer, ours, 5).as_bytes());
        assert_eq!(
            find_peer_uid(&bytes[..], peer, ours).expect("read"),
            Some(5)
        );
    }

    #[test]
    fn finds_the_uid_of_a_real_loopback_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, peer) = listener.accept().expect("accept");
        let local = server.local_addr().expect("local");
        assert_eq!(peer, client.local_addr().expect("client addr"));
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(peer_uid(peer, local).expect("tables"), Some(me));
        // The peer's socket must be connected to us, not just exist.
        assert_eq!(peer_uid(peer, sa("127.0.0.1:1")).expect("tables"), None);
        drop(client);
    }

    #[test]
    fn users_allowed() {
        let rules = UserRules {
            daemon_uid: 4242,
            allowed_uids: vec![1000],
            allowed_groups: vec!["root".into(), "no-such-group-nymd-test".into()],
            any_local_user: false,
        };
        assert!(rules.allows(0));
        assert!(rules.allows(4242));
        assert!(rules.allows(1000));
        assert!(!rules.allows(3_999_999));
        let any = UserRules {
            any_local_user: true,
            ..rules.clone()
        };
        assert!(any.allows(3_999_999));
        // Group "root" (gid 0) has user root; uid 65534 ("nobody") is not
        // in it where it exists.
        let nobody_in_root = crate::control::auth::user_in_group(65534, 0);
        assert_eq!(rules.allows(65534), nobody_in_root);
    }

    #[test]
    fn remote_and_unknown_peers() {
        let rules = UserRules {
            daemon_uid: 4242,
            allowed_uids: vec![],
            allowed_groups: vec![],
            any_local_user: false,
        };
        let far = sa("192.0.2.1:5000");
        let here = sa("192.0.2.2:1977");
        assert_eq!(check_peer(&rules, false, far, here), Err(Refusal::Remote));
        // Not a socket of this machine, remote apps allowed: let through.
        assert_eq!(check_peer(&rules, true, far, here), Ok(()));
        // A loopback peer that is not listed: refused.
        assert_eq!(
            check_peer(&rules, false, sa("127.0.0.1:1"), sa("127.0.0.1:2")),
            Err(Refusal::UnknownUser)
        );
        let any = UserRules {
            any_local_user: true,
            ..rules
        };
        assert_eq!(
            check_peer(&any, false, sa("127.0.0.1:1"), sa("127.0.0.1:2")),
            Ok(())
        );
        assert_eq!(check_peer(&any, false, far, here), Err(Refusal::Remote));
        assert!(is_loopback("::ffff:127.0.0.9".parse().expect("ip")));
        assert!(!is_loopback("::ffff:10.0.0.1".parse().expect("ip")));
    }

    #[test]
    fn limits_count_and_release() {
        let l = ConnectionLimit::new(2);
        let a = l.try_take().expect("first");
        let b = l.try_take().expect("second");
        assert!(l.try_take().is_none());
        assert_eq!(l.open(), 2);
        drop(a);
        let c = l.try_take().expect("room again");
        drop((b, c));
        assert_eq!(l.open(), 0);
        assert_eq!(ConnectionLimit::new(0).limit(), 1);
    }

    #[test]
    fn refusal_log_is_bounded_and_counts_what_it_skipped() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        for _ in 0..LOG_BURST {
            assert_eq!(log.admit(t0), Some(0));
        }
        for _ in 0..1000 {
            assert_eq!(log.admit(t0 + Duration::from_secs(1)), None);
        }
        assert_eq!(log.admit(t0 + LOG_WINDOW), Some(1000));
        assert_eq!(log.admit(t0 + LOG_WINDOW), Some(0));
    }

    fn request(origins: &[&str]) -> Request {
        let mut b = Request::builder().uri("/");
        for o in origins {
            b = b.header(header::ORIGIN, *o);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn origins_match_exactly() {
        let allowed = vec!["http://localhost:8080".to_owned()];
        assert_eq!(refused_origin(&request(&[]), &allowed), None);
        assert_eq!(
            refused_origin(&request(&["http://localhost:8080"]), &allowed),
            None
        );
        for bad in [
            "http://evil.example",
            "http://localhost:8081",
            "https://localhost:8080",
            "http://localhost:8080/",
            "null",
        ] {
            assert_eq!(
                refused_origin(&request(&[bad]), &allowed).as_deref(),
                Some(bad)
            );
        }
        // Every Origin header must be allowed.
        assert_eq!(
            refused_origin(
                &request(&["http://localhost:8080", "http://evil.example"]),
                &allowed
            )
            .as_deref(),
            Some("http://evil.example")
        );
        let resp = forbidden("http://evil.example");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn origins_are_normalized_as_browsers_send_them() {
        for (given, want) in [
            ("http://localhost:8080", "http://localhost:8080"),
            ("HTTP://LocalHost:8080", "http://localhost:8080"),
            ("http://example.com:80", "http://example.com"),
            ("https://example.com:443", "https://example.com"),
            ("https://example.com:80", "https://example.com:80"),
            ("http://[::1]:3000", "http://[::1]:3000"),
            ("http://[::1]", "http://[::1]"),
            ("chrome-extension://abcdef", "chrome-extension://abcdef"),
        ] {
            assert_eq!(normalize_origin(given).as_deref(), Ok(want), "{given}");
        }
        for bad in [
            "localhost:8080",
            "null",
            "http://",
            "http://localhost:8080/",
            "http://localhost/app",
            "http://localhost?x",
            "http://user@localhost",
            "http://localhost:0",
            "http://localhost:99999",
            "http://localhost:80a",
            "http://localhost:",
            "http://::1",
            "http://[::1",
            "1http://x",
            "ht tp://x",
            "http://local host",
            "",
        ] {
            let e = normalize_origin(bad).expect_err(bad);
            assert!(e.to_string().contains("scheme://host[:port]"), "{e}");
        }
    }

    proptest! {
        #[test]
        fn random_rows_never_panic(line in ".{0,200}") {
            let _ = parse_tcp_line(&line);
        }

        #[test]
        fn random_row_like_text_never_panics(
            fields in prop::collection::vec("[0-9A-Fa-f:+-]{0,40}", 0..12)
        ) {
            let _ = parse_tcp_line(&fields.join(" "));
        }

        #[test]
        fn kernel_rows_parse_back(
            a in any::<[u8; 4]>(), b in any::<[u8; 16]>(),
            pa in any::<u16>(), pb in any::<u16>(), uid in any::<u32>(),
        ) {
            let v4 = SocketAddr::new(IpAddr::V4(a.into()), pa);
            let v6 = SocketAddr::new(IpAddr::V6(b.into()), pb);
            let e = parse_tcp_line(&row(v4, v4, uid)).expect("v4 row");
            prop_assert_eq!((e.local, e.remote, e.uid), (v4, v4, uid));
            let e = parse_tcp_line(&row(v6, v6, uid)).expect("v6 row");
            prop_assert_eq!((e.local, e.remote, e.uid), (v6, v6, uid));
        }

        #[test]
        fn random_origins_never_panic(s in ".{0,80}") {
            if let Ok(o) = normalize_origin(&s) {
                // Normalizing is idempotent.
                prop_assert_eq!(normalize_origin(&o), Ok(o.clone()));
            }
        }
    }
}
