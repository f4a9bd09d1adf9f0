//! App API responses (what an app reads back): text and binary. Round trips
//! must be stable.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nymd_proto::appapi::ServerResponse;

fuzz_target!(|data: &[u8]| {
    if let Ok(resp) = ServerResponse::parse_binary(data) {
        let bytes = resp.to_binary();
        assert_eq!(ServerResponse::parse_binary(&bytes).as_ref(), Ok(&resp));
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(resp) = ServerResponse::parse_text(s) {
            let text = resp.to_text();
            assert_eq!(ServerResponse::parse_text(&text).as_ref(), Ok(&resp));
        }
    }
});
