//! `nymctl socks5` and `nymctl init --socks5`: an identity's `[socks5]`
//! section. The port is the next free one from 1080 unless given; `auto`
//! picks a network requester from the nym-api's described nodes (spec §7)
//! whose gateway is in the current topology, and stores its address. A
//! running identity restarts when the section changes.

use std::net::IpAddr;
use std::time::Duration;

use nymd_mixnet::{TopologySource, Url};
use nymd_proto::socks5::discovery::{self, DESCRIBED_NODES_PATH};
use nymd_proto::Recipient;
use rand::seq::SliceRandom;
use tokio::net::TcpListener;

use super::{lock, IdentityInfo, Manager, ManagerError};
use crate::store::{Socks5Config, DEFAULT_SOCKS5_PORT};

/// The word that asks for a network requester chosen from the directory.
pub const AUTO_PROVIDER: &str = "auto";
/// Largest described-nodes answer read (mainnet's is a few MiB).
const MAX_LISTING: usize = 64 << 20;
/// Time to fetch the listing from one nym-api.
const LISTING_TIMEOUT: Duration = Duration::from_secs(30);

/// Where an identity's SOCKS connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderChoice {
    /// This network requester (a Nym address).
    Address(Box<Recipient>),
    /// One chosen from the directory.
    Auto,
}

impl std::str::FromStr for ProviderChoice {
    type Err = ManagerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case(AUTO_PROVIDER) {
            return Ok(Self::Auto);
        }
        s.parse().map(|r| Self::Address(Box::new(r))).map_err(|e| {
            ManagerError::InvalidArgument(format!(
                "provider {s:?} is not a Nym address ({e}); give the network requester's address as <identity>.<encryption>@<gateway>, or `auto`"
            ))
        })
    }
}

/// Changes to an identity's `[socks5]` section; `None` leaves a setting as
/// it is. An identity without the section gets one (enabled, anonymous,
/// the next free port from 1080) on any change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Socks5Change {
    /// Serve the port or not.
    pub enabled: Option<bool>,
    /// The port.
    pub port: Option<u16>,
    /// The network requester.
    pub provider: Option<ProviderChoice>,
    /// Anonymous (reply SURBs) or plain (return address) messages.
    pub anonymous: Option<bool>,
}

impl Socks5Change {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Whether `addr` is a Nym address that reaches a gateway of `topology`
/// that can receive.
fn reachable(topology: &nymd_proto::topology::NymTopology, addr: &Recipient) -> bool {
    topology
        .egress_by_identity(addr.gateway().as_bytes(), false)
        .is_ok()
}

impl Manager {
    /// Change an identity's `[socks5]` section (see the module docs) and
    /// answer with the identity afterwards. An empty change only reads.
    pub async fn update_socks5(
        &self,
        id: &str,
        change: Socks5Change,
    ) -> Result<IdentityInfo, ManagerError> {
        let _admin = self.inner.admin.lock().await;
        let (current, websocket) = lock(&self.inner.slots)
            .get(id)
            .map(|s| (s.config.socks5.clone(), s.config.websocket.clone()))
            .ok_or_else(|| ManagerError::NotFound(id.to_string()))?;
        if change.is_empty() {
            return self.info(id);
        }
        let updated = self.socks5_section(id, current, change).await?;
        updated
            .validate(&websocket)
            .map_err(|e| ManagerError::InvalidArgument(e.to_string()))?;
        let changed = self.edit_config(id, |c| {
            if c.socks5.as_ref() == Some(&updated) {
                return false;
            }
            c.socks5 = Some(updated.clone());
            true
        })?;
        if !changed {
            return self.info(id);
        }
        let running = lock(&self.inner.slots)
            .get(id)
            .is_some_and(|s| s.running.is_some());
        tracing::info!(
            identity = %id,
            running,
            enabled = updated.enabled,
            port = updated.port,
            anonymous = updated.anonymous,
            provider = updated.provider.as_deref().unwrap_or("none"),
            "SOCKS5 settings changed"
        );
        if running {
            self.restart(id).await?;
        }
        self.info(id)
    }

    /// The section `change` makes of `current` (or of a new one) for
    /// identity `id`.
    pub(super) async fn socks5_section(
        &self,
        id: &str,
        current: Option<Socks5Config>,
        change: Socks5Change,
    ) -> Result<Socks5Config, ManagerError> {
        let host = current
            .as_ref()
            .map(|c| c.host)
            .unwrap_or_else(|| IpAddr::from([127, 0, 0, 1]));
        let own_port = current.as_ref().map(|c| c.port);
        let port = match change.port {
            Some(p) if Some(p) == own_port => p,
            Some(p) => self.choose_socks_port(id, host, Some(p)).await?,
            None => match own_port {
                Some(p) => p,
                None => self.choose_socks_port(id, host, None).await?,
            },
        };
        let mut section = current.unwrap_or_else(|| Socks5Config::new(host, port, None));
        section.port = port;
        if let Some(e) = change.enabled {
            section.enabled = e;
        }
        if let Some(a) = change.anonymous {
            section.anonymous = a;
        }
        match change.provider {
            Some(ProviderChoice::Address(a)) => section.provider = Some(a.to_string()),
            Some(ProviderChoice::Auto) => {
                let chosen = self.find_network_requester().await?;
                tracing::info!(identity = %id, provider = %chosen, "chose a network requester from the directory");
                section.provider = Some(chosen.to_string());
            }
            None => {}
        }
        Ok(section)
    }

