//! Query bodies: what a tool asks a network requester about itself, and the
//! answers (spec §3.1 Query, §3.2 Query response, §3.3).
//!
//! Nym encodes them with bincode 1 (big-endian, variable-length integers,
//! trailing bytes rejected). Only the few shapes below are needed, so this
//! module reads and writes them by hand:
//! - an integer ≤ 250 is one byte; larger ones are a marker (`0xFB` u16,
//!   `0xFC` u32, `0xFD` u64) and the value big-endian. Variant indices,
//!   string and list lengths and `u16` fields use this form;
//! - a bool is one byte, 0 or 1; an option is `0x00`, or `0x01` and the value;
//! - a string is its length and UTF-8 bytes.
//!
//! Decoding never allocates more than the input holds: a length is checked
//! against the bytes left before anything is copied.

/// What a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryRequest {
    /// Whether the NR runs as an open proxy.
    OpenProxy,
    /// Its free-text description.
    Description,
    /// Its exit policy.
    ExitPolicy,
}

/// A network requester's answer to a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryResponse {
    /// Answer to [`QueryRequest::OpenProxy`].
    OpenProxy(bool),
    /// Answer to [`QueryRequest::Description`].
    Description(String),
    /// Answer to [`QueryRequest::ExitPolicy`].
    ExitPolicy {
        /// Whether the NR filters by an exit policy.
        enabled: bool,
        /// Where the policy was fetched from (empty for an open proxy).
        upstream: String,
        /// The rules, first match wins.
        policy: Option<Vec<PolicyRule>>,
    },
    /// The NR could not answer.
    Error {
        /// Its explanation.
        message: String,
    },
}

/// One exit-policy rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRule {
    /// What happens to a matching destination.
    pub action: PolicyAction,
    /// The address pattern as text: `*`, `*4`, `*6`, `a.b.c.d/m` or
    /// `<ipv6>/m`. Carried as text on the wire; not checked here.
    pub ip_pattern: String,
    /// First port of the range (inclusive).
    pub port_start: u16,
    /// Last port of the range (inclusive); all ports is `1..=65535`.
    pub port_end: u16,
}

/// An exit-policy rule's action, in wire order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyAction {
    /// Accept on IPv4 and IPv6.
    Accept,
    /// Reject on IPv4 and IPv6.
    Reject,
    /// Accept on IPv6 only.
    Accept6,
    /// Reject on IPv6 only.
    Reject6,
}

/// Why a query body could not be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    /// The body stops inside a value.
    #[error("query body ends early")]
    Truncated,
    /// An integer starts with a byte that is no valid marker (`0xFE`, `0xFF`).
    #[error("invalid integer marker {0:#04x} in query body")]
    BadInteger(u8),
    /// An enum variant index outside the known ones.
    #[error("unknown {what} variant {index} in query body")]
    UnknownVariant {
        /// Which enum.
        what: &'static str,
        /// The index read.
        index: u64,
    },
    /// A port above 65535.
    #[error("port {0} in query body does not fit in 16 bits")]
    PortTooLarge(u64),
    /// A bool byte other than 0 or 1.
    #[error("invalid bool byte {0:#04x} in query body")]
    BadBool(u8),
    /// An option tag other than 0 or 1.
    #[error("invalid option tag {0:#04x} in query body")]
    BadOption(u8),
    /// A string that is not UTF-8.
    #[error("string in query body is not UTF-8")]
    NotUtf8,
    /// Bytes after a complete body (bincode rejects them).
    #[error("{0} unexpected bytes after the query body")]
    TrailingBytes(usize),
}

impl QueryRequest {
    /// The body bytes.
    pub fn encode(self, out: &mut Vec<u8>) {
        out.push(match self {
            Self::OpenProxy => 0,
            Self::Description => 1,
            Self::ExitPolicy => 2,
        });
    }

    /// Read a whole body.
    pub fn decode(bytes: &[u8]) -> Result<Self, QueryError> {
        let mut r = Reader(bytes);
        let query = match r.integer()? {
            0 => Self::OpenProxy,
            1 => Self::Description,
            2 => Self::ExitPolicy,
            index => {
                return Err(QueryError::UnknownVariant {
                    what: "query",
                    index,
                })
            }
        };
        r.finish()?;
        Ok(query)
    }
}

