//! Gateway JSON control messages, both directions: client → gateway
//! (`ClientControlRequest`, then the pre-auth classification), gateway →
//! client (`ServerResponse`), handshake frames, and the encrypted
//! request/response payloads under a fixed shared key.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nymd_proto::gateway::messages::{ClientRequest, SensitiveResponse};
use nymd_proto::gateway::{ClientControlRequest, HandshakeMessage, ServerResponse};
use nymd_proto::keys::GatewaySharedKey;

fuzz_target!(|data: &[u8]| {
    let key = GatewaySharedKey::from_bytes([7u8; 32]);
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(req) = ClientControlRequest::parse(s) {
        let json = req.to_json();
        assert_eq!(ClientControlRequest::parse(&json).as_ref(), Ok(&req));
        if let ClientControlRequest::EncryptedRequest { ciphertext, nonce } = &req {
            let _ = ClientRequest::decrypt(ciphertext, nonce, &key);
        }
        let _ = req.is_legacy();
        let _ = req.pre_auth();
    }
    if let Ok(resp) = ServerResponse::parse(s) {
        let json = resp.to_json();
        assert_eq!(ServerResponse::parse(&json).as_ref(), Ok(&resp));
        if let ServerResponse::EncryptedResponse { ciphertext, nonce } = &resp {
            let _ = SensitiveResponse::decrypt(ciphertext, nonce, &key);
        }
        let _ = resp.is_successful_authentication();
    }
    if let Ok(msg) = HandshakeMessage::parse(s) {
        let json = msg.to_json();
        assert_eq!(HandshakeMessage::parse(&json).as_ref(), Ok(&msg));
    }
    // The decrypted plaintexts are JSON too: feed the text as one directly.
    if let Ok(r) = serde_json::from_str::<ClientRequest>(s) {
        let json = serde_json::to_string(&r).expect("serialise");
        assert_eq!(serde_json::from_str::<ClientRequest>(&json).ok(), Some(r));
    }
    let _ = serde_json::from_str::<SensitiveResponse>(s);
});
