//! The exit policy: which destinations the exit connects to (spec §6.3).
//!
//! A subset of Tor's `torrc` syntax, one rule per line (or several on one
//! line, separated by commas):
//!
//! ```text
//! # comment
//! accept 127.0.0.0/8:*
//! accept [::1]:80-443
//! ExitPolicy reject 10.0.0.0/8:*, accept *:22
//! reject6 *:*
//! ```
//!
//! - action: `accept`, `reject`, or `accept6`/`reject6` (which match IPv6
//!   destinations only); a leading `ExitPolicy` keyword is allowed;
//! - address: `*` (any), `*4` (any IPv4), `*6` (any IPv6), an IPv4 address
//!   or an IPv6 address (in brackets, or bare when followed by `:PORTS`),
//!   either with an optional `/BITS` prefix length (host bits are ignored);
//! - ports: `*` (1–65535), `N`, or `N-M`.
//!
//! The first rule that matches decides; a destination no rule matches is
//! refused. Port 0 is always refused. An IPv4-mapped IPv6 destination
//! (`::ffff:a.b.c.d`) is matched as the IPv4 address it reaches.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use nymd_proto::socks5::query::{PolicyAction, PolicyRule};

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Connect.
    Accept,
    /// Refuse.
    Reject,
}

/// The address part of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Pattern {
    /// `*`
    Any,
    /// `*4`
    AnyV4,
    /// `*6`
    AnyV6,
    /// An IPv4 network (host bits cleared).
    V4(Ipv4Addr, u8),
    /// An IPv6 network (host bits cleared).
    V6(Ipv6Addr, u8),
}

impl Pattern {
    fn matches(self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Self::Any, _) | (Self::AnyV4, IpAddr::V4(_)) | (Self::AnyV6, IpAddr::V6(_)) => true,
            (Self::V4(net, bits), IpAddr::V4(ip)) => mask_v4(ip, bits) == net,
            (Self::V6(net, bits), IpAddr::V6(ip)) => mask_v6(ip, bits) == net,
            _ => false,
        }
    }

    fn is_v4(self) -> bool {
        matches!(self, Self::AnyV4 | Self::V4(..))
    }
}

impl fmt::Display for Pattern {
    /// The text Nym's ExitPolicy query answer carries: `*`, `*4`, `*6`,
    /// `a.b.c.d/m` or `<ipv6>/m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::AnyV4 => f.write_str("*4"),
            Self::AnyV6 => f.write_str("*6"),
            Self::V4(ip, bits) => write!(f, "{ip}/{bits}"),
            Self::V6(ip, bits) => write!(f, "{ip}/{bits}"),
        }
    }
}

fn mask_v4(ip: Ipv4Addr, bits: u8) -> Ipv4Addr {
    let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
    Ipv4Addr::from(u32::from(ip) & mask)
}

fn mask_v6(ip: Ipv6Addr, bits: u8) -> Ipv6Addr {
    let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
    Ipv6Addr::from(u128::from(ip) & mask)
}

/// One rule of an [`ExitPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    action: Action,
    /// `accept6`/`reject6`: matches IPv6 destinations only.
    ipv6_only: bool,
    pattern: Pattern,
    ports: (u16, u16),
}

impl Rule {
    /// What the rule does when it matches.
    pub fn action(&self) -> Action {
        self.action
    }

    /// Whether the rule matches `dest` (an IPv4-mapped IPv6 address is
    /// taken as its IPv4 address).
    pub fn matches(&self, dest: SocketAddr) -> bool {
        let ip = dest.ip().to_canonical();
        let port = dest.port();
        if self.ipv6_only && ip.is_ipv4() {
            return false;
        }
        self.pattern.matches(ip) && (self.ports.0..=self.ports.1).contains(&port)
    }

