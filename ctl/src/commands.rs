//! One function per command: connect, send the request, print the answer.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::CommandFactory;
use nymd_ipc::client::{Client, ClientError};
use nymd_ipc::{
    AccessRequest, Event, IdentityInfo, InitRequest, InitSocks5, RequestBody, ResponseBody,
    SendRequest, ServerMessage, Socks5Request,
};
use serde_json::{json, Value};

use crate::app::{self, AppConn, Received};
use crate::cli::{
    AccessArgs, Cli, Command, DaemonCommand, EventsArgs, InitArgs, ListenArgs, ReplyArgs, SendArgs,
    Socks5Action, Socks5Args,
};
use crate::output::{self, SCHEMA_VERSION};
use crate::{import, validate, Failure};
use base64::Engine as _;
use nymd_proto::appapi::ClientRequest;
use nymd_proto::{Recipient, SenderTag};

/// Time to connect and complete the handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket to use: `--socket`/`NYMD_SOCKET`, else the default for this
/// user.
pub fn resolve_socket(flag: Option<PathBuf>) -> Result<PathBuf, Failure> {
    if let Some(p) = flag.filter(|p| !p.as_os_str().is_empty()) {
        return Ok(p);
    }
    let is_root = nix::unistd::geteuid().is_root();
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    nymd_ipc::default_socket_path(is_root, xdg.as_deref()).ok_or_else(|| {
        Failure::usage(
            "no control socket path: XDG_RUNTIME_DIR is not set",
            Some("pass --socket PATH or set NYMD_SOCKET (a system nymd listens on /run/nymd/nymd.sock)"),
        )
    })
}

/// Write to stdout; errors (a closed pipe) propagate.
fn print(s: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(s.as_bytes())?;
    out.flush()
}

/// Print one JSON document (or one NDJSON line).
fn print_json(mut v: Value) -> io::Result<()> {
    if let Value::Object(map) = &mut v {
        map.insert("schema_version".into(), json!(SCHEMA_VERSION));
    }
    let mut line = serde_json::to_string(&v).map_err(io::Error::other)?;
    line.push('\n');
    print(&line)
}

/// A line on stderr; a closed stderr is ignored.
fn note(s: &str) {
    let _ = writeln!(io::stderr().lock(), "{s}");
}

