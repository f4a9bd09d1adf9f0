//! The registration handshake, each step fed outside bytes: the gateway's
//! reading of a client Init, the client's reading of the gateway material,
//! the gateway's reading of the client material, and the client's reading of
//! the finalisation. The first byte picks the step; honest earlier steps are
//! run with fixed keys and a seeded RNG so later steps are reachable.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nymd_proto::gateway::handshake::init_client_identity;
use nymd_proto::gateway::{
    ClientAwaitingMaterial, GatewayAwaitingMaterial, HandshakeMessage, CURRENT_PROTOCOL_VERSION,
};
use nymd_proto::keys::IdentityKeyPair;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let (version, rest) = match rest.split_first() {
        Some((&v, r)) => (v, r),
        None => (CURRENT_PROTOCOL_VERSION, rest),
    };
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from(step));
    let client_id = IdentityKeyPair::from_secret_bytes(&[1u8; 32]);
    let gateway_id = IdentityKeyPair::from_secret_bytes(&[2u8; 32]);

    match step % 5 {
        // Gateway reads an Init (then, if it accepts, the rest of the input
        // is tried as the client material).
        0 => {
            let _ = init_client_identity(rest);
            let (init, material) = rest.split_at(rest.len().min(80));
            if let Ok((gw, reply)) =
                GatewayAwaitingMaterial::start(&mut rng, &gateway_id, init, version)
            {
                assert!(reply.data().is_some());
                let _ = gw.on_client_material(material, version);
            }
        }
        // Client reads the gateway material.
        1 => {
            let (client, _init) =
                ClientAwaitingMaterial::start(&mut rng, &client_id, gateway_id.public(), version);
            let _ = client.on_gateway_material(&mut rng, rest, version);
        }
        // Gateway reads the client material after an honest Init.
        2 => {
            let (_client, init) =
                ClientAwaitingMaterial::start(&mut rng, &client_id, gateway_id.public(), version);
            let init = init.data().map(<[u8]>::to_vec).unwrap_or_default();
            let (gw, _m) = GatewayAwaitingMaterial::start(&mut rng, &gateway_id, &init, version)
                .expect("honest init");
            let _ = gw.on_client_material(rest, version);
        }
        // Client reads the finalisation after honest steps.
        3 => {
            let (client, init) =
                ClientAwaitingMaterial::start(&mut rng, &client_id, gateway_id.public(), version);
            let (gw, material) = match GatewayAwaitingMaterial::start(
                &mut rng,
                &gateway_id,
                init.data().unwrap_or_default(),
                version,
            ) {
                Ok(x) => x,
                Err(e) => panic!("honest init refused: {e}"),
            };
            let Ok((client, client_material)) = client.on_message(&mut rng, &material) else {
                // A version the client refuses: nothing further to test.
                return;
            };
            let (outcome, _fin) = gw.on_message(&client_material).expect("honest material");
            let got = client.on_finalization(rest);
            if rest == [1] {
                assert_eq!(got.ok(), Some(outcome));
            } else {
                assert!(got.is_err());
            }
        }
        // Handshake frames as text, then to the client's first step.
        _ => {
            if let Ok(s) = std::str::from_utf8(rest) {
                if let Ok(msg) = HandshakeMessage::parse(s) {
                    let (client, _init) = ClientAwaitingMaterial::start(
                        &mut rng,
                        &client_id,
                        gateway_id.public(),
                        version,
                    );
                    let _ = client.on_message(&mut rng, &msg);
                }
            }
        }
    }
});
