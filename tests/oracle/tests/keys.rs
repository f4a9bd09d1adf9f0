//! Keys and PEM files against `nym-crypto`, `nym-pemstore`,
//! `nym-sphinx-acknowledgements` and `nym-gateway-requests`.

mod common;

use nym_crypto::asymmetric::{ed25519, x25519};
use nym_gateway_requests::shared_key::SharedSymmetricKey;
use nym_pemstore::traits::PemStorableKey;
use nym_sphinx_acknowledgements::AckKey as NymAckKey;
use nymd_proto::keys::{
    self, AckKey, EncryptionKeyPair, GatewaySharedKey, IdentityKeyPair, Signature,
};
use nymd_proto::pem;

#[test]
fn ed25519_same_seed_same_key_and_signatures_cross_verify() {
    for seed in 0..16u64 {
        let secret = common::bytes::<32>(seed);
        let ours = IdentityKeyPair::from_secret_bytes(&secret);
        let theirs = ed25519::PrivateKey::from_bytes(&secret).expect("32-byte seed");
        assert_eq!(ours.public_bytes(), theirs.public_key().to_bytes());

        let msg = format!("message {seed}");
        // Ours signs, theirs verifies.
        let sig = ours.sign(msg.as_bytes());
        let their_sig = ed25519::Signature::from_bytes(&sig.to_bytes()).expect("64 bytes");
        theirs
            .public_key()
            .verify(msg.as_bytes(), &their_sig)
            .expect("Nym verifies our signature");
        // Theirs signs, ours verifies; Ed25519 is deterministic so the bytes match.
        let their_sig = theirs.sign(msg.as_bytes());
        assert_eq!(their_sig.to_bytes(), sig.to_bytes());
        let back = Signature::from_bytes(&their_sig.to_bytes());
        assert!(keys::verify(&ours.public(), msg.as_bytes(), &back));
    }
}

#[test]
fn x25519_same_secret_same_public_and_shared_secret() {
    for seed in 0..16u64 {
        let a = common::bytes::<32>(seed);
        let b = common::bytes::<32>(seed + 100);
        let ours = EncryptionKeyPair::from_secret_bytes(a);
        let theirs = x25519::PrivateKey::from_bytes(&a).expect("32 bytes");
        assert_eq!(*ours.public().as_bytes(), theirs.public_key().to_bytes());
        let their_peer = x25519::PrivateKey::from_bytes(&b).expect("32 bytes");
        let our_peer = EncryptionKeyPair::from_secret_bytes(b);
        assert_eq!(
            ours.diffie_hellman(&our_peer.public()),
            their_peer.diffie_hellman(&theirs.public_key())
        );
    }
}

/// Writes `doc` and has Nym's pemstore load it as `T`.
fn nym_load<T: PemStorableKey>(dir: &std::path::Path, name: &str, doc: &str) -> T {
    let path = dir.join(name);
    std::fs::write(&path, doc).expect("write pem");
    nym_pemstore::load_key::<T, _>(&path).unwrap_or_else(|e| panic!("Nym loads our {name}: {e}"))
}

/// Has Nym's pemstore store `key` and returns the file text.
fn nym_store<T: PemStorableKey>(dir: &std::path::Path, name: &str, key: &T) -> String {
    let path = dir.join(name);
    nym_pemstore::store_key(key, &path).expect("Nym stores key");
    std::fs::read_to_string(&path).expect("read pem")
}

