//! The persisted reply state of an identity: the sender tags we use with
//! recipients, the keys of the reply SURBs we handed out (with their age),
//! and the SURBs others gave us per sender tag, so that after a restart
//! (SIGKILL included) the identity can still `reply` to the tags it had and
//! decrypt replies to the SURBs it handed out before.
//!
//! The core makes the snapshot ([`crate::Client::replies_snapshot`]) and
//! takes one back ([`crate::Client::restore_replies`]); its driver keeps it
//! in a file.
//!
//! Format (version 1), all integers little-endian:
//!
//! ```text
//! "nymd-replies\n" | version: u8 = 1 | body_len: u32 | body | blake3(all before): 32
//! body: saved_unix_ms: u64 | rotation_id: u32 (0: unknown)
//!     | tags: u32 × (recipient: 96 | sender tag: 16)        least recently used first
//!     | keys: u32 × (digest: 32 | key: 16 | tag: 16 | age_ms: u64)  oldest first
//!     | stores: u32 × (tag: 16 | surbs: u32 × (rotation: u8 | len: u32 | SURB bytes))
//! ```
//!
//! On load, keys older than `max_key_age` are dropped, and so are SURBs
//! whose key rotation is no longer the topology's current one (the mix
//! nodes no longer hold the keys they were built for); a file that does not
//! parse or whose checksum fails is reported, set aside and ignored.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nymd_proto::replies::ReplySurb;
use nymd_proto::{KeyRotation, SenderTag};

const MAGIC: &[u8] = b"nymd-replies\n";
const VERSION: u8 = 1;
const CHECKSUM: usize = 32;

/// A key of a reply SURB we handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedKey {
    pub digest: [u8; 32],
    pub key: [u8; 16],
    pub tag: SenderTag,
    /// Its age when the snapshot was made.
    pub age: Duration,
}

/// What is persisted.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub saved_unix_ms: u64,
    /// The topology's key-rotation id when saved (0: unknown).
    pub rotation_id: u32,
    pub tags: Vec<([u8; 96], SenderTag)>,
    pub keys: Vec<SavedKey>,
    pub stores: Vec<(SenderTag, Vec<ReplySurb>)>,
}

/// What loading dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub expired_keys: usize,
    pub rotated_surbs: usize,
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(u32::try_from(n).unwrap_or(u32::MAX)).to_le_bytes());
}

/// The file's bytes.
pub fn encode(s: &Snapshot) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&s.saved_unix_ms.to_le_bytes());
    body.extend_from_slice(&s.rotation_id.to_le_bytes());
    put_u32(&mut body, s.tags.len());
    for (r, t) in &s.tags {
        body.extend_from_slice(r);
        body.extend_from_slice(&t.0);
    }
    put_u32(&mut body, s.keys.len());
    for k in &s.keys {
        body.extend_from_slice(&k.digest);
        body.extend_from_slice(&k.key);
        body.extend_from_slice(&k.tag.0);
        let ms = u64::try_from(k.age.as_millis()).unwrap_or(u64::MAX);
        body.extend_from_slice(&ms.to_le_bytes());
    }
    put_u32(&mut body, s.stores.len());
    for (tag, surbs) in &s.stores {
        body.extend_from_slice(&tag.0);
        put_u32(&mut body, surbs.len());
        for surb in surbs {
            body.push(surb.key_rotation().to_byte());
            put_u32(&mut body, surb.serialized_len());
            body.extend_from_slice(&surb.to_bytes());
        }
    }
    let mut out = Vec::with_capacity(MAGIC.len() + 5 + body.len() + CHECKSUM);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    put_u32(&mut out, body.len());
    out.extend_from_slice(&body);
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    /// A count of items at least `min` bytes each (refuses counts the
    /// rest of the input cannot hold, so nothing is allocated for them).
    fn count(&mut self, min: usize) -> Result<usize, String> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min) > self.0.len() {
            return Err("a count larger than the file".into());
        }
        Ok(n)
    }
}