/// Run the command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    // Commands that do not talk to the daemon.
    match &cli.command {
        Command::Completions(args) => {
            let mut buf = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "nymctl", &mut buf);
            io::stdout().lock().write_all(&buf)?;
            return Ok(());
        }
        Command::Man => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
            io::stdout().lock().write_all(&buf)?;
            return Ok(());
        }
        _ => {}
    }
    let socket = resolve_socket(cli.socket)?;
    // Read local inputs before connecting, so a typo fails fast.
    let prepared = prepare(&cli.command)?;
    let mut client = connect(&socket).await?;
    match cli.command {
        Command::Init(args) => init(&mut client, &socket, args, json).await,
        Command::Start(a) => {
            simple(&mut client, "start", RequestBody::Start { id: a.id }, json).await
        }
        Command::Stop(a) => simple(&mut client, "stop", RequestBody::Stop { id: a.id }, json).await,
        Command::Restart(a) => {
            simple(
                &mut client,
                "restart",
                RequestBody::Restart { id: a.id },
                json,
            )
            .await
        }
        Command::Remove(a) => {
            confirm_remove(&a.id, a.yes)?;
            simple(
                &mut client,
                "remove",
                RequestBody::Remove { id: a.id },
                json,
            )
            .await
        }
        Command::List => {
            let ids = identities(client.request(RequestBody::List).await?)?;
            if json {
                print_json(json!({ "identities": ids }))?;
            } else {
                print(&output::identities_table(&ids))?;
            }
            Ok(())
        }
        Command::Status(a) => {
            let one = a.id.is_some();
            let ids = identities(client.request(RequestBody::Status { id: a.id }).await?)?;
            match (json, one, ids.first()) {
                (true, true, Some(i)) => print_json(json!({ "identity": i }))?,
                (true, _, _) => print_json(json!({ "identities": ids }))?,
                (false, true, Some(i)) => print(&output::identity_detail(i))?,
                (false, _, _) => print(&output::identities_table(&ids))?,
            }
            Ok(())
        }
        Command::Access(a) => access(&mut client, &socket, a, json).await,
        Command::Socks5(a) => socks5(&mut client, &socket, a, json).await,
        Command::Address(a) => match client.request(RequestBody::Address { id: a.id }).await? {
            ResponseBody::Address { id, address } => {
                if json {
                    print_json(json!({ "id": id, "address": address }))?;
                } else {
                    print(&format!("{address}\n"))?;
                }
                Ok(())
            }
            other => Err(unexpected(&other)),
        },
        Command::Gateways(a) => {
            match client
                .request(RequestBody::Gateways { latency: a.latency })
                .await?
            {
                ResponseBody::Gateways(g) => {
                    if json {
                        print_json(json!({ "gateways": g }))?;
                    } else {
                        print(&output::gateways_table(&g))?;
                    }
                    Ok(())
                }
                other => Err(unexpected(&other)),
            }
        }
        Command::Topology => match client.request(RequestBody::Topology).await? {
            ResponseBody::Topology(t) => {
                if json {
                    print_json(json!({ "topology": t }))?;
                } else {
                    print(&output::topology(&t))?;
                }
                Ok(())
            }
            other => Err(unexpected(&other)),
        },
        Command::Send(args) => send(&mut client, args, prepared, json).await,
        Command::Reply(args) => reply(&mut client, args, prepared, json).await,
        Command::Listen(args) => listen(&mut client, args, json).await,
        Command::Events(args) => events(&mut client, args, json).await,
        Command::Import(args) => {
            let Some(imported) = prepared.import else {
                anyhow::bail!("internal error: import not prepared");
            };
            if let Some(db) = &imported.skipped_registration {
                note(&format!(
                    "note: {} names no active gateway; nymd registers with a gateway anew (the address keeps its identity and encryption parts, the gateway part may change)",
                    db.display()
                ));
            }
            let _ = args;
            let info = identity(
                client
                    .request(RequestBody::Import(imported.request))
                    .await?,
            )?;
            if json {
                print_json(json!({ "identity": info }))?;
            } else {
                print(&output::identity_detail(&info))?;
            }
            Ok(())
        }
        Command::Daemon(DaemonCommand::Info) => {
            match client.request(RequestBody::DaemonInfo).await? {
                ResponseBody::DaemonInfo(d) => {
                    if json {
                        print_json(json!({ "daemon": d }))?;
                    } else {
                        print(&output::daemon_info(&d))?;
                    }
                    Ok(())
                }
                other => Err(unexpected(&other)),
            }
        }
        Command::Daemon(DaemonCommand::Shutdown) => {
            client.request(RequestBody::Shutdown).await?;
            if json {
                print_json(json!({ "ok": true, "action": "shutdown" }))?;
            } else {
                print("nymd is shutting down\n")?;
            }
            Ok(())
        }
        Command::Completions(_) | Command::Man => Ok(()),
    }
}

/// Local inputs read (and argument values checked) before connecting.
#[derive(Default)]
struct Prepared {
    message: Option<Vec<u8>>,
    import: Option<import::Imported>,
    recipient: Option<Recipient>,
    tag: Option<SenderTag>,
}

/// The payload of `send` and `reply`: the MESSAGE argument or `--file`.
fn payload(message: &Option<String>, file: &Option<PathBuf>) -> anyhow::Result<Vec<u8>> {
    Ok(match (message, file) {
        (Some(m), _) => m.clone().into_bytes(),
        (None, Some(f)) if f.as_os_str() == "-" => {
            let mut buf = Vec::new();
            io::stdin()
                .lock()
                .read_to_end(&mut buf)
                .context("cannot read standard input")?;
            buf
        }
        (None, Some(f)) => {
            std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?
        }
        (None, None) => return Err(Failure::usage("give a MESSAGE or --file", None).into()),
    })
}

