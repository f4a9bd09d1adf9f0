//! `authenticateV2`: the JSON form as a gateway reads it, then `verify`
//! against a fixed registration and clock. Also a structured mode that
//! builds an honest request and lets the input tamper with its fields, so the
//! checks after the signature are reached.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nymd_proto::gateway::{AuthenticateV2, ClientControlRequest, StoredClient};
use nymd_proto::keys::{GatewaySharedKey, IdentityKeyPair};

const NOW: u64 = 1_750_000_000;

fn key() -> GatewaySharedKey {
    GatewaySharedKey::from_bytes([9u8; 32])
}

fn check(req: &AuthenticateV2, now: u64, last: Option<u64>) {
    let res = req.verify(now, |_| {
        Some(StoredClient {
            shared_key: key(),
            last_used_timestamp: last,
        })
    });
    if let Ok(ok) = res {
        assert_eq!(ok.timestamp, req.request_unix_timestamp);
        assert!(ok.timestamp.abs_diff(now) <= 120);
        assert!(last.is_none_or(|l| ok.timestamp > l));
    }
    let _ = req.verify(now, |_| None);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let Ok(s) = std::str::from_utf8(rest) else {
            return;
        };
        if let Ok(req) = serde_json::from_str::<AuthenticateV2>(s) {
            let json = serde_json::to_string(&req).expect("serialise");
            assert_eq!(
                serde_json::from_str::<AuthenticateV2>(&json).ok().as_ref(),
                Some(&req)
            );
            check(&req, NOW, None);
            check(&req, req.request_unix_timestamp, Some(NOW));
        }
        if let Ok(ClientControlRequest::AuthenticateV2(req)) = ClientControlRequest::parse(s) {
            check(&req, NOW, None);
        }
        return;
    }
    // Structured: version, clock offset, last-used offset, nonce, ciphertext.
    let id = IdentityKeyPair::from_secret_bytes(&[3u8; 32]);
    let byte = |i: usize| rest.get(i).copied().unwrap_or(0);
    let version = byte(0);
    let offset = i64::from(byte(1) as i8) * 2;
    let mut nonce = [0u8; 12];
    for (i, n) in nonce.iter_mut().enumerate() {
        *n = byte(2 + i);
    }
    let ts = NOW.wrapping_add_signed(offset);
    let mut req = AuthenticateV2::with_nonce(&key(), &id, version, nonce, ts);
    let last = match byte(14) {
        0 => None,
        b => Some(NOW.wrapping_add_signed(i64::from(b as i8))),
    };
    if byte(15) & 1 == 1 {
        // Tamper with the ciphertext and nonce lengths (signature then fails
        // unless re-signed, so re-sign to reach the later checks).
        req.address_ciphertext = rest.get(16..).unwrap_or_default().to_vec();
        if byte(15) & 2 == 2 {
            req.nonce.truncate(usize::from(byte(16) % 13));
        }
        req.request_signature = id.sign(&req.signed_bytes());
    }
    check(&req, NOW, last);
});
