//! The local side: what an app says when it opens a connection on a SOCKS
//! port, and what we answer (spec §5.2–§5.4).
//!
//! Supported, as in Nym's socks5 client: SOCKS5 with no authentication,
//! SOCKS4, and SOCKS4a (the domain given after the user id); CONNECT only.
//! Domain names are not resolved here: the network requester resolves the
//! [`Target::remote_address`] text.
//!
//! [`Handshake`] is fed the app's bytes and says what to do next; see
//! [`Step`]. Success replies are Nym's bytes. Failure replies follow the
//! RFCs (SOCKS5: 10 bytes with the RFC 1928 code; SOCKS4: 8 bytes, `0x5B`)
//! where Nym writes two bytes and almost always code 1: apps then report the
//! actual reason (command not supported, address type not supported).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The version byte of SOCKS4 and SOCKS4a.
pub const SOCKS4: u8 = 4;
/// The version byte of SOCKS5.
pub const SOCKS5: u8 = 5;
/// SOCKS5 method: no authentication, the only one we accept.
pub const METHOD_NO_AUTH: u8 = 0x00;
/// SOCKS5 method selection: none of the offered methods is acceptable.
pub const METHOD_NONE_ACCEPTABLE: u8 = 0xFF;
/// SOCKS4 user ids and SOCKS4a domains longer than this are refused (Nym
/// reads them without a bound; a SOCKS5 domain cannot be longer).
pub const MAX_SOCKS4_FIELD: usize = 255;

/// Which protocol the app speaks; decides the shape of replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocksVersion {
    /// SOCKS4 or SOCKS4a.
    V4,
    /// SOCKS5.
    V5,
}

/// Where the app wants to go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address (SOCKS5 only).
    Ipv6(Ipv6Addr),
    /// A name to be resolved by the exit, as the app sent it (invalid UTF-8
    /// replaced by U+FFFD; not checked otherwise, may be empty).
    Domain(String),
}

/// A CONNECT request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The app's protocol.
    pub version: SocksVersion,
    /// The destination host.
    pub host: Host,
    /// The destination port.
    pub port: u16,
}

impl Target {
    /// The `host:port` text a Connect carries ([`remote_address`]).
    pub fn remote_address(&self) -> String {
        remote_address(&self.host, self.port)
    }
}

/// The remote-address text of a Connect, as Nym's client builds it (spec
/// §5.3): the domain as given, dotted IPv4, or IPv6 as eight lowercase hex
/// groups without leading zeros, `::` compression or brackets; then `:` and
/// the decimal port. E.g. `2001:db8:0:0:0:0:0:1:443`.
pub fn remote_address(host: &Host, port: u16) -> String {
    let mut s = match host {
        Host::Domain(name) => name.clone(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => {
            let groups: Vec<String> = ip.segments().iter().map(|g| format!("{g:x}")).collect();
            groups.join(":")
        }
    };
    let _ = write!(s, ":{port}");
    s
}

/// A SOCKS5 reply code (RFC 1928 §6). For SOCKS4, [`ReplyCode::Succeeded`]
/// becomes "granted" (`0x5A`) and every other code "rejected" (`0x5B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ReplyCode {
    /// 0: connected.
    Succeeded = 0x00,
    /// 1: general failure.
    GeneralFailure = 0x01,
    /// 2: not allowed by the ruleset (e.g. the exit's policy).
    NotAllowed = 0x02,
    /// 3: network unreachable.
    NetworkUnreachable = 0x03,
    /// 4: host unreachable.
    HostUnreachable = 0x04,
    /// 5: connection refused.
    ConnectionRefused = 0x05,
    /// 6: TTL expired.
    TtlExpired = 0x06,
    /// 7: command not supported (BIND, UDP ASSOCIATE, unknown).
    CommandNotSupported = 0x07,
    /// 8: address type not supported.
    AddressTypeNotSupported = 0x08,
}

/// The reply to a CONNECT. The bound address is always 127.0.0.1:0, so
/// success is exactly Nym's: SOCKS5 `05 00 00 01 7f 00 00 01 00 00`, SOCKS4
/// `00 5a 00 00 7f 00 00 01`.
pub fn reply(version: SocksVersion, code: ReplyCode) -> Vec<u8> {
    match version {
        SocksVersion::V5 => vec![SOCKS5, code as u8, 0, 1, 127, 0, 0, 1, 0, 0],
        SocksVersion::V4 => {
            let status = if code == ReplyCode::Succeeded {
                0x5A
            } else {
                0x5B
            };
            vec![0, status, 0, 0, 127, 0, 0, 1]
        }
    }
}