    /// The rule in the shape of Nym's ExitPolicy query answer.
    fn to_query(self) -> PolicyRule {
        let action = match (self.action, self.ipv6_only) {
            (Action::Accept, false) => PolicyAction::Accept,
            (Action::Reject, false) => PolicyAction::Reject,
            (Action::Accept, true) => PolicyAction::Accept6,
            (Action::Reject, true) => PolicyAction::Reject6,
        };
        PolicyRule {
            action,
            ip_pattern: self.pattern.to_string(),
            port_start: self.ports.0,
            port_end: self.ports.1,
        }
    }
}

impl fmt::Display for Rule {
    /// The rule as a policy line (which [`ExitPolicy::parse`] reads back).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            Action::Accept => "accept",
            Action::Reject => "reject",
        };
        let six = if self.ipv6_only { "6" } else { "" };
        write!(f, "{action}{six} ")?;
        match self.pattern {
            Pattern::V6(ip, 128) => write!(f, "[{ip}]")?,
            Pattern::V6(ip, bits) => write!(f, "[{ip}]/{bits}")?,
            Pattern::V4(ip, 32) => write!(f, "{ip}")?,
            p => write!(f, "{p}")?,
        }
        match self.ports {
            (1, u16::MAX) => f.write_str(":*"),
            (a, b) if a == b => write!(f, ":{a}"),
            (a, b) => write!(f, ":{a}-{b}"),
        }
    }
}

/// Why a policy text could not be read: the line (from 1) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("exit policy line {line}: {kind}")]
pub struct PolicyError {
    /// The line, counted from 1.
    pub line: usize,
    /// What is wrong with it.
    pub kind: PolicyErrorKind,
}

/// What is wrong with a policy line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyErrorKind {
    /// The first word is not `accept`, `reject`, `accept6` or `reject6`.
    #[error("unknown action {0:?} (expected accept, reject, accept6 or reject6)")]
    UnknownAction(String),
    /// An action with nothing after it.
    #[error("{0:?} needs an ADDRESS:PORTS pattern")]
    MissingPattern(String),
    /// More than one pattern after an action (separate rules with commas).
    #[error("unexpected {0:?} after the pattern (separate rules with commas or new lines)")]
    TrailingText(String),
    /// The pattern has no `:PORTS` part.
    #[error("{0:?} has no :PORTS part (use :* for every port)")]
    MissingPorts(String),
    /// The address part is not `*`, `*4`, `*6` or an IP address.
    #[error(
        "{0:?} is not an address (*, *4, *6, an IPv4 address, or an IPv6 address in brackets)"
    )]
    BadAddress(String),
    /// The prefix length is not a number, or too long for the address.
    #[error("{0:?} is not a valid prefix length for this address")]
    BadPrefix(String),
    /// The port part is not `*`, `N` or `N-M` with 1 ≤ N ≤ M ≤ 65535.
    #[error("{0:?} is not a port range (*, N or N-M, from 1 to 65535)")]
    BadPorts(String),
    /// `accept6`/`reject6` with an IPv4 address.
    #[error("{0:?} is an IPv4 pattern in an IPv6-only rule")]
    Ipv4InIpv6Rule(String),
}

/// An ordered list of accept/reject rules; the first match decides and no
/// match refuses. See the module documentation for the syntax.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExitPolicy {
    rules: Vec<Rule>,
}

