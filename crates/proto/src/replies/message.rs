//! The bodies of repliable (tag 1) and reply (tag 2) messages, and the SURB
//! lists that repliable bodies carry.

use super::surb::{v2_reply_surb_len, ReplySurb, ReplySurbError, V1_REPLY_SURB_LEN};
use crate::address::{Recipient, RecipientError, SenderTag};
use crate::params::{KeyRotation, KeyRotationError, SphinxVersion};

/// Most SURBs accepted in (or written to) one list. The V2 count field is a
/// u16; the same cap applies to V1 lists so a hostile count cannot make us
/// reserve much.
pub const MAX_SURBS_PER_LIST: usize = u16::MAX as usize;
/// Length of a sender tag.
pub const SENDER_TAG_SIZE: usize = SenderTag::LEN;

/// Problems with repliable and reply message bodies.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ReplyError {
    /// Not enough bytes for the named part.
    #[error("message too short to read its {0}")]
    TooShort(&'static str),
    /// Unknown repliable content tag.
    #[error("{0} is not a valid content tag for a repliable message")]
    UnknownRepliableTag(u8),
    /// Unknown reply content tag.
    #[error("{0} is not a valid content tag for a reply message")]
    UnknownReplyTag(u8),
    /// Bad key-rotation byte in a V2 list.
    #[error(transparent)]
    KeyRotation(#[from] KeyRotationError),
    /// Bad recipient in a SURB request.
    #[error("malformed recipient in SURB request: {0}")]
    Recipient(#[from] RecipientError),
    /// A SURB request body that is not exactly 100 bytes.
    #[error("SURB request body has {0} bytes, expected 100")]
    SurbRequestLength(usize),
    /// A SURB inside a list is malformed.
    #[error("malformed reply SURB {index} in list: {source}")]
    Surb {
        /// Position in the list.
        index: usize,
        /// What was wrong.
        source: ReplySurbError,
    },
    /// A list count above [`MAX_SURBS_PER_LIST`].
    #[error("{count} reply SURBs in one list (at most {max})")]
    TooManySurbs {
        /// Count given.
        count: usize,
        /// Cap.
        max: usize,
    },
    /// A SURB that does not fit the list format it is being written into
    /// (V1 needs 4-hop version-258 SURBs; V2 needs version-259 SURBs that all
    /// have the same number of hops).
    #[error("reply SURB {index} does not fit a {format} list")]
    SurbFormat {
        /// Position in the list.
        index: usize,
        /// "V1" or "V2".
        format: &'static str,
    },
}

/// Content tag of [`RepliableContent::DataV1`].
pub const CONTENT_DATA_V1: u8 = 0;
/// Content tag of [`RepliableContent::AdditionalSurbsV1`].
pub const CONTENT_ADDITIONAL_SURBS_V1: u8 = 1;
/// Content tag of [`RepliableContent::HeartbeatV1`].
pub const CONTENT_HEARTBEAT_V1: u8 = 2;
/// Content tag of [`RepliableContent::DataV2`].
pub const CONTENT_DATA_V2: u8 = 3;
/// Content tag of [`RepliableContent::AdditionalSurbsV2`].
pub const CONTENT_ADDITIONAL_SURBS_V2: u8 = 4;
/// Content tag of [`RepliableContent::HeartbeatV2`].
pub const CONTENT_HEARTBEAT_V2: u8 = 5;
/// Reply content tag of [`ReplyMessage::Data`].
pub const REPLY_DATA: u8 = 0;
/// Reply content tag of [`ReplyMessage::SurbRequest`].
pub const REPLY_SURB_REQUEST: u8 = 1;

/// The two SURB list encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SurbListFormat {
    /// `count u32 BE || count × 1164`: 4-hop version-258 SURBs.
    V1,
    /// `count u16 BE || hops || key_rotation || count × (396 + 16·hops)`:
    /// version-259 SURBs.
    V2,
}

impl SurbListFormat {
    /// The list format that goes with SURBs of a Sphinx version.
    pub fn for_version(version: SphinxVersion) -> Self {
        match version {
            SphinxVersion::Legacy258 => SurbListFormat::V1,
            SphinxVersion::Seeds259 => SurbListFormat::V2,
        }
    }

    /// The format matching a list of SURBs: V1 when they carry full keys, V2
    /// when they carry seeds or the list is empty.
    pub fn for_surbs(surbs: &[ReplySurb]) -> Self {
        match surbs.first() {
            Some(s) if !s.uses_key_seeds() => SurbListFormat::V1,
            _ => SurbListFormat::V2,
        }
    }
}

fn list_len(surbs: &[ReplySurb]) -> usize {
    4 + surbs.iter().map(ReplySurb::serialized_len).sum::<usize>()
}

fn write_list(
    format: SurbListFormat,
    surbs: &[ReplySurb],
    out: &mut Vec<u8>,
) -> Result<(), ReplyError> {
    if surbs.len() > MAX_SURBS_PER_LIST {
        return Err(ReplyError::TooManySurbs {
            count: surbs.len(),
            max: MAX_SURBS_PER_LIST,
        });
    }
    match format {
        SurbListFormat::V1 => {
            if let Some(index) = surbs
                .iter()
                .position(|s| s.serialized_len() != V1_REPLY_SURB_LEN || s.uses_key_seeds())
            {
                return Err(ReplyError::SurbFormat {
                    index,
                    format: "V1",
                });
            }
            out.extend_from_slice(&(surbs.len() as u32).to_be_bytes());
        }
        SurbListFormat::V2 => {
            let hops = surbs.first().map_or(0, ReplySurb::hops);
            let rotation = surbs
                .first()
                .map_or(KeyRotation::Unknown, |s| s.key_rotation());
            let hops_u8 = u8::try_from(hops).ok();
            if let Some(index) = surbs.iter().position(|s| {
                !s.uses_key_seeds()
                    || s.hops() != hops
                    || hops_u8.is_none_or(|h| s.serialized_len() != v2_reply_surb_len(h))
            }) {
                return Err(ReplyError::SurbFormat {
                    index,
                    format: "V2",
                });
            }
            out.extend_from_slice(&(surbs.len() as u16).to_be_bytes());
            out.push(hops_u8.unwrap_or(0));
            out.push(rotation.to_byte());
        }
    }
    for s in surbs {
        s.write_to(out);
    }
    Ok(())
}

/// Parse a SURB list at the start of `b`; returns the SURBs and the bytes
/// used.
fn parse_list(format: SurbListFormat, b: &[u8]) -> Result<(Vec<ReplySurb>, usize), ReplyError> {
    if b.len() < 4 {
        return Err(ReplyError::TooShort("reply SURB list header"));
    }
    let (count, surb_len, rotation) = match format {
        SurbListFormat::V1 => (
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize,
            V1_REPLY_SURB_LEN,
            KeyRotation::Unknown,
        ),
        SurbListFormat::V2 => (
            usize::from(u16::from_be_bytes([b[0], b[1]])),
            v2_reply_surb_len(b[2]),
            KeyRotation::from_byte(b[3])?,
        ),
    };
    if count > MAX_SURBS_PER_LIST {
        return Err(ReplyError::TooManySurbs {
            count,
            max: MAX_SURBS_PER_LIST,
        });
    }
    let body = &b[4..];
    let need = count
        .checked_mul(surb_len)
        .ok_or(ReplyError::TooShort("reply SURBs"))?;
    if body.len() < need {
        return Err(ReplyError::TooShort("reply SURBs"));
    }
    let surbs = body[..need]
        .chunks_exact(surb_len.max(1))
        .take(count)
        .enumerate()
        .map(|(index, chunk)| {
            ReplySurb::from_bytes(chunk)
                .map(|s| s.with_key_rotation(rotation))
                .map_err(|source| ReplyError::Surb { index, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((surbs, 4 + need))
}

/// What a repliable message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepliableContent {
    /// Tag 0: V1 SURB list, then the message.
    DataV1 {
        /// Application data.
        message: Vec<u8>,
        /// Reply SURBs for the recipient.
        surbs: Vec<ReplySurb>,
    },
    /// Tag 1: V1 SURB list sent in answer to a SURB request.
    AdditionalSurbsV1 {
        /// Reply SURBs.
        surbs: Vec<ReplySurb>,
    },
    /// Tag 2: V1 SURB list sent unprompted.
    HeartbeatV1 {
        /// Reply SURBs.
        surbs: Vec<ReplySurb>,
    },
    /// Tag 3: V2 SURB list, then the message.
    DataV2 {
        /// Application data.
        message: Vec<u8>,
        /// Reply SURBs for the recipient.
        surbs: Vec<ReplySurb>,
    },
    /// Tag 4: V2 SURB list sent in answer to a SURB request.
    AdditionalSurbsV2 {
        /// Reply SURBs.
        surbs: Vec<ReplySurb>,
    },
    /// Tag 5: V2 SURB list sent unprompted.
    HeartbeatV2 {
        /// Reply SURBs.
        surbs: Vec<ReplySurb>,
    },
}

impl RepliableContent {
    /// The content tag byte.
    pub fn tag(&self) -> u8 {
        match self {
            RepliableContent::DataV1 { .. } => CONTENT_DATA_V1,
            RepliableContent::AdditionalSurbsV1 { .. } => CONTENT_ADDITIONAL_SURBS_V1,
            RepliableContent::HeartbeatV1 { .. } => CONTENT_HEARTBEAT_V1,
            RepliableContent::DataV2 { .. } => CONTENT_DATA_V2,
            RepliableContent::AdditionalSurbsV2 { .. } => CONTENT_ADDITIONAL_SURBS_V2,
            RepliableContent::HeartbeatV2 { .. } => CONTENT_HEARTBEAT_V2,
        }
    }

    /// The list format of this variant.
    pub fn list_format(&self) -> SurbListFormat {
        match self {
            RepliableContent::DataV1 { .. }
            | RepliableContent::AdditionalSurbsV1 { .. }
            | RepliableContent::HeartbeatV1 { .. } => SurbListFormat::V1,
            _ => SurbListFormat::V2,
        }
    }

    /// The attached SURBs.
    pub fn surbs(&self) -> &[ReplySurb] {
        match self {
            RepliableContent::DataV1 { surbs, .. }
            | RepliableContent::AdditionalSurbsV1 { surbs }
            | RepliableContent::HeartbeatV1 { surbs }
            | RepliableContent::DataV2 { surbs, .. }
            | RepliableContent::AdditionalSurbsV2 { surbs }
            | RepliableContent::HeartbeatV2 { surbs } => surbs,
        }
    }

    /// The application data (empty for SURB-only variants).
    pub fn data(&self) -> &[u8] {
        match self {
            RepliableContent::DataV1 { message, .. } | RepliableContent::DataV2 { message, .. } => {
                message
            }
            _ => &[],
        }
    }

    /// Take the application data (empty for SURB-only variants).
    pub fn into_data(self) -> Vec<u8> {
        match self {
            RepliableContent::DataV1 { message, .. } | RepliableContent::DataV2 { message, .. } => {
                message
            }
            _ => Vec::new(),
        }
    }

    /// Take the SURBs and the data.
    pub fn into_parts(self) -> (Vec<ReplySurb>, Vec<u8>) {
        match self {
            RepliableContent::DataV1 { message, surbs }
            | RepliableContent::DataV2 { message, surbs } => (surbs, message),
            RepliableContent::AdditionalSurbsV1 { surbs }
            | RepliableContent::HeartbeatV1 { surbs }
            | RepliableContent::AdditionalSurbsV2 { surbs }
            | RepliableContent::HeartbeatV2 { surbs } => (surbs, Vec::new()),
        }
    }

    fn serialized_len(&self) -> usize {
        list_len(self.surbs()) + self.data().len()
    }

    fn write_to(&self, out: &mut Vec<u8>) -> Result<(), ReplyError> {
        write_list(self.list_format(), self.surbs(), out)?;
        out.extend_from_slice(self.data());
        Ok(())
    }

    fn parse(tag: u8, b: &[u8]) -> Result<Self, ReplyError> {
        let format = match tag {
            CONTENT_DATA_V1 | CONTENT_ADDITIONAL_SURBS_V1 | CONTENT_HEARTBEAT_V1 => {
                SurbListFormat::V1
            }
            CONTENT_DATA_V2 | CONTENT_ADDITIONAL_SURBS_V2 | CONTENT_HEARTBEAT_V2 => {
                SurbListFormat::V2
            }
            other => return Err(ReplyError::UnknownRepliableTag(other)),
        };
        let (surbs, used) = parse_list(format, b)?;
        // Trailing bytes after a SURB-only list are tolerated, as Nym does.
        let rest = || b.get(used..).unwrap_or_default().to_vec();
        Ok(match tag {
            CONTENT_DATA_V1 => RepliableContent::DataV1 {
                message: rest(),
                surbs,
            },
            CONTENT_ADDITIONAL_SURBS_V1 => RepliableContent::AdditionalSurbsV1 { surbs },
            CONTENT_HEARTBEAT_V1 => RepliableContent::HeartbeatV1 { surbs },
            CONTENT_DATA_V2 => RepliableContent::DataV2 {
                message: rest(),
                surbs,
            },
            CONTENT_ADDITIONAL_SURBS_V2 => RepliableContent::AdditionalSurbsV2 { surbs },
            _ => RepliableContent::HeartbeatV2 { surbs },
        })
    }
}

/// Body of a repliable message (type tag 1): from an anonymous sender, with
/// reply SURBs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepliableMessage {
    /// Names the anonymous sender to the recipient.
    pub sender_tag: SenderTag,
    /// What it carries.
    pub content: RepliableContent,
}

impl RepliableMessage {
    /// Data with SURBs; the list format follows the SURBs (V1 for
    /// version-258 SURBs, otherwise V2, which a stock 2026.9 client sends).
    pub fn new_data(sender_tag: SenderTag, message: Vec<u8>, surbs: Vec<ReplySurb>) -> Self {
        let content = match SurbListFormat::for_surbs(&surbs) {
            SurbListFormat::V1 => RepliableContent::DataV1 { message, surbs },
            SurbListFormat::V2 => RepliableContent::DataV2 { message, surbs },
        };
        Self {
            sender_tag,
            content,
        }
    }

    /// SURBs sent in answer to a request; format chosen as in
    /// [`RepliableMessage::new_data`].
    pub fn new_additional_surbs(sender_tag: SenderTag, surbs: Vec<ReplySurb>) -> Self {
        let content = match SurbListFormat::for_surbs(&surbs) {
            SurbListFormat::V1 => RepliableContent::AdditionalSurbsV1 { surbs },
            SurbListFormat::V2 => RepliableContent::AdditionalSurbsV2 { surbs },
        };
        Self {
            sender_tag,
            content,
        }
    }

    /// Length of the body.
    pub fn serialized_len(&self) -> usize {
        SENDER_TAG_SIZE + 1 + self.content.serialized_len()
    }

    /// `sender_tag || content_tag || content`. Fails if the SURBs do not fit
    /// the variant's list format or are too many.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ReplyError> {
        let mut out = Vec::with_capacity(self.serialized_len());
        self.write_to(&mut out)?;
        Ok(out)
    }

    pub(crate) fn write_to(&self, out: &mut Vec<u8>) -> Result<(), ReplyError> {
        out.extend_from_slice(&self.sender_tag.0);
        out.push(self.content.tag());
        self.content.write_to(out)
    }

    /// Parse a body.
    pub fn from_bytes(b: &[u8]) -> Result<Self, ReplyError> {
        if b.len() < SENDER_TAG_SIZE + 1 {
            return Err(ReplyError::TooShort("sender tag and content tag"));
        }
        let mut tag = [0u8; SENDER_TAG_SIZE];
        tag.copy_from_slice(&b[..SENDER_TAG_SIZE]);
        let content = RepliableContent::parse(b[SENDER_TAG_SIZE], &b[SENDER_TAG_SIZE + 1..])?;
        Ok(Self {
            sender_tag: SenderTag(tag),
            content,
        })
    }
}

/// Body of a reply (type tag 2), sent through a reply SURB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyMessage {
    /// Content tag 0: application data.
    Data(Vec<u8>),
    /// Content tag 1: the replier asks the original sender for more SURBs.
    SurbRequest {
        /// The replier's own address (so the request can be answered).
        recipient: Box<Recipient>,
        /// How many SURBs it wants.
        amount: u32,
    },
}

impl ReplyMessage {
    /// The content tag byte.
    pub fn tag(&self) -> u8 {
        match self {
            ReplyMessage::Data(_) => REPLY_DATA,
            ReplyMessage::SurbRequest { .. } => REPLY_SURB_REQUEST,
        }
    }

    /// Length of the body.
    pub fn serialized_len(&self) -> usize {
        1 + match self {
            ReplyMessage::Data(d) => d.len(),
            ReplyMessage::SurbRequest { .. } => Recipient::LEN + 4,
        }
    }

    /// `content_tag || content`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.serialized_len());
        self.write_to(&mut out);
        out
    }

    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        out.push(self.tag());
        match self {
            ReplyMessage::Data(d) => out.extend_from_slice(d),
            ReplyMessage::SurbRequest { recipient, amount } => {
                out.extend_from_slice(&recipient.to_bytes());
                out.extend_from_slice(&amount.to_be_bytes());
            }
        }
    }

    /// Parse a body. Empty data after tag 0 is accepted (Nym's parser rejects
    /// it, so do not send empty replies to Nym clients).
    pub fn from_bytes(b: &[u8]) -> Result<Self, ReplyError> {
        let (&tag, body) = b
            .split_first()
            .ok_or(ReplyError::TooShort("reply content tag"))?;
        match tag {
            REPLY_DATA => Ok(ReplyMessage::Data(body.to_vec())),
            REPLY_SURB_REQUEST => {
                if body.len() != Recipient::LEN + 4 {
                    return Err(ReplyError::SurbRequestLength(body.len()));
                }
                let recipient = Recipient::from_bytes(&body[..Recipient::LEN])?;
                let a = &body[Recipient::LEN..];
                Ok(ReplyMessage::SurbRequest {
                    recipient: Box::new(recipient),
                    amount: u32::from_be_bytes([a[0], a[1], a[2], a[3]]),
                })
            }
            other => Err(ReplyError::UnknownReplyTag(other)),
        }
    }
}