fn prepare(cmd: &Command) -> anyhow::Result<Prepared> {
    let mut p = Prepared::default();
    match cmd {
        Command::Init(a) => {
            validate::identity_id(&a.id)?;
            validate::port(a.port)?;
            validate::host(a.host.as_deref())?;
            validate::gateway(a.gateway.as_deref())?;
            validate::socks5_port("--socks5-port", a.socks5_port)?;
            validate::provider("--provider", a.provider.as_deref())?;
        }
        Command::Socks5(a) => {
            validate::socks5_port("--port", a.port)?;
            match (a.action, &a.address) {
                (Some(Socks5Action::Provider), None) => {
                    return Err(Failure::usage(
                        "provider needs the network requester's address, or auto",
                        Some(
                            "nymctl socks5 ID provider ADDRESS, or nymctl socks5 ID provider auto",
                        ),
                    )
                    .into())
                }
                (Some(Socks5Action::Provider), Some(p)) => {
                    validate::provider("provider", Some(p))?;
                }
                (_, Some(extra)) => {
                    return Err(Failure::usage(
                        format!("unexpected argument {extra:?}: only `provider` takes an address"),
                        Some("nymctl socks5 ID provider ADDRESS"),
                    )
                    .into())
                }
                _ => {}
            }
        }
        Command::Send(SendArgs {
            message,
            file,
            to,
            reply_surbs,
            ..
        }) => {
            p.recipient = Some(validate::recipient(to)?);
            validate::reply_surbs(*reply_surbs)?;
            p.message = Some(payload(message, file)?);
        }
        Command::Reply(ReplyArgs {
            message, file, tag, ..
        }) => {
            p.tag = Some(validate::sender_tag(tag)?);
            p.message = Some(payload(message, file)?);
        }
        Command::Listen(a) => {
            validate::at_least_one("--count", a.count)?;
            validate::at_least_one("--timeout", a.timeout)?;
        }
        Command::Import(args) => {
            validate::identity_id(&args.id)?;
            p.import = Some(import::read_client_dir(&args.id, &args.path)?);
        }
        _ => {}
    }
    Ok(p)
}

