//! Who may do what: the peer's credentials (SO_PEERCRED) decide the tier of
//! a connection.
//!
//! - uid 0, the daemon's own uid, and members of the operator group
//!   (`nymd`: primary group or a supplementary group in the group
//!   database) get [`Tier::Operate`];
//! - everyone else who can reach the socket gets [`Tier::Observe`]: read and
//!   subscribe only.
//!
//! Membership is read from the group database (`getgrouplist`), not from the
//! peer process, so a user added to the group operates without logging in
//! again; /proc of other users' processes may be hidden from the daemon
//! (`ProtectProc=invisible`) anyway.

use nix::unistd::{Gid, Uid, User};
use nymd_ipc::Tier;

/// Credentials of a connected peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Process id, when the kernel gave one.
    pub pid: Option<i32>,
}

/// How the server decides a connection's tier.
#[derive(Debug, Clone)]
pub enum TierPolicy {
    /// From the peer's credentials (production).
    Credentials(AccessRules),
    /// Every connection gets this tier. For tests that cannot switch uid,
    /// and for a deliberately read-only socket.
    Fixed(Tier),
}

/// The facts [`TierPolicy::Credentials`] needs.
#[derive(Debug, Clone)]
pub struct AccessRules {
    /// The daemon's effective uid.
    pub daemon_uid: u32,
    /// The operator group's gid, if the group exists.
    pub operate_gid: Option<u32>,
    /// Its name, for messages.
    pub operate_group: String,
}

impl AccessRules {
    /// Rules for this process and the named operator group.
    pub fn for_this_process(operate_group: &str) -> Self {
        Self {
            daemon_uid: nix::unistd::geteuid().as_raw(),
            operate_gid: super::socket::lookup_group(operate_group).map(Gid::as_raw),
            operate_group: operate_group.to_owned(),
        }
    }

    /// The tier of a peer. Blocking: it may consult the user and group
    /// databases (NSS), so call it off the async threads.
    pub fn tier_of(&self, peer: &PeerCredentials) -> Tier {
        if peer.uid == 0 || peer.uid == self.daemon_uid {
            return Tier::Operate;
        }
        let Some(gid) = self.operate_gid else {
            return Tier::Observe;
        };
        if peer.gid == gid || user_in_group(peer.uid, gid) {
            Tier::Operate
        } else {
            Tier::Observe
        }
    }

    /// Why a peer only observes, and how to change that.
    pub fn observe_reason(&self, peer: &PeerCredentials) -> (String, String) {
        let message = format!(
            "permission denied: uid {} may only observe nymd (operate needs root, the daemon's user or group '{}')",
            peer.uid, self.operate_group
        );
        let hint = if self.operate_gid.is_some() {
            format!(
                "add the user to the group: sudo usermod -aG {} <user>",
                self.operate_group
            )
        } else {
            format!(
                "group '{}' does not exist; create it (sudo groupadd --system {}), add the user, and restart nymd",
                self.operate_group, self.operate_group
            )
        };
        (message, hint)
    }
}

/// Whether `uid`'s user is in group `gid` per the group database (primary
/// or supplementary). Blocking (NSS).
pub(crate) fn user_in_group(uid: u32, gid: u32) -> bool {
    let user = match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(u)) => u,
        Ok(None) => return false,
        Err(e) => {
            tracing::warn!("cannot look up uid {uid}: {e}");
            return false;
        }
    };
    if user.gid.as_raw() == gid {
        return true;
    }
    let Ok(name) = std::ffi::CString::new(user.name.as_bytes()) else {
        return false;
    };
    match nix::unistd::getgrouplist(&name, user.gid) {
        Ok(groups) => groups.iter().any(|g| g.as_raw() == gid),
        Err(e) => {
            tracing::warn!("cannot list the groups of {}: {e}", user.name);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(operate_gid: Option<u32>) -> AccessRules {
        AccessRules {
            daemon_uid: 4242,
            operate_gid,
            operate_group: "nymd".into(),
        }
    }

    fn peer(uid: u32, gid: u32) -> PeerCredentials {
        PeerCredentials {
            uid,
            gid,
            pid: None,
        }
    }

    #[test]
    fn root_and_the_daemon_user_operate() {
        assert_eq!(rules(None).tier_of(&peer(0, 0)), Tier::Operate);
        assert_eq!(rules(None).tier_of(&peer(4242, 4242)), Tier::Operate);
    }

    #[test]
    fn others_observe_unless_in_the_group() {
        // No such uid in the database, primary gid not the group.
        assert_eq!(
            rules(Some(977)).tier_of(&peer(3_999_999, 100)),
            Tier::Observe
        );
        assert_eq!(rules(None).tier_of(&peer(3_999_999, 977)), Tier::Observe);
        // Effective gid is the operator group.
        assert_eq!(
            rules(Some(977)).tier_of(&peer(3_999_999, 977)),
            Tier::Operate
        );
    }

    #[test]
    fn supplementary_groups_come_from_the_group_database() {
        // uid 0's user (root) is in group 0 per the database.
        assert!(user_in_group(0, 0));
        assert!(!user_in_group(3_999_999, 0));
    }

    #[test]
    fn the_denial_says_what_to_do() {
        let (msg, hint) = rules(Some(977)).observe_reason(&peer(1000, 1000));
        assert!(msg.contains("uid 1000") && msg.contains("'nymd'"), "{msg}");
        assert!(hint.contains("usermod -aG nymd"), "{hint}");
        let (_, hint) = rules(None).observe_reason(&peer(1000, 1000));
        assert!(hint.contains("groupadd"), "{hint}");
    }
}
