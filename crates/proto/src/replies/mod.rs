//! Reply SURBs and the bodies of repliable (tag 1) and reply (tag 2) messages.
//!
//! A [`ReplySurb`] is `surb_encryption_key(16) || SURB`, where the SURB is
//! `sphinx header(348) || first hop(32) || key material`: 16-byte seeds per hop
//! for Sphinx version 259 (396 + 16·hops bytes in all, 460 for 4 hops) or
//! 192-byte payload keys per hop for version 258 (1164 bytes for 4 hops).
//!
//! Repliable body: `sender_tag(16) || content_tag(1) || content`, content tags
//! 0 DataV1, 1 AdditionalSurbsV1, 2 HeartbeatV1, 3 DataV2, 4
//! AdditionalSurbsV2, 5 HeartbeatV2. V1 SURB list: `count u32 BE || count ×
//! 1164 bytes`. V2 list: `count u16 BE || hops u8 || key_rotation u8 || count ×
//! (396 + 16·hops)`. Data variants append the message after the list.
//!
//! Reply body: `content_tag(1) || …`; 0 Data (the bytes), 1 SurbRequest
//! (`recipient(96) || amount u32 BE`).
//!
//! # Layout
//! - `surb.rs`: [`ReplySurb`], its key ([`SurbEncryptionKey`]), layout
//!   constants and errors ([`ReplySurbError`]).
//! - `message.rs`: the repliable and reply bodies ([`RepliableMessage`],
//!   [`ReplyMessage`]), their SURB lists and errors ([`ReplyError`]).
//! - `tests.rs`: the tests of both, which share their SURB fixtures.

mod message;
mod surb;

pub use message::{
    RepliableContent, RepliableMessage, ReplyError, ReplyMessage, SurbListFormat,
    CONTENT_ADDITIONAL_SURBS_V1, CONTENT_ADDITIONAL_SURBS_V2, CONTENT_DATA_V1, CONTENT_DATA_V2,
    CONTENT_HEARTBEAT_V1, CONTENT_HEARTBEAT_V2, MAX_SURBS_PER_LIST, REPLY_DATA, REPLY_SURB_REQUEST,
    SENDER_TAG_SIZE,
};
pub use surb::{
    sample_delays, v2_reply_surb_len, ReplySurb, ReplySurbError, SurbEncryptionKey,
    DEFAULT_SURB_HOPS, MAX_SURB_HOPS, PAYLOAD_KEY_SEED_SIZE, PAYLOAD_KEY_SIZE, REPLY_SURB_BASE_LEN,
    SURB_FIRST_HOP_SIZE, SURB_KEY_DIGEST_SIZE, SURB_KEY_SIZE, V1_REPLY_SURB_LEN, V1_SURB_HOPS,
};

#[cfg(test)]
mod tests;
