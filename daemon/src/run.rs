//! Running the daemon: configuration, the embedded localnet, the identity
//! manager, signals and graceful shutdown.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use nymd_mixnet::{Shared, SharedConfig, TopologySource, Url};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use std::sync::Arc;

use crate::backend::DaemonBackend;
use crate::cli::Cli;
use crate::config::{self, ConfigFile, Environment};
use crate::control::{self, AccessRules, ControlServerConfig, SocketOptions, TierPolicy};
use crate::manager::{InitRequest, Manager};
use crate::notify::{self, Notifier};
use crate::service::{self, Loops, Supervisor};
use crate::store::IdentityStore;

/// How long shutdown may take before the daemon gives up waiting.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long the local network requester may take to register and start.
const LOCALNET_EXIT_START: Duration = Duration::from_secs(30);

/// Everything resolved from flags, environment and the config file.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Parsed config file.
    pub file: ConfigFile,
    /// Where it was read from (read again on SIGHUP).
    pub config_path: PathBuf,
    /// Whether the path was given (a missing file is then an error).
    pub config_explicit: bool,
    /// State dir.
    pub state_dir: PathBuf,
    /// Control socket.
    pub socket: PathBuf,
    /// Log filter.
    pub log_level: String,
    /// Where the log goes.
    pub log_format: crate::logging::LogFormat,
    /// The metrics endpoint's address, if any (checked: loopback, or
    /// `allow_remote_metrics`).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Start the embedded localnet.
    pub localnet: bool,
    /// With the localnet: run a network requester on its first gateway.
    pub localnet_exit: bool,
    /// Topology source for every identity (unless localnet).
    pub source: TopologySource,
}

/// Resolve settings from the command line and the process environment.
pub fn resolve(cli: &Cli, env: &Environment) -> anyhow::Result<Settings> {
    let (path, explicit) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(config::DEFAULT_CONFIG_PATH), false),
    };
    let file = ConfigFile::load(&path, explicit)?;
    let state_dir = config::resolve_state_dir(cli.state_dir.as_deref(), env, &file)?;
    let socket = config::resolve_socket(cli.socket.as_deref(), env, &file)?;
    let log_level = cli
        .log_level
        .clone()
        .unwrap_or_else(|| file.daemon.log_level.clone());
    let source = if let Some(f) = cli
        .topology_file
        .clone()
        .or(file.network.topology_file.clone())
    {
        TopologySource::File(f)
    } else {
        let urls = if cli.nym_api.is_empty() {
            file.network.nym_api.clone()
        } else {
            cli.nym_api.clone()
        };
        let mut parsed = Vec::new();
        for u in urls {
            parsed.push(
                Url::parse(&u).with_context(|| format!("--nym-api {u:?} is not a valid URL"))?,
            );
        }
        if parsed.is_empty() {
            anyhow::bail!("no nym-api URL configured: give --nym-api URL or --topology-file FILE");
        }
        TopologySource::NymApi(parsed)
    };
    let metrics_listen = cli.metrics_listen.or(file.metrics.listen);
    if let Some(addr) = metrics_listen {
        crate::metrics::check_address(addr, file.metrics.allow_remote_metrics)?;
    }
    Ok(Settings {
        file,
        config_path: path,
        config_explicit: explicit,
        state_dir,
        socket,
        log_level,
        log_format: cli.log_format,
        metrics_listen,
        localnet: cli.localnet,
        localnet_exit: cli.localnet && !cli.no_localnet_exit,
        source,
    })
}

