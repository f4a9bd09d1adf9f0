//! `nymctl access`: changing who may connect to an identity's websocket
//! port. Names are resolved with nymd's user and group databases, origins
//! are checked and written as browsers send them, the identity's
//! `config.toml` is replaced atomically and a running identity restarts
//! with the new settings (its apps reconnect).

use nix::unistd::{Gid, Group, User};

use super::{lock, IdentityInfo, Manager, ManagerError};
use crate::appserver::access::normalize_origin;
use crate::store::WebsocketConfig;

/// Changes to an identity's access settings, as given (names unresolved).
/// Removals apply before additions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessChange {
    /// Origins to allow (`scheme://host[:port]`).
    pub allow_origins: Vec<String>,
    /// Origins to take off the list.
    pub remove_origins: Vec<String>,
    /// Users (names or numeric uids) to allow.
    pub allow_users: Vec<String>,
    /// Users to take off the list.
    pub remove_users: Vec<String>,
    /// Groups (names) to allow.
    pub allow_groups: Vec<String>,
    /// Groups to take off the list.
    pub remove_groups: Vec<String>,
    /// `Some`: set `any_local_user`.
    pub any_local_user: Option<bool>,
}

impl AccessChange {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

fn invalid(msg: String) -> ManagerError {
    ManagerError::InvalidArgument(msg)
}

/// A user name or numeric uid, resolved.
fn resolve_user(user: &str) -> Result<u32, ManagerError> {
    if !user.is_empty() && user.bytes().all(|b| b.is_ascii_digit()) {
        return user
            .parse()
            .map_err(|_| invalid(format!("uid {user} is out of range")));
    }
    match User::from_name(user) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        Ok(None) => Err(invalid(format!(
            "there is no local user named {user:?}; give a user name (as in `id -un`) or a numeric uid"
        ))),
        Err(e) => Err(invalid(format!("cannot look up user {user:?}: {e}"))),
    }
}

/// A group name (or numeric gid of an existing group), resolved to the
/// group's name.
fn resolve_group(group: &str) -> Result<String, ManagerError> {
    let found = if !group.is_empty() && group.bytes().all(|b| b.is_ascii_digit()) {
        let gid: u32 = group
            .parse()
            .map_err(|_| invalid(format!("gid {group} is out of range")))?;
        Group::from_gid(Gid::from_raw(gid))
    } else {
        Group::from_name(group)
    };
    match found {
        Ok(Some(g)) => Ok(g.name),
        Ok(None) => Err(invalid(format!(
            "there is no local group named {group:?}; create it (sudo groupadd {group}) or give an existing group"
        ))),
        Err(e) => Err(invalid(format!("cannot look up group {group:?}: {e}"))),
    }
}

fn listed<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Apply `change` to `ws`. Blocking (user and group lookups). Errors name
/// the value and what to do; on error `ws` may be half changed, so apply
/// to a copy.
pub fn apply(ws: &mut WebsocketConfig, change: &AccessChange) -> Result<(), ManagerError> {
    for o in &change.remove_origins {
        let o = normalize_origin(o).unwrap_or_else(|_| o.clone());
        let before = ws.allowed_origins.len();
        ws.allowed_origins.retain(|a| *a != o);
        if ws.allowed_origins.len() == before {
            return Err(invalid(format!(
                "origin {o} is not allowed, so it cannot be removed (allowed: {})",
                listed(&ws.allowed_origins)
            )));
        }
    }
    for u in &change.remove_users {
        let uid = resolve_user(u)?;
        let before = ws.allowed_uids.len();
        ws.allowed_uids.retain(|a| *a != uid);
        if ws.allowed_uids.len() == before {
            return Err(invalid(format!(
                "user {u} (uid {uid}) is not allowed by uid, so it cannot be removed (allowed uids: {})",
                listed(&ws.allowed_uids)
            )));
        }
    }
    for g in &change.remove_groups {
        let name = resolve_group(g).unwrap_or_else(|_| g.clone());
        let before = ws.allowed_groups.len();
        ws.allowed_groups.retain(|a| *a != name);
        if ws.allowed_groups.len() == before {
            return Err(invalid(format!(
                "group {name} is not allowed, so it cannot be removed (allowed groups: {})",
                listed(&ws.allowed_groups)
            )));
        }
    }
    for o in &change.allow_origins {
        let o = normalize_origin(o).map_err(|e| invalid(e.to_string()))?;
        if !ws.allowed_origins.contains(&o) {
            ws.allowed_origins.push(o);
        }
    }
    for u in &change.allow_users {
        let uid = resolve_user(u)?;
        if !ws.allowed_uids.contains(&uid) {
            ws.allowed_uids.push(uid);
        }
    }
    for g in &change.allow_groups {
        let name = resolve_group(g)?;
        if !ws.allowed_groups.contains(&name) {
            ws.allowed_groups.push(name);
        }
    }
    if let Some(any) = change.any_local_user {
        ws.any_local_user = Some(any);
    }
    Ok(())
}