impl ExitPolicy {
    /// Read a policy text. Errors name the line (from 1).
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let mut rules = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.split('#').next().unwrap_or_default().trim();
            let content = strip_keyword(content);
            if content.is_empty() {
                continue;
            }
            for item in content.split(',') {
                let rule = parse_rule(item.trim()).map_err(|kind| PolicyError { line, kind })?;
                rules.push(rule);
            }
        }
        Ok(Self { rules })
    }

    /// The default: loopback destinations (127.0.0.0/8 and ::1) on any
    /// port, nothing else.
    pub fn loopback_only() -> Self {
        Self {
            rules: vec![
                Rule {
                    action: Action::Accept,
                    ipv6_only: false,
                    pattern: Pattern::V4(Ipv4Addr::new(127, 0, 0, 0), 8),
                    ports: (1, u16::MAX),
                },
                Rule {
                    action: Action::Accept,
                    ipv6_only: false,
                    pattern: Pattern::V6(Ipv6Addr::LOCALHOST, 128),
                    ports: (1, u16::MAX),
                },
                Rule {
                    action: Action::Reject,
                    ipv6_only: false,
                    pattern: Pattern::Any,
                    ports: (1, u16::MAX),
                },
            ],
        }
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether the exit may connect to `dest`: the first matching rule
    /// accepts it. Port 0 and destinations no rule matches are refused.
    pub fn allows(&self, dest: SocketAddr) -> bool {
        if dest.port() == 0 {
            return false;
        }
        self.rules
            .iter()
            .find(|r| r.matches(dest))
            .is_some_and(|r| r.action == Action::Accept)
    }

    /// The first of `dests` the policy refuses; `None` when it allows
    /// every one (the exit checks every address a name resolves to).
    pub fn first_refused(&self, dests: &[SocketAddr]) -> Option<SocketAddr> {
        dests.iter().copied().find(|d| !self.allows(*d))
    }

    /// The rules in the shape of Nym's ExitPolicy query answer.
    pub(crate) fn to_query_rules(&self) -> Vec<PolicyRule> {
        self.rules.iter().map(|r| r.to_query()).collect()
    }
}

impl FromStr for ExitPolicy {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        Self::parse(s)
    }
}

impl fmt::Display for ExitPolicy {
    /// One rule per line, in the syntax [`ExitPolicy::parse`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.rules {
            writeln!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Drop a leading `ExitPolicy` keyword (any case).
fn strip_keyword(line: &str) -> &str {
    const KEYWORD: &str = "exitpolicy";
    match line.get(..KEYWORD.len()) {
        Some(head) if head.eq_ignore_ascii_case(KEYWORD) => {
            let rest = &line[KEYWORD.len()..];
            if rest.is_empty() || rest.starts_with(char::is_whitespace) {
                rest.trim_start()
            } else {
                line
            }
        }
        _ => line,
    }
}

fn parse_rule(item: &str) -> Result<Rule, PolicyErrorKind> {
    let mut words = item.split_whitespace();
    let action_word = words.next().unwrap_or_default();
    let (action, ipv6_only) = match action_word.to_ascii_lowercase().as_str() {
        "accept" => (Action::Accept, false),
        "reject" => (Action::Reject, false),
        "accept6" => (Action::Accept, true),
        "reject6" => (Action::Reject, true),
        _ => return Err(PolicyErrorKind::UnknownAction(action_word.to_owned())),
    };
    let pattern_text = words
        .next()
        .ok_or_else(|| PolicyErrorKind::MissingPattern(action_word.to_owned()))?;
    if let Some(extra) = words.next() {
        return Err(PolicyErrorKind::TrailingText(extra.to_owned()));
    }
    let (pattern, ports) = parse_pattern(pattern_text)?;
    let pattern = match (ipv6_only, pattern) {
        (true, Pattern::Any) => Pattern::AnyV6,
        (true, p) if p.is_v4() => {
            return Err(PolicyErrorKind::Ipv4InIpv6Rule(pattern_text.to_owned()))
        }
        (_, p) => p,
    };
    Ok(Rule {
        action,
        ipv6_only,
        pattern,
        ports,
    })
}

/// `ADDR[/BITS]:PORTS`.
fn parse_pattern(text: &str) -> Result<(Pattern, (u16, u16)), PolicyErrorKind> {
    let missing_ports = || PolicyErrorKind::MissingPorts(text.to_owned());
    let (addr, bits, ports): (AddrText, Option<&str>, &str) =
        if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest
                .split_once(']')
                .ok_or_else(|| PolicyErrorKind::BadAddress(text.to_owned()))?;
            let ip = Ipv6Addr::from_str(inside)
                .map_err(|_| PolicyErrorKind::BadAddress(inside.to_owned()))?;
            let (prefix, ports) = match after.strip_prefix('/') {
                Some(p) => {
                    let (bits, ports) = p.split_once(':').ok_or_else(missing_ports)?;
                    (Some(bits), ports)
                }
                None => (None, after.strip_prefix(':').ok_or_else(missing_ports)?),
            };
            (AddrText::V6(ip), prefix, ports)
        } else {
            let (head, ports) = text.rsplit_once(':').ok_or_else(missing_ports)?;
            let (addr, prefix) = match head.split_once('/') {
                Some((a, bits)) => (a, Some(bits)),
                None => (head, None),
            };
            let addr = match addr {
                "*" => AddrText::Any,
                "*4" => AddrText::AnyV4,
                "*6" => AddrText::AnyV6,
                a => match IpAddr::from_str(a) {
                    Ok(IpAddr::V4(ip)) => AddrText::V4(ip),
                    Ok(IpAddr::V6(ip)) => AddrText::V6(ip),
                    Err(_) => return Err(PolicyErrorKind::BadAddress(a.to_owned())),
                },
            };
            (addr, prefix, ports)
        };
    let bad_prefix = || PolicyErrorKind::BadPrefix(bits.unwrap_or_default().to_owned());
    let prefix = |max: u8| -> Result<u8, PolicyErrorKind> {
        let Some(bits) = bits else {
            return Ok(max);
        };
        if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_prefix());
        }
        bits.parse::<u8>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(bad_prefix)
    };
    let pattern = match addr {
        AddrText::Any | AddrText::AnyV4 | AddrText::AnyV6 if bits.is_some() => {
            return Err(bad_prefix())
        }
        AddrText::Any => Pattern::Any,
        AddrText::AnyV4 => Pattern::AnyV4,
        AddrText::AnyV6 => Pattern::AnyV6,
        AddrText::V4(ip) => {
            let b = prefix(32)?;
            Pattern::V4(mask_v4(ip, b), b)
        }
        AddrText::V6(ip) => {
            let b = prefix(128)?;
            Pattern::V6(mask_v6(ip, b), b)
        }
    };
    Ok((pattern, parse_ports(ports)?))
}