/// Run until SIGTERM or SIGINT; SIGHUP reloads.
pub async fn run(mut settings: Settings) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    // Handlers first: a SIGTERM that arrives as soon as the control socket
    // answers (a test, a quick `systemctl stop`) must stop us gracefully,
    // not kill us with the default action.
    let mut signals = Signals::new();

    // The control socket comes first: binding sets the umask for an
    // instant, before any other thread creates files. A second daemon on the
    // same socket stops here with a clear message.
    let mut bound =
        control::socket::bind(&SocketOptions::new(&settings.socket)).with_context(|| {
            format!(
                "cannot open the control socket {}",
                settings.socket.display()
            )
        })?;
    let control_listener = bound
        .take_listener()
        .context("cannot listen on the control socket")?;
    // The metrics port is bound before anything starts, so a taken port
    // stops the daemon at once with the reason.
    let metrics_listener = match settings.metrics_listen {
        Some(addr) => {
            Some(crate::metrics::bind(addr, settings.file.metrics.allow_remote_metrics).await?)
        }
        None => None,
    };

    // Shared by every identity's app port, before any identity starts.
    let max_apps = settings.file.daemon.max_app_connections;
    if max_apps == 0 {
        anyhow::bail!(
            "[daemon] max_app_connections = 0 in {} would refuse every app; set it to 1 or more (default {})",
            settings.config_path.display(),
            crate::config::DEFAULT_MAX_APP_CONNECTIONS
        );
    }
    if settings.file.daemon.memory_budget_mib == 0 {
        anyhow::bail!(
            "[daemon] memory_budget_mib = 0 in {} would let no identity receive anything; set it to 1 or more (default {})",
            settings.config_path.display(),
            crate::config::DEFAULT_MEMORY_BUDGET_MIB
        );
    }

    crate::fsutil::create_private_dir(&settings.state_dir)
        .with_context(|| format!("cannot create state dir {}", settings.state_dir.display()))?;
    let store = IdentityStore::open(&settings.state_dir)?;

    let mut localnet = None;
    let source = if settings.localnet {
        let net = nymd_localnet::Localnet::start(nymd_localnet::LocalnetConfig {
            state_dir: Some(settings.state_dir.join("localnet")),
            ..nymd_localnet::LocalnetConfig::default()
        })
        .await
        .context("cannot start the embedded local mixnet")?;
        let url = Url::parse(&net.api_url()).context("localnet directory URL")?;
        tracing::info!(directory = %url, "embedded local mixnet started");
        localnet = Some(net);
        TopologySource::NymApi(vec![url])
    } else {
        settings.source.clone()
    };
    let shared = Shared::new(SharedConfig {
        default_source: source,
        memory_budget: settings.file.daemon.memory_budget_bytes(),
        ..SharedConfig::default()
    })
    .context("cannot set up the HTTP client")?;
    let mut localnet_exit = match &localnet {
        Some(net) if settings.localnet_exit => start_localnet_exit(net, &shared).await,
        _ => None,
    };

    let manager = Manager::new(
        store,
        shared,
        settings.file.identities.clone(),
        cancel.child_token(),
        tracker.clone(),
    );
    manager.set_max_app_connections(max_apps);
    // systemd supervision (a no-op without NOTIFY_SOCKET); subscribes now so
    // that it sees every identity's first connection attempt.
    let notifier = Arc::new(Notifier::from_env());
    let supervisor = Supervisor::new(
        notifier.clone(),
        manager.clone(),
        notify::watchdog_from_env(),
    );
    manager.load()?;
    for b in manager.broken() {
        tracing::error!(identity = %b.id, "not started: {}", b.error);
    }
    if settings.localnet && manager.is_empty() && manager.broken().is_empty() {
        tracing::info!("empty store: creating identity 'default'");
        let info = manager
            .init(InitRequest {
                id: "default".into(),
                ..InitRequest::default()
            })
            .await
            .context("cannot create the default identity on the local mixnet")?;
        tracing::info!(websocket = %info.websocket, "identity 'default' ready");
        tracing::debug!(address = %info.address, "identity 'default' address");
    }
    manager.autostart();

    let server_config = ControlServerConfig::new(TierPolicy::Credentials(
        AccessRules::for_this_process("nymd"),
    ));
    let backend = Arc::new(DaemonBackend::new(
        manager.clone(),
        server_config.instance_id.clone(),
        settings.socket.clone(),
        settings.state_dir.clone(),
        cancel.clone(),
        &tracker,
    ));
    let control_stop = cancel.child_token();
    let (control_pings, pings) = crate::health::channel();
    let control_task = tokio::spawn(control::server::serve_with_health(
        control_listener,
        backend,
        server_config,
        control_stop.clone(),
        pings,
    ));
    tracing::info!(socket = %settings.socket.display(), "control socket ready");
    if let Some(listener) = metrics_listener {
        let registry = Arc::new(crate::metrics::registry(manager.clone(), max_apps));
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("metrics at http://{addr}/metrics");
        }
        tracker.spawn(crate::metrics::serve(
            listener,
            registry,
            cancel.child_token(),
            tracker.clone(),
        ));
    }
    tracker.spawn(supervisor.run(
        Loops {
            control_socket: settings.socket.clone(),
            control_pings,
        },
        cancel.child_token(),
    ));

    while signals.next(&cancel).await == Signal::Reload {
        service::reload(
            &notifier,
            &manager,
            &settings.config_path,
            settings.config_explicit,
            &mut settings.file,
        )
        .await;
    }
    notifier.stopping();
    tracing::info!("shutting down");
    cancel.cancel();
    let graceful = async {
        control_stop.cancel();
        let _ = control_task.await;
        manager.shutdown().await;
        tracker.close();
        tracker.wait().await;
        if let Some(exit) = localnet_exit.take() {
            exit.shutdown().await;
        }
        if let Some(net) = localnet.take() {
            net.shutdown().await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful)
        .await
        .is_err()
    {
        tracing::warn!("shutdown took longer than {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    drop(bound);
    Ok(())
}

/// Run a network requester (the SOCKS5 exit) as its own client on the
/// local mixnet's first gateway, with the loopback-only exit policy, and
/// name it in the directory's `nym-nodes/described` listing, where
/// identities' `--provider auto` finds it. Its keys are kept in the
/// localnet's state folder, so its address stays the same across restarts.
/// A failure is logged, not fatal.
async fn start_localnet_exit(
    net: &nymd_localnet::Localnet,
    shared: &Shared,
) -> Option<nymd_exit::NetworkRequester> {
    let gateway = net.gateways().into_iter().next()?;
    let keys = match net.network_requester_keys() {
        Ok(Some(k)) => nymd_mixnet::ClientKeys {
            identity: k.identity,
            encryption: k.encryption,
            ack: k.ack,
        },
        Ok(None) => nymd_mixnet::ClientKeys::generate(&mut rand::rngs::OsRng),
        Err(e) => {
            // New keys would silently give it another address, and every
            // identity that names the old one as its provider would fail.
            tracing::error!(
                "no local network requester: {e}; nymd runs without it (once it has new keys, point the identities that used it at its new address: `nymctl socks5 ID provider auto`)"
            );
            return None;
        }
    };
    let launch = nymd_exit::NetworkRequester::launch_with_keys(
        shared,
        None,
        nymd_mixnet::GatewaySelection::Given(gateway.identity.to_bytes()),
        keys,
        nymd_exit::network_requester_client_config(),
        nymd_exit::ExitConfig::default(),
    );
    let exit = match tokio::time::timeout(LOCALNET_EXIT_START, launch).await {
        Ok(Ok(exit)) => exit,
        Ok(Err(e)) => {
            tracing::warn!("no local network requester: {e}");
            return None;
        }
        Err(_) => {
            tracing::warn!(
                "no local network requester: it did not start within {LOCALNET_EXIT_START:?}"
            );
            return None;
        }
    };
    if let Err(e) = net.set_network_requester(gateway.id, Some(exit.address())) {
        tracing::warn!("the local network requester is not listed in the directory: {e}");
    }
    tracing::info!(
        address = %exit.address(),
        policy = "loopback only (127.0.0.0/8, ::1)",
        "local network requester (SOCKS5 exit) running"
    );
    Some(exit)
}

#[derive(Debug, PartialEq, Eq)]
enum Signal {
    Stop,
    Reload,
}

/// SIGTERM and SIGINT stop, SIGHUP reloads.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let install = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("cannot handle {name}: {e}; stop with the control socket");
                None
            }
        };
        Self {
            term: install(SignalKind::terminate(), "SIGTERM"),
            int: install(SignalKind::interrupt(), "SIGINT"),
            hup: install(SignalKind::hangup(), "SIGHUP"),
        }
    }

    async fn next(&mut self, cancel: &CancellationToken) -> Signal {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    if s.recv().await.is_none() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.term) => Signal::Stop,
            _ = recv(&mut self.int) => Signal::Stop,
            _ = recv(&mut self.hup) => Signal::Reload,
            _ = cancel.cancelled() => Signal::Stop,
        }
    }
}
