//! Fragment headers and fragments as the receiver reads them. A parsed
//! fragment re-encodes to exactly its input; header checks agree with the
//! checked constructor.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nymd_proto::chunking::{Fragment, FragmentHeader};

fuzz_target!(|data: &[u8]| {
    if let Ok((h, n)) = FragmentHeader::parse(data) {
        assert_eq!(n, h.encoded_len());
        assert_eq!(h.to_bytes(), data[..n]);
        let again = FragmentHeader::new(
            h.set_id(),
            h.total(),
            h.current(),
            h.previous_set(),
            h.next_set(),
        );
        assert_eq!(again, Ok(h));
    }
    if let Ok(f) = Fragment::from_bytes(data) {
        assert_eq!(f.to_bytes(), data);
        assert_eq!(f.encoded_len(), data.len());
        assert_eq!(Fragment::from_bytes(&f.to_bytes()).as_ref(), Ok(&f));
        let id = f.id();
        assert_eq!(
            nymd_proto::params::FragmentId::from_bytes(id.to_bytes()),
            id
        );
    }
});