impl QueryResponse {
    /// The body bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::OpenProxy(open) => {
                out.push(0);
                out.push(u8::from(*open));
            }
            Self::Description(text) => {
                out.push(1);
                put_string(out, text);
            }
            Self::ExitPolicy {
                enabled,
                upstream,
                policy,
            } => {
                out.push(2);
                out.push(u8::from(*enabled));
                put_string(out, upstream);
                match policy {
                    None => out.push(0),
                    Some(rules) => {
                        out.push(1);
                        put_integer(out, rules.len() as u64);
                        for rule in rules {
                            out.push(rule.action as u8);
                            put_string(out, &rule.ip_pattern);
                            put_integer(out, rule.port_start.into());
                            put_integer(out, rule.port_end.into());
                        }
                    }
                }
            }
            Self::Error { message } => {
                out.push(3);
                put_string(out, message);
            }
        }
    }

    /// Read a whole body.
    pub fn decode(bytes: &[u8]) -> Result<Self, QueryError> {
        let mut r = Reader(bytes);
        let response = match r.integer()? {
            0 => Self::OpenProxy(r.bool()?),
            1 => Self::Description(r.string()?),
            2 => {
                let enabled = r.bool()?;
                let upstream = r.string()?;
                let policy = match r.byte()? {
                    0 => None,
                    1 => Some(r.rules()?),
                    tag => return Err(QueryError::BadOption(tag)),
                };
                Self::ExitPolicy {
                    enabled,
                    upstream,
                    policy,
                }
            }
            3 => Self::Error {
                message: r.string()?,
            },
            index => {
                return Err(QueryError::UnknownVariant {
                    what: "query response",
                    index,
                })
            }
        };
        r.finish()?;
        Ok(response)
    }
}

