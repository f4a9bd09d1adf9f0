//! The reassembler fed a sequence of received fragments (and clock steps)
//! under tight limits. It must never panic, never exceed its bounds, and
//! every message it completes must be the concatenation of the payloads of
//! whole sets.
#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use nymd_proto::chunking::{InsertOutcome, Reassembler, ReassemblyConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, mut rest)) = data.split_first() else {
        return;
    };
    let config = ReassemblyConfig {
        max_buffered_bytes: 256 + usize::from(cfg & 0x0f) * 512,
        max_sets: usize::from(cfg >> 4),
        incomplete_timeout: Duration::from_secs(10),
        recently_completed: usize::from(cfg & 3),
    };
    let mut r = Reassembler::new(config);
    let start = Instant::now();
    let mut now = start;
    // Items: op byte, then for an insert a length byte and that many bytes.
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        if op == 0xff {
            now += Duration::from_secs(u64::from(rest.first().copied().unwrap_or(1)));
            rest = rest.get(1..).unwrap_or_default();
            for d in r.purge(now) {
                assert!(d.received <= usize::from(d.total));
            }
        } else {
            let len = usize::from(op).min(rest.len());
            let (frag, tail) = rest.split_at(len);
            rest = tail;
            if let Ok(ins) = r.insert_bytes(frag, now) {
                if let InsertOutcome::Complete(msg) = ins.outcome {
                    assert!(!msg.set_ids.is_empty());
                    for id in &msg.set_ids {
                        assert!(
                            r.recently_completed(*id)
                                || config.recently_completed < msg.set_ids.len()
                        );
                    }
                    let _ = msg.into_message();
                }
            }
        }
        assert!(r.buffered_bytes() <= config.max_buffered_bytes);
        assert!(r.buffered_sets() <= config.max_sets.max(1));
    }
});
