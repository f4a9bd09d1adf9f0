//! A toy network of three mixes and two gateways whose keys both sides know:
//! our route hops, Nym's topology, and node-side processing on either side.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use nym_crypto::asymmetric::{ed25519, x25519};
use nym_sphinx_addressing::clients::Recipient as NymRecipient;
use nym_sphinx_forwarding::packet::MixPacket as NymMixPacket;
use nym_sphinx_framing::packet::FramedNymPacket;
use nym_sphinx_framing::processing::{process_framed_packet, MixProcessingResultData};
use nym_topology::{
    CachedEpochRewardedSet, EntryDetails, NymRouteProvider, NymTopology, NymTopologyMetadata, Role,
    RoutingNode, SupportedRoles,
};
use nymd_proto::keys::{AckKey, EncryptionKeyPair, IdentityKeyPair, X25519Secret};
use nymd_proto::mixpacket::MixPacket;
use nymd_proto::params::PacketSize;
use nymd_proto::sphinx::{self, Processed, RouteHop};
use nymd_proto::{NodeAddress, Recipient};

use super::bytes;

/// One node: its mix address, x25519 sphinx secret and ed25519 identity seed.
#[derive(Clone)]
pub struct TestNode {
    pub id: u32,
    pub addr: SocketAddr,
    pub sphinx_secret: [u8; 32],
    pub identity_seed: [u8; 32],
}

impl TestNode {
    fn new(id: u32) -> Self {
        TestNode {
            id,
            addr: format!("127.0.0.{id}:1789").parse().expect("addr"),
            sphinx_secret: bytes::<32>(1000 + u64::from(id)),
            identity_seed: bytes::<32>(2000 + u64::from(id)),
        }
    }

    pub fn ours_hop(&self) -> RouteHop {
        let key = EncryptionKeyPair::from_secret_bytes(self.sphinx_secret).public();
        RouteHop::new(NodeAddress(self.addr), key)
    }

    pub fn identity(&self) -> IdentityKeyPair {
        IdentityKeyPair::from_secret_bytes(&self.identity_seed)
    }

    fn routing_node(&self, gateway: bool) -> RoutingNode {
        let identity = ed25519::PrivateKey::from_bytes(&self.identity_seed).expect("32-byte seed");
        let sphinx = x25519::PrivateKey::from_bytes(&self.sphinx_secret).expect("32 bytes");
        RoutingNode {
            node_id: self.id,
            mix_host: self.addr,
            entry: gateway.then(|| EntryDetails {
                ip_addresses: vec![self.addr.ip()],
                clients_ws_port: 9000,
                hostname: None,
                clients_wss_port: None,
            }),
            identity_key: identity.public_key(),
            sphinx_key: sphinx.public_key(),
            supported_roles: SupportedRoles {
                mixnode: !gateway,
                mixnet_entry: gateway,
                mixnet_exit: gateway,
            },
        }
    }
}

/// A client: identity, encryption and ack keys, registered at `gateway`.
pub struct TestClient {
    pub identity: IdentityKeyPair,
    pub encryption: EncryptionKeyPair,
    pub ack_key: AckKey,
    pub gateway: TestNode,
}

impl TestClient {
    pub fn new(seed: u64, gateway: &TestNode) -> Self {
        TestClient {
            identity: IdentityKeyPair::from_secret_bytes(&bytes::<32>(seed)),
            encryption: EncryptionKeyPair::from_secret_bytes(bytes::<32>(seed + 1)),
            ack_key: AckKey::from_bytes(bytes::<16>(seed + 2)),
            gateway: gateway.clone(),
        }
    }

    pub fn ours(&self) -> Recipient {
        Recipient::new(
            self.identity.public(),
            self.encryption.public(),
            self.gateway.identity().public(),
        )
    }

    pub fn theirs(&self) -> NymRecipient {
        self.ours().to_string().parse().expect("Nym parses")
    }

    pub fn nym_ack_key(&self) -> nym_sphinx_acknowledgements::AckKey {
        nym_sphinx_acknowledgements::AckKey::try_from_bytes(self.ack_key.as_bytes()).expect("16")
    }

    pub fn nym_encryption_key(&self) -> x25519::PrivateKey {
        x25519::PrivateKey::from_bytes(&self.encryption.secret().to_bytes()).expect("32")
    }

    pub fn nym_identity_key(&self) -> ed25519::PrivateKey {
        ed25519::PrivateKey::from_bytes(&self.identity.secret_bytes()).expect("32")
    }
}

/// Three mixes (layers 1..3) and two gateways.
pub struct Net {
    pub mixes: [TestNode; 3],
    pub gateways: [TestNode; 2],
}

impl Net {
    pub fn new() -> Self {
        Net {
            mixes: [TestNode::new(1), TestNode::new(2), TestNode::new(3)],
            gateways: [TestNode::new(11), TestNode::new(12)],
        }
    }

