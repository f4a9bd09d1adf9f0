//! Recipient text and binary forms, node routing addresses, sender tags.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nymd_proto::{NodeAddress, Recipient, SenderTag};

fuzz_target!(|data: &[u8]| {
    let _ = Recipient::from_bytes(data);
    let _ = NodeAddress::read(data);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(r) = s.parse::<Recipient>() {
            assert_eq!(r.to_string().parse::<Recipient>().ok(), Some(r));
        }
        let _ = s.parse::<SenderTag>();
    }
});
