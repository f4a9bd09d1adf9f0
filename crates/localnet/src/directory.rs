//! A small HTTP/1.1 server that answers the nym-api routes a 2026.9 client
//! calls, from documents prepared by the network (JSON, same field names as
//! nym-api). Any path prefix is accepted (a base URL such as
//! `http://127.0.0.1:PORT/api/` works), the query string is ignored, and every
//! response closes the connection.
//!
//! Hostile clients cannot hold it: the request head is capped in size and
//! must arrive within a deadline.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Time a client has to send its whole request head.
const HEAD_DEADLINE: Duration = Duration::from_secs(5);

/// Route suffixes served, relative to the API base.
pub const ROUTE_KEY_ROTATION: &str = "v1/epoch/key-rotation-info";
/// The rewarded set (mix layers and gateway sets).
pub const ROUTE_REWARDED_SET: &str = "v1/nym-nodes/rewarded-set";
/// Active mixnodes, skimmed form.
pub const ROUTE_MIXNODES: &str = "v2/unstable/nym-nodes/skimmed/mixnodes/active";
/// Entry gateways, skimmed form.
pub const ROUTE_GATEWAYS: &str = "v2/unstable/nym-nodes/skimmed/entry-gateways";
/// Every node, skimmed form.
pub const ROUTE_ALL_NODES: &str = "v2/unstable/nym-nodes/skimmed";
/// Every node as it describes itself (network requesters among them).
pub const ROUTE_DESCRIBED: &str = "v2/nym-nodes/described";
/// The deprecated form of [`ROUTE_DESCRIBED`], with the same fields.
pub const ROUTE_DESCRIBED_V1: &str = "v1/nym-nodes/described";

/// The JSON documents the directory serves, by route suffix.
#[derive(Debug, Default, Clone)]
pub struct Documents {
    by_route: HashMap<&'static str, String>,
}

impl Documents {
    /// Set the body served for a route.
    pub fn set(&mut self, route: &'static str, json: String) {
        self.by_route.insert(route, json);
    }

    /// Find the document for a request path (prefix and query ignored). The
    /// longest matching route wins so that `…/skimmed/entry-gateways` is not
    /// answered with `…/skimmed`.
    pub fn lookup(&self, path: &str) -> Option<&str> {
        let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
        self.by_route
            .iter()
            .filter(|(route, _)| {
                path.strip_suffix(**route)
                    .is_some_and(|prefix| prefix.is_empty() || prefix.ends_with('/'))
            })
            .max_by_key(|(route, _)| route.len())
            .map(|(_, body)| body.as_str())
    }
}

/// Shared, replaceable documents (the network updates them when a node stops).
pub type SharedDocuments = Arc<RwLock<Documents>>;

/// Serve until `cancel` fires. Each connection runs on `tracker`.
pub async fn serve(
    listener: TcpListener,
    docs: SharedDocuments,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let docs = docs.clone();
                let cancel = cancel.clone();
                tracker.spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        r = handle(stream, docs) => {
                            if let Err(e) = r {
                                tracing::debug!(%peer, "directory request failed: {e}");
                            }
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!("directory accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before the request head ended",
            ));
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(head);
        }
        if head.len() > MAX_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
    }
}

async fn handle(mut stream: TcpStream, docs: SharedDocuments) -> std::io::Result<()> {
    let head = match tokio::time::timeout(HEAD_DEADLINE, read_head(&mut stream)).await {
        Ok(h) => h?,
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request head not received in time",
            ))
        }
    };
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.lines().next().unwrap_or_default().split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = if method != "GET" {
        (
            "405 Method Not Allowed",
            error_body("only GET is supported"),
        )
    } else {
        let found = docs
            .read()
            .ok()
            .and_then(|d| d.lookup(path).map(str::to_owned));
        match found {
            Some(body) => ("200 OK", body),
            None => ("404 Not Found", error_body("no such route")),
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

fn error_body(msg: &str) -> String {
    serde_json::json!({ "message": msg }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_ignores_prefix_and_query_and_prefers_longest() {
        let mut d = Documents::default();
        d.set(ROUTE_ALL_NODES, "all".into());
        d.set(ROUTE_GATEWAYS, "gw".into());
        d.set(ROUTE_REWARDED_SET, "rs".into());
        assert_eq!(
            d.lookup("/api/v2/unstable/nym-nodes/skimmed/entry-gateways?page=0&output=bincode"),
            Some("gw")
        );
        assert_eq!(d.lookup("/v2/unstable/nym-nodes/skimmed"), Some("all"));
        assert_eq!(d.lookup("/v1/nym-nodes/rewarded-set/"), Some("rs"));
        assert_eq!(d.lookup("/xv1/nym-nodes/rewarded-set"), None);
        assert_eq!(d.lookup("/nothing"), None);
    }

    #[test]
    fn described_routes_take_output_json_and_ignore_pages() {
        let mut d = Documents::default();
        d.set(ROUTE_DESCRIBED, "v2".into());
        d.set(ROUTE_DESCRIBED_V1, "v1".into());
        d.set(ROUTE_ALL_NODES, "skimmed".into());
        assert_eq!(d.lookup("/api/v2/nym-nodes/described"), Some("v2"));
        assert_eq!(
            d.lookup("/api/v2/nym-nodes/described?output=json&page=3&per_page=10"),
            Some("v2")
        );
        assert_eq!(d.lookup("/v1/nym-nodes/described/?output=json"), Some("v1"));
        assert_eq!(d.lookup("/v2/nym-nodes/describe"), None);
    }
}
