//! Gateway binary frames under a fixed shared key: raw frames as both sides
//! open them, and (so the AEAD does not stop the fuzzer) the input sealed as
//! a frame whose plaintext is then parsed as the client's forward request
//! (ForwardSphinx v1/v2) or as a pushed message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nymd_proto::gateway::frames::{
    open_client_frame, open_gateway_frame, seal, seal_client_frame, seal_pushed_message,
};
use nymd_proto::gateway::{ClientFrameKind, GatewayFrameKind};
use nymd_proto::keys::GatewaySharedKey;
use nymd_proto::mixpacket::MixPacket;
use nymd_proto::payload::classify_pushed;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fuzz_target!(|data: &[u8]| {
    let key = GatewaySharedKey::from_bytes([5u8; 32]);
    let _ = open_client_frame(&key, data);
    let _ = open_gateway_frame(&key, data);

    let Some((&kind, plaintext)) = data.split_first() else {
        return;
    };
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let frame = seal(&mut rng, &key, kind, plaintext);
    match open_client_frame(&key, &frame) {
        Ok((k, p)) => {
            assert_eq!(k.to_byte(), kind);
            assert_eq!(p, plaintext);
            let parsed = match k {
                ClientFrameKind::ForwardSphinx => MixPacket::from_v1_bytes(&p),
                ClientFrameKind::ForwardSphinxV2 => MixPacket::from_v2_bytes(&p),
            };
            if let Ok(mp) = parsed {
                let again = seal_client_frame(&mut rng, &key, k, &mp.to_v2_bytes());
                let (_, p2) = open_client_frame(&key, &again).expect("own frame");
                assert_eq!(MixPacket::from_v2_bytes(&p2).ok(), Some(mp));
            }
        }
        Err(_) => assert!(
            ClientFrameKind::from_byte(kind).is_none()
                || frame.len() > nymd_proto::gateway::frames::MAX_FRAME_SIZE
        ),
    }
    if let Ok((GatewayFrameKind::PushedMixMessage, p)) = open_gateway_frame(&key, &frame) {
        assert_eq!(p, plaintext);
        let _ = classify_pushed(p.len());
        let again = seal_pushed_message(&mut rng, &key, &p);
        assert_eq!(
            open_gateway_frame(&key, &again).ok(),
            Some((GatewayFrameKind::PushedMixMessage, p))
        );
    }
});
