//! Sending: app requests, fragmenting, the queues, building packets (with
//! their SURB-ACKs), loop cover, ack timeouts and retransmission.

use std::time::Duration;

use nymd_proto::acked::{prepare_acked, AckSpec, PacketSpec};
use nymd_proto::chunking::NymMessage;
use nymd_proto::cover::{build_loop_covers_marked, LoopCover};
use nymd_proto::mixpacket::MixPacket;
use nymd_proto::params::FragmentId;
use nymd_proto::payload::prepare_reply;
use nymd_proto::replies::{RepliableMessage, ReplyMessage, ReplySurb};
use nymd_proto::topology::route::to_sphinx_hops as hops;
use nymd_proto::topology::{NymTopology, RouteError};
use nymd_proto::{Recipient, SenderTag};

/// Loop cover packets built together (their key derivations share field
/// inversions); the ones not sent yet wait, at most this many minus one, in
/// `Client::cover_reserve` (about 2.4 KB each).
pub(crate) const COVER_BATCH: usize = 4;

use crate::client::Client;
use crate::journal::REPLY_BIT;
use crate::lanes::QueueLane;
use crate::timers::TimerKey;
use crate::types::{bs58_str, ErrorKind, Lane, OutgoingMessage, Stats};
use std::sync::Arc;

/// Where a fragment goes.
#[derive(Debug)]
pub(crate) enum Dest {
    /// A regular packet to this recipient.
    Recipient(Box<Recipient>),
    /// A reply through a SURB from `tag`; the SURB is attached when one is
    /// reserved for this fragment.
    Reply {
        tag: SenderTag,
        surb: Option<ReplySurb>,
    },
}

/// A fragment that is queued or awaiting its ack.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) fragment: Vec<u8>,
    pub(crate) dest: Dest,
    pub(crate) lane: Lane,
    pub(crate) message: u64,
    /// Created by the client itself (SURB requests and answers): failures
    /// are logged, not reported to the app.
    pub(crate) internal: bool,
    pub(crate) retransmissions: u32,
    /// Its last transmission reached our gateway connection (only those
    /// count against `max_retransmissions`).
    pub(crate) reached_gateway: bool,
    /// It was taken from its lane and counts against
    /// [`crate::Config::max_in_flight`] until it is acknowledged or
    /// dropped.
    pub(crate) in_flight: bool,
    pub(crate) timer: Option<TimerKey>,
}

impl Client {
    /// Check that the recipient's gateway is routable right now.
    pub(crate) fn check_recipient(
        &self,
        recipient: &Recipient,
    ) -> Result<Arc<NymTopology>, (ErrorKind, String)> {
        let Some(topology) = self.topology.clone() else {
            return Err((
                ErrorKind::TopologyUnavailable,
                "no usable network topology; the message was not sent".into(),
            ));
        };
        if let Err(e) = topology.egress_by_identity(recipient.gateway().as_bytes(), false) {
            return Err((
                ErrorKind::RecipientGatewayUnknown,
                format!(
                    "the gateway {} of recipient {recipient} cannot be used ({e}); the message was not sent",
                    bs58_str(recipient.gateway().as_bytes())
                ),
            ));
        }
        Ok(topology)
    }

