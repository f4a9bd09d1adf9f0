//! Remote peers cannot drain, flood or stall an identity (issue 13). A
//! victim identity (the real client) on the embedded local mixnet faces a
//! protocol-level peer built from nymd-proto pieces (`support.rs` of the
//! localnet tests) that crafts what a stock client never sends:
//!
//! - SURB requests on the forward path, or through our SURB but naming a
//!   recipient we never sent to (or another than the SURB's): no answer;
//! - 1,000 valid SURB requests from one tag: answers stay within the tag's
//!   rate limit, the send queue within its half, and an app still sends;
//! - floods of SURBs under many tags, of first fragments of huge messages,
//!   of reply keys, of requests naming strangers: the SURB store, the
//!   reassembly buffers, reply keys and sender tags stay within their
//!   bounds, and a genuine peer's SURBs and reply keys survive;
//! - a recipient whose gateway never acknowledges: after
//!   `max_retransmissions` the sender gets an error on its lane and the
//!   outbox keeps nothing, also across a restart.
//!
//! (The log-flood test is in `hostile_peer_logs.rs`: it needs the process's
//! only tracing subscriber.) Every wait is bounded; the memory each flood
//! left is printed (`--nocapture`).

#![allow(clippy::unwrap_used)]

mod hostile;

use std::time::{Duration, Instant};

