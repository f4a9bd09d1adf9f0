//! Topology inputs: nym-api listings (skimmed nodes pages, rewarded set,
//! key-rotation info) and the `--custom-mixnet` topology file. The first
//! byte picks the document; the rest is its JSON. Parsed documents are fed
//! on (page collection, topology building, route selection) and the file
//! form must round-trip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nymd_proto::topology::api::{
    KeyRotationInfoResponse, PageCollector, RewardedSetResponse, SkimmedNodesResponse,
};
use nymd_proto::topology::{NymTopology, PerformanceThresholds, Timestamp};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn exercise(t: &NymTopology) {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let _ = t.is_routable();
    let _ = t.key_rotation();
    let _ = t.random_mix_route(&mut rng);
    for gw in t.entry_gateways() {
        let _ = gw.ws_listeners(false);
        let _ = gw.wss_listener();
        let id = gw.identity_key.to_bytes();
        let _ = t.random_route_to(&mut rng, &id);
    }
    let _ = t.skimmed_nodes(|_| true);
    let _ = t.rewarded_set_response();
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, json)) = data.split_first() else {
        return;
    };
    match pick % 5 {
        0 => {
            if let Ok(page) = serde_json::from_slice::<SkimmedNodesResponse>(json) {
                let text = serde_json::to_string(&page).expect("serialise");
                let _ = serde_json::from_str::<SkimmedNodesResponse>(&text).expect("reparse");
                let mut c = PageCollector::new();
                if c.push(page).is_ok() {
                    if let Ok(all) = c.finish() {
                        let rs = RewardedSetResponse::default();
                        let t = NymTopology::from_api_all_nodes(
                            &rs,
                            &all,
                            PerformanceThresholds::default(),
                        );
                        exercise(&t);
                        let _ = NymTopology::from_api(
                            &rs,
                            &all,
                            &all,
                            PerformanceThresholds::default(),
                        );
                    }
                }
            }
        }
        1 => {
            if let Ok(rs) = serde_json::from_slice::<RewardedSetResponse>(json) {
                let text = serde_json::to_string(&rs).expect("serialise");
                assert_eq!(
                    serde_json::from_str::<RewardedSetResponse>(&text).ok(),
                    Some(rs)
                );
            }
        }
        2 => {
            if let Ok(k) = serde_json::from_slice::<KeyRotationInfoResponse>(json) {
                let _ = k.key_rotation();
                let s = k.key_rotation_state;
                for e in [0, k.current_absolute_epoch_id, u32::MAX] {
                    let _ = s.rotation_ending_epoch(e);
                }
                let text = serde_json::to_string(&k).expect("serialise");
                assert_eq!(
                    serde_json::from_str::<KeyRotationInfoResponse>(&text).ok(),
                    Some(k)
                );
            }
        }
        3 => {
            if let Ok(t) = NymTopology::from_file_slice(json) {
                let text = t.to_file_json().expect("write");
                let back = NymTopology::from_file_json(&text).expect("reread");
                assert_eq!(back, t);
                exercise(&t);
            }
        }
        _ => {
            if let Ok(s) = std::str::from_utf8(json) {
                if let Some(t) = Timestamp::parse_rfc3339(s) {
                    assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
                }
                if let Some(t) = Timestamp::parse_nym_display(s) {
                    let _ = t.to_nym_display();
                }
                let _ = Timestamp::parse_lenient(s);
                let _ = s.parse::<nymd_proto::topology::api::Performance>();
            }
        }
    }
});
