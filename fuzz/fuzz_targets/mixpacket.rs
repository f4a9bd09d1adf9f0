//! ForwardSphinx v1 and v2 plaintexts (a client's forward request as the
//! gateway reads it). Parse → encode → parse must be the identity.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nymd_proto::mixpacket::{FrameVersion, MixPacket};

fuzz_target!(|data: &[u8]| {
    if let Ok(mp) = MixPacket::from_v1_bytes(data) {
        let again = MixPacket::from_v1_bytes(&mp.to_v1_bytes());
        assert_eq!(again.as_ref(), Ok(&mp));
        assert!(mp.packet_size().is_ok());
    }
    if let Ok(mp) = MixPacket::from_v2_bytes(data) {
        let again = MixPacket::from_v2_bytes(&mp.to_v2_bytes());
        assert_eq!(again.as_ref(), Ok(&mp));
        for v in [FrameVersion::V7, FrameVersion::V8] {
            assert!(mp.to_frame(v).is_ok());
        }
    }
});