fn put_integer(out: &mut Vec<u8>, v: u64) {
    if v <= 250 {
        out.push(v as u8);
    } else if let Ok(v) = u16::try_from(v) {
        out.push(0xFB);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = u32::try_from(v) {
        out.push(0xFC);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(0xFD);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    put_integer(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The unread rest of a body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], QueryError> {
        if n > self.0.len() {
            return Err(QueryError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, QueryError> {
        Ok(self.take(1)?[0])
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], QueryError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// A variable-length integer. Like bincode, a value written longer than
    /// needed is accepted.
    fn integer(&mut self) -> Result<u64, QueryError> {
        Ok(match self.byte()? {
            b @ 0..=250 => b.into(),
            0xFB => u16::from_be_bytes(self.be()?).into(),
            0xFC => u32::from_be_bytes(self.be()?).into(),
            0xFD => u64::from_be_bytes(self.be()?),
            b => return Err(QueryError::BadInteger(b)),
        })
    }

    fn bool(&mut self) -> Result<bool, QueryError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(QueryError::BadBool(b)),
        }
    }

    fn string(&mut self) -> Result<String, QueryError> {
        let len = usize::try_from(self.integer()?).map_err(|_| QueryError::Truncated)?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| QueryError::NotUtf8)
    }

    fn port(&mut self) -> Result<u16, QueryError> {
        let v = self.integer()?;
        u16::try_from(v).map_err(|_| QueryError::PortTooLarge(v))
    }

    /// A rule list. The count is not trusted for allocation: each rule takes
    /// at least four bytes, so a false count runs out of input quickly.
    fn rules(&mut self) -> Result<Vec<PolicyRule>, QueryError> {
        let count = self.integer()?;
        let mut rules = Vec::new();
        for _ in 0..count {
            let action = match self.integer()? {
                0 => PolicyAction::Accept,
                1 => PolicyAction::Reject,
                2 => PolicyAction::Accept6,
                3 => PolicyAction::Reject6,
                index => {
                    return Err(QueryError::UnknownVariant {
                        what: "policy action",
                        index,
                    })
                }
            };
            rules.push(PolicyRule {
                action,
                ip_pattern: self.string()?,
                port_start: self.port()?,
                port_end: self.port()?,
            });
        }
        Ok(rules)
    }

    fn finish(self) -> Result<(), QueryError> {
        match self.0.len() {
            0 => Ok(()),
            n => Err(QueryError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn encoded(r: &QueryResponse) -> Vec<u8> {
        let mut out = Vec::new();
        r.encode(&mut out);
        out
    }

    /// Nym's own vectors (spec §8.0): `[0]`, `[1]` for queries; answers
    /// OpenProxy(true), Description("foo"), Error, and an open ExitPolicy.
    #[test]
    fn nym_vectors() {
        for (q, b) in [
            (QueryRequest::OpenProxy, 0u8),
            (QueryRequest::Description, 1),
        ] {
            let mut out = Vec::new();
            q.encode(&mut out);
            assert_eq!(out, [b]);
            assert_eq!(QueryRequest::decode(&[b]), Ok(q));
        }
        let cases: Vec<(QueryResponse, Vec<u8>)> = vec![
            (QueryResponse::OpenProxy(true), vec![0, 1]),
            (
                QueryResponse::Description("foo".into()),
                b"\x01\x03foo".to_vec(),
            ),
            (
                QueryResponse::Error {
                    message: "this is an error".into(),
                },
                b"\x03\x10this is an error".to_vec(),
            ),
            (
                QueryResponse::ExitPolicy {
                    enabled: false,
                    upstream: "http://foo.bar".into(),
                    policy: Some(vec![PolicyRule {
                        action: PolicyAction::Accept,
                        ip_pattern: "*".into(),
                        port_start: 1,
                        port_end: 65535,
                    }]),
                },
                b"\x02\x00\x0ehttp://foo.bar\x01\x01\x00\x01*\x01\xfb\xff\xff".to_vec(),
            ),
        ];
        for (r, b) in cases {
            assert_eq!(encoded(&r), b, "{r:?}");
            assert_eq!(QueryResponse::decode(&b), Ok(r));
        }
    }

    #[test]
    fn rejects_bad_bodies() {
        use QueryError::*;
        assert_eq!(QueryRequest::decode(&[]), Err(Truncated));
        assert_eq!(QueryRequest::decode(&[0, 0]), Err(TrailingBytes(1)));
        assert!(matches!(
            QueryRequest::decode(&[3]),
            Err(UnknownVariant { index: 3, .. })
        ));
        assert_eq!(QueryResponse::decode(&[0, 2]), Err(BadBool(2)));
        assert_eq!(QueryResponse::decode(&[1, 0xFE]), Err(BadInteger(0xFE)));
        assert_eq!(QueryResponse::decode(&[1, 2, 0xC3]), Err(Truncated));
        assert_eq!(QueryResponse::decode(&[1, 1, 0xFF]), Err(NotUtf8));
        assert_eq!(QueryResponse::decode(&[2, 1, 0, 2]), Err(BadOption(2)));
        // A huge length or rule count fails on the input, not on allocation.
        let mut huge = vec![1, 0xFD];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(QueryResponse::decode(&huge), Err(Truncated));
        let mut many = vec![2, 1, 0, 1, 0xFD];
        many.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(QueryResponse::decode(&many), Err(Truncated));
        assert_eq!(
            QueryResponse::decode(&[2, 1, 0, 1, 1, 0, 0, 0xFC, 0, 1, 0, 0, 1]),
            Err(PortTooLarge(65536))
        );
        // Longer-than-needed integers are accepted, as bincode does.
        assert_eq!(
            QueryResponse::decode(&[0xFB, 0, 0, 1]),
            Ok(QueryResponse::OpenProxy(true))
        );
    }

    fn any_response() -> impl Strategy<Value = QueryResponse> {
        let rule =
            (0u8..4, ".{0,8}", any::<u16>(), any::<u16>()).prop_map(|(a, p, s, e)| PolicyRule {
                action: [
                    PolicyAction::Accept,
                    PolicyAction::Reject,
                    PolicyAction::Accept6,
                    PolicyAction::Reject6,
                ][usize::from(a)],
                ip_pattern: p,
                port_start: s,
                port_end: e,
            });
        prop_oneof![
            any::<bool>().prop_map(QueryResponse::OpenProxy),
            ".{0,300}".prop_map(QueryResponse::Description),
            (
                any::<bool>(),
                ".{0,20}",
                proptest::option::of(proptest::collection::vec(rule, 0..5))
            )
                .prop_map(|(enabled, upstream, policy)| QueryResponse::ExitPolicy {
                    enabled,
                    upstream,
                    policy
                }),
            ".{0,20}".prop_map(|message| QueryResponse::Error { message }),
        ]
    }

    proptest! {
        #[test]
        fn response_round_trip(r in any_response()) {
            prop_assert_eq!(QueryResponse::decode(&encoded(&r)), Ok(r));
        }

        #[test]
        fn random_bodies_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = QueryRequest::decode(&b);
            let _ = QueryResponse::decode(&b);
        }
    }

    #[test]
    fn integers_use_the_shortest_form() {
        for (v, len) in [(250u64, 1), (251, 3), (65535, 3), (65536, 5), (1 << 32, 9)] {
            let mut out = Vec::new();
            put_integer(&mut out, v);
            assert_eq!(out.len(), len, "{v}");
            assert_eq!(Reader(&out).integer(), Ok(v));
        }
    }
}