/// Why a handshake failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    /// The first byte is neither 4 nor 5. Nothing is replied: the app's
    /// protocol is unknown.
    #[error("not a SOCKS4 or SOCKS5 client (first byte {0:#04x})")]
    UnknownVersion(u8),
    /// The SOCKS5 greeting does not offer "no authentication".
    #[error("SOCKS5 client offers no acceptable authentication method (only 'no authentication' is supported)")]
    NoAcceptableMethod,
    /// A SOCKS5 request whose version byte is not 5.
    #[error("SOCKS5 request has version byte {0:#04x}, expected 0x05")]
    RequestVersion(u8),
    /// A command other than CONNECT.
    #[error("SOCKS command {} is not supported (only CONNECT is)", command_name(*.0))]
    UnsupportedCommand(u8),
    /// A SOCKS5 address type other than IPv4, domain and IPv6.
    #[error("SOCKS5 address type {0:#04x} is not supported")]
    UnsupportedAddressType(u8),
    /// A SOCKS4 user id or SOCKS4a domain beyond [`MAX_SOCKS4_FIELD`].
    #[error("SOCKS4 {0} is longer than 255 bytes")]
    TooLong(&'static str),
    /// The handshake already ended.
    #[error("the SOCKS handshake has already ended")]
    Finished,
}

fn command_name(c: u8) -> String {
    match c {
        2 => "BIND".into(),
        3 => "UDP ASSOCIATE".into(),
        c => format!("{c:#04x}"),
    }
}

/// A failed handshake: send `reply` (possibly empty), then close.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("SOCKS handshake refused: {reason}")]
pub struct Refused {
    /// The bytes to write to the app before closing.
    pub reply: Vec<u8>,
    /// Why.
    pub reason: HandshakeError,
}

/// What to do after feeding a [`Handshake`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read more from the app.
    NeedMore,
    /// Write these bytes to the app, then [`Handshake::poll`] again: the app
    /// may already have sent its next message.
    Reply(Vec<u8>),
    /// The app asks for `target`. Answer with [`reply`] when ready (Nym's
    /// client answers success at once). `early_data` is what the app sent
    /// after its request; it belongs to the connection.
    Connect {
        /// The destination.
        target: Target,
        /// Bytes already received past the request.
        early_data: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing parsed yet.
    Start,
    /// SOCKS5 greeting answered; the request is next.
    Socks5Request,
    /// Connected or refused.
    Done,
}

/// The server side of one app connection's SOCKS handshake.
#[derive(Debug, Clone)]
pub struct Handshake {
    state: State,
    /// Received bytes not yet parsed.
    buf: Vec<u8>,
}

impl Default for Handshake {
    fn default() -> Self {
        Self::new()
    }
}

impl Handshake {
    /// A handshake waiting for the app's first byte.
    pub fn new() -> Self {
        Self {
            state: State::Start,
            buf: Vec::new(),
        }
    }

