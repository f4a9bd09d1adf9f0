//! Shared by the `hostile_peer*` tests: the embedded mixnet, victims (the
//! real client) and a protocol-level peer (`support.rs` of the localnet
//! tests) that crafts packets with nymd-proto.

#![allow(dead_code, clippy::unwrap_used)]

#[path = "../../../localnet/tests/localnet/support.rs"]
pub mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use nymd_localnet::{DelayPolicy, Localnet, LocalnetConfig};
use nymd_mixnet::{
    register_with, start, ClientConfig, ClientEvent, ClientHandle, ClientKeys, GatewayConfig,
    GatewayRegistration, GatewaySelection, Lane, OutgoingMessage, ReceivedMessage, Shared,
    SharedConfig, TopologySource, Url,
};
use nymd_proto::ack::{build_surb_ack, SurbAck};
use nymd_proto::chunking::{InsertOutcome, NymMessage, Reassembler};
use nymd_proto::gateway::frames::open_gateway_frame;
use nymd_proto::keys::{EncryptionKeyPair, IdentityKeyPair};
use nymd_proto::mixpacket::MixPacket;
use nymd_proto::params::FragmentId;
use nymd_proto::payload::{
    classify_pushed, decrypt_message, prepare_fragment, reply_plaintext, PushedKind,
};
use nymd_proto::replies::{RepliableMessage, ReplyMessage, ReplySurb};
use nymd_proto::topology::NymTopology;
use nymd_proto::{PacketSize, Recipient, SenderTag, SphinxVersion};
use rand::rngs::StdRng;
use rand::SeedableRng;
use support::{sphinx_route, Client as Raw};
use tokio::sync::mpsc::Receiver;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Bound of every single wait.
pub const WAIT: Duration = Duration::from_secs(90);
/// How long nothing must arrive where an answer would have come within
/// milliseconds (the victim's own counters are the main evidence).
pub const QUIET: Duration = Duration::from_secs(2);

pub async fn localnet() -> Localnet {
    support::init_tracing();
    Localnet::start(LocalnetConfig {
        mixnodes_per_layer: 1,
        gateways: 2,
        delay: DelayPolicy::NoDelay,
        ..LocalnetConfig::default()
    })
    .await
    .unwrap()
}

pub fn shared_api(net: &Localnet) -> Shared {
    Shared::new(SharedConfig {
        default_source: TopologySource::NymApi(vec![Url::parse(&net.api_url()).unwrap()]),
        ..SharedConfig::default()
    })
    .unwrap()
}

pub struct Peer {
    pub handle: ClientHandle,
    pub events: Receiver<ClientEvent>,
    pub keys: ClientKeys,
    pub reg: GatewayRegistration,
}

pub async fn peer(shared: &Shared, net: &Localnet, g: usize, config: ClientConfig) -> Peer {
    let keys = ClientKeys::generate(&mut StdRng::from_entropy());
    let reg = register_with(
        shared,
        None,
        &keys,
        GatewaySelection::Given(net.gateways()[g].identity.to_bytes()),
        &GatewayConfig::default(),
    )
    .await
    .unwrap();
    let handle = start(
        shared,
        keys.clone(),
        reg.clone(),
        config,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let events = handle.subscribe();
    Peer {
        handle,
        events,
        keys,
        reg,
    }
}

pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn next_message(events: &mut Receiver<ClientEvent>) -> ReceivedMessage {
    let end = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(end, events.recv()).await {
            Ok(Some(ClientEvent::Received(m))) => return m,
            Ok(Some(_)) => continue,
            _ => panic!("no message in time"),
        }
    }
}

pub fn anonymous(to: Recipient, data: &[u8], surbs: u32) -> OutgoingMessage {
    OutgoingMessage::Anonymous {
        recipient: to,
        data: data.to_vec(),
        reply_surbs: surbs,
        lane: Lane::General,
    }
}

pub fn plain(to: Recipient, data: &[u8]) -> OutgoingMessage {
    OutgoingMessage::Plain {
        recipient: to,
        data: data.to_vec(),
        lane: Lane::General,
    }
}

pub fn stranger(gateway: &nymd_localnet::NodeInfo) -> Recipient {
    let mut rng = StdRng::from_entropy();
    Recipient::new(
        IdentityKeyPair::generate(&mut rng).public(),
        EncryptionKeyPair::generate(&mut rng).public(),
        gateway.identity,
    )
}

pub fn surb_request(recipient: Recipient, amount: u32) -> NymMessage {
    NymMessage::Reply(ReplyMessage::SurbRequest {
        recipient: Box::new(recipient),
        amount,
    })
}

/// A SURB-ACK back to the raw peer for fragment `id`.
pub fn surb_ack(raw: &mut Raw, topology: &NymTopology, id: FragmentId) -> SurbAck {
    let own_gateway = raw.keys.gateway.identity.to_bytes();
    let route = topology
        .random_route_to(&mut raw.rng, &own_gateway)
        .unwrap();
    build_surb_ack(
        &mut raw.rng,
        SphinxVersion::Seeds259,
        &raw.keys.ack_key,
        id,
        &sphinx_route(&route),
        &raw.keys.identity.public_bytes(),
        Duration::ZERO,
    )
    .unwrap()
}