    /// A free SOCKS port for identity `id`: `wanted` if free, else the next
    /// free one from 1080. Ports of other identities (app and SOCKS) count
    /// as taken even while they are stopped.
    async fn choose_socks_port(
        &self,
        id: &str,
        host: IpAddr,
        wanted: Option<u16>,
    ) -> Result<u16, ManagerError> {
        let taken: Vec<u16> = lock(&self.inner.slots)
            .iter()
            .flat_map(|(other, s)| {
                let socks = s
                    .config
                    .socks5
                    .as_ref()
                    .filter(|_| other != id)
                    .map(|c| c.port);
                [Some(s.config.websocket.port), socks]
            })
            .flatten()
            .collect();
        if let Some(p) = wanted {
            if p == 0 {
                return Err(ManagerError::InvalidArgument(
                    "--socks5-port must not be 0".into(),
                ));
            }
            if taken.contains(&p) || TcpListener::bind((host, p)).await.is_err() {
                return Err(ManagerError::InvalidArgument(format!(
                    "SOCKS5 port {p} is already in use; choose another with --socks5-port, or leave it out to take the next free one from {DEFAULT_SOCKS5_PORT}"
                )));
            }
            return Ok(p);
        }
        let mut p = DEFAULT_SOCKS5_PORT;
        loop {
            if !taken.contains(&p) && TcpListener::bind((host, p)).await.is_ok() {
                return Ok(p);
            }
            p = p.checked_add(1).ok_or_else(|| {
                ManagerError::InvalidArgument("no free port for SOCKS5 above 1080".into())
            })?;
        }
    }

    /// A network requester from the directory: a node that declares one
    /// (`exit_nr`) whose address names a gateway of the current topology
    /// that can receive; chosen at random among them.
    pub async fn find_network_requester(&self) -> Result<Recipient, ManagerError> {
        let shared = self.shared().clone();
        let TopologySource::NymApi(urls) = &shared.config().default_source else {
            return Err(ManagerError::InvalidArgument(
                "`auto` needs a nym-api to list the network requesters, and this nymd reads its topology from a file; give the network requester's address instead".into(),
            ));
        };
        let topology = shared
            .topology(None)
            .await
            .ok()
            .and_then(|t| t.current())
            .ok_or_else(|| {
                ManagerError::Client(
                    "no topology yet, so no network requester can be checked; try again shortly"
                        .into(),
                )
            })?;
        let mut errors = Vec::new();
        for base in urls {
            let listing = match fetch_listing(&shared, base).await {
                Ok(b) => b,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let (nodes, skipped) = match discovery::parse_described(&listing) {
                Ok(x) => x,
                Err(e) => {
                    errors.push(format!("{base}: {e}"));
                    continue;
                }
            };
            if skipped > 0 {
                tracing::debug!(%base, skipped, "described nodes that could not be read were skipped");
            }
            let found = discovery::network_requesters(&nodes);
            let usable: Vec<Recipient> = found
                .iter()
                .map(|n| n.address)
                .filter(|a| reachable(&topology, a))
                .collect();
            if let Some(a) = usable.choose(&mut rand::thread_rng()) {
                return Ok(*a);
            }
            errors.push(format!(
                "{base} lists {} nodes, {} with a network requester, none of them behind a gateway of the current topology",
                nodes.len(),
                found.len()
            ));
        }
        Err(ManagerError::Client(format!(
            "no network requester found ({}); give one's address instead of `auto`",
            errors.join("; ")
        )))
    }
}

/// GET `<base>/v2/nym-nodes/described`, bounded in size and time.
async fn fetch_listing(shared: &nymd_mixnet::Shared, base: &Url) -> Result<Vec<u8>, String> {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let p = format!("{}/", base.path());
        base.set_path(&p);
    }
    let url = base
        .join(DESCRIBED_NODES_PATH)
        .map_err(|e| format!("bad URL {base}{DESCRIBED_NODES_PATH}: {e}"))?;
    let fetch = async {
        let mut resp = shared
            .http()
            .get(url.clone())
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("GET {url}: {e}"))?;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            if body.len() + chunk.len() > MAX_LISTING {
                return Err(format!("GET {url}: answer larger than {MAX_LISTING} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    tokio::time::timeout(LISTING_TIMEOUT, fetch)
        .await
        .map_err(|_| format!("GET {url}: no answer within {LISTING_TIMEOUT:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_choices() {
        assert_eq!(
            "auto".parse::<ProviderChoice>().ok(),
            Some(ProviderChoice::Auto)
        );
        assert_eq!(
            "AUTO".parse::<ProviderChoice>().ok(),
            Some(ProviderChoice::Auto)
        );
        let a = "DguTcdkWWtDyUFLvQxRdcA8qZhardhE1ZXy1YCC7Zfmq.Dxreouj5RhQqMb3ZaAxgXFdGkmfbDKwk457FdeHGKmQQ@4kjgWmFU1tcGAZYRZR57yFuVAexjLbJ5M7jvo3X5Hkcf";
        assert!(matches!(
            a.parse::<ProviderChoice>(),
            Ok(ProviderChoice::Address(_))
        ));
        let e = "nope"
            .parse::<ProviderChoice>()
            .expect_err("not an address");
        assert!(e.to_string().contains("`auto`"), "{e}");
        assert!(Socks5Change::default().is_empty());
    }
}