    /// Add bytes read from the app and [`poll`](Self::poll).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Step, Refused> {
        if self.state != State::Done {
            self.buf.extend_from_slice(bytes);
        }
        self.poll()
    }

    /// Parse what has arrived. Call again after [`Step::Reply`] until it
    /// says [`Step::NeedMore`].
    pub fn poll(&mut self) -> Result<Step, Refused> {
        let result = match self.state {
            State::Done => Err((Vec::new(), HandshakeError::Finished)),
            State::Start => match self.buf.first() {
                None => return Ok(Step::NeedMore),
                Some(&SOCKS4) => self.socks4(),
                Some(&SOCKS5) => self.greeting(),
                Some(&v) => Err((Vec::new(), HandshakeError::UnknownVersion(v))),
            },
            State::Socks5Request => self.socks5_request(),
        };
        result.map_err(|(reply, reason)| {
            self.state = State::Done;
            self.buf = Vec::new();
            Refused { reply, reason }
        })
    }

    fn greeting(&mut self) -> Result<Step, (Vec<u8>, HandshakeError)> {
        let mut c = Cursor::new(&self.buf[1..]);
        let parsed = (|| {
            let n = c.u8()?;
            Ok::<_, Stop>(c.take(n.into())?.contains(&METHOD_NO_AUTH))
        })();
        match parsed {
            Err(Stop::More) => Ok(Step::NeedMore),
            Err(Stop::Bad(e)) => Err((reply(SocksVersion::V5, ReplyCode::GeneralFailure), e)),
            Ok(false) => Err((
                vec![SOCKS5, METHOD_NONE_ACCEPTABLE],
                HandshakeError::NoAcceptableMethod,
            )),
            Ok(true) => {
                let used = 1 + c.pos;
                self.buf.drain(..used);
                self.state = State::Socks5Request;
                Ok(Step::Reply(vec![SOCKS5, METHOD_NO_AUTH]))
            }
        }
    }

    fn socks5_request(&mut self) -> Result<Step, (Vec<u8>, HandshakeError)> {
        let mut c = Cursor::new(&self.buf);
        let parsed = (|| {
            let ver = c.u8()?;
            if ver != SOCKS5 {
                return Err(HandshakeError::RequestVersion(ver).into());
            }
            let cmd = c.u8()?;
            if cmd != 1 {
                return Err(HandshakeError::UnsupportedCommand(cmd).into());
            }
            let _reserved = c.u8()?;
            let host = match c.u8()? {
                1 => Host::Ipv4(Ipv4Addr::from(c.array::<4>()?)),
                3 => {
                    let len = c.u8()?;
                    Host::Domain(String::from_utf8_lossy(c.take(len.into())?).into_owned())
                }
                4 => Host::Ipv6(Ipv6Addr::from(c.array::<16>()?)),
                a => return Err(HandshakeError::UnsupportedAddressType(a).into()),
            };
            let port = u16::from_be_bytes(c.array()?);
            Ok(Target {
                version: SocksVersion::V5,
                host,
                port,
            })
        })();
        self.finish(parsed, c.pos, SocksVersion::V5)
    }

    fn socks4(&mut self) -> Result<Step, (Vec<u8>, HandshakeError)> {
        let mut c = Cursor::new(&self.buf[1..]);
        let parsed = (|| {
            let cmd = c.u8()?;
            if cmd != 1 {
                return Err(HandshakeError::UnsupportedCommand(cmd).into());
            }
            let port = u16::from_be_bytes(c.array()?);
            let ip = c.array::<4>()?;
            let _user_id = c.until_nul("user id")?;
            // SOCKS4a: an address 0.0.0.x with x ≠ 0 means a domain follows.
            let host = if ip[..3] == [0, 0, 0] && ip[3] != 0 {
                Host::Domain(String::from_utf8_lossy(c.until_nul("domain name")?).into_owned())
            } else {
                Host::Ipv4(Ipv4Addr::from(ip))
            };
            Ok(Target {
                version: SocksVersion::V4,
                host,
                port,
            })
        })();
        let used = 1 + c.pos;
        self.finish(parsed, used, SocksVersion::V4)
    }

    /// Turn a request parse into a step, keeping bytes past `used`.
    fn finish(
        &mut self,
        parsed: Result<Target, Stop>,
        used: usize,
        version: SocksVersion,
    ) -> Result<Step, (Vec<u8>, HandshakeError)> {
        match parsed {
            Err(Stop::More) => Ok(Step::NeedMore),
            Err(Stop::Bad(e)) => {
                let code = match e {
                    HandshakeError::UnsupportedCommand(_) => ReplyCode::CommandNotSupported,
                    HandshakeError::UnsupportedAddressType(_) => ReplyCode::AddressTypeNotSupported,
                    _ => ReplyCode::GeneralFailure,
                };
                Err((reply(version, code), e))
            }
            Ok(target) => {
                let early_data = self.buf.split_off(used);
                self.buf = Vec::new();
                self.state = State::Done;
                Ok(Step::Connect { target, early_data })
            }
        }
    }
}

/// Why a parse stopped.
enum Stop {
    /// The message is not complete yet.
    More,
    /// The message is invalid.
    Bad(HandshakeError),
}

impl From<HandshakeError> for Stop {
    fn from(e: HandshakeError) -> Self {
        Self::Bad(e)
    }
}