use hostile::support::Client as Raw;
use hostile::*;
use nymd_mixnet::{
    start, ClientConfig, ClientEvent, CoreConfig, ErrorKind, Lane, OutgoingMessage, ReplySurbConfig,
};
use nymd_proto::chunking::{NymMessage, Reassembler};
use nymd_proto::replies::{RepliableMessage, ReplySurb};
use nymd_proto::topology::route::to_sphinx_route;
use nymd_proto::{SenderTag, SphinxVersion};
use rand::RngCore;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peer_forged_surb_request_on_the_forward_path_gets_no_answer() {
    let net = localnet().await;
    let shared = shared_api(&net);
    let topology = net.topology().clone();
    let v = peer(&shared, &net, 0, ClientConfig::for_tests()).await;
    let mut raw = Raw::register(&net.gateways()[1]).await;
    let mut re = Reassembler::default();

    v.handle
        .send(anonymous(raw.recipient(), b"hello", 5))
        .await
        .unwrap();
    let (tag, mut surbs) = receive_surbs(&mut raw, &mut re).await;
    assert_eq!(surbs.len(), 5);
    until("the victim's message is acknowledged", || {
        v.handle.stats().unacked_fragments == 0
    })
    .await;
    let sent_before = v.handle.stats().real_packets_sent;

    // Forged: a SURB request as an ordinary forward-path message, naming
    // the raw peer (a recipient the victim did send to).
    let me = raw.recipient();
    let forged = forward_packets(
        &mut raw,
        &topology,
        &v.handle.address(),
        &surb_request(me, 500),
        |_| true,
    );
    send_all(&mut raw, &forged).await;
    until("the forged request is refused", || {
        v.handle.stats().surb_requests_refused == 1
    })
    .await;
    let s = v.handle.stats();
    assert_eq!(
        (s.surb_requests_answered, s.surbs_handed_out),
        (0, 0),
        "{s:?}"
    );
    assert_eq!(s.real_packets_sent, sent_before, "not one packet built");
    assert!(
        raw_message(&mut raw, &mut re, QUIET).await.is_none(),
        "no answer reached the requester"
    );

    // The control: the same request through one of the victim's SURBs is
    // answered (so the probe above would have seen an answer).
    let through = reply_packets(&mut raw, &topology, &mut surbs, &surb_request(me, 50));
    send_all(&mut raw, &through).await;
    match raw_message(&mut raw, &mut re, WAIT).await {
        Some(NymMessage::Repliable(m)) => {
            assert_eq!(m.sender_tag, tag);
            assert_eq!(m.content.into_parts().0.len(), 50);
        }
        other => panic!("expected additional SURBs, got {other:?}"),
    }
    let s = v.handle.stats();
    assert_eq!((s.surb_requests_answered, s.surbs_handed_out), (1, 50));
    v.handle.shutdown().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peer_surb_request_naming_a_recipient_we_never_sent_to_gets_no_answer() {
    let net = localnet().await;
    let shared = shared_api(&net);
    let topology = net.topology().clone();
    let v = peer(&shared, &net, 0, ClientConfig::for_tests()).await;
    let mut raw = Raw::register(&net.gateways()[1]).await;
    let mut third = Raw::register(&net.gateways()[0]).await;
    let mut re = Reassembler::default();

    v.handle
        .send(anonymous(raw.recipient(), b"hello", 210))
        .await
        .unwrap();
    let (_, mut surbs) = receive_surbs(&mut raw, &mut re).await;
    until("the victim's message is acknowledged", || {
        v.handle.stats().unacked_fragments == 0
    })
    .await;
    let sent_before = v.handle.stats().real_packets_sent;
    until("the victim publishes its sender tags", || {
        v.handle.stats().memory.sender_tags == 1
    })
    .await;

    // Through our SURB, naming a third party the victim never sent to.
    let p = reply_packets(
        &mut raw,
        &topology,
        &mut surbs,
        &surb_request(third.recipient(), 500),
    );
    send_all(&mut raw, &p).await;
    // And 200 more, each naming another stranger: none may add a sender tag.
    for _ in 0..200 {
        let to = stranger(&net.gateways()[1]);
        let p = reply_packets(&mut raw, &topology, &mut surbs, &surb_request(to, 500));
        send_all(&mut raw, &p).await;
    }
    until("all 201 requests are refused", || {
        v.handle.stats().surb_requests_refused == 201
    })
    .await;
    let s = v.handle.stats();
    assert_eq!(
        (s.surb_requests_answered, s.surbs_handed_out),
        (0, 0),
        "{s:?}"
    );
    assert_eq!(s.real_packets_sent, sent_before, "not one packet built");
    assert!(
        raw_message(&mut third, &mut Reassembler::default(), QUIET)
            .await
            .is_none(),
        "nothing reached the named third party"
    );
    // The refusals added no sender tag (published every second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(v.handle.stats().memory.sender_tags, 1);

    // Once the victim has sent to the third party too, a request through
    // the raw peer's SURB naming it is still refused: the SURB was made for
    // the raw peer.
    v.handle
        .send(anonymous(third.recipient(), b"hi", 1))
        .await
        .unwrap();
    let _ = receive_surbs(&mut third, &mut Reassembler::default()).await;
    until("the victim's message is acknowledged", || {
        v.handle.stats().unacked_fragments == 0
    })
    .await;
    let sent_before = v.handle.stats().real_packets_sent;
    let p = reply_packets(
        &mut raw,
        &topology,
        &mut surbs,
        &surb_request(third.recipient(), 500),
    );
    send_all(&mut raw, &p).await;
    until("the request is refused", || {
        v.handle.stats().surb_requests_refused == 202
    })
    .await;
    let s = v.handle.stats();
    assert_eq!((s.surbs_handed_out, s.real_packets_sent), (0, sent_before));
    v.handle.shutdown().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peer_1000_valid_surb_requests_stay_within_the_rate_limit() {
    const REQUESTS: usize = 1000;
    let net = localnet().await;
    let shared = shared_api(&net);
    let topology = net.topology().clone();
    let config = ClientConfig::with_core(CoreConfig {
        reply_surbs: ReplySurbConfig {
            answer_burst: 100,
            answer_rate: 20,
            ..ReplySurbConfig::default()
        },
        ..CoreConfig::for_tests()
    });
    let (burst, rate) = (100u64, 20u64);
    let half_queue = config.max_queued_packets as u64 / 2;
    let v = peer(&shared, &net, 0, config).await;
    let mut b = peer(&shared, &net, 1, ClientConfig::for_tests()).await;
    let mut raw = Raw::register(&net.gateways()[1]).await;
    let mut re = Reassembler::default();

    v.handle
        .send(anonymous(raw.recipient(), b"hello", REQUESTS as u32))
        .await
        .unwrap();
    let (_, mut surbs) = receive_surbs(&mut raw, &mut re).await;
    assert_eq!(surbs.len(), REQUESTS);
    let rss_before = peak_rss_kib();

    // 1,000 valid requests for 500 SURBs each (500,000 SURBs, about 145,000
    // packets, if answered in full).
    let t0 = Instant::now();
    let me = raw.recipient();
    let mut packets = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        packets.extend(reply_packets(
            &mut raw,
            &topology,
            &mut surbs,
            &surb_request(me, 500),
        ));
    }
    let (first, rest) = packets.split_at(REQUESTS / 2);
    send_all(&mut raw, first).await;
    // An app sends in the middle of the flood, and its message arrives.
    v.handle
        .send(plain(b.handle.address(), b"apps still send"))
        .await
        .unwrap();
    send_all(&mut raw, rest).await;
    assert_eq!(next_message(&mut b.events).await.data, b"apps still send");
    until("every request was handled", || {
        let s = v.handle.stats();
        s.surb_requests_answered + s.surb_requests_refused == REQUESTS as u64
    })
    .await;
    let elapsed = t0.elapsed().as_secs() + 1;
    let s = v.handle.stats();
    assert!(s.surbs_handed_out >= burst, "the burst was answered: {s:?}");
    assert!(
        s.surbs_handed_out <= burst + rate * elapsed,
        "{} SURBs handed out in {elapsed} s exceeds the rate limit: {s:?}",
        s.surbs_handed_out
    );
    assert!(s.surb_requests_refused > 0, "{s:?}");
    assert!(
        s.peak_queued_packets <= half_queue,
        "answers kept within half the queue: {s:?}"
    );
    drain(&mut raw, Duration::from_millis(500)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = v.handle.stats().memory;
    assert!(m.reply_key_bytes <= m.reply_key_bound, "{m:?}");
    assert_eq!(m.sender_tags, 1);
    eprintln!(
        "1,000 valid SURB requests: {} answered, {} refused, {} SURBs handed out in {elapsed} s, queue peak {}, reply keys {} ({} bytes), process peak RSS +{} KiB",
        s.surb_requests_answered,
        s.surb_requests_refused,
        s.surbs_handed_out,
        s.peak_queued_packets,
        m.reply_keys,
        m.reply_key_bytes,
        peak_rss_kib().saturating_sub(rss_before)
    );
    v.handle.shutdown().await;
    b.handle.shutdown().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peer_floods_keep_surb_store_reassembly_reply_keys_and_sender_tags_bounded() {
    const FLOOD_TAGS: u64 = 20;
    let net = localnet().await;
    let shared = shared_api(&net);
    let topology = net.topology().clone();
    let config = ClientConfig::with_core(CoreConfig {
        surb_store_bytes: 200 * 1024,
        reply_key_bytes: 64 * 1024,
        reassembly: nymd_proto::chunking::ReassemblyConfig {
            max_buffered_bytes: 256 * 1024,
            ..Default::default()
        },
        reply_surbs: ReplySurbConfig {
            max_sender_tags: 3,
            ..ReplySurbConfig::default()
        },
        ..CoreConfig::for_tests()
    });
    let mut v = peer(&shared, &net, 0, config.clone()).await;
    let mut g = peer(&shared, &net, 1, ClientConfig::for_tests()).await;
    let mut raw = Raw::register(&net.gateways()[1]).await;
    let rss_before = peak_rss_kib();

    // A genuine conversation first: G sends the victim 10 SURBs; the
    // victim sends G an anonymous message with 20 SURBs.
    g.handle
        .send(anonymous(v.handle.address(), b"from g", 10))
        .await
        .unwrap();
    let g_tag = next_message(&mut v.events).await.sender_tag.unwrap();
    v.handle
        .send(anonymous(g.handle.address(), b"to g", 20))
        .await
        .unwrap();
    let v_tag = next_message(&mut g.events).await.sender_tag.unwrap();

    // SURB flood: 20 tags x 40 SURBs (about 460 KB against 200 KiB).
    let own_gateway = raw.keys.gateway.identity.to_bytes();
    let me = raw.recipient();
    let fake_surbs: Vec<ReplySurb> = (0..40)
        .map(|_| {
            let route = topology
                .random_route_to(&mut raw.rng, &own_gateway)
                .unwrap();
            ReplySurb::build_with_mean_delay(
                &mut raw.rng,
                &to_sphinx_route(&route).unwrap(),
                me.identity(),
                Duration::ZERO,
                SphinxVersion::Seeds259,
            )
            .unwrap()
        })
        .collect();
    let mut packets = Vec::new();
    for _ in 0..FLOOD_TAGS {
        let msg = NymMessage::Repliable(RepliableMessage::new_data(
            SenderTag::random(&mut raw.rng),
            b"flood".to_vec(),
            fake_surbs.clone(),
        ));
        packets.extend(forward_packets(
            &mut raw,
            &topology,
            &v.handle.address(),
            &msg,
            |_| true,
        ));
    }
    // Reassembly flood: the first fragment only of 300 messages of 20
    // fragments (about 500 KB against 256 KiB).
    for _ in 0..300 {
        let mut big = vec![0u8; 20 * 1500];
        raw.rng.fill_bytes(&mut big);
        packets.extend(forward_packets(
            &mut raw,
            &topology,
            &v.handle.address(),
            &NymMessage::Plain(big),
            |i| i == 0,
        ));
    }
    send_all(&mut raw, &packets).await;
    until("the victim got the flood messages", || {
        v.handle.stats().messages_received > FLOOD_TAGS
    })
    .await;
    until("the victim buffered the fragments", || {
        v.handle.stats().real_packets_received >= packets.len() as u64
    })
    .await;

    // Reply keys: the victim's apps ask for 2,000 SURBs for one recipient
    // (far past 64 KiB of keys); the oldest keys of the fullest tag go, so
    // G's stay.
    v.handle
        .send(anonymous(raw.recipient(), b"many", 2000))
        .await
        .unwrap();
    // Sender tags: two more recipients than the bound of 3.
    for _ in 0..2 {
        v.handle
            .send(anonymous(stranger(&net.gateways()[1]), b"x", 1))
            .await
            .unwrap();
    }
    // Wait (reading what reaches the raw peer) until the victim has built
    // all of that (its memory figures are published every second).
    let end = Instant::now() + WAIT;
    loop {
        drain(&mut raw, Duration::from_millis(200)).await;
        let m = v.handle.stats().memory;
        if m.sender_tags == 3 && m.reply_key_bytes > m.reply_key_bound / 2 {
            break;
        }
        assert!(
            Instant::now() < end,
            "the victim did not send in time: {m:?}"
        );
    }
    let m = v.handle.stats().memory;
    eprintln!(
        "floods: SURB store {} / {} bytes ({} SURBs, {} tags), reassembly {} / {} bytes, reply keys {} / {} bytes ({} keys), sender tags {}, process peak RSS +{} KiB",
        m.surb_store_bytes,
        m.surb_store_bound,
        m.stored_surbs,
        m.surb_tags,
        m.reassembly_bytes,
        m.reassembly_bound,
        m.reply_key_bytes,
        m.reply_key_bound,
        m.reply_keys,
        m.sender_tags,
        peak_rss_kib().saturating_sub(rss_before)
    );
    assert!(m.surb_store_bytes <= m.surb_store_bound, "{m:?}");
    assert!(
        m.surb_store_bytes > m.surb_store_bound / 2,
        "the flood did fill the store: {m:?}"
    );
    assert!(m.reassembly_bytes <= m.reassembly_bound, "{m:?}");
    assert!(
        m.reassembly_bytes > m.reassembly_bound / 2,
        "the flood did fill the buffers: {m:?}"
    );
    assert!(m.reply_key_bytes <= m.reply_key_bound, "{m:?}");
    assert_eq!(m.sender_tags, 3, "{m:?}");

    // G's SURBs survived the SURB flood: the victim's reply reaches G.
    v.handle
        .send(OutgoingMessage::Reply {
            sender_tag: g_tag,
            data: b"reply to g".to_vec(),
            lane: Lane::General,
        })
        .await
        .unwrap();
    assert_eq!(next_message(&mut g.events).await.data, b"reply to g");
    // The victim's reply keys for G survived the key flood: G's reply
    // reaches the victim.
    g.handle
        .send(OutgoingMessage::Reply {
            sender_tag: v_tag,
            data: b"reply to v".to_vec(),
            lane: Lane::General,
        })
        .await
        .unwrap();
    loop {
        let m = next_message(&mut v.events).await;
        if m.data != b"flood" {
            assert_eq!(m.data, b"reply to v");
            break;
        }
    }
    v.handle.shutdown().await;
    g.handle.shutdown().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peer_gateway_that_never_acknowledges_ends_with_an_error_and_no_outbox_entry() {
    let net = localnet().await;
    let shared = shared_api(&net);
    let outbox = tempfile::tempdir().unwrap();
    let config = ClientConfig {
        core: CoreConfig {
            max_retransmissions: Some(2),
            ack_wait_addition: Duration::from_millis(300),
            ack_wait_max: Duration::from_secs(1),
            ..CoreConfig::for_tests()
        },
        outbox: Some(outbox.path().join("outbox")),
        ..ClientConfig::for_tests()
    };
    let mut v = peer(&shared, &net, 0, config.clone()).await;
    let b = peer(&shared, &net, 1, ClientConfig::for_tests()).await;
    // B's gateway drops everything that reaches it: nothing is delivered
    // and nothing acknowledged, but it stays listed.
    let b_gateway = net.gateways()[1].id;
    net.set_drop_incoming(b_gateway, true).unwrap();

    v.handle
        .send(OutgoingMessage::Plain {
            recipient: b.handle.address(),
            data: b"never acknowledged".to_vec(),
            lane: Lane::Connection(7),
        })
        .await
        .unwrap();
    until("the message is journalled", || {
        v.handle.stats().outbox_messages == 1
    })
    .await;
    let (kind, message, lane) = loop {
        match tokio::time::timeout(WAIT, v.events.recv()).await {
            Ok(Some(ClientEvent::Error {
                kind,
                message,
                lane,
            })) => break (kind, message, lane),
            Ok(Some(_)) => continue,
            _ => panic!("no error in time"),
        }
    };
    assert_eq!(kind, ErrorKind::RetransmissionsExhausted, "{message}");
    assert_eq!(lane, Some(Lane::Connection(7)), "on the sender's lane");
    let s = v.handle.stats();
    assert_eq!(s.retransmissions, 2, "{s:?}");
    assert_eq!((s.unacked_fragments, s.queued_packets), (0, 0), "{s:?}");
    until("the outbox entry is retired", || {
        v.handle.stats().outbox_messages == 0
    })
    .await;
    assert!(net.counters(b_gateway).unwrap().fault_dropped >= 3);

    // A new run of the identity finds nothing to send again.
    v.handle.shutdown().await;
    let again = start(
        &shared,
        v.keys.clone(),
        v.reg.clone(),
        config,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = again.stats();
    assert_eq!(
        (s.outbox_messages, s.queued_packets, s.real_packets_sent),
        (0, 0, 0),
        "{s:?}"
    );
    again.shutdown().await;
    b.handle.shutdown().await;
    net.shutdown().await;
}