#[test]
fn pem_files_both_ways_for_every_key_kind() {
    let dir = common::scratch_dir("pem");
    let mut rng = common::our_rng(3);
    let id = IdentityKeyPair::generate(&mut rng);
    let enc = EncryptionKeyPair::generate(&mut rng);
    let ack = AckKey::generate(&mut rng);
    let shared = GatewaySharedKey::from_bytes(common::bytes::<32>(9));

    // Labels are the ones Nym's types declare.
    assert_eq!(pem::ED25519_PRIVATE, ed25519::PrivateKey::pem_type());
    assert_eq!(pem::ED25519_PUBLIC, ed25519::PublicKey::pem_type());
    assert_eq!(pem::X25519_PRIVATE, x25519::PrivateKey::pem_type());
    assert_eq!(pem::X25519_PUBLIC, x25519::PublicKey::pem_type());
    assert_eq!(pem::ACK_KEY, NymAckKey::pem_type());
    assert_eq!(pem::GATEWAY_SHARED_KEY, SharedSymmetricKey::pem_type());

    // Ours written, Nym reads.
    let k: ed25519::PrivateKey = nym_load(&dir, "id.pem", &id.private_pem());
    assert_eq!(k.to_bytes(), id.secret_bytes());
    let k: ed25519::PublicKey = nym_load(&dir, "id_pub.pem", &id.public_pem());
    assert_eq!(k.to_bytes(), id.public_bytes());
    let k: x25519::PrivateKey = nym_load(&dir, "enc.pem", &enc.private_pem());
    assert_eq!(k.to_bytes(), enc.secret().to_bytes());
    let k: x25519::PublicKey = nym_load(&dir, "enc_pub.pem", &enc.public_pem());
    assert_eq!(k.to_bytes(), *enc.public().as_bytes());
    let k: NymAckKey = nym_load(&dir, "ack.pem", &ack.to_pem());
    assert_eq!(k.to_bytes(), ack.as_bytes().to_vec());
    let k: SharedSymmetricKey = nym_load(&dir, "shared.pem", &shared.to_pem());
    assert_eq!(k.to_bytes(), shared.as_bytes().to_vec());

    // Nym written, ours reads.
    let mut nrng = common::nym_rng(4);
    let nid = ed25519::KeyPair::new(&mut nrng);
    let nenc = x25519::KeyPair::new(&mut nrng);
    let nack = NymAckKey::new(&mut nrng);
    let nshared = SharedSymmetricKey::try_from_bytes(&common::bytes::<32>(10)).expect("32");

    let text = nym_store(&dir, "nid.pem", nid.private_key());
    let ours = IdentityKeyPair::from_private_pem(&text).expect("we read Nym's identity");
    assert_eq!(ours.public_bytes().to_vec(), nid.public_key().to_bytes());
    let text = nym_store(&dir, "nid_pub.pem", nid.public_key());
    assert_eq!(
        keys::identity_public_from_pem(&text)
            .expect("pub")
            .to_bytes()
            .to_vec(),
        nid.public_key().to_bytes()
    );
    let text = nym_store(&dir, "nenc.pem", nenc.private_key());
    let ours = EncryptionKeyPair::from_private_pem(&text).expect("we read Nym's x25519");
    assert_eq!(
        ours.public().as_bytes().to_vec(),
        nenc.public_key().to_bytes()
    );
    let text = nym_store(&dir, "nenc_pub.pem", nenc.public_key());
    assert_eq!(
        keys::encryption_public_from_pem(&text)
            .expect("pub")
            .as_bytes()
            .to_vec(),
        nenc.public_key().to_bytes()
    );
    let text = nym_store(&dir, "nack.pem", &nack);
    assert_eq!(
        AckKey::from_pem(&text).expect("ack").as_bytes().to_vec(),
        nack.to_bytes()
    );
    let text = nym_store(&dir, "nshared.pem", &nshared);
    assert_eq!(
        GatewaySharedKey::from_pem(&text)
            .expect("shared")
            .as_bytes()
            .to_vec(),
        nshared.to_bytes()
    );

    // A file with another key's label is refused by both.
    let path = dir.join("wrong.pem");
    std::fs::write(&path, id.public_pem()).expect("write");
    assert!(nym_pemstore::load_key::<ed25519::PrivateKey, _>(&path).is_err());
    assert!(IdentityKeyPair::from_private_pem(&id.public_pem()).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