/// Parse a file's bytes (checksum and version checked).
pub fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
    if bytes.len() < MAGIC.len() + 5 + CHECKSUM || !bytes.starts_with(MAGIC) {
        return Err("not a nymd replies file".into());
    }
    let (data, sum) = bytes.split_at(bytes.len() - CHECKSUM);
    if blake3::hash(data).as_bytes() != sum {
        return Err("checksum mismatch".into());
    }
    let mut r = Reader(&data[MAGIC.len()..]);
    let version = r.take(1)?[0];
    if version != VERSION {
        return Err(format!("unknown version {version}"));
    }
    let len = r.u32()? as usize;
    if len != r.0.len() {
        return Err("body length mismatch".into());
    }
    let mut s = Snapshot {
        saved_unix_ms: r.u64()?,
        rotation_id: r.u32()?,
        ..Snapshot::default()
    };
    for _ in 0..r.count(112)? {
        let rec: [u8; 96] = r.arr()?;
        s.tags.push((rec, SenderTag(r.arr()?)));
    }
    for _ in 0..r.count(72)? {
        s.keys.push(SavedKey {
            digest: r.arr()?,
            key: r.arr()?,
            tag: SenderTag(r.arr()?),
            age: Duration::from_millis(r.u64()?),
        });
    }
    for _ in 0..r.count(20)? {
        let tag = SenderTag(r.arr()?);
        let n = r.count(5)?;
        let mut surbs = Vec::with_capacity(n);
        for _ in 0..n {
            let rot = KeyRotation::from_byte(r.take(1)?[0])
                .map_err(|_| "bad key rotation".to_string())?;
            let len = r.u32()? as usize;
            let surb = ReplySurb::from_bytes(r.take(len)?)
                .map_err(|e| format!("bad SURB: {e}"))?
                .with_key_rotation(rot);
            surbs.push(surb);
        }
        s.stores.push((tag, surbs));
    }
    if !r.0.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(s)
}