    pub(crate) fn on_request(&mut self, req: OutgoingMessage) {
        match req {
            OutgoingMessage::Plain {
                recipient,
                data,
                lane,
            } => {
                tracing::debug!(len = data.len(), ?lane, "sending a message to {recipient}");
                if let Err((kind, msg)) = self.check_recipient(&recipient) {
                    return self.emit_error(kind, msg, Some(lane));
                }
                self.enqueue_to_recipient(NymMessage::Plain(data), recipient, lane, false);
            }
            OutgoingMessage::Anonymous {
                recipient,
                data,
                reply_surbs,
                lane,
            } => {
                tracing::debug!(
                    len = data.len(),
                    reply_surbs,
                    ?lane,
                    "sending an anonymous message to {recipient}"
                );
                let topology = match self.check_recipient(&recipient) {
                    Ok(t) => t,
                    Err((kind, msg)) => return self.emit_error(kind, msg, Some(lane)),
                };
                let tag = self.sender_tag_for(&recipient);
                self.note_session(lane, tag);
                let surbs = match self.build_reply_surbs(&topology, reply_surbs, tag) {
                    Ok(s) => s,
                    Err(e) => {
                        return self.emit_error(
                            ErrorKind::SendFailed,
                            format!("could not build reply SURBs: {e}"),
                            Some(lane),
                        )
                    }
                };
                let msg = NymMessage::Repliable(RepliableMessage::new_data(tag, data, surbs));
                self.enqueue_to_recipient(msg, recipient, lane, false);
            }
            OutgoingMessage::Reply {
                sender_tag,
                data,
                lane,
            } => {
                tracing::debug!(len = data.len(), ?lane, %sender_tag, "sending a reply");
                if !self.stores.contains_key(&sender_tag) {
                    return self.emit_error(
                        ErrorKind::NoReplySurbs,
                        format!("no reply SURBs were ever received from sender tag {sender_tag}"),
                        Some(lane),
                    );
                }
                // Journalled under its own numbers (see the outbox).
                let message = self.new_message_id() | REPLY_BIT;
                let Some(fragments) =
                    self.fragment(NymMessage::Reply(ReplyMessage::Data(data)), lane)
                else {
                    return;
                };
                let journal = self
                    .journal
                    .as_ref()
                    .filter(|_| !self.config.is_volatile(lane));
                if let Some(o) = journal {
                    self.journalled.insert(message, fragments.len());
                    o.add_reply(message, &sender_tag, &fragments);
                }
                for (id, bytes) in fragments {
                    self.pending.insert(
                        id,
                        Pending {
                            fragment: bytes,
                            dest: Dest::Reply {
                                tag: sender_tag,
                                surb: None,
                            },
                            lane,
                            message,
                            internal: false,
                            retransmissions: 0,
                            reached_gateway: false,
                            in_flight: false,
                            timer: None,
                        },
                    );
                    self.push_waiting(sender_tag, id, lane, false, true);
                }
                self.pump_replies(sender_tag);
            }
        }
    }

    /// Pad and split; ids are (set, position) and must not collide with
    /// fragments still in flight.
    pub(crate) fn fragment(
        &mut self,
        msg: NymMessage,
        lane: Lane,
    ) -> Option<Vec<(FragmentId, Vec<u8>)>> {
        let cap = self.config.packet_size.fragment_capacity();
        let padded = match msg.pad(cap) {
            Ok(p) => p,
            Err(e) => {
                self.emit_error(
                    ErrorKind::SendFailed,
                    format!("could not encode the message: {e}"),
                    Some(lane),
                );
                return None;
            }
        };
        for _ in 0..8 {
            let fragments = match padded.split_into_fragments(&mut self.rng, cap) {
                Ok(f) => f,
                Err(e) => {
                    self.emit_error(
                        ErrorKind::SendFailed,
                        format!("could not split the message: {e}"),
                        Some(lane),
                    );
                    return None;
                }
            };
            if fragments.iter().any(|f| self.pending.contains_key(&f.id())) {
                continue;
            }
            return Some(
                fragments
                    .into_iter()
                    .map(|f| (f.id(), f.to_bytes()))
                    .collect(),
            );
        }
        self.emit_error(
            ErrorKind::SendFailed,
            "could not allocate fragment ids".into(),
            Some(lane),
        );
        None
    }

    pub(crate) fn queue_lane(lane: Lane) -> QueueLane {
        match lane {
            Lane::General => QueueLane::General,
            Lane::Connection(c) => QueueLane::Conn(c),
        }
    }

    pub(crate) fn enqueue_to_recipient(
        &mut self,
        msg: NymMessage,
        recipient: Recipient,
        lane: Lane,
        internal: bool,
    ) {
        let message = self.new_message_id();
        let Some(fragments) = self.fragment(msg, lane) else {
            return;
        };
        if !internal && !self.config.is_volatile(lane) {
            if let Some(o) = &self.journal {
                self.journalled.insert(message, fragments.len());
                o.add(message, &recipient, &fragments);
            }
        }
        let recipient = Box::new(recipient);
        for (id, bytes) in fragments {
            self.pending.insert(
                id,
                Pending {
                    fragment: bytes,
                    dest: Dest::Recipient(recipient.clone()),
                    lane,
                    message,
                    internal,
                    retransmissions: 0,
                    reached_gateway: false,
                    in_flight: false,
                    timer: None,
                },
            );
            // What the core sends of its own (answers to SURB requests)
            // goes with the retransmissions: the window of packets in
            // flight does not hold it back, so a peer waiting for SURBs to
            // reply with is never stuck behind our own traffic.
            let q = if internal {
                QueueLane::Retransmit
            } else {
                Self::queue_lane(lane)
            };
            self.lanes.push(q, id, false);
            self.published.lane_adjust(lane, 1);
        }
    }

