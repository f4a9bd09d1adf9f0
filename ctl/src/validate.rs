//! Checks of argument values made before connecting, so that a bad value is
//! a usage error (exit 2) that says what to fix, whether or not nymd runs.
//! nymd checks the same again (and its `InvalidArgument` answers exit 2
//! too); these rules are its rules.

use std::net::IpAddr;

use nymd_proto::appapi::MAX_REPLY_SURBS;
use nymd_proto::{Recipient, SenderTag};

use crate::Failure;

/// Longest identity name (nymd's rule, from `nymd-ipc`).
pub const MAX_ID_LEN: usize = nymd_ipc::MAX_IDENTITY_NAME_LEN;

/// An identity name for `init` and `import`: 1-64 characters from
/// `A-Z a-z 0-9 _ -`, not starting with `.` (the rule nymd applies,
/// `nymd_ipc::is_valid_identity_name`).
pub fn identity_id(id: &str) -> Result<(), Failure> {
    if nymd_ipc::is_valid_identity_name(id) {
        Ok(())
    } else {
        Err(Failure::usage(
            format!(
                "invalid identity name {id:?}: use 1-{MAX_ID_LEN} characters from A-Z a-z 0-9 _ -"
            ),
            Some("for example --id alice"),
        ))
    }
}

/// `--port`: 0 is no port (leave `--port` out to take the next free one).
pub fn port(port: Option<u16>) -> Result<(), Failure> {
    match port {
        Some(0) => Err(Failure::usage(
            "--port 0 is not a port",
            Some("give a port from 1 to 65535, or leave --port out to take the next free one from 1977"),
        )),
        _ => Ok(()),
    }
}

/// `--socks5-port` / `socks5 --port`: 0 is no port.
pub fn socks5_port(flag: &str, port: Option<u16>) -> Result<(), Failure> {
    match port {
        Some(0) => Err(Failure::usage(
            format!("{flag} 0 is not a port"),
            Some(
                "give a port from 1 to 65535, or leave it out to take the next free one from 1080",
            ),
        )),
        _ => Ok(()),
    }
}

/// A network requester: a Nym address, or `auto`.
pub fn provider(flag: &str, provider: Option<&str>) -> Result<(), Failure> {
    match provider {
        Some(p) if !p.eq_ignore_ascii_case("auto") && p.parse::<Recipient>().is_err() => {
            Err(Failure::usage(
                format!("{flag} {p:?} is not a Nym address"),
                Some("give the network requester's address (<identity>.<encryption>@<gateway>), or auto to choose one from the directory"),
            ))
        }
        _ => Ok(()),
    }
}

/// `--host`: an IP address.
pub fn host(host: Option<&str>) -> Result<(), Failure> {
    match host {
        Some(h) if h.parse::<IpAddr>().is_err() => Err(Failure::usage(
            format!("--host {h:?} is not an IP address"),
            Some("give an address such as 127.0.0.1 or ::1 (a host name is not accepted)"),
        )),
        _ => Ok(()),
    }
}

/// `--gateway`: a base58 ed25519 identity key (32 bytes).
pub fn gateway(gateway: Option<&str>) -> Result<(), Failure> {
    let Some(g) = gateway else {
        return Ok(());
    };
    match bs58::decode(g).into_vec() {
        Ok(v) if v.len() == 32 => Ok(()),
        Ok(v) => Err(Failure::usage(
            format!(
                "--gateway {g:?} is not a gateway identity key: it decodes to {} bytes, a key has 32",
                v.len()
            ),
            Some("nymctl gateways lists the gateways' identity keys"),
        )),
        Err(e) => Err(Failure::usage(
            format!("--gateway {g:?} is not a gateway identity key: not base58 ({e})"),
            Some("nymctl gateways lists the gateways' identity keys"),
        )),
    }
}

/// `--to`: a Nym address.
pub fn recipient(to: &str) -> Result<Recipient, Failure> {
    to.parse::<Recipient>().map_err(|e| {
        Failure::usage(
            format!("--to {to:?} is not a Nym address: {}", e.to_string().trim_end()),
            Some("a Nym address has the form IDENTITY.ENCRYPTION@GATEWAY; nymctl address ID prints an identity's"),
        )
    })
}

/// `--tag`: a sender tag (base58 of 16 bytes).
pub fn sender_tag(tag: &str) -> Result<SenderTag, Failure> {
    tag.parse::<SenderTag>().map_err(|e| {
        Failure::usage(
            format!("--tag {tag:?} is not a sender tag: {e}"),
            Some("use the tag nymctl listen printed in brackets (or its JSON sender_tag)"),
        )
    })
}

/// `--reply-surbs`: at most [`MAX_REPLY_SURBS`] (what nymd accepts).
pub fn reply_surbs(n: Option<u32>) -> Result<(), Failure> {
    match n {
        Some(n) if n > MAX_REPLY_SURBS => Err(Failure::usage(
            format!("--reply-surbs {n} is too many: one message carries at most {MAX_REPLY_SURBS}"),
            Some("the recipient asks for more when it runs out"),
        )),
        _ => Ok(()),
    }
}

/// `--count` and `--timeout` of `listen`: at least 1.
pub fn at_least_one(flag: &str, v: Option<u64>) -> Result<(), Failure> {
    match v {
        Some(0) => Err(Failure::usage(
            format!("{flag} 0 means nothing: give 1 or more"),
            Some("leave it out to listen until Ctrl-C"),
        )),
        _ => Ok(()),
    }
}