/// The packets of any message to `to` on the forward path, each fragment
/// kept only if `keep` says so (by 0-based index).
pub fn forward_packets(
    raw: &mut Raw,
    topology: &NymTopology,
    to: &Recipient,
    msg: &NymMessage,
    keep: impl Fn(usize) -> bool,
) -> Vec<MixPacket> {
    let capacity = PacketSize::Regular.fragment_capacity();
    let fragments = msg
        .pad(capacity)
        .unwrap()
        .split_into_fragments(&mut raw.rng, capacity)
        .unwrap();
    let mut out = Vec::new();
    for (i, f) in fragments.iter().enumerate() {
        if !keep(i) {
            continue;
        }
        out.push(forward_fragment(raw, topology, to, f.id(), &f.to_bytes()));
    }
    out
}

/// One forward-path packet carrying `fragment` (any bytes of fragment size).
pub fn forward_fragment(
    raw: &mut Raw,
    topology: &NymTopology,
    to: &Recipient,
    id: FragmentId,
    fragment: &[u8],
) -> MixPacket {
    let ack = surb_ack(raw, topology, id);
    let route = topology
        .random_route_to(&mut raw.rng, &to.gateway().to_bytes())
        .unwrap();
    prepare_fragment(
        &mut raw.rng,
        SphinxVersion::Seeds259,
        fragment,
        to,
        &sphinx_route(&route),
        &ack,
        Duration::ZERO,
        topology.key_rotation(),
    )
    .unwrap()
    .mix_packet
}

/// The packets of `msg` sent back through the victim's SURBs (one SURB per
/// fragment), as a replier does.
pub fn reply_packets(
    raw: &mut Raw,
    topology: &NymTopology,
    surbs: &mut Vec<ReplySurb>,
    msg: &NymMessage,
) -> Vec<MixPacket> {
    let capacity = PacketSize::Regular.fragment_capacity();
    let fragments = msg
        .pad(capacity)
        .unwrap()
        .split_into_fragments(&mut raw.rng, capacity)
        .unwrap();
    fragments
        .iter()
        .map(|f| {
            let surb = surbs.pop().expect("a SURB left");
            let ack = surb_ack(raw, topology, f.id());
            let plaintext =
                reply_plaintext(surb.encryption_key().as_bytes(), &ack.bytes, &f.to_bytes())
                    .unwrap();
            let rotation = surb.key_rotation();
            let (packet, first_hop) = surb.apply(&plaintext, PacketSize::Regular).unwrap();
            MixPacket::new(first_hop, packet, rotation)
        })
        .collect()
}

/// Read what the gateway pushes to the raw peer for `limit`: decrypted
/// plaintexts are queued in `raw.pushed`, responses dropped.
pub async fn drain(raw: &mut Raw, limit: Duration) {
    let end = tokio::time::Instant::now() + limit;
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(end, raw.ws.next()).await {
        if let Message::Binary(b) = m {
            let (_, plain) = open_gateway_frame(raw.shared_key(), &b).unwrap();
            raw.pushed.push_back(plain);
        }
    }
}

/// Send packets, reading what comes back now and then so that neither side's
/// buffers fill.
pub async fn send_all(raw: &mut Raw, packets: &[MixPacket]) {
    for (i, p) in packets.iter().enumerate() {
        raw.forward(p).await;
        if i % 64 == 63 {
            drain(raw, Duration::from_millis(1)).await;
        }
    }
}

/// The next whole message the raw peer receives (acks skipped).
pub async fn raw_message(
    raw: &mut Raw,
    re: &mut Reassembler,
    limit: Duration,
) -> Option<NymMessage> {
    let end = tokio::time::Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        let pushed = raw.next_pushed(left).await?;
        let Some(PushedKind::Message(_)) = classify_pushed(pushed.len()) else {
            continue;
        };
        let d = decrypt_message(&raw.keys.encryption, &pushed, &mut |_: &[u8; 32]| None).unwrap();
        if let Ok(ins) = re.insert_bytes(&d.fragment, Instant::now()) {
            if let InsertOutcome::Complete(m) = ins.outcome {
                return Some(m.into_message().unwrap());
            }
        }
    }
}

/// The victim's anonymous message to the raw peer: its sender tag and the
/// SURBs it carried.
pub async fn receive_surbs(raw: &mut Raw, re: &mut Reassembler) -> (SenderTag, Vec<ReplySurb>) {
    match raw_message(raw, re, WAIT).await {
        Some(NymMessage::Repliable(RepliableMessage {
            sender_tag,
            content,
        })) => (sender_tag, content.into_parts().0),
        other => panic!("expected a repliable message, got {other:?}"),
    }
}

/// `VmHWM` of this process, KiB.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
