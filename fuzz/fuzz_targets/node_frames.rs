//! The node-to-node frame decoder fed in chunks whose sizes come from the
//! input. Whatever the chunking, the frames (and the error, if any) must be
//! the same as when the stream arrives in one piece, and each frame must
//! re-encode to the bytes it came from.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nymd_proto::mixpacket::{encode_frame, Frame, FrameDecoder, FrameHeader};

fn decode_all(chunks: &mut dyn Iterator<Item = &[u8]>) -> (Vec<Frame>, bool) {
    let mut dec = FrameDecoder::new();
    let mut frames = Vec::new();
    let mut failed = false;
    for c in chunks {
        let res = dec.push(c);
        frames.extend(std::iter::from_fn(|| dec.pop()));
        assert!(dec.buffered() <= FrameDecoder::MAX_BUFFERED);
        if res.is_err() {
            failed = true;
            assert!(dec.is_failed());
            assert!(dec.push(&[7]).is_err());
            break;
        }
    }
    (frames, failed)
}

fuzz_target!(|data: &[u8]| {
    // First byte: chunk-size seed; the rest is the stream.
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let (whole, whole_failed) = decode_all(&mut std::iter::once(stream));

    let mut sizes = seed as usize | 1;
    let mut rest = stream;
    let mut chunks = Vec::new();
    while !rest.is_empty() {
        sizes = sizes.wrapping_mul(31).wrapping_add(7) % 997 + 1;
        let n = sizes.min(rest.len());
        chunks.push(&rest[..n]);
        rest = &rest[n..];
    }
    let (chunked, chunked_failed) = decode_all(&mut chunks.into_iter());
    assert_eq!(whole, chunked);
    assert_eq!(whole_failed, chunked_failed);

    // Re-encoding the frames gives back the stream's prefix.
    let mut out = Vec::new();
    for f in &whole {
        let bytes = encode_frame(f.header.version, f.header.key_rotation, &f.packet)
            .expect("decoded packet has a valid size");
        assert_eq!(FrameHeader::decode(&bytes).ok().flatten(), Some(f.header));
        out.extend(bytes);
    }
    assert_eq!(&stream[..out.len()], &out[..]);
});
