//! Symmetric primitives against `nym-crypto` with Nym's own algorithm choices
//! from `nym-sphinx-params`.

mod common;

use nym_crypto::symmetric::stream_cipher;
use nym_sphinx_params::{
    AckEncryptionAlgorithm, GatewaySharedKeyHkdfAlgorithm, PacketEncryptionAlgorithm,
    PacketHkdfAlgorithm,
};
use nymd_proto::crypto;

#[test]
fn hkdf_blake3_matches_nym_hkdf() {
    let salts: [Option<Vec<u8>>; 4] = [
        None,
        Some(Vec::new()),
        Some(common::bytes::<16>(1).to_vec()),
        Some(common::bytes::<100>(2).to_vec()),
    ];
    let infos: [Vec<u8>; 3] = [
        Vec::new(),
        b"info".to_vec(),
        common::bytes::<70>(3).to_vec(),
    ];
    for (si, salt) in salts.iter().enumerate() {
        for (ii, info) in infos.iter().enumerate() {
            for len in [16usize, 32, 33, 64, 100, 255 * 32] {
                let ikm = common::bytes::<32>((si * 10 + ii) as u64);
                let theirs = nym_crypto::hkdf::extract_then_expand::<PacketHkdfAlgorithm>(
                    salt.as_deref(),
                    &ikm,
                    Some(info),
                    len,
                )
                .expect("nym hkdf");
                let mut ours = vec![0u8; len];
                crypto::hkdf_blake3(salt.as_deref(), &ikm, info, &mut ours).expect("our hkdf");
                assert_eq!(ours, theirs, "salt {si} info {ii} len {len}");
            }
        }
    }
    // Both refuse more than 255 blocks.
    let mut too_long = vec![0u8; 255 * 32 + 1];
    assert!(crypto::hkdf_blake3(None, b"k", b"", &mut too_long).is_err());
    assert!(
        nym_crypto::hkdf::extract_then_expand::<GatewaySharedKeyHkdfAlgorithm>(
            None,
            b"k",
            None,
            255 * 32 + 1
        )
        .is_err()
    );
}

/// Nym's `stream_cipher::encrypt` with cipher `$c` (a concrete type, so no
/// trait from their `cipher` version has to be named here).
macro_rules! nym_ctr {
    ($c:ty, $key:expr, $iv:expr, $data:expr) => {{
        let key = stream_cipher::CipherKey::<$c>::try_from(&$key[..]).expect("16-byte key");
        let iv = stream_cipher::try_iv_from_slice::<$c>(&$iv[..]).expect("16-byte iv");
        stream_cipher::encrypt::<$c>(&key, iv, &$data[..])
    }};
}

#[test]
fn aes128_ctr64_matches_nym_ack_and_packet_cipher() {
    let key = common::bytes::<16>(11);
    let data = common::bytes::<2048>(12);
    let ivs: [[u8; 16]; 4] = [
        [0u8; 16],
        common::bytes::<16>(13),
        // Low half about to wrap: Ctr64BE must wrap within the low 64 bits.
        {
            let mut iv = [0xaa; 16];
            iv[8..].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
            iv
        },
        [0xff; 16],
    ];
    for iv in ivs {
        let mut ours = data.to_vec();
        crypto::aes128_ctr64(&key, &iv, &mut ours);
        let theirs_ack = nym_ctr!(AckEncryptionAlgorithm, key, iv, data);
        let theirs_packet = nym_ctr!(PacketEncryptionAlgorithm, key, iv, data);
        assert_eq!(ours, theirs_ack, "ack cipher, iv {}", hex::encode(iv));
        assert_eq!(ours, theirs_packet, "packet cipher, iv {}", hex::encode(iv));
    }
}

/// AES-256-GCM-SIV as the gateway shared key uses it: ours sealed, Nym's
/// `SharedSymmetricKey` opens, and the other way; same ciphertext for the
/// same nonce.
#[test]
fn gcm_siv_matches_nym_shared_key() {
    use nym_gateway_requests::SharedSymmetricKey;
    let key = common::bytes::<32>(20);
    let theirs = SharedSymmetricKey::try_from_bytes(&key).expect("32 bytes");
    for len in [0usize, 1, 32, 1000] {
        let plaintext = vec![0x5a; len];
        let nonce = common::bytes::<12>(21 + len as u64);
        let ours = crypto::gcm_siv_seal(&key, &nonce, &plaintext);
        let their_nonce = SharedSymmetricKey::validate_aead_nonce(&nonce).expect("12 bytes");
        assert_eq!(
            theirs.encrypt(&plaintext, &their_nonce).expect("Nym seals"),
            ours
        );
        assert_eq!(
            theirs.decrypt(&ours, &their_nonce).expect("Nym opens ours"),
            plaintext
        );
        let mut bad = ours.clone();
        bad[0] ^= 1;
        assert!(theirs.decrypt(&bad, &their_nonce).is_err());
        assert!(crypto::gcm_siv_open(&key, &nonce, &bad).is_err());
    }
}