    pub(crate) fn new_message_id(&mut self) -> u64 {
        self.next_message = self.next_message.wrapping_add(1);
        self.next_message
    }

    /// One fragment of `message` was acknowledged (or will never be sent).
    pub(crate) fn fragment_done(&mut self, message: u64) {
        if let Some(left) = self.journalled.get_mut(&message) {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.message_done(message);
            }
        }
    }

    /// `message` needs no more sending: acknowledged, abandoned or dropped.
    pub(crate) fn message_done(&mut self, message: u64) {
        if self.journalled.remove(&message).is_some() {
            if let Some(o) = &self.journal {
                o.done(message);
            }
        }
    }

    /// Forget every fragment of a message.
    pub(crate) fn drop_message(&mut self, message: u64) {
        self.message_done(message);
        let ids: Vec<FragmentId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.message == message)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(p) = self.pending.remove(&id) {
                if let Some(k) = p.timer {
                    self.timers.remove(&k);
                }
                self.out_of_flight(&p);
            }
        }
    }

    /// Whether new packets may be taken from the lanes: fewer than
    /// [`crate::Config::max_in_flight`] real packets are out.
    pub(crate) fn window_open(&self) -> bool {
        self.config
            .max_in_flight
            .is_none_or(|max| self.in_flight < max)
    }

    /// `p` was taken from its lane: it counts against the window until it
    /// is acknowledged or dropped (packets of the core's own are not
    /// counted).
    fn take_into_flight(&mut self, p: &mut Pending) {
        if !p.internal && !p.in_flight {
            p.in_flight = true;
            self.in_flight += 1;
        }
    }

    /// `p` is gone (acknowledged, dropped or given up): its place in the
    /// window is free.
    pub(crate) fn out_of_flight(&mut self, p: &Pending) {
        if p.in_flight {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
    }

    /// Pop the next real fragment and send it. False when none was sent.
    pub(crate) fn send_next_real(&mut self) -> bool {
        loop {
            let fresh = self.window_open();
            let Some((lane, id)) = self.lanes.pop(&mut self.rng, fresh) else {
                return false;
            };
            if let QueueLane::Conn(c) = lane {
                self.published.lane_adjust(Lane::Connection(c), -1);
            }
            let Some(mut p) = self.pending.remove(&id) else {
                continue; // acked or dropped meanwhile
            };
            self.take_into_flight(&mut p);
            match self.send_fragment(id, p) {
                SendResult::Sent => return true,
                SendResult::Blocked => return false,
                SendResult::Dropped => continue,
            }
        }
    }

    pub(crate) fn send_fragment(&mut self, id: FragmentId, mut p: Pending) -> SendResult {
        let Some(topology) = self.topology.clone() else {
            self.pending.insert(id, p);
            self.lanes.push(QueueLane::Retransmit, id, true);
            return SendResult::Blocked;
        };
        let built = self.build_packet(&topology, id, &mut p);
        let (mix_packet, total_delay) = match built {
            Ok(b) => b,
            Err(BuildError::NoSurb) => {
                let (tag, lane) = match &p.dest {
                    Dest::Reply { tag, .. } => (*tag, p.lane),
                    Dest::Recipient(_) => {
                        self.out_of_flight(&p);
                        self.fragment_done(p.message);
                        return SendResult::Dropped;
                    }
                };
                let counted = p.retransmissions == 0;
                self.pending.insert(id, p);
                self.push_waiting(tag, id, lane, true, counted);
                self.pump_replies(tag);
                return SendResult::Dropped;
            }
            Err(BuildError::Route(kind, msg)) => {
                let (message, lane, internal) = (p.message, p.lane, p.internal);
                self.out_of_flight(&p);
                self.drop_message(message);
                if !internal {
                    self.emit_error(kind, msg, Some(lane));
                }
                return SendResult::Dropped;
            }
            Err(BuildError::Other(msg)) => {
                let (message, lane, internal) = (p.message, p.lane, p.internal);
                self.out_of_flight(&p);
                self.drop_message(message);
                if internal {
                    tracing::warn!(%msg, "internal message dropped");
                } else {
                    self.emit_error(ErrorKind::SendFailed, msg, Some(lane));
                }
                return SendResult::Dropped;
            }
        };
        let sent = self.forward(&mix_packet, Some(id));
        if let Some(bytes) = sent {
            let s = &self.published.stats;
            Stats::add(&s.real_packets_sent, 1);
            Stats::add(&s.real_bytes_sent, bytes as u64);
        }
        // Even if the frame could not be queued, the timer retransmits it
        // (that transmission does not count against the cap).
        p.reached_gateway = sent.is_some();
        let timeout = self.config.ack_wait(total_delay, p.retransmissions);
        p.timer = Some(self.timers.insert(id, self.now + timeout));
        self.pending.insert(id, p);
        SendResult::Sent
    }

    pub(crate) fn build_packet(
        &mut self,
        topology: &NymTopology,
        id: FragmentId,
        p: &mut Pending,
    ) -> Result<(MixPacket, Duration), BuildError> {
        let ack_route = topology
            .random_route_to(&mut self.rng, &self.own_gateway)
            .map(|r| hops(&r))
            .map_err(|e| BuildError::Other(format!("no route back to our own gateway: {e}")))?;
        let own_identity = self.own.identity().to_bytes();
        let ack = AckSpec {
            version: self.config.sphinx_version,
            key: &self.keys.ack,
            id,
            route: &ack_route,
            own_identity: &own_identity,
            mean: self.config.ack_mean(),
        };
        match &mut p.dest {
            Dest::Recipient(r) => {
                let route = topology
                    .random_route_to(&mut self.rng, r.gateway().as_bytes())
                    .map_err(|e| match e {
                        RouteError::UnknownEgress(g) => BuildError::Route(
                            ErrorKind::RecipientGatewayUnknown,
                            format!("the gateway {g} of recipient {r} is not in the network topology; the message was dropped"),
                        ),
                        other => BuildError::Route(ErrorKind::TopologyUnavailable, other.to_string()),
                    })
                    .map(|r| hops(&r))?;
                // The SURB-ACK and the packet are built together (their key
                // derivations share field inversions).
                let packet = PacketSpec {
                    version: self.config.sphinx_version,
                    fragment: &p.fragment,
                    recipient: r,
                    route: &route,
                    mean: self.config.packet_mean(),
                    key_rotation: topology.key_rotation(),
                    // Used only when the recipient is ourselves.
                    own_keys: Some(&self.keys.encryption),
                };
                let (prepared, _) = prepare_acked(&mut self.rng, &ack, &packet)
                    .map_err(|e| BuildError::Other(e.to_string()))?;
                let total = prepared.total_delay();
                Ok((prepared.mix_packet, total))
            }
            Dest::Reply { surb, .. } => {
                let Some(surb) = surb.take() else {
                    return Err(BuildError::NoSurb);
                };
                let surb_ack = ack
                    .build(&mut self.rng)
                    .map_err(|e| BuildError::Other(format!("SURB-ACK: {e}")))?;
                let prepared = prepare_reply(
                    surb,
                    &p.fragment,
                    &surb_ack,
                    self.config.packet_size,
                    self.config.packet_mean(),
                )
                .map_err(|e| BuildError::Other(e.to_string()))?;
                let total = prepared.total_delay();
                Ok((prepared.mix_packet, total))
            }
        }
    }

    /// Hand a packet to the driver; the length of the frame it makes of
    /// it, or `None` when the gateway link is down.
    pub(crate) fn forward(
        &mut self,
        mp: &MixPacket,
        fragment: Option<FragmentId>,
    ) -> Option<usize> {
        self.transmit_packet(mp, fragment)
            .map(|n| n + nymd_proto::gateway::frames::FRAME_OVERHEAD)
    }

    pub(crate) fn send_cover(&mut self) {
        if self.cover_reserve.is_empty() {
            self.fill_cover_reserve();
        }
        let Some((mp, marker)) = self.cover_reserve.pop_front() else {
            return;
        };
        if let Some(bytes) = self.forward(&mp, None) {
            self.cover_markers.insert(marker);
            let s = &self.published.stats;
            Stats::add(&s.cover_packets_sent, 1);
            Stats::add(&s.cover_bytes_sent, bytes as u64);
        }
    }

    /// Build the next [`COVER_BATCH`] loop cover packets together: cover
    /// depends on nothing an app sends, so their key derivations can share
    /// field inversions (one per hop step for the whole batch). They wait in
    /// the reserve for their Poisson slots; a new topology empties it.
    fn fill_cover_reserve(&mut self) {
        let Some(topology) = self.topology.clone() else {
            tracing::debug!("no topology: skipping a loop cover packet");
            return;
        };
        let mut routes = Vec::with_capacity(COVER_BATCH);
        for _ in 0..COVER_BATCH {
            match (
                topology.random_route_to(&mut self.rng, &self.own_gateway),
                topology.random_route_to(&mut self.rng, &self.own_gateway),
            ) {
                (Ok(r), Ok(a)) => routes.push((hops(&r), hops(&a))),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(error = %e, "cannot route loop cover");
                    return;
                }
            }
        }
        let params: Vec<LoopCover<'_>> = routes
            .iter()
            .map(|(route, ack_route)| LoopCover {
                own: &self.own,
                ack_key: &self.keys.ack,
                ack_route,
                route,
                ack_mean: self.config.ack_mean(),
                packet_mean: self.config.packet_mean(),
                size: self.config.packet_size,
                key_rotation: topology.key_rotation(),
                own_keys: Some(&self.keys.encryption),
            })
            .collect();
        let built = build_loop_covers_marked(&mut self.rng, &params);
        for packet in built {
            match packet {
                Ok(p) => self.cover_reserve.push_back(p),
                Err(e) => tracing::warn!(error = %e, "loop cover packet"),
            }
        }
    }

    pub(crate) fn on_ack_timeout(&mut self, id: FragmentId) {
        let Some(mut p) = self.pending.remove(&id) else {
            return;
        };
        p.timer = None;
        // While the subscriber is slow (or the daemon's memory budget is
        // used up) we do not read acks; waiting longer beats retransmitting
        // what probably arrived.
        if !self.event_bytes.has_room() {
            p.timer = Some(
                self.timers
                    .insert(id, self.now + self.config.ack_wait_addition),
            );
            self.pending.insert(id, p);
            return;
        }
        // A transmission that never reached our gateway (disconnected) is
        // made again without counting.
        if !p.reached_gateway {
            return self.requeue(id, p);
        }
        if let Some(max) = self.config.max_retransmissions {
            if p.retransmissions >= max {
                let (message, lane, internal) = (p.message, p.lane, p.internal);
                self.out_of_flight(&p);
                self.drop_message(message);
                let text = format!(
                    "a message fragment was not acknowledged after {max} retransmissions; the message was abandoned"
                );
                if internal {
                    tracing::warn!(%text, "internal message abandoned");
                } else {
                    self.emit_error(ErrorKind::RetransmissionsExhausted, text, Some(lane));
                }
                return;
            }
        }
        p.retransmissions += 1;
        #[cfg(feature = "planted-bugs")]
        if crate::planted::skips_retransmission(p.retransmissions) {
            // The planted bug: this fragment is forgotten, silently.
            self.out_of_flight(&p);
            return;
        }
        Stats::add(&self.published.stats.retransmissions, 1);
        tracing::debug!(
            set = id.set_id,
            position = id.position,
            attempt = p.retransmissions,
            "retransmitting"
        );
        self.requeue(id, p);
    }

    /// Queue a fragment whose ack did not come to be sent again.
    pub(crate) fn requeue(&mut self, id: FragmentId, p: Pending) {
        match &p.dest {
            Dest::Reply { tag, .. } => {
                let (tag, lane) = (*tag, p.lane);
                self.pending.insert(id, p);
                // Needs a fresh SURB; not counted on the app's lane.
                self.push_waiting(tag, id, lane, true, false);
                self.pump_replies(tag);
            }
            Dest::Recipient(_) => {
                self.pending.insert(id, p);
                self.lanes.push(QueueLane::Retransmit, id, false);
            }
        }
    }
}

pub(crate) enum SendResult {
    Sent,
    Blocked,
    Dropped,
}

pub(crate) enum BuildError {
    NoSurb,
    Route(ErrorKind, String),
    Other(String),
}
