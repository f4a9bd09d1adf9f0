//! Repliable and reply message bodies (after the NymMessage type tag).
#![no_main]
use libfuzzer_sys::fuzz_target;
use nymd_proto::replies::{RepliableMessage, ReplyMessage};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = RepliableMessage::from_bytes(data) {
        // SURB-only variants tolerate trailing bytes, and a V2 list whose
        // hop count gives full keys cannot be written back: compare values.
        if let Ok(bytes) = m.to_bytes() {
            assert_eq!(bytes.len(), m.serialized_len());
            assert_eq!(RepliableMessage::from_bytes(&bytes).as_ref(), Ok(&m));
        }
    }
    if let Ok(m) = ReplyMessage::from_bytes(data) {
        let bytes = m.to_bytes();
        assert_eq!(bytes, data);
        assert_eq!(bytes.len(), m.serialized_len());
    }
});
