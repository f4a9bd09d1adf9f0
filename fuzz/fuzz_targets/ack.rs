//! What a client and a gateway do with the plaintext at the end of a path:
//! the gateway's final-hop split (SURB-ACK first hop, ack packet, message),
//! the client's classification and decryption of a pushed message, and ack
//! recognition with a fixed ack key.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nymd_proto::ack::{recognise_ack, split_final_hop, FinalHopDelivery};
use nymd_proto::keys::{AckKey, EncryptionKeyPair};
use nymd_proto::params::SURB_ACK_SIZE;
use nymd_proto::payload::{classify_pushed, decrypt_message};
use nymd_proto::{KeyRotation, PacketSize};

fuzz_target!(|data: &[u8]| {
    let ack_key = AckKey::from_bytes([4u8; 16]);
    let enc = EncryptionKeyPair::from_secret_bytes([6u8; 32]);
    if let Ok(id) = recognise_ack(&ack_key, data) {
        assert!(id.set_id >= 0);
    }
    let Some((&pick, plaintext)) = data.split_first() else {
        return;
    };
    let size = PacketSize::ALL[usize::from(pick) % PacketSize::ALL.len()];
    match split_final_hop(size, plaintext) {
        Ok(FinalHopDelivery::Ack(a)) => assert_eq!(a, plaintext),
        Ok(FinalHopDelivery::Message(split)) => {
            assert_eq!(split.ack_packet.len() + 19, SURB_ACK_SIZE);
            assert_eq!(split.message, &plaintext[SURB_ACK_SIZE..]);
            let mp = split.ack_mix_packet(KeyRotation::Odd);
            assert_eq!(mp.packet_size(), Ok(PacketSize::Ack));
            let _ = classify_pushed(split.message.len());
            let digest = [pick; 32];
            let mut store = |d: &[u8; 32]| (d == &digest).then_some([pick; 16]);
            if let Ok(dec) = decrypt_message(&enc, split.message, &mut store) {
                assert_eq!(dec.fragment.len() + 32, split.message.len());
            }
        }
        Err(_) => assert!(size != PacketSize::Ack),
    }
    let mut none = |_: &[u8; 32]| None;
    let _ = decrypt_message(&enc, plaintext, &mut none);
});