enum AddrText {
    Any,
    AnyV4,
    AnyV6,
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

fn parse_ports(text: &str) -> Result<(u16, u16), PolicyErrorKind> {
    let bad = || PolicyErrorKind::BadPorts(text.to_owned());
    let port = |s: &str| -> Result<u16, PolicyErrorKind> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)
    };
    if text == "*" {
        return Ok((1, u16::MAX));
    }
    let (a, b) = match text.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(text)?;
            (p, p)
        }
    };
    if a > b {
        return Err(bad());
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(text: &str) -> PolicyError {
        match ExitPolicy::parse(text) {
            Ok(p) => panic!("{text:?} parsed as {p:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn first_match_wins() {
        let p = ExitPolicy::parse("reject 127.0.0.1:22\naccept 127.0.0.0/8:*\nreject *:*\n")
            .expect("policy");
        assert!(!p.allows(addr("127.0.0.1:22")));
        assert!(p.allows(addr("127.0.0.1:23")));
        assert!(p.allows(addr("127.0.0.2:22")));
        let q = ExitPolicy::parse("accept 127.0.0.0/8:*\nreject 127.0.0.1:22").expect("policy");
        assert!(q.allows(addr("127.0.0.1:22")), "the earlier accept decides");
    }

    #[test]
    fn no_match_is_refused_and_empty_refuses_all() {
        let p = ExitPolicy::parse("accept 10.0.0.0/8:80").expect("policy");
        assert!(p.allows(addr("10.1.2.3:80")));
        assert!(!p.allows(addr("10.1.2.3:81")));
        assert!(!p.allows(addr("11.0.0.1:80")));
        let empty = ExitPolicy::parse("# nothing\n\n").expect("policy");
        assert!(empty.rules().is_empty());
        assert!(!empty.allows(addr("127.0.0.1:80")));
    }

    #[test]
    fn loopback_only_default() {
        let p = ExitPolicy::loopback_only();
        for ok in [
            "127.0.0.1:80",
            "127.255.0.9:65535",
            "[::1]:443",
            "[::ffff:127.0.0.1]:8080",
        ] {
            assert!(p.allows(addr(ok)), "{ok}");
        }
        for no in [
            "10.0.0.1:80",
            "192.168.1.1:443",
            "1.1.1.1:53",
            "[::2]:80",
            "[2001:db8::1]:80",
            "[::ffff:10.0.0.1]:80",
            "127.0.0.1:0",
        ] {
            assert!(!p.allows(addr(no)), "{no}");
        }
    }

    #[test]
    fn ipv6_patterns() {
        let p = ExitPolicy::parse(
            "reject6 [fc00::]/7:*\naccept [2001:db8::]/32:443\naccept 2001:db9::1:80\naccept6 *:22\naccept *6:25",
        )
        .expect("policy");
        assert!(!p.allows(addr("[fd00::1]:443")));
        assert!(p.allows(addr("[2001:db8:ffff::1]:443")));
        assert!(!p.allows(addr("[2001:db8::1]:444")));
        assert!(p.allows(addr("[2001:db9::1]:80")));
        assert!(p.allows(addr("[2001:dead::1]:22")));
        assert!(!p.allows(addr("1.2.3.4:22")), "accept6 * matches IPv6 only");
        assert!(p.allows(addr("[2001:dead::1]:25")));
        assert!(!p.allows(addr("1.2.3.4:25")));
    }

    #[test]
    fn ipv4_families_and_host_bits() {
        let p = ExitPolicy::parse("accept 192.168.1.77/24:1000-2000, accept *4:7").expect("policy");
        assert!(p.allows(addr("192.168.1.1:1000")));
        assert!(p.allows(addr("192.168.1.255:2000")));
        assert!(!p.allows(addr("192.168.2.1:1500")));
        assert!(!p.allows(addr("192.168.1.1:2001")));
        assert!(!p.allows(addr("192.168.1.1:999")));
        assert!(p.allows(addr("8.8.8.8:7")));
        assert!(!p.allows(addr("[::1]:7")));
        let zero = ExitPolicy::parse("accept 0.0.0.0/0:*").expect("policy");
        assert!(zero.allows(addr("1.2.3.4:1")));
        assert!(!zero.allows(addr("[::1]:1")));
    }

    #[test]
    fn keyword_comments_and_case() {
        let p = ExitPolicy::parse(
            "ExitPolicy accept 127.0.0.1:80 # web\n  exitpolicy REJECT *:*\n# all done",
        )
        .expect("policy");
        assert_eq!(p.rules().len(), 2);
        assert!(p.allows(addr("127.0.0.1:80")));
        assert!(!p.allows(addr("127.0.0.1:81")));
    }

    #[test]
    fn every_resolved_address_is_checked() {
        let p = ExitPolicy::parse("accept 127.0.0.0/8:*").expect("policy");
        let both = [addr("127.0.0.1:80"), addr("[::1]:80")];
        assert_eq!(p.first_refused(&both), Some(addr("[::1]:80")));
        assert_eq!(p.first_refused(&both[..1]), None);
    }

    #[test]
    fn display_reads_back() {
        let text = "accept 127.0.0.0/8:*\naccept [::1]:80\nreject6 [fc00::]/7:1-1024\naccept *4:22\nreject *:*\n";
        let p = ExitPolicy::parse(text).expect("policy");
        assert_eq!(p.to_string(), text);
        assert_eq!(ExitPolicy::parse(&p.to_string()), Ok(p));
        let l = ExitPolicy::loopback_only();
        assert_eq!(ExitPolicy::parse(&l.to_string()), Ok(l));
    }

    #[test]
    fn query_rules() {
        let p = ExitPolicy::parse("accept 127.0.0.0/8:*\naccept6 [::1]:80-81\nreject *:*")
            .expect("policy");
        let q = p.to_query_rules();
        assert_eq!(q[0].action, PolicyAction::Accept);
        assert_eq!(q[0].ip_pattern, "127.0.0.0/8");
        assert_eq!((q[0].port_start, q[0].port_end), (1, 65535));
        assert_eq!(q[1].action, PolicyAction::Accept6);
        assert_eq!(q[1].ip_pattern, "::1/128");
        assert_eq!((q[1].port_start, q[1].port_end), (80, 81));
        assert_eq!(q[2].action, PolicyAction::Reject);
        assert_eq!(q[2].ip_pattern, "*");
    }

    #[test]
    fn bad_lines_name_their_line() {
        let e = err("accept 127.0.0.1:80\n\n# c\nallow *:*\n");
        assert_eq!(e.line, 4);
        assert_eq!(e.kind, PolicyErrorKind::UnknownAction("allow".into()));
        assert!(e.to_string().starts_with("exit policy line 4: "), "{e}");

        let cases: &[(&str, PolicyErrorKind)] = &[
            ("accept", PolicyErrorKind::MissingPattern("accept".into())),
            (
                "accept 1.2.3.4",
                PolicyErrorKind::MissingPorts("1.2.3.4".into()),
            ),
            (
                "accept 1.2.3.4:80 x",
                PolicyErrorKind::TrailingText("x".into()),
            ),
            (
                "accept host.example:80",
                PolicyErrorKind::BadAddress("host.example".into()),
            ),
            (
                "accept 1.2.3.4/33:80",
                PolicyErrorKind::BadPrefix("33".into()),
            ),
            (
                "accept 1.2.3.4/+8:80",
                PolicyErrorKind::BadPrefix("+8".into()),
            ),
            ("accept 1.2.3.4/:80", PolicyErrorKind::BadPrefix("".into())),
            ("accept [::1]/:80", PolicyErrorKind::BadPrefix("".into())),
            (
                "accept [::1]/129:80",
                PolicyErrorKind::BadPrefix("129".into()),
            ),
            ("accept */8:80", PolicyErrorKind::BadPrefix("8".into())),
            ("accept 1.2.3.4:0", PolicyErrorKind::BadPorts("0".into())),
            (
                "accept 1.2.3.4:65536",
                PolicyErrorKind::BadPorts("65536".into()),
            ),
            (
                "accept 1.2.3.4:90-80",
                PolicyErrorKind::BadPorts("90-80".into()),
            ),
            (
                "accept 1.2.3.4:-80",
                PolicyErrorKind::BadPorts("-80".into()),
            ),
            ("accept 1.2.3.4:", PolicyErrorKind::BadPorts("".into())),
            (
                "accept [::1:80",
                PolicyErrorKind::BadAddress("[::1:80".into()),
            ),
            (
                "accept [::1]",
                PolicyErrorKind::MissingPorts("[::1]".into()),
            ),
            (
                "accept6 1.2.3.4:80",
                PolicyErrorKind::Ipv4InIpv6Rule("1.2.3.4:80".into()),
            ),
            (
                "accept6 *4:80",
                PolicyErrorKind::Ipv4InIpv6Rule("*4:80".into()),
            ),
            ("accept ::1", PolicyErrorKind::BadAddress(":".into())),
            ("accept *:*,", PolicyErrorKind::UnknownAction("".into())),
        ];
        for (line, want) in cases {
            let text = format!("accept *:443\n{line}\n");
            let e = err(&text);
            assert_eq!((e.line, &e.kind), (2, want), "{line:?}");
        }
    }

    #[test]
    fn hostile_text_never_panics() {
        for text in [
            "\u{0}",
            "accept \u{feff}:*",
            "accept [:*",
            "accept []:*",
            "accept ]:*",
            "accept 1.2.3.4/:*",
            "exitpolicyaccept *:*",
            "accept 999.1.1.1:1",
            "accept [::1]/:1",
            "accept 1.2.3.4/18446744073709551616:1",
        ] {
            let _ = ExitPolicy::parse(text);
        }
    }
}