impl Snapshot {
    /// Drop the keys older than `max_key_age` at `now_unix_ms`, and the
    /// SURBs built for a key rotation other than `current_rotation` (when
    /// both it and the saved one are known). A SURB remembers only the
    /// parity of its rotation: the saved id if it has that parity, else
    /// the one before.
    pub fn prune(
        &mut self,
        now_unix_ms: u64,
        max_key_age: Duration,
        current_rotation: Option<u32>,
    ) -> Dropped {
        let mut dropped = Dropped::default();
        let elapsed = Duration::from_millis(now_unix_ms.saturating_sub(self.saved_unix_ms));
        let before = self.keys.len();
        for k in &mut self.keys {
            k.age = k.age.saturating_add(elapsed);
        }
        self.keys.retain(|k| k.age < max_key_age);
        dropped.expired_keys = before - self.keys.len();
        let saved = self.rotation_id;
        let known = |id: u32| id != 0 && id != u32::MAX;
        if let Some(current) = current_rotation.filter(|c| known(*c) && known(saved)) {
            for (_, surbs) in &mut self.stores {
                let before = surbs.len();
                surbs.retain(|s| {
                    let id = match s.key_rotation() {
                        KeyRotation::Unknown => saved,
                        p if p == KeyRotation::from_rotation_id(saved) => saved,
                        _ => saved.saturating_sub(1),
                    };
                    id == current
                });
                dropped.rotated_surbs += before - surbs.len();
            }
            self.stores.retain(|(_, s)| !s.is_empty());
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nymd_proto::keys::{EncryptionKeyPair, IdentityKeyPair};
    use nymd_proto::sphinx::sphinx_node;
    use nymd_proto::{NodeAddress, SphinxVersion};
    use rand::{Rng, SeedableRng};

    fn surb(seed: u64, rot: KeyRotation) -> ReplySurb {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let nodes: Vec<_> = (1..=3)
            .map(|i| {
                let addr = NodeAddress(format!("10.0.0.{i}:1789").parse().expect("addr"));
                let key = EncryptionKeyPair::generate(&mut rng).public();
                sphinx_node(&addr, &key).expect("node")
            })
            .collect();
        let me = IdentityKeyPair::generate(&mut rng);
        ReplySurb::build_with_mean_delay(
            &mut rng,
            &nodes,
            &me.public(),
            Duration::from_millis(10),
            SphinxVersion::Seeds259,
        )
        .expect("surb")
        .with_key_rotation(rot)
    }

    fn sample() -> Snapshot {
        Snapshot {
            saved_unix_ms: 1_000_000,
            rotation_id: 7,
            tags: vec![([1; 96], SenderTag([2; 16])), ([3; 96], SenderTag([4; 16]))],
            keys: vec![
                SavedKey {
                    digest: [5; 32],
                    key: [6; 16],
                    tag: SenderTag([2; 16]),
                    age: Duration::from_secs(10),
                },
                SavedKey {
                    digest: [7; 32],
                    key: [8; 16],
                    tag: SenderTag([4; 16]),
                    age: Duration::from_secs(100),
                },
            ],
            stores: vec![(
                SenderTag([9; 16]),
                vec![surb(1, KeyRotation::Odd), surb(2, KeyRotation::Even)],
            )],
        }
    }

    fn same(a: &Snapshot, b: &Snapshot) {
        assert_eq!(a.saved_unix_ms, b.saved_unix_ms);
        assert_eq!(a.rotation_id, b.rotation_id);
        assert_eq!(a.tags, b.tags);
        assert_eq!(a.keys, b.keys);
        assert_eq!(a.stores.len(), b.stores.len());
        for ((ta, sa), (tb, sb)) in a.stores.iter().zip(&b.stores) {
            assert_eq!(ta, tb);
            let bytes = |s: &Vec<ReplySurb>| {
                s.iter()
                    .map(|x| (x.to_bytes(), x.key_rotation()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(bytes(sa), bytes(sb));
        }
    }

    #[test]
    fn snapshots_round_trip() {
        let s = sample();
        same(&decode(&encode(&s)).expect("decodes"), &s);
        let empty = Snapshot::default();
        same(&decode(&encode(&empty)).expect("decodes"), &empty);
    }

    #[test]
    fn corruption_is_refused_never_a_panic() {
        let good = encode(&sample());
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..2_000 {
            let mut b = good.clone();
            let at = rng.gen_range(0..b.len());
            b[at] ^= rng.gen_range(1..=255u8);
            assert!(decode(&b).is_err(), "flipped byte {at}");
        }
        // A right checksum over a wrong body: still no panic.
        let mut b = good[..good.len() - CHECKSUM].to_vec();
        let idx = MAGIC.len() + 5 + 12;
        b[idx..idx + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let sum = blake3::hash(&b);
        b.extend_from_slice(sum.as_bytes());
        assert!(decode(&b).is_err());
    }

    #[test]
    fn expired_keys_and_rotated_surbs_are_dropped_on_load() {
        let mut s = sample();
        // 50 s later, keys live 61 s: the 10 s one stays, the 100 s one goes.
        let d = s.prune(1_050_000, Duration::from_secs(61), Some(7));
        assert_eq!(d.expired_keys, 1);
        assert_eq!(s.keys.len(), 1);
        assert_eq!(s.keys[0].age, Duration::from_secs(60));
        // Saved under 7 (odd): the odd SURB is 7's, the even one 6's.
        assert_eq!(d.rotated_surbs, 1);
        assert_eq!(s.stores[0].1[0].key_rotation(), KeyRotation::Odd);

        let mut s = sample();
        assert_eq!(
            s.prune(1_000_000, Duration::from_secs(600), Some(8))
                .rotated_surbs,
            2
        );
        assert!(s.stores.is_empty());
        let mut s = sample();
        let d = s.prune(1_000_000, Duration::from_secs(600), None);
        assert_eq!(d, Dropped::default(), "unknown topology keeps them");
        assert_eq!(s.stores[0].1.len(), 2);
    }
}
