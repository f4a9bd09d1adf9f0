//! The inbox record format: a delivery as one journal record.

use nymd_proto::SenderTag;

use super::Delivery;

/// Header of an identity's inbox journal.
pub const INBOX_HEADER: &[u8] = b"nymd-inbox v1\n";

/// A delivery as an inbox record: `0 | data` or `1 | sender tag (16) | data`.
pub(crate) fn encode_delivery(d: &Delivery) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + d.data.len());
    match &d.sender_tag {
        None => out.push(0),
        Some(tag) => {
            out.push(1);
            out.extend_from_slice(&tag.0);
        }
    }
    out.extend_from_slice(&d.data);
    out
}

pub(crate) fn decode_delivery(bytes: &[u8]) -> Option<Delivery> {
    let (&kind, rest) = bytes.split_first()?;
    match kind {
        0 => Some(Delivery {
            data: rest.to_vec(),
            sender_tag: None,
        }),
        1 => {
            let tag: [u8; 16] = rest.get(..16)?.try_into().ok()?;
            Some(Delivery {
                data: rest.get(16..)?.to_vec(),
                sender_tag: Some(SenderTag(tag)),
            })
        }
        _ => None,
    }
}
