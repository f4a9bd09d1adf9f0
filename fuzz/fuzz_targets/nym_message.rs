//! A reassembled message: unpad, then `NymMessage::from_bytes`. A parsed
//! message pads and unpads back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nymd_proto::chunking::{NymMessage, PaddedMessage};
use nymd_proto::PacketSize;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fuzz_target!(|data: &[u8]| {
    let _ = PaddedMessage::new(data.to_vec()).unpad();
    if let Ok(m) = NymMessage::from_bytes(data) {
        let Ok(bytes) = m.to_bytes() else {
            return;
        };
        assert_eq!(bytes.len(), m.serialized_len());
        assert_eq!(NymMessage::from_bytes(&bytes).as_ref(), Ok(&m));
        let cap = PacketSize::Regular.fragment_capacity();
        let padded = m.pad(cap).expect("pad");
        assert_eq!(padded.unpad().as_ref(), Ok(&m));
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let fragments = padded
            .split_into_fragments(&mut rng, cap)
            .expect("a padded message splits");
        assert_eq!(fragments.len(), m.required_packets(PacketSize::Regular));
        let mut joined = Vec::new();
        for f in fragments {
            assert_eq!(f.encoded_len(), cap);
            joined.extend_from_slice(f.payload());
        }
        assert_eq!(joined, padded.as_bytes());
    }
});
