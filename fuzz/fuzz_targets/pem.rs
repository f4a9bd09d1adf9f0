//! PEM key files.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nymd_proto::pem;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok((label, bytes)) = pem::decode_any(s) {
            let again = pem::encode(&label, &bytes);
            assert_eq!(pem::decode_any(&again).ok(), Some((label, bytes)));
        }
    }
});
