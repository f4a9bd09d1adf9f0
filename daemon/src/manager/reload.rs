//! Reload (SIGHUP, `systemctl reload nymd`): read every identity folder
//! again and apply what changed, touching nothing else.
//!
//! For each folder under `<state dir>/identities`:
//! - a folder the manager does not know is loaded, and started if its
//!   `config.toml` says `enabled = true`;
//! - a known identity whose `config.toml`, keys or gateway registration
//!   changed gets the new settings: restarted if it was running, started if
//!   the edit enabled it, stopped if the edit disabled it;
//! - an unchanged identity is left alone: its runner, its gateway
//!   connection and its apps are not disturbed;
//! - a known identity whose files no longer load keeps running with the
//!   settings it has (a half-finished edit must not take a working identity
//!   down); the error is reported;
//! - a known identity whose folder is gone is stopped and forgotten (the
//!   daemon never deletes files on reload).
//!
//! `state.toml` (the gateway authentication clock) is written by the
//! runner itself and is not a setting: it never causes a restart.

use super::{lock, slot_for, BrokenIdentity, Manager, ManagerError, ManagerEvent, Slot};
use crate::config::IdentitiesSection;

/// What a reload did, one list per outcome (sorted by name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// New folders, now loaded (and started if enabled).
    pub added: Vec<String>,
    /// Folders that disappeared: stopped and forgotten.
    pub removed: Vec<String>,
    /// Running identities whose settings changed: restarted with them.
    pub restarted: Vec<String>,
    /// Identities the edit enabled: started.
    pub started: Vec<String>,
    /// Identities the edit disabled: stopped.
    pub stopped: Vec<String>,
    /// Stopped identities whose settings changed: kept for their next start.
    pub updated: Vec<String>,
    /// Left alone.
    pub unchanged: Vec<String>,
    /// Folders that cannot be loaded, with why. Known identities among them
    /// keep running with their previous settings.
    pub failed: Vec<(String, String)>,
}

impl ReloadReport {
    /// One line for logs and systemd's status.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (n, what) in [
            (self.added.len(), "added"),
            (self.removed.len(), "removed"),
            (self.restarted.len(), "restarted"),
            (self.started.len(), "started"),
            (self.stopped.len(), "stopped"),
            (self.updated.len(), "updated"),
            (self.failed.len(), "failed to load"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        if parts.is_empty() {
            "no identity changed".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// Whether a freshly loaded slot differs from the running one in anything
/// the runner uses.
fn settings_differ(old: &Slot, new: &Slot) -> bool {
    old.config != new.config || old.address != new.address || old.registration != new.registration
}

impl Manager {
    /// Replace the `[identities]` defaults used for new identities (after
    /// the daemon's config file was read again). Existing identities keep
    /// their own copies.
    pub fn set_defaults(&self, defaults: IdentitiesSection) {
        *lock(&self.inner.defaults) = defaults;
    }

    /// Read every identity folder again and apply what changed (see the
    /// module docs). Serialised with `init` and `remove`.
    pub async fn reload(&self) -> Result<ReloadReport, ManagerError> {
        if self.inner.cancel.is_cancelled() {
            return Err(ManagerError::ShuttingDown);
        }
        let _admin = self.inner.admin.lock().await;
        let mut report = ReloadReport::default();
        let on_disk = self.inner.store.ids()?;
        let known: Vec<String> = {
            let mut v: Vec<String> = lock(&self.inner.slots).keys().cloned().collect();
            v.sort();
            v
        };

        // Gone first: frees their ports for identities that move onto them.
        for id in known.iter().filter(|id| !on_disk.contains(id)) {
            // keep_enabled: the folder is gone, there is no config to write.
            if let Err(e) = self.stop_inner(id, true).await {
                tracing::warn!(identity = %id, "reload: stopping a removed identity: {e}");
            }
            lock(&self.inner.slots).remove(id);
            self.emit(ManagerEvent::Removed { id: id.clone() });
            report.removed.push(id.clone());
        }
        lock(&self.inner.broken).retain(|b| on_disk.contains(&b.id));

        let mut added = Vec::new();
        for id in &on_disk {
            let loaded = self
                .inner
                .store
                .load(id)
                .map_err(|e| e.to_string())
                .and_then(|s| slot_for(&s).map_err(|e| e.to_string()));
            let fresh = match loaded {
                Ok(slot) => slot,
                Err(error) => {
                    tracing::error!(identity = %id, "reload: cannot load: {error}");
                    if !known.contains(id) {
                        let mut broken = lock(&self.inner.broken);
                        broken.retain(|b| &b.id != id);
                        broken.push(BrokenIdentity {
                            id: id.clone(),
                            error: error.clone(),
                        });
                    }
                    report.failed.push((id.clone(), error));
                    continue;
                }
            };
            lock(&self.inner.broken).retain(|b| &b.id != id);
            if !known.contains(id) {
                let enabled = fresh.config.enabled;
                lock(&self.inner.slots).insert(id.clone(), fresh);
                self.emit(ManagerEvent::Added { id: id.clone() });
                if enabled {
                    added.push(id.clone());
                }
                report.added.push(id.clone());
                continue;
            }
            // Apply the new settings to the slot, keeping its runtime state.
            let (running, enabled) = {
                let mut slots = lock(&self.inner.slots);
                let Some(slot) = slots.get_mut(id) else {
                    continue;
                };
                if !settings_differ(slot, &fresh) {
                    report.unchanged.push(id.clone());
                    continue;
                }
                slot.config = fresh.config;
                slot.address = fresh.address;
                slot.gateway_id = fresh.gateway_id;
                slot.gateway_listener = fresh.gateway_listener;
                slot.registration = fresh.registration;
                let running = slot.running.as_ref().is_some_and(|r| !r.done.is_finished());
                (running, slot.config.enabled)
            };
            let applied = match (running, enabled) {
                (true, true) => {
                    tracing::info!(identity = %id, "reload: settings changed; restarting");
                    self.restart(id).await.map(|()| &mut report.restarted)
                }
                (true, false) => {
                    tracing::info!(identity = %id, "reload: disabled; stopping");
                    self.stop_inner(id, true)
                        .await
                        .map(|()| &mut report.stopped)
                }
                (false, true) => {
                    tracing::info!(identity = %id, "reload: enabled; starting");
                    self.start(id).map(|()| &mut report.started)
                }
                (false, false) => Ok(&mut report.updated),
            };
            match applied {
                Ok(list) => list.push(id.clone()),
                Err(e) => {
                    tracing::error!(identity = %id, "reload: {e}");
                    report.failed.push((id.clone(), e.to_string()));
                }
            }
        }
        for id in added {
            if let Err(e) = self.start(&id) {
                tracing::error!(identity = %id, "reload: cannot start new identity: {e}");
            }
        }
        Ok(report)
    }
}