/// Reads a message from the front of the received bytes.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(b: &'a [u8]) -> Self {
        Self { b, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Stop> {
        let bytes = self.b.get(self.pos..self.pos + n).ok_or(Stop::More)?;
        self.pos += n;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, Stop> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// Bytes up to a NUL (consumed, not returned), at most [`MAX_SOCKS4_FIELD`].
    fn until_nul(&mut self, what: &'static str) -> Result<&'a [u8], Stop> {
        let rest = self.b.get(self.pos..).unwrap_or_default();
        match rest.iter().take(MAX_SOCKS4_FIELD + 1).position(|&b| b == 0) {
            Some(n) => {
                self.pos += n + 1;
                Ok(&rest[..n])
            }
            None if rest.len() > MAX_SOCKS4_FIELD => Err(HandshakeError::TooLong(what).into()),
            None => Err(Stop::More),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const V5_OK: [u8; 10] = [5, 0, 0, 1, 127, 0, 0, 1, 0, 0];

    /// Feed `bytes` whole and one byte at a time; both must give the same
    /// steps (ignoring `NeedMore`) and the same outcome.
    fn run(bytes: &[u8]) -> (Vec<Step>, Option<Refused>) {
        let mut outcomes = Vec::new();
        for chunk in [bytes.len().max(1), 1] {
            let mut hs = Handshake::new();
            let mut steps = Vec::new();
            let mut refused = None;
            'feed: for piece in bytes.chunks(chunk) {
                let mut r = hs.push(piece);
                loop {
                    match r {
                        Ok(Step::NeedMore) => break,
                        Ok(s @ Step::Reply(_)) => steps.push(s),
                        Ok(s) => {
                            steps.push(s);
                            break 'feed;
                        }
                        Err(e) => {
                            refused = Some(e);
                            break 'feed;
                        }
                    }
                    r = hs.poll();
                }
            }
            outcomes.push((steps, refused));
        }
        let b = outcomes.pop().expect("two runs");
        let a = outcomes.pop().expect("two runs");
        match (&a.0.last(), &b.0.last()) {
            // Early data arrives in one piece or not at all when fed bytewise.
            (Some(Step::Connect { target: t1, .. }), Some(Step::Connect { target: t2, .. })) => {
                assert_eq!(t1, t2)
            }
            _ => assert_eq!(a, b, "whole vs byte-by-byte"),
        }
        a
    }

    fn connect(target: Target, early: &[u8]) -> Step {
        Step::Connect {
            target,
            early_data: early.to_vec(),
        }
    }

    #[test]
    fn socks5_domain() {
        let mut b = vec![5, 2, 2, 0, 5, 1, 0, 3, 11];
        b.extend_from_slice(b"example.com");
        b.extend_from_slice(&[1, 0xBB]);
        b.extend_from_slice(b"early");
        let target = Target {
            version: SocksVersion::V5,
            host: Host::Domain("example.com".into()),
            port: 443,
        };
        assert_eq!(target.remote_address(), "example.com:443");
        assert_eq!(
            run(&b),
            (
                vec![Step::Reply(vec![5, 0]), connect(target, b"early")],
                None
            )
        );
        assert_eq!(reply(SocksVersion::V5, ReplyCode::Succeeded), V5_OK);
    }

    #[test]
    fn socks5_ipv4_and_ipv6() {
        let (steps, _) = run(&[5, 1, 0, 5, 1, 0, 1, 93, 184, 216, 34, 0, 80]);
        let Some(Step::Connect { target, .. }) = steps.last() else {
            panic!("no connect: {steps:?}")
        };
        assert_eq!(target.host, Host::Ipv4(Ipv4Addr::new(93, 184, 216, 34)));
        assert_eq!(target.remote_address(), "93.184.216.34:80");

        let ip: Ipv6Addr = "2001:db8::1".parse().expect("ip");
        let mut b = vec![5, 1, 0, 5, 1, 0, 4];
        b.extend_from_slice(&ip.octets());
        b.extend_from_slice(&443u16.to_be_bytes());
        let (steps, _) = run(&b);
        let Some(Step::Connect { target, .. }) = steps.last() else {
            panic!("no connect: {steps:?}")
        };
        assert_eq!(target.host, Host::Ipv6(ip));
        assert_eq!(target.remote_address(), "2001:db8:0:0:0:0:0:1:443");
        assert_eq!(
            remote_address(&Host::Ipv6("fe80::abcd:12".parse().expect("ip")), 1),
            "fe80:0:0:0:0:0:abcd:12:1"
        );
    }

    #[test]
    fn socks4_and_socks4a() {
        // SOCKS4: port 80, 10.0.0.1, user "bob".
        let (steps, err) = run(&[4, 1, 0, 80, 10, 0, 0, 1, b'b', b'o', b'b', 0]);
        assert_eq!(err, None);
        let target = Target {
            version: SocksVersion::V4,
            host: Host::Ipv4(Ipv4Addr::new(10, 0, 0, 1)),
            port: 80,
        };
        assert_eq!(steps, [connect(target, b"")]);
        assert_eq!(
            reply(SocksVersion::V4, ReplyCode::Succeeded),
            [0, 0x5A, 0, 0, 127, 0, 0, 1]
        );

        // SOCKS4a: 0.0.0.1, empty user id, then the domain.
        let mut b = vec![4, 1, 1, 0xBB, 0, 0, 0, 1, 0];
        b.extend_from_slice(b"nymtech.net\0");
        let (steps, _) = run(&b);
        let Some(Step::Connect { target, .. }) = steps.last() else {
            panic!("no connect: {steps:?}")
        };
        assert_eq!(target.host, Host::Domain("nymtech.net".into()));
        assert_eq!(target.remote_address(), "nymtech.net:443");
    }

    #[test]
    fn refusals() {
        let refused = |b: &[u8]| run(b).1.expect("refused");
        let r = refused(&[0x47, b'E', b'T']);
        assert_eq!(
            (r.reply, r.reason),
            (vec![], HandshakeError::UnknownVersion(0x47))
        );

        // Only username/password offered.
        let r = refused(&[5, 1, 2]);
        assert_eq!(r.reply, [5, 0xFF]);
        assert_eq!(r.reason, HandshakeError::NoAcceptableMethod);
        assert_eq!(refused(&[5, 0]).reply, [5, 0xFF]);

        let r = refused(&[5, 1, 0, 4, 1, 0, 1]);
        assert_eq!(r.reason, HandshakeError::RequestVersion(4));
        assert_eq!(r.reply, [5, 1, 0, 1, 127, 0, 0, 1, 0, 0]);

        for (cmd, name) in [(2, "BIND"), (3, "UDP ASSOCIATE"), (9, "0x09")] {
            let r = refused(&[5, 1, 0, 5, cmd, 0, 1, 1, 2, 3, 4, 0, 80]);
            assert_eq!(r.reason, HandshakeError::UnsupportedCommand(cmd));
            assert_eq!(r.reply, [5, 7, 0, 1, 127, 0, 0, 1, 0, 0]);
            assert!(r.to_string().contains(name), "{r}");
            let r = refused(&[4, cmd, 0, 80, 1, 2, 3, 4, 0]);
            assert_eq!(r.reply, [0, 0x5B, 0, 0, 127, 0, 0, 1]);
        }

        let r = refused(&[5, 1, 0, 5, 1, 0, 2]);
        assert_eq!(r.reason, HandshakeError::UnsupportedAddressType(2));
        assert_eq!(r.reply, [5, 8, 0, 1, 127, 0, 0, 1, 0, 0]);

        let mut long = vec![4, 1, 0, 80, 1, 2, 3, 4];
        long.extend_from_slice(&[b'u'; 256]);
        assert_eq!(refused(&long).reason, HandshakeError::TooLong("user id"));
        let mut long = vec![4, 1, 0, 80, 0, 0, 0, 9, 0];
        long.extend_from_slice(&[b'd'; 300]);
        assert_eq!(
            refused(&long).reason,
            HandshakeError::TooLong("domain name")
        );
    }

    #[test]
    fn ends_after_connect_or_refusal() {
        let mut hs = Handshake::new();
        assert!(matches!(hs.push(&[9]), Err(Refused { .. })));
        let again = hs.push(&[5, 1, 0]).expect_err("finished");
        assert_eq!(again.reason, HandshakeError::Finished);
        assert!(again.reply.is_empty());
    }

    #[test]
    fn reply_codes() {
        for (code, byte) in [
            (ReplyCode::GeneralFailure, 1),
            (ReplyCode::NotAllowed, 2),
            (ReplyCode::NetworkUnreachable, 3),
            (ReplyCode::HostUnreachable, 4),
            (ReplyCode::ConnectionRefused, 5),
            (ReplyCode::TtlExpired, 6),
            (ReplyCode::CommandNotSupported, 7),
            (ReplyCode::AddressTypeNotSupported, 8),
        ] {
            assert_eq!(
                reply(SocksVersion::V5, code),
                [5, byte, 0, 1, 127, 0, 0, 1, 0, 0]
            );
            assert_eq!(reply(SocksVersion::V4, code)[1], 0x5B);
        }
    }

    proptest! {
        #[test]
        fn random_input_never_panics(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..12),
        ) {
            let mut hs = Handshake::new();
            for c in &chunks {
                let mut r = hs.push(c);
                while let Ok(Step::Reply(_)) = r {
                    r = hs.poll();
                }
            }
        }
    }
}
