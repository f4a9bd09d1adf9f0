//! Reply SURBs as received inside a repliable message: parse, re-encode,
//! then use the SURB on a reply plaintext (`apply`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use nymd_proto::replies::ReplySurb;
use nymd_proto::PacketSize;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    if let Ok(surb) = ReplySurb::from_bytes(bytes) {
        assert_eq!(surb.to_bytes(), bytes);
        assert_eq!(ReplySurb::from_bytes(&surb.to_bytes()).as_ref(), Ok(&surb));
        let _ = surb.key_digest();
        let size = PacketSize::ALL[usize::from(pick) % PacketSize::ALL.len()];
        let plaintext = vec![pick; size.plaintext_size()];
        if let Ok((packet, first_hop)) = surb.clone().apply(&plaintext, size) {
            assert_eq!(packet.len(), size.size());
            assert_eq!(first_hop, surb.first_hop());
        }
        // Wrong plaintext length is an error, not a panic.
        assert!(surb.apply(&plaintext[1..], size).is_err());
    }
});