async fn connect(socket: &Path) -> anyhow::Result<Client> {
    let name = format!("nymctl {}", env!("CARGO_PKG_VERSION"));
    match tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(socket, &name)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(anyhow::anyhow!(
            "nymd at {} did not answer within {} s",
            socket.display(),
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

fn unexpected(body: &ResponseBody) -> anyhow::Error {
    anyhow::Error::new(ClientError::Unexpected(format!("{body:?}")))
}

fn identities(body: ResponseBody) -> anyhow::Result<Vec<IdentityInfo>> {
    match body {
        ResponseBody::Identities(v) => Ok(v),
        other => Err(unexpected(&other)),
    }
}

fn identity(body: ResponseBody) -> anyhow::Result<IdentityInfo> {
    match body {
        ResponseBody::Identity(i) => Ok(i),
        other => Err(unexpected(&other)),
    }
}

async fn simple(
    client: &mut Client,
    action: &str,
    body: RequestBody,
    json: bool,
) -> anyhow::Result<()> {
    let id = match &body {
        RequestBody::Start { id }
        | RequestBody::Stop { id }
        | RequestBody::Restart { id }
        | RequestBody::Remove { id } => id.clone(),
        _ => String::new(),
    };
    client.request(body).await?;
    let past = match action {
        "start" => "started",
        "stop" => "stopped",
        "restart" => "restarted",
        "remove" => "removed",
        other => other,
    };
    if json {
        print_json(json!({ "ok": true, "action": action, "id": id }))?;
    } else {
        print(&format!("{id}: {past}\n"))?;
    }
    Ok(())
}

fn confirm_remove(id: &str, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !io::stdin().is_terminal() {
        return Err(Failure::usage(
            format!(
                "refusing to remove '{id}' without confirmation: standard input is not a terminal"
            ),
            Some("pass --yes to remove without asking"),
        )
        .into());
    }
    let mut err = io::stderr().lock();
    write!(
        err,
        "Remove identity '{id}' and delete its keys? Its Nym address is lost for good. [y/N] "
    )?;
    err.flush()?;
    drop(err);
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(Failure {
            exit: crate::cli::exit::OTHER,
            code: "Aborted",
            message: format!("'{id}' was not removed"),
            hint: None,
        }
        .into())
    }
}

async fn init(client: &mut Client, socket: &Path, a: InitArgs, json: bool) -> anyhow::Result<()> {
    // Watch this identity's events while the daemon works.
    client
        .request(RequestBody::Subscribe {
            identity: Some(a.id.clone()),
        })
        .await?;
    let req = InitRequest {
        id: a.id,
        gateway: a.gateway,
        latency_based_selection: a.latency_based_selection,
        port: a.port,
        host: a.host,
        no_start: a.no_start,
        socks5: a.socks5.then_some(InitSocks5 {
            port: a.socks5_port,
            provider: a.provider,
            plain: a.plain_socks5,
        }),
    };
    if req.socks5.is_some() {
        require_socks5(client, socket)?;
    }
    let body = client
        .request_with(RequestBody::Init(req), |m| {
            if json {
                return;
            }
            if let ServerMessage::Event {
                event: ev @ Event::InitProgress { .. },
                ..
            } = m
            {
                note(&format!("  {}", output::event(&ev)));
            }
        })
        .await?;
    let info = identity(body)?;
    if json {
        print_json(json!({ "identity": info }))?;
    } else {
        print(&format!(
            "identity   {}\naddress    {}\nwebsocket  ws://{}:{}\nstate      {}\n",
            info.id,
            info.address.as_deref().unwrap_or("-"),
            info.websocket_host,
            info.websocket_port,
            output::state(&info.state)
        ))?;
        if let Some(s) = &info.socks5 {
            print(&format!(
                "socks5     {}:{} ({}), provider {}\n",
                s.host,
                s.port,
                if s.anonymous { "anonymous" } else { "plain" },
                s.provider.as_deref().unwrap_or("none yet")
            ))?;
        }
    }
    Ok(())
}

/// Fail unless the daemon announces SOCKS5.
fn require_socks5(client: &Client, socket: &Path) -> anyhow::Result<()> {
    if client
        .welcome()
        .features
        .iter()
        .any(|f| f == nymd_ipc::FEATURE_SOCKS5)
    {
        return Ok(());
    }
    Err(Failure {
        exit: crate::cli::exit::VERSION_MISMATCH,
        code: "Unsupported",
        message: format!(
            "nymd at {} is older than this nymctl and has no SOCKS5 proxy",
            socket.display()
        ),
        hint: Some("upgrade nymd to the version of nymctl and restart it".into()),
    }
    .into())
}

async fn socks5(
    client: &mut Client,
    socket: &Path,
    a: Socks5Args,
    json: bool,
) -> anyhow::Result<()> {
    require_socks5(client, socket)?;
    let mut req = Socks5Request {
        id: a.id.clone(),
        port: a.port,
        anonymous: match (a.anonymous, a.plain) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        ..Socks5Request::default()
    };
    match a.action {
        Some(Socks5Action::Enable) => req.enable = Some(true),
        Some(Socks5Action::Disable) => req.enable = Some(false),
        Some(Socks5Action::Provider) => req.provider = a.address,
        Some(Socks5Action::Show) | None => {}
    }
    let read_only = req.is_read_only();
    let before = settings_before(client, a.id, read_only).await?;
    let info = identity(client.request(RequestBody::Socks5(req)).await?)?;
    let settings = |i: &IdentityInfo| {
        i.socks5.as_ref().map(|s| {
            (
                s.enabled,
                s.host.clone(),
                s.port,
                s.provider.clone(),
                s.anonymous,
            )
        })
    };
    let changed = before
        .as_ref()
        .is_some_and(|b| settings(b) != settings(&info));
    report_settings_change(
        &info,
        before.as_ref(),
        changed,
        read_only,
        json,
        output::socks5_detail(&info),
        "saved; the identity restarted with the new settings\n",
    )
}

/// The identity's settings before a change (`None` for a read-only
/// request), to say whether anything changed.
async fn settings_before(
    client: &mut Client,
    id: String,
    read_only: bool,
) -> anyhow::Result<Option<IdentityInfo>> {
    if read_only {
        return Ok(None);
    }
    let status = client.request(RequestBody::Status { id: Some(id) }).await?;
    Ok(identities(status)?.into_iter().next())
}

/// What `access` and `socks5` print after a change: the identity's new
/// settings (`detail`), and whether anything changed and the identity
/// restarted (`restarted_text` then).
fn report_settings_change(
    info: &IdentityInfo,
    before: Option<&IdentityInfo>,
    changed: bool,
    read_only: bool,
    json: bool,
    detail: String,
    restarted_text: &str,
) -> anyhow::Result<()> {
    let restarted =
        changed && before.is_some_and(|b| !matches!(b.state, nymd_ipc::IdentityState::Stopped));
    if json {
        print_json(json!({ "identity": info, "changed": changed, "restarted": restarted }))?;
        return Ok(());
    }
    let mut text = detail;
    if !read_only {
        text.push_str(match (changed, restarted) {
            (false, _) => "(nothing changed)\n",
            (true, true) => restarted_text,
            (true, false) => "saved; it applies when the identity starts\n",
        });
    }
    print(&text)?;
    Ok(())
}

async fn access(
    client: &mut Client,
    socket: &Path,
    a: AccessArgs,
    json: bool,
) -> anyhow::Result<()> {
    if !client
        .welcome()
        .features
        .iter()
        .any(|f| f == nymd_ipc::FEATURE_ACCESS)
    {
        return Err(Failure {
            exit: crate::cli::exit::VERSION_MISMATCH,
            code: "Unsupported",
            message: format!(
                "nymd at {} is older than this nymctl and has no access control",
                socket.display()
            ),
            hint: Some("upgrade nymd to the version of nymctl and restart it".into()),
        }
        .into());
    }
    let req = AccessRequest {
        id: a.id.clone(),
        allow_origins: a.allow_origin,
        remove_origins: a.remove_origin,
        allow_users: a.allow_user,
        remove_users: a.remove_user,
        allow_groups: a.allow_group,
        remove_groups: a.remove_group,
        any_local_user: match (a.any_local_user, a.only_listed) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
    };
    let read_only = req.is_read_only();
    let before = settings_before(client, a.id, read_only).await?;
    let info = identity(client.request(RequestBody::Access(req)).await?)?;
    let changed = before.as_ref().is_some_and(|b| b.access != info.access);
    report_settings_change(
        &info,
        before.as_ref(),
        changed,
        read_only,
        json,
        output::access_detail(&info),
        "saved; the identity restarted: its apps must reconnect\n",
    )
}

async fn send(
    client: &mut Client,
    a: SendArgs,
    prepared: Prepared,
    json: bool,
) -> anyhow::Result<()> {
    let message = prepared.message.unwrap_or_default();
    let len = message.len();
    match (a.reply_surbs, prepared.recipient) {
        (Some(reply_surbs), Some(recipient)) => {
            // Anonymous: as an app on the identity's port (the control
            // socket's Send is plain only).
            let (mut conn, _) = AppConn::connect(client, &a.id).await?;
            conn.submit(ClientRequest::SendAnonymous {
                recipient,
                message,
                reply_surbs,
                connection_id: None,
            })
            .await?;
            conn.close().await;
        }
        _ => {
            client
                .request(RequestBody::Send(SendRequest {
                    id: a.id.clone(),
                    to: a.to.clone(),
                    message,
                }))
                .await?;
        }
    }
    if json {
        print_json(json!({
            "ok": true, "id": a.id, "to": a.to, "bytes": len, "reply_surbs": a.reply_surbs,
        }))?;
    } else if let Some(n) = a.reply_surbs {
        print(&format!(
            "{}: sent {len} bytes anonymously with {n} reply SURBs\n",
            a.id
        ))?;
    } else {
        print(&format!("{}: sent {len} bytes\n", a.id))?;
    }
    Ok(())
}

async fn reply(
    client: &mut Client,
    a: ReplyArgs,
    prepared: Prepared,
    json: bool,
) -> anyhow::Result<()> {
    let Some(sender_tag) = prepared.tag else {
        anyhow::bail!("internal error: reply not prepared");
    };
    let message = prepared.message.unwrap_or_default();
    let len = message.len();
    let (mut conn, _) = AppConn::connect(client, &a.id).await?;
    conn.submit(ClientRequest::Reply {
        sender_tag,
        message,
        connection_id: None,
    })
    .await?;
    conn.close().await;
    if json {
        print_json(json!({ "ok": true, "id": a.id, "tag": a.tag, "bytes": len }))?;
    } else {
        print(&format!("{}: replied {len} bytes to {}\n", a.id, a.tag))?;
    }
    Ok(())
}

/// One received message for `listen`.
fn print_received(id: &str, r: &Received, json: bool) -> io::Result<()> {
    if json {
        print_json(json!({
            "type": "received",
            "id": id,
            "bytes": r.message.len(),
            "message_base64": base64::engine::general_purpose::STANDARD.encode(&r.message),
            "text": std::str::from_utf8(&r.message).ok(),
            "sender_tag": r.sender_tag.map(|t| t.to_string()),
        }))
    } else {
        print(&app::text_line(r))
    }
}

async fn listen(client: &mut Client, a: ListenArgs, json: bool) -> anyhow::Result<()> {
    let deadline = a
        .timeout
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let (mut conn, early) = AppConn::connect(client, &a.id).await?;
    note(&format!(
        "listening on '{}' (ws://{}){}",
        a.id,
        conn.endpoint(),
        match (a.count, a.timeout) {
            (Some(n), Some(t)) => format!(" for {n} messages, at most {t} s"),
            (Some(n), None) => format!(" for {n} messages"),
            (None, Some(t)) => format!(" for {t} s"),
            (None, None) => "; Ctrl-C stops".into(),
        }
    ));
    let mut got = 0u64;
    let done = |got: u64| a.count.is_some_and(|n| got >= n);
    for r in &early {
        if done(got) {
            break;
        }
        print_received(&a.id, r, json)?;
        got += 1;
    }
    while !done(got) {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, conn.next()).await {
                Ok(r) => r?,
                Err(_) => break,
            },
            None => conn.next().await?,
        };
        if let nymd_proto::appapi::ServerResponse::Received {
            message,
            sender_tag,
        } = next
        {
            print_received(
                &a.id,
                &Received {
                    message,
                    sender_tag,
                },
                json,
            )?;
            got += 1;
        }
    }
    conn.close().await;
    match a.count {
        Some(n) if got < n => Err(Failure {
            exit: crate::cli::exit::OTHER,
            code: "Timeout",
            message: format!(
                "'{}' received {got} of {n} messages within {} s",
                a.id,
                a.timeout.unwrap_or(0)
            ),
            hint: None,
        }
        .into()),
        _ => Ok(()),
    }
}

