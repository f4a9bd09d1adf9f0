//! A long stream of replies through reply SURBs (what a network requester
//! sends a SOCKS client that downloads anonymously): the replier asks for
//! more SURBs before it runs out, and SURBs that arrive with the sender's
//! own data messages meanwhile do not make it forget the request it has
//! out (which used to leave it with none and fail every waiting reply with
//! "no reply SURBs left").

#![allow(clippy::unwrap_used)]

mod hostile;

use std::time::Duration;

use hostile::*;
use nymd_mixnet::{ClientConfig, ClientEvent, Lane, OutgoingMessage};

const REPLIES: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_stream_keeps_its_surbs_coming() {
    let net = localnet().await;
    let shared = shared_api(&net);
    let mut a = peer(&shared, &net, 0, ClientConfig::for_tests()).await;
    let mut b = peer(&shared, &net, 1, ClientConfig::for_tests()).await;
    // A opens with 20 SURBs, as a SOCKS client's Connect does.
    a.handle
        .send(anonymous(b.handle.address(), b"connect", 20))
        .await
        .unwrap();
    let tag = next_message(&mut b.events).await.sender_tag.unwrap();
    // A keeps sending small messages with 3 SURBs each while B streams its
    // replies, as a SOCKS client's Sends do.
    let to_b = b.handle.address();
    let a_sender = a.handle.sender();
    let chatter = tokio::spawn(async move {
        for i in 0u32.. {
            let msg = OutgoingMessage::Anonymous {
                recipient: to_b,
                data: format!("send {i}").into_bytes(),
                reply_surbs: 3,
                lane: Lane::Connection(1),
            };
            if a_sender.send(msg).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    for i in 0..REPLIES {
        b.handle
            .send(OutgoingMessage::Reply {
                sender_tag: tag,
                data: format!("reply {i}").into_bytes(),
                lane: Lane::Connection(2),
            })
            .await
            .unwrap();
    }
    let mut got = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    while got.len() < REPLIES {
        tokio::select! {
            ev = a.events.recv() => match ev {
                Some(ClientEvent::Received(m)) => {
                    if let Some(i) = std::str::from_utf8(&m.data)
                        .ok()
                        .and_then(|t| t.strip_prefix("reply "))
                    {
                        got.insert(i.to_owned());
                    }
                }
                Some(_) => {}
                None => panic!("A's events ended"),
            },
            ev = b.events.recv() => {
                if let Some(ClientEvent::Error { kind, message, .. }) = ev {
                    panic!("B's replies failed ({kind:?}): {message}; {} of {REPLIES} arrived", got.len());
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                panic!("{} of {REPLIES} replies arrived in time; B: {:?}", got.len(), b.handle.stats());
            }
        }
    }
    assert!(
        b.handle.stats().surbs_handed_out == 0 && a.handle.stats().surb_requests_answered > 0,
        "B asked A for more SURBs"
    );
    chatter.abort();
    a.handle.shutdown().await;
    b.handle.shutdown().await;
    net.shutdown().await;
}
