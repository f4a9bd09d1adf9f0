//! App API requests (what an app sends to nymd): JSON text frames and binary
//! frames. Whatever parses must re-encode and parse back to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nymd_proto::appapi::{AppFrame, ClientRequest, ResponseMode};

fuzz_target!(|data: &[u8]| {
    // Binary frame.
    if let Ok(req) = ClientRequest::parse_binary(data) {
        let bytes = req.to_binary();
        assert_eq!(ClientRequest::parse_binary(&bytes).as_ref(), Ok(&req));
        if let Ok(AppFrame::Text(t)) = req.encode(ResponseMode::Text) {
            assert_eq!(ClientRequest::parse_text(&t).as_ref(), Ok(&req));
        }
    }
    // Text frame.
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(req) = ClientRequest::parse_text(s) {
            let text = req
                .to_text()
                .expect("a parsed text request has a text form");
            assert_eq!(ClientRequest::parse_text(&text).as_ref(), Ok(&req));
            let bytes = req.to_binary();
            assert_eq!(ClientRequest::parse_binary(&bytes).as_ref(), Ok(&req));
        }
    }
});
