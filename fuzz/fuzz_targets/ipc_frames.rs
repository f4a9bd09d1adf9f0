//! The control-socket frame decoder and message decoding on arbitrary bytes:
//! never a panic, an allocation past the cap, or a stack overflow; and every
//! message that decodes re-encodes to a frame that decodes to the same
//! message ("sound" round trip).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nymd_ipc::codec::{decode_body, encode_frame, FrameDecoder, HEADER_LEN};
use nymd_ipc::{ClientMessage, ServerMessage};

const MAX: u32 = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    // The first byte picks how the input is split into reads.
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(split).max(1);
    let mut client = FrameDecoder::new(MAX);
    let mut server = FrameDecoder::new(MAX);
    for chunk in data.chunks(step) {
        let c = client.handle_bytes(chunk);
        let s = server.handle_bytes(chunk);
        if c.is_err() || s.is_err() {
            return;
        }
        loop {
            match client.poll_message::<ClientMessage>() {
                Ok(Some(msg)) => round_trip_client(&msg),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        loop {
            match server.poll_message::<ServerMessage>() {
                Ok(Some(msg)) => round_trip_server(&msg),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = client.finish();
    let _ = server.finish();
});

fn round_trip_client(msg: &ClientMessage) {
    let frame = encode_frame(msg, u32::MAX).expect("a decoded message encodes");
    let back: ClientMessage = decode_body(&frame[HEADER_LEN..]).expect("re-decodes");
    assert_eq!(&back, msg);
}

fn round_trip_server(msg: &ServerMessage) {
    let frame = encode_frame(msg, u32::MAX).expect("a decoded message encodes");
    let back: ServerMessage = decode_body(&frame[HEADER_LEN..]).expect("re-decodes");
    assert_eq!(&back, msg);
}