impl Manager {
    /// Change who may connect to an identity's port (see the module docs)
    /// and answer with the identity as it is afterwards. An empty change
    /// only reads. A running identity is restarted when something changed.
    pub async fn update_access(
        &self,
        id: &str,
        change: AccessChange,
    ) -> Result<IdentityInfo, ManagerError> {
        // Serialised with init and remove (the identity cannot vanish
        // meanwhile) and with other access changes.
        let _admin = self.inner.admin.lock().await;
        let current = lock(&self.inner.slots)
            .get(id)
            .map(|s| s.config.websocket.clone())
            .ok_or_else(|| ManagerError::NotFound(id.to_string()))?;
        if change.is_empty() {
            return self.info(id);
        }
        let updated = tokio::task::spawn_blocking(move || {
            let mut ws = current;
            apply(&mut ws, &change).map(|()| ws)
        })
        .await
        .map_err(|e| ManagerError::Client(format!("the access change failed: {e}")))??;
        let changed = self.edit_config(id, |c| {
            if c.websocket == updated {
                return false;
            }
            c.websocket = updated;
            true
        })?;
        if !changed {
            return self.info(id);
        }
        let running = lock(&self.inner.slots)
            .get(id)
            .is_some_and(|s| s.running.is_some());
        tracing::info!(identity = %id, running, "access settings changed");
        if running {
            self.restart(id).await?;
        }
        self.info(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws() -> WebsocketConfig {
        WebsocketConfig::new([127, 0, 0, 1].into(), 1977, Some(1000))
    }

    #[test]
    fn changes_apply_and_validate() {
        let mut w = ws();
        apply(
            &mut w,
            &AccessChange {
                allow_origins: vec![
                    "HTTP://LocalHost:8080".into(),
                    "http://localhost:8080".into(),
                ],
                allow_users: vec!["root".into(), "4242".into()],
                allow_groups: vec!["root".into()],
                any_local_user: Some(false),
                ..AccessChange::default()
            },
        )
        .expect("apply");
        assert_eq!(w.allowed_origins, vec!["http://localhost:8080".to_owned()]);
        assert_eq!(w.allowed_uids, vec![1000, 0, 4242]);
        assert_eq!(w.allowed_groups, vec!["root".to_owned()]);
        assert_eq!(w.any_local_user, Some(false));
        apply(
            &mut w,
            &AccessChange {
                remove_origins: vec!["http://localhost:8080".into()],
                remove_users: vec!["4242".into()],
                remove_groups: vec!["0".into()],
                any_local_user: Some(true),
                ..AccessChange::default()
            },
        )
        .expect("remove");
        assert!(w.allowed_origins.is_empty() && w.allowed_groups.is_empty());
        assert_eq!(w.allowed_uids, vec![1000, 0]);
        assert!(w.any_local_user());
    }

    #[test]
    fn bad_values_say_what_to_do() {
        let cases = [
            (
                AccessChange {
                    allow_origins: vec!["http://localhost:8080/app".into()],
                    ..AccessChange::default()
                },
                "scheme://host[:port]",
            ),
            (
                AccessChange {
                    allow_users: vec!["no-such-user-nymd-test".into()],
                    ..AccessChange::default()
                },
                "no local user",
            ),
            (
                AccessChange {
                    allow_groups: vec!["no-such-group-nymd-test".into()],
                    ..AccessChange::default()
                },
                "groupadd",
            ),
            (
                AccessChange {
                    remove_origins: vec!["http://x.example".into()],
                    ..AccessChange::default()
                },
                "cannot be removed",
            ),
            (
                AccessChange {
                    remove_users: vec!["77".into()],
                    ..AccessChange::default()
                },
                "allowed uids: 1000",
            ),
            (
                AccessChange {
                    allow_users: vec!["99999999999".into()],
                    ..AccessChange::default()
                },
                "out of range",
            ),
        ];
        for (change, want) in cases {
            let err = apply(&mut ws(), &change).expect_err("refused").to_string();
            assert!(err.contains(want), "{change:?}: {err}");
        }
    }
}
