//! Packet sizes, fragment ids and key-rotation bytes against
//! `nym-sphinx-params` / `nym-sphinx-acknowledgements`.

use nym_sphinx_params::PacketSize as NymPacketSize;
use nymd_proto::params::{self, PacketSize};

fn theirs(ours: PacketSize) -> NymPacketSize {
    match ours {
        PacketSize::Regular => NymPacketSize::RegularPacket,
        PacketSize::Ack => NymPacketSize::AckPacket,
        PacketSize::Extended32 => NymPacketSize::ExtendedPacket32,
        PacketSize::Extended8 => NymPacketSize::ExtendedPacket8,
        PacketSize::Extended16 => NymPacketSize::ExtendedPacket16,
    }
}

#[test]
#[allow(deprecated)] // Nym marks the outfox sizes deprecated.
fn packet_sizes_and_tags_match() {
    for ours in PacketSize::ALL {
        let t = theirs(ours);
        assert_eq!(ours.size(), t.size(), "{ours:?} size");
        assert_eq!(ours.payload_size(), t.payload_size(), "{ours:?} payload");
        assert_eq!(
            ours.plaintext_size(),
            t.plaintext_size(),
            "{ours:?} plaintext"
        );
        assert_eq!(ours.tag(), t as u8, "{ours:?} tag");
        assert_eq!(
            NymPacketSize::try_from(ours.tag()).expect("Nym knows our tag"),
            t
        );
        assert_eq!(
            NymPacketSize::get_type(ours.size()).expect("Nym knows our length"),
            t
        );
        assert_eq!(PacketSize::from_len(t.size()), Ok(ours));
        assert_eq!(t.header_size(), params::HEADER_SIZE);
        assert_eq!(t.payload_overhead(), params::PAYLOAD_OVERHEAD);
    }
    // Every non-outfox tag Nym knows, we know; outfox (6, 7) we reject.
    for tag in 0..=255u8 {
        match NymPacketSize::try_from(tag) {
            Ok(NymPacketSize::OutfoxRegularPacket) | Ok(NymPacketSize::OutfoxAckPacket) => {
                assert!(PacketSize::from_tag(tag).is_err())
            }
            Ok(t) => assert_eq!(PacketSize::from_tag(tag).map(theirs), Ok(t)),
            Err(_) => assert!(PacketSize::from_tag(tag).is_err(), "tag {tag}"),
        }
    }
}

#[test]
fn fragment_id_bytes_match() {
    use nym_sphinx_chunking::fragment::FragmentIdentifier;
    for (set_id, position) in [(1i32, 0u8), (12345, 7), (i32::MAX, 255), (0, 0), (-5, 3)] {
        let ours = params::FragmentId { set_id, position };
        let t = FragmentIdentifier::try_from_bytes(ours.to_bytes());
        if set_id < 0 {
            // Nym refuses negative set ids when reading an ack's fragment id.
            assert!(t.is_err(), "{set_id}/{position}");
            continue;
        }
        let t = t.unwrap_or_else(|e| panic!("Nym refuses {set_id}/{position}: {e:?}"));
        assert_eq!(t.to_bytes(), ours.to_bytes(), "{set_id}/{position}");
        assert_eq!(params::FragmentId::from_bytes(t.to_bytes()), ours);
    }
    assert_eq!(params::FRAGMENT_ID_SIZE, nym_sphinx_params::FRAG_ID_LEN);
}