    /// Our route: the three mixes, then `gateway`.
    pub fn ours_route(&self, gateway: &TestNode) -> Vec<RouteHop> {
        let mut r: Vec<RouteHop> = self.mixes.iter().map(TestNode::ours_hop).collect();
        r.push(gateway.ours_hop());
        r
    }

    fn all(&self) -> impl Iterator<Item = &TestNode> {
        self.mixes.iter().chain(self.gateways.iter())
    }

    fn node_at(&self, addr: SocketAddr) -> &TestNode {
        self.all()
            .find(|n| n.addr == addr)
            .unwrap_or_else(|| panic!("no node at {addr}"))
    }

    /// Nym's view of the same network, key rotation id `rotation`.
    pub fn nym_topology(&self, rotation: u32) -> NymRouteProvider {
        NymRouteProvider::new(Arc::new(self.nym_topology_raw(rotation)), true)
    }

    /// Nym's `NymTopology` of the network.
    pub fn nym_topology_raw(&self, rotation: u32) -> NymTopology {
        let metadata = NymTopologyMetadata::new(rotation, 1, time::OffsetDateTime::UNIX_EPOCH);
        let mut topology = NymTopology::new(metadata, CachedEpochRewardedSet::default(), vec![]);
        topology.set_testable_node(Role::Layer1, self.mixes[0].routing_node(false));
        topology.set_testable_node(Role::Layer2, self.mixes[1].routing_node(false));
        topology.set_testable_node(Role::Layer3, self.mixes[2].routing_node(false));
        for g in &self.gateways {
            let node = g.routing_node(true);
            topology.set_testable_node(Role::EntryGateway, node.clone());
        }
        // `set_testable_node` keeps one node per role; add the other gateway.
        topology.force_set_active(self.gateways[0].id, Role::EntryGateway);
        topology.force_set_active(self.gateways[0].id, Role::ExitGateway);
        topology.force_set_active(self.gateways[1].id, Role::ExitGateway);
        topology
    }

    /// Run a Nym mix packet through Nym's node-side processing
    /// (`process_framed_packet`) hop by hop until a gateway's final hop.
    /// Returns the gateway it ended at and Nym's final-hop result.
    pub fn nym_deliver(
        &self,
        mut packet: NymMixPacket,
    ) -> (
        TestNode,
        nym_sphinx_framing::processing::ProcessedFinalHop,
        Vec<u16>,
    ) {
        let mut versions = Vec::new();
        for _ in 0..8 {
            let node = self.node_at(packet.next_hop_address()).clone();
            let framed = FramedNymPacket::from_mix_packet(packet, false);
            let key = nym_sphinx_types::PrivateKey::from(node.sphinx_secret);
            let result = process_framed_packet(framed, &key)
                .unwrap_or_else(|e| panic!("Nym node {} refuses the packet: {e}", node.id));
            if let nym_sphinx_framing::processing::MixPacketVersion::Sphinx(v) =
                result.packet_version
            {
                versions.push(v.value());
            }
            match result.processing_data {
                MixProcessingResultData::ForwardHop { packet: next, .. } => packet = next,
                MixProcessingResultData::FinalHop { final_hop_data } => {
                    return (node, final_hop_data, versions)
                }
            }
        }
        panic!("packet did not reach a final hop")
    }

    /// Run our sphinx packet through our node-side processing until a final
    /// hop. Returns the final node, destination, plaintext and packet size.
    pub fn ours_deliver(&self, packet: &MixPacket) -> (TestNode, [u8; 32], Vec<u8>, PacketSize) {
        let mut next = packet.next_hop;
        let mut bytes = packet.packet.clone();
        for _ in 0..8 {
            let node = self.node_at(next.0).clone();
            let size = PacketSize::from_len(bytes.len()).expect("valid size");
            let secret = X25519Secret::from(node.sphinx_secret);
            match sphinx::process(&bytes, &secret)
                .unwrap_or_else(|e| panic!("our node {} refuses the packet: {e}", node.id))
            {
                Processed::Forward {
                    next_hop, packet, ..
                } => {
                    next = next_hop;
                    bytes = packet;
                }
                Processed::Final {
                    destination,
                    plaintext,
                } => return (node, destination, plaintext, size),
            }
        }
        panic!("packet did not reach a final hop")
    }
}

/// Our mix packet as Nym's, through the v2 ForwardSphinx encoding.
pub fn to_nym(p: &MixPacket) -> NymMixPacket {
    NymMixPacket::try_from_v2_bytes(&p.to_v2_bytes()).expect("Nym reads our v2 mix packet")
}

/// Nym's mix packet as ours, through the v2 ForwardSphinx encoding.
pub fn from_nym(p: NymMixPacket) -> MixPacket {
    MixPacket::from_v2_bytes(&p.into_v2_bytes().expect("Nym encodes v2"))
        .expect("we read Nym's v2 mix packet")
}