async fn events(client: &mut Client, a: EventsArgs, json: bool) -> anyhow::Result<()> {
    client
        .request(RequestBody::Subscribe {
            identity: a.identity,
        })
        .await?;
    loop {
        let Some(msg) = client.next_message().await? else {
            return Err(ClientError::Closed.into());
        };
        match msg {
            ServerMessage::Snapshot { snapshot, .. } => {
                if json {
                    if a.follow {
                        print_json(json!({ "type": "snapshot", "snapshot": snapshot }))?;
                    } else {
                        print_json(json!({ "snapshot": snapshot }))?;
                    }
                } else {
                    print(&output::snapshot(&snapshot))?;
                }
                if !a.follow {
                    return Ok(());
                }
            }
            ServerMessage::Event { event, .. } => {
                if json {
                    print_json(json!({ "type": "event", "name": event.name(), "event": event }))?;
                } else {
                    print(&format!(
                        "{} {}\n",
                        output::now_utc(),
                        output::event(&event)
                    ))?;
                }
            }
            ServerMessage::Lagged { missed, .. } => {
                if json {
                    print_json(json!({ "type": "lagged", "missed": missed }))?;
                } else {
                    print(&format!(
                        "{} (missed {missed} events: this terminal read too slowly)\n",
                        output::now_utc()
                    ))?;
                }
            }
            ServerMessage::Error(e) => return Err(ClientError::Remote(e).into()),
            ServerMessage::Welcome(_) | ServerMessage::Response(_) => {}
        }
    }
}
