//! The running daemon: sets up the data plane from the [`Model`], serves the control socket,
//! and tears everything down on shutdown.
//!
//! Tasks:
//! ```text
//!   control listener ──(Query)──▶ state owner (owns the XDP program and its maps)
//!        ▲                              │
//!   lbctl connections            shutdown future (SIGTERM/SIGINT) ends both
//! ```
//! The state owner is the one task that touches the data plane; the listener only asks it.

use std::{
    future::Future,
    os::unix::fs::{DirBuilderExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot, watch},
};
use tracing::{error, info, warn};

use crate::{
    control::{
        DataplaneStatus, IpvsStatus, RealServerStatus, Request, Response, Status,
        VirtualServerStatus, XdpStatus,
    },
    dataplane::{BpfObject, xdp::XdpDataplane},
    ipvs::{IpvsClient, IpvsError},
    model::{Dataplane, Model, ServiceKey},
};

/// How the daemon was started.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The configuration file, for status.
    pub config_path: String,
    /// Where to listen for lbctl.
    pub control_socket: PathBuf,
    /// Where to write the pid, if anywhere.
    pub pid_file: Option<PathBuf>,
    /// Which BPF object to use.
    pub bpf_object: BpfObject,
    /// Whether VRRP drivers use the kernel's record of adverts (when the object allows).
    pub vrrp_bpf: bool,
    /// Leave IPVS as it is at stop (keepalived's `--dont-release-ipvs`), so a restarted lbd
    /// adopts it without a gap.
    pub keep_ipvs: bool,
    /// Serve `/metrics` and `/status` over HTTP on this address.
    pub http_address: Option<std::net::SocketAddr>,
    /// Where SIGUSR1, SIGUSR2 and SIGRTMIN+2 write keepalived's `keepalived.data` (and
    /// `keepalived_check.data`), `keepalived.stats` and `keepalived.json` (keepalived's own
    /// place: /tmp).
    pub dump_dir: PathBuf,
    /// Reads and validates a configuration file the way lbd was started to (format, config
    /// id, overrides), for reloads; `None`: lbd cannot reload.
    pub loader: Option<ConfigLoader>,
}

/// Reads a configuration file into a model, or every error in it; the flag says the model is
/// only looked at (a dry run), not run.
pub type LoadConfig = dyn Fn(&str, bool) -> Result<Model, Vec<String>> + Send + Sync;

/// Reads a configuration file into a model, or says every error in it.
#[derive(Clone)]
pub struct ConfigLoader(pub Arc<LoadConfig>);

impl ConfigLoader {
    fn load(&self, path: &str, dry_run: bool) -> Result<Model, Vec<String>> {
        (self.0)(path, dry_run)
    }
}

impl std::fmt::Debug for ConfigLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigLoader")
    }
}

/// What stops the daemon from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another lbd answers on the control socket.
    #[error("another lbd is already listening on {0}")]
    AlreadyRunning(PathBuf),
    /// Binding the HTTP address failed.
    #[error("HTTP address {address}: {source}")]
    Http {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Setting up the control socket failed.
    #[error("control socket {path}: {source}")]
    ControlSocket {
        /// Socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing the pid file failed.
    #[error("pid file {path}: {source}")]
    PidFile {
        /// Path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The data plane as it runs, and what it is asked to run.
struct State {
    model: Model,
    options: RunOptions,
    started: tokio::time::Instant,
    xdp: Option<XdpDataplane>,
    /// The maps the XDP backend writes, until it takes them.
    xdp_maps: Option<crate::dataplane::xdp::XdpMaps>,
    /// Where the XDP backend put VIPs and real servers.
    xdp_view: Option<watch::Receiver<crate::reconcile::xdp::XdpView>>,
    xdp_error: Option<String>,
    ipvs: Option<IpvsStatus>,
}

fn start_xdp(
    model: &Model,
    object: &BpfObject,
) -> Result<Option<(XdpDataplane, crate::dataplane::xdp::XdpMaps)>, String> {
    let Some(settings) = model.dataplane.xdp() else {
        return Ok(None);
    };
    let bytes = object
        .bytes()
        .map_err(|e| format!("reading BPF object {}: {e}", object.describe()))?
        .ok_or_else(|| {
            "this lbd was built without its BPF object (run `cargo xtask build-ebpf`) and no --bpf-object was given"
                .to_owned()
        })?;
    let capacity = crate::dataplane::xdp::Capacity {
        vips: settings.max_vips,
        ring_size: settings.ring_size,
    };
    let pin_dir = settings
        .pin_dir
        .clone()
        .unwrap_or_else(|| crate::dataplane::xdp::default_pin_dir(&settings.interface));
    let mut xdp = match XdpDataplane::load_pinned(&bytes, capacity, Some(&pin_dir)) {
        Ok(x) => x,
        Err(e @ crate::dataplane::xdp::XdpError::Pin { .. }) => {
            warn!(error = %e, "XDP runs unpinned: a restart will detach it");
            XdpDataplane::load(&bytes, capacity).map_err(|e| e.to_string())?
        }
        Err(e) => return Err(e.to_string()),
    };
    let maps = xdp.take_maps().map_err(|e| e.to_string())?;
    let mode = xdp
        .attach(&settings.interface, settings.attach)
        .map_err(|e| e.to_string())?;
    info!(interface = %settings.interface, mode = mode.name(), ring_size = capacity.ring_size, max_vips = capacity.vips, "XDP program attached");
    Ok(Some((xdp, maps)))
}

fn probe_ipvs() -> IpvsStatus {
    match IpvsClient::connect().and_then(|c| c.info()) {
        Ok(info) => {
            let (a, b, c) = info.version;
            IpvsStatus {
                available: true,
                version: Some(format!("{a}.{b}.{c}")),
                detail: format!(
                    "IPVS {a}.{b}.{c}, connection table size {}",
                    info.conn_tab_size
                ),
            }
        }
        Err(IpvsError::NotAvailable) => IpvsStatus {
            available: false,
            version: None,
            detail: "the kernel has no IPVS: virtual servers are not programmed into IPVS"
                .to_owned(),
        },
        Err(e) => IpvsStatus {
            available: false,
            version: None,
            detail: e.to_string(),
        },
    }
}

impl State {
    fn new(model: Model, options: RunOptions) -> Self {
        let (xdp, xdp_maps, xdp_error) = match start_xdp(&model, &options.bpf_object) {
            Ok(Some((xdp, maps))) => (Some(xdp), Some(maps), None),
            Ok(None) => (None, None, None),
            Err(e) => {
                error!(error = %e, "XDP unavailable: running IPVS-only");
                (None, None, Some(e))
            }
        };
        let uses_ipvs = model.dataplane.uses_ipvs() || xdp_error.is_some();
        let ipvs = uses_ipvs.then(probe_ipvs);
        if let Some(status) = ipvs.as_ref().filter(|s| !s.available) {
            warn!(detail = %status.detail, "IPVS unavailable");
        }
        Self {
            model,
            options,
            started: tokio::time::Instant::now(),
            xdp,
            xdp_maps,
            xdp_view: None,
            xdp_error,
            ipvs,
        }
    }

    fn effective_mode(&self) -> &'static str {
        match (&self.model.dataplane, &self.xdp) {
            (Dataplane::Xdp(_) | Dataplane::XdpIpvs(_), None) => "ipvs",
            (dp, _) => dp.name(),
        }
    }

    /// The kernel's IPVS table with counters; empty without IPVS.
    fn ipvs_listing(&self) -> Vec<crate::control::IpvsServiceStatus> {
        if !self.ipvs.as_ref().is_some_and(|s| s.available) {
            return Vec::new();
        }
        let listing = match IpvsClient::connect().and_then(|c| c.listing()) {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "listing IPVS for status");
                return Vec::new();
            }
        };
        listing
            .into_iter()
            .map(|l| crate::control::IpvsServiceStatus {
                service: crate::reconcile::ipvs::key_of(&l.service).map_or_else(
                    || format!("protocol {}", l.service.protocol),
                    |k| k.to_string(),
                ),
                scheduler: l.service.scheduler.clone(),
                stats: l.stats,
                real_servers: l
                    .dests
                    .into_iter()
                    .map(|d| crate::control::IpvsDestStatus {
                        address: std::net::SocketAddr::new(d.dest.addr, d.dest.port).to_string(),
                        weight: d.dest.weight,
                        active_conns: d.active_conns,
                        inactive_conns: d.inactive_conns,
                        stats: d.stats,
                    })
                    .collect(),
            })
            .collect()
    }

    fn status(&self, health: &[crate::health::PoolView]) -> Status {
        let xdp_status = self.xdp.as_ref().and_then(|x| {
            let (interface, mode) = x.attached()?;
            let counters = match x.counters() {
                Ok(c) => c
                    .into_iter()
                    .map(|(c, n)| (c.name().to_owned(), n))
                    .collect(),
                Err(e) => {
                    warn!(error = %e, "reading XDP counters");
                    Vec::new()
                }
            };
            Some(XdpStatus {
                interface: interface.to_owned(),
                attach_mode: mode.name().to_owned(),
                counters,
            })
        });
        let view = self.xdp_view.as_ref().map(|v| v.borrow().clone());
        let virtual_servers = self
            .model
            .virtual_servers
            .iter()
            .enumerate()
            .map(|(vs_index, vs)| {
                // Summed over the virtual server's services that XDP forwards.
                let stats = self.xdp.as_ref().zip(view.as_ref()).and_then(|(x, view)| {
                    vs.services
                        .iter()
                        .filter_map(|k| view.vips.get(k))
                        .filter_map(|slot| x.vip_stats(*slot).ok())
                        .reduce(|a, b| lb_common::VipStats {
                            packets: a.packets + b.packets,
                            bytes: a.bytes + b.bytes,
                        })
                });
                let health = health.get(vs_index);
                VirtualServerStatus {
                    quorum_up: health.map(|h| h.quorum_up),
                    disabled: health.is_some_and(|h| h.disabled),
                    name: vs.name.clone(),
                    vip: match vs.services.first() {
                        Some(ServiceKey::Addr { addr, .. }) => addr.to_string(),
                        Some(ServiceKey::Fwmark { mark, .. }) => format!("fwmark {mark}"),
                        None => String::new(),
                    },
                    protocol: vs.protocol.name().to_owned(),
                    scheduler: vs.scheduler.name().to_owned(),
                    forwarding: vs.forwarding.name().to_owned(),
                    xdp_packets: stats.map(|s| s.packets),
                    xdp_bytes: stats.map(|s| s.bytes),
                    real_servers: vs
                        .real_servers
                        .iter()
                        .enumerate()
                        .map(|(i, r)| {
                            let live = health.and_then(|h| h.reals.get(i));
                            let forwarded =
                                self.xdp.as_ref().zip(view.as_ref()).and_then(|(x, view)| {
                                    x.real_stats(*view.reals.get(&r.addr.ip())?).ok()
                                });
                            RealServerStatus {
                                xdp_packets: forwarded.map(|s| s.packets),
                                xdp_bytes: forwarded.map(|s| s.bytes),
                                address: r.addr.to_string(),
                                weight: live.map_or(r.weight.get(), |l| l.weight),
                                alive: live.map(|l| l.alive),
                                drained: live.is_some_and(|l| l.drained),
                                checkers: live.map(|l| l.checkers.clone()).unwrap_or_default(),
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            config: self.options.config_path.clone(),
            uptime_secs: self.started.elapsed().as_secs(),
            dataplane: DataplaneStatus {
                configured_mode: self.model.dataplane.name().to_owned(),
                mode: self.effective_mode().to_owned(),
                bpf_object: self.options.bpf_object.describe(),
                xdp: xdp_status,
                xdp_error: self.xdp_error.clone(),
                ipvs: self.ipvs.clone(),
            },
            virtual_servers,
            router_id: self.model.router_id.clone(),
            vrrp: Vec::new(),
            reconciler: None,
            desired_services: Vec::new(),
            ipvs_services: self.ipvs_listing(),
        }
    }
}

/// Binds the control socket: parent directory 0700 if lbd creates it, socket 0600.
async fn bind_control(path: &Path) -> Result<UnixListener, DaemonError> {
    let err = |source| DaemonError::ControlSocket {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(DaemonError::AlreadyRunning(path.to_owned()));
        }
        // A socket left by an lbd that died: nobody answers on it.
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

async fn serve_connection(
    stream: UnixStream,
    queries: mpsc::Sender<oneshot::Sender<Status>>,
    reloads: mpsc::Sender<ReloadRequest>,
    health: Option<Arc<crate::health::Health>>,
) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    // A client that sends nothing does not hold a task forever.
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        BufReader::new(read).read_line(&mut line),
    )
    .await;
    let response = match read {
        Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
            Ok(Request::Status) => match query_status(&queries).await {
                Some(status) => Response::Status(Box::new(status)),
                None => shutting_down(),
            },
            Ok(Request::Drain {
                real_server,
                virtual_server,
            }) => drain(health.as_deref(), real_server, virtual_server, true).await,
            Ok(Request::Undrain {
                real_server,
                virtual_server,
            }) => drain(health.as_deref(), real_server, virtual_server, false).await,
            Ok(Request::Disable { virtual_server }) => {
                disable(health.as_deref(), virtual_server, true).await
            }
            Ok(Request::Enable { virtual_server }) => {
                disable(health.as_deref(), virtual_server, false).await
            }
            Ok(Request::Reload { dry_run, config }) => {
                let (reply, answer) = oneshot::channel();
                let request = ReloadRequest {
                    dry_run,
                    config,
                    reply,
                };
                match reloads.send(request).await {
                    Ok(()) => answer.await.unwrap_or_else(|_| shutting_down()),
                    Err(_) => shutting_down(),
                }
            }
            Ok(Request::Metrics) => match query_status(&queries).await {
                Some(status) => Response::Metrics {
                    text: crate::metrics::to_prometheus_text(&crate::metrics::encode(&status)),
                },
                None => shutting_down(),
            },
            Err(e) => Response::Error {
                message: format!("bad request: {e}"),
            },
        },
        Ok(Err(e)) => Response::Error {
            message: format!("reading request: {e}"),
        },
        Err(_) => Response::Error {
            message: "no request within 5 s".to_owned(),
        },
    };
    let mut out = serde_json::to_string(&response)
        .unwrap_or_else(|e| format!("{{\"response\":\"error\",\"message\":\"{e}\"}}"));
    out.push('\n');
    if let Err(e) = write.write_all(out.as_bytes()).await {
        warn!(error = %e, "writing control answer");
    }
}

async fn drain(
    health: Option<&crate::health::Health>,
    real_server: String,
    virtual_server: Option<String>,
    drained: bool,
) -> Response {
    let Some(health) = health else {
        return Response::Error {
            message: "no virtual server is configured".to_owned(),
        };
    };
    let target = crate::health::DrainTarget {
        real_server: real_server.clone(),
        virtual_server,
    };
    let matched = health.drain(target, drained).await;
    if matched.is_empty() {
        return Response::Error {
            message: format!("no real server {real_server} in the configuration"),
        };
    }
    Response::Drained {
        real_servers: matched,
    }
}

async fn disable(
    health: Option<&crate::health::Health>,
    virtual_server: String,
    disabled: bool,
) -> Response {
    let Some(health) = health else {
        return Response::Error {
            message: "no virtual server is configured".to_owned(),
        };
    };
    if health.disable(virtual_server.clone(), disabled).await {
        let word = if disabled {
            "out of service"
        } else {
            "in service"
        };
        Response::Done {
            message: format!("{virtual_server} {word}"),
        }
    } else {
        Response::Error {
            message: format!("no virtual server {virtual_server}"),
        }
    }
}

fn shutting_down() -> Response {
    Response::Error {
        message: "lbd is shutting down".to_owned(),
    }
}

/// A reload asked for by SIGHUP or a client, for the task that owns the state.
#[derive(Debug)]
struct ReloadRequest {
    dry_run: bool,
    config: Option<String>,
    reply: oneshot::Sender<Response>,
}

/// SIGHUP reloads, as keepalived's does; the outcome goes to the log.
fn spawn_reload_signal(reloads: mpsc::Sender<ReloadRequest>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        warn!("cannot install the SIGHUP handler: reload with lbctl reload");
        return;
    };
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let (reply, answer) = oneshot::channel();
            let request = ReloadRequest {
                dry_run: false,
                config: None,
                reply,
            };
            if reloads.send(request).await.is_err() {
                return;
            }
            // The reload logs its own outcome.
            drop(answer.await);
        }
    });
}

/// Re-reads the configuration and applies the difference (see [`crate::reload`]); an invalid
/// file changes nothing. With `dry_run`, only the plan.
async fn reload(
    state: &mut State,
    lvs: Option<&mut Lvs>,
    vrrp: &mut Vrrp,
    dry_run: bool,
    config: Option<String>,
) -> Response {
    let started = tokio::time::Instant::now();
    let Some(loader) = state.options.loader.clone() else {
        return Response::Error {
            message: "this lbd was started without a way to re-read its configuration".to_owned(),
        };
    };
    if config.is_some() && !dry_run {
        return Response::Error {
            message: "a reload reads the file lbd runs; another file is only for a dry run (check-config --diff)"
                .to_owned(),
        };
    }
    let path = config.unwrap_or_else(|| state.options.config_path.clone());
    // Parsing a big file takes a while: off the runtime's threads.
    let read = path.clone();
    let loaded = tokio::task::spawn_blocking(move || loader.load(&read, dry_run)).await;
    let loaded = loaded.unwrap_or_else(|e| Err(vec![format!("reading the configuration: {e}")]));
    let new = match loaded {
        Ok(model) => model,
        Err(errors) => {
            if !dry_run {
                error!(file = %path, errors = errors.len(), "reload refused: the configuration is not valid; the running one stays");
                for e in &errors {
                    error!("{e}");
                }
            }
            return Response::Error {
                message: format!(
                    "{path} is not valid, nothing changed:\n{}",
                    errors.join("\n")
                ),
            };
        }
    };
    let mut plan = crate::reload::ReloadPlan::between(&state.model, &new);
    if lvs.is_none() && !new.virtual_servers.is_empty() {
        plan.needs_restart
            .push("virtual servers, where lbd started with none".to_owned());
    }
    let mut report = crate::control::ReloadReport {
        plan,
        ..Default::default()
    };
    if dry_run {
        return Response::Reloaded(Box::new(report));
    }
    crate::systemd::reloading();
    info!(file = %path, "reloading");
    let mut new = crate::reload::effective(&state.model, new);
    if lvs.is_none() {
        // No health checks run (lbd started with no virtual server): none are taken on
        // until a restart, and status does not show them as if they were.
        new.virtual_servers.clear();
    }
    if let Some(lvs) = lvs {
        let mut stats = lvs.stats.clone();
        let (passes, applied) = {
            let s = stats.borrow_and_update();
            (s.passes, s.applied)
        };
        report.health = lvs.health.reload(new.virtual_servers.clone()).await;
        if report.health.as_ref().is_some_and(|h| h.table_changed) {
            // The reload is done when the data plane has it.
            let applied = tokio::time::timeout(
                Duration::from_secs(5),
                stats.wait_for(|s| s.passes > passes),
            )
            .await;
            if applied.is_err() {
                warn!("the reconciler did not apply the reload within 5 s");
            }
        }
        report.dataplane_operations = lvs.stats.borrow().applied.saturating_sub(applied);
        lvs.servers = omega_servers(&new.virtual_servers);
    }
    vrrp.reload(&new.vrrp_instances, &mut report).await;
    state.model = new;
    report.applied = true;
    report.took_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    // The old model, the parse's garbage and the old pools go back to the system (a big
    // configuration reloaded often must not ratchet the RSS up), once the reload is done:
    // trimming 100 MB takes tens of milliseconds.
    drop(tokio::task::spawn_blocking(crate::sys::release_free_memory));
    for line in report.plan.lines() {
        info!("reload: {line}");
    }
    info!(
        took_us = report.took_us,
        dataplane_operations = report.dataplane_operations,
        vrrp_kept = report.vrrp_kept,
        vrrp_changed = report.vrrp_changed,
        vrrp_added = report.vrrp_added,
        vrrp_removed = report.vrrp_removed,
        vrrp_restarted = report.vrrp_restarted.len(),
        "reloaded"
    );
    crate::systemd::ready(&format!(
        "{} virtual servers, {} VRRP instances, reloaded",
        state.model.virtual_servers.len(),
        state.model.vrrp_instances.len()
    ));
    Response::Reloaded(Box::new(report))
}

/// The status from the task that owns the state; `None` once lbd is stopping.
async fn query_status(queries: &mpsc::Sender<oneshot::Sender<Status>>) -> Option<Status> {
    let (tx, rx) = oneshot::channel();
    queries.send(tx).await.ok()?;
    rx.await.ok()
}

/// keepalived's signal dumps, mode 0600, in `dir`: SIGUSR1 writes `keepalived.data` and
/// `keepalived_check.data`, SIGUSR2 `keepalived.stats`, SIGRTMIN+2 (keepalived's JSON signal)
/// `keepalived.json`. The task that owns the state renders them, so a reload shows at once.
fn spawn_dumps(dumps: mpsc::Sender<DumpRequest>, dir: PathBuf) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut data), Ok(mut stats), Ok(mut json)) = (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
        signal(SignalKind::from_raw(libc::SIGRTMIN() + 2)),
    ) else {
        warn!("cannot install the dump signals' handlers");
        return;
    };
    tokio::spawn(async move {
        loop {
            let kind = tokio::select! {
                Some(()) = data.recv() => DumpKind::Data,
                Some(()) = stats.recv() => DumpKind::Stats,
                Some(()) = json.recv() => DumpKind::Json,
                else => return,
            };
            let (reply, answer) = oneshot::channel();
            if dumps.send(DumpRequest { kind, reply }).await.is_err() {
                return;
            }
            let Ok(files) = answer.await else {
                return;
            };
            for (name, text) in files {
                let path = dir.join(name);
                use std::os::unix::fs::OpenOptionsExt as _;
                let written = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&path)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
                match written {
                    Ok(()) => info!(path = %path.display(), "dump written on signal"),
                    Err(e) => warn!(path = %path.display(), error = %e, "writing a dump"),
                }
            }
        }
    });
}

/// Serves lbd's HTTP API on `listener` (its OpenAPI description: [`crate::control::openapi`]):
/// `GET /status`, `GET /metrics`, `POST /drain`, `POST /undrain`, `GET /openapi.json`.
async fn serve_http(
    listener: tokio::net::TcpListener,
    queries: mpsc::Sender<oneshot::Sender<Status>>,
    reloads: mpsc::Sender<ReloadRequest>,
    health: Option<Arc<crate::health::Health>>,
) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "accepting an HTTP connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let queries = queries.clone();
        let reloads = reloads.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let queries = queries.clone();
                let reloads = reloads.clone();
                let health = health.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        http_answer(request, &queries, &reloads, health.as_deref()).await,
                    )
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            // A client that stalls does not hold the task forever.
            match tokio::time::timeout(Duration::from_secs(30), connection).await {
                Ok(Ok(())) | Err(_) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "HTTP connection"),
            }
        });
    }
}

/// An answer with a JSON body.
fn json_reply(
    code: u16,
    body: &impl serde::Serialize,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    hyper::Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            serde_json::to_string(body).unwrap_or_default(),
        )))
        .unwrap_or_default()
}

/// A request's JSON body: an action's few dozen bytes, so anything over 64 KiB is refused.
async fn json_body<T: serde::de::DeserializeOwned>(
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<T, String> {
    use http_body_util::BodyExt as _;
    let body = http_body_util::Limited::new(request.into_body(), 64 * 1024)
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

async fn http_answer(
    request: hyper::Request<hyper::body::Incoming>,
    queries: &mpsc::Sender<oneshot::Sender<Status>>,
    reloads: &mpsc::Sender<ReloadRequest>,
    health: Option<&crate::health::Health>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let reply = |code: u16, content_type: &str, body: String| {
        hyper::Response::builder()
            .status(code)
            .header("content-type", content_type)
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap_or_default()
    };
    let error = |code: u16, message: String| {
        json_reply(code, &crate::control::ErrorBody { error: message })
    };
    let path = request.uri().path().to_owned();
    match (request.method().clone(), path.as_str()) {
        (hyper::Method::POST, "/drain" | "/undrain") => {
            let body: crate::control::DrainBody = match json_body(request).await {
                Ok(b) => b,
                Err(e) => return error(400, format!("not a drain request: {e}")),
            };
            let draining = path == "/drain";
            let answer = drain(health, body.real_server, body.virtual_server, draining).await;
            return match answer {
                Response::Drained { real_servers } => {
                    json_reply(200, &crate::control::DrainedBody { real_servers })
                }
                Response::Error { message } => error(404, message),
                other => error(500, format!("unexpected answer {other:?}")),
            };
        }
        (hyper::Method::POST, "/disable" | "/enable") => {
            let body: crate::control::VirtualServerBody = match json_body(request).await {
                Ok(b) => b,
                Err(e) => return error(400, format!("not a virtual server: {e}")),
            };
            return match disable(health, body.virtual_server, path == "/disable").await {
                Response::Done { message } => {
                    json_reply(200, &crate::control::MessageBody { message })
                }
                Response::Error { message } => error(404, message),
                other => error(500, format!("unexpected answer {other:?}")),
            };
        }
        (hyper::Method::POST, "/reload") => {
            let empty = request
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .is_some_and(|l| l == "0");
            let body: crate::control::ReloadBody = if empty {
                crate::control::ReloadBody::default()
            } else {
                match json_body(request).await {
                    Ok(b) => b,
                    Err(e) => return error(400, format!("not a reload request: {e}")),
                }
            };
            let (reply, answer) = oneshot::channel();
            let asked = ReloadRequest {
                dry_run: body.dry_run,
                config: None,
                reply,
            };
            if reloads.send(asked).await.is_err() {
                return error(503, "lbd is shutting down".to_owned());
            }
            return match answer.await {
                Ok(Response::Reloaded(report)) => json_reply(200, &report),
                Ok(Response::Error { message }) => error(409, message),
                Ok(other) => error(500, format!("unexpected answer {other:?}")),
                Err(_) => error(503, "lbd is shutting down".to_owned()),
            };
        }
        (hyper::Method::GET, "/openapi.json") => {
            return reply(
                200,
                "application/json",
                crate::control::openapi().to_string(),
            );
        }
        (hyper::Method::GET, "/metrics" | "/status") => {}
        (
            _,
            "/metrics" | "/status" | "/openapi.json" | "/drain" | "/undrain" | "/disable"
            | "/enable" | "/reload",
        ) => {
            return error(
                405,
                format!("{} is not allowed on {path}", request.method()),
            );
        }
        _ => return error(404, format!("no {path}: see /openapi.json")),
    }
    let Some(status) = query_status(queries).await else {
        return reply(503, "text/plain", "lbd is shutting down\n".to_owned());
    };
    if path == "/metrics" {
        // OpenMetrics when the scraper asks for it (Prometheus does), else Prometheus' text.
        let openmetrics = request
            .headers()
            .get_all(hyper::header::ACCEPT)
            .iter()
            .any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.contains("application/openmetrics-text"))
            });
        let text = crate::metrics::encode(&status);
        if openmetrics {
            reply(200, crate::metrics::OPENMETRICS, text)
        } else {
            reply(
                200,
                crate::metrics::PROMETHEUS_TEXT,
                crate::metrics::to_prometheus_text(&text),
            )
        }
    } else {
        let json =
            serde_json::to_string(&status).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        reply(200, "application/json", json)
    }
}

/// A running VRRP driver.
struct VrrpDriver {
    interface: String,
    queries: mpsc::Sender<crate::vrrp::driver::StatusQuery>,
    reloads: mpsc::Sender<crate::vrrp::driver::ReloadCommand>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), crate::vrrp::io::IoError>>,
}

impl VrrpDriver {
    /// One step of a reload; `Err` says why the driver must restart instead.
    async fn reload(
        &self,
        phase: crate::vrrp::driver::ReloadPhase,
        instances: Vec<crate::model::VrrpInstance>,
    ) -> Result<crate::vrrp::driver::InstanceChanges, String> {
        let (reply, answer) = oneshot::channel();
        let command = crate::vrrp::driver::ReloadCommand {
            phase,
            instances,
            reply,
        };
        self.reloads
            .send(command)
            .await
            .map_err(|_| "its driver is not running".to_owned())?;
        match tokio::time::timeout(Duration::from_secs(10), answer).await {
            Ok(Ok(done)) => done,
            Ok(Err(_)) => Err("its driver stopped".to_owned()),
            Err(_) => Err("its driver did not answer within 10 s".to_owned()),
        }
    }

    /// Stops it: masters send their priority-0 adverts and give up their addresses.
    async fn stop(self) {
        self.stop.send(true).ok();
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(Ok(()))) => {}
            // Already logged when it failed.
            Ok(Ok(Err(_))) => {}
            Ok(Err(e)) => error!(interface = %self.interface, error = %e, "VRRP driver task"),
            Err(_) => error!(interface = %self.interface, "VRRP driver did not stop within 5 s"),
        }
    }
}

/// Each sync-group member's driver, for the group task; a driver that (re)starts puts its
/// members here.
type GroupCommands = Arc<
    std::sync::Mutex<
        std::collections::HashMap<String, mpsc::UnboundedSender<crate::vrrp::sync::Command>>,
    >,
>;

/// The VRRP drivers, one per interface, and what starting another takes.
struct Vrrp {
    shared: crate::vrrp::driver::Shared,
    group_commands: GroupCommands,
    drivers: Vec<VrrpDriver>,
    /// Started with the first driver: a director without VRRP has no such thread.
    runtime: Option<VrrpRuntime>,
}

/// The thread the VRRP drivers run on: a current-thread runtime of their own. An advert, a
/// kernel master-down event or a timer wakes that one thread, which then runs the takeover to
/// its end (netlink acks included) without handing work to another: under CPU starvation
/// every hand-off is one more wait for the scheduler. Nothing else (health checks, the
/// control API, reloads' parsing) runs there.
struct VrrpRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl VrrpRuntime {
    /// Starts the thread; with `rt_priority` (keepalived's `vrrp_rt_priority`) it runs
    /// SCHED_RR at that priority.
    fn start(rt_priority: Option<u8>) -> Self {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("lbd-vrrp".to_owned())
            .spawn(move || {
                if let Some(priority) = rt_priority {
                    match crate::sys::set_realtime(priority) {
                        Ok(()) => info!(priority, "VRRP thread runs SCHED_RR (vrrp_rt_priority)"),
                        Err(e) => warn!(priority, error = %e, "vrrp_rt_priority not applied"),
                    }
                }
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        error!(error = %e, "starting the VRRP runtime");
                        return;
                    }
                };
                if handle_tx.send(runtime.handle().clone()).is_ok() {
                    // Drivers run until they are stopped; then this returns.
                    drop(runtime.block_on(stopped));
                }
            });
        match (thread, handle_rx.recv()) {
            (Ok(thread), Ok(handle)) => Self {
                handle,
                stop: Some(stop),
                thread: Some(thread),
            },
            _ => {
                warn!("no thread of its own for VRRP: its drivers share the main runtime");
                Self {
                    handle: tokio::runtime::Handle::current(),
                    stop: None,
                    thread: None,
                }
            }
        }
    }

    /// Ends the thread once its drivers have stopped.
    fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!("the VRRP thread panicked");
        }
    }
}

/// `instances` grouped by interface, in configuration order.
fn by_interface(
    instances: &[crate::model::VrrpInstance],
) -> Vec<(String, Vec<crate::model::VrrpInstance>)> {
    let mut grouped: Vec<(String, Vec<crate::model::VrrpInstance>)> = Vec::new();
    for instance in instances {
        match grouped.iter_mut().find(|(i, _)| *i == instance.interface) {
            Some((_, list)) => list.push(instance.clone()),
            None => grouped.push((instance.interface.clone(), vec![instance.clone()])),
        }
    }
    grouped
}

impl Vrrp {
    fn spawn_driver(
        &mut self,
        interface: String,
        instances: Vec<crate::model::VrrpInstance>,
    ) -> VrrpDriver {
        let (queries, queries_rx) = mpsc::channel(4);
        let (reloads, reloads_rx) = mpsc::channel(1);
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        {
            let mut commands = self
                .group_commands
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for instance in &instances {
                commands.insert(instance.name.clone(), commands_tx.clone());
            }
        }
        let (stop, stopped) = watch::channel(false);
        let driver = crate::vrrp::driver::run(
            interface.clone(),
            instances,
            self.shared.clone(),
            commands_rx,
            queries_rx,
            reloads_rx,
            stopped,
        );
        let name = interface.clone();
        let rt_priority = self.shared.globals.rt_priority;
        let runtime = self
            .runtime
            .get_or_insert_with(|| VrrpRuntime::start(rt_priority));
        let task = runtime.handle.spawn(async move {
            // Said at once: a driver that cannot start (no such interface, no address to
            // send from) leaves its instances down while the rest of lbd runs.
            let result = driver.await;
            if let Err(e) = &result {
                error!(interface = %name, error = %e, "VRRP driver failed");
            }
            result
        });
        VrrpDriver {
            interface,
            queries,
            reloads,
            stop,
            task,
        }
    }

    /// Moves the drivers to `instances`: instances that did not change are not touched,
    /// changed ones change in place, and every address that leaves an instance is removed
    /// (on every interface) before any is added, so an address moving between instances
    /// moves in one reload. A driver that cannot apply its part in place restarts.
    async fn reload(
        &mut self,
        instances: &[crate::model::VrrpInstance],
        report: &mut crate::control::ReloadReport,
    ) {
        use crate::vrrp::driver::ReloadPhase;
        let wanted = by_interface(instances);
        let mine = |interface: &str| {
            wanted
                .iter()
                .find(|(i, _)| i == interface)
                .map(|(_, list)| list.clone())
        };
        let mut restart = Vec::new();
        for (index, driver) in self.drivers.iter().enumerate() {
            let Some(list) = mine(&driver.interface) else {
                restart.push(index);
                continue;
            };
            match driver.reload(ReloadPhase::Remove, list).await {
                Ok(changes) => report.vrrp_removed += changes.removed.len(),
                Err(why) => {
                    warn!(interface = %driver.interface, reason = %why, "VRRP driver restarts to apply the reload");
                    report
                        .vrrp_restarted
                        .push(format!("{}: {why}", driver.interface));
                    restart.push(index);
                }
            }
        }
        for index in restart.into_iter().rev() {
            let driver = self.drivers.remove(index);
            if mine(&driver.interface).is_none() {
                info!(interface = %driver.interface, "no VRRP instance left on the interface");
            }
            driver.stop().await;
        }
        for driver in &self.drivers {
            let Some(list) = mine(&driver.interface) else {
                continue;
            };
            match driver.reload(ReloadPhase::Apply, list).await {
                Ok(changes) => {
                    report.vrrp_kept += changes.kept.len();
                    report.vrrp_changed += changes.changed.len();
                    report.vrrp_added += changes.added.len();
                }
                Err(why) => {
                    error!(interface = %driver.interface, reason = %why, "VRRP reload not applied")
                }
            }
        }
        for (interface, list) in wanted {
            if !self.drivers.iter().any(|d| d.interface == interface) {
                report.vrrp_added += list.len();
                let driver = self.spawn_driver(interface, list);
                self.drivers.push(driver);
            }
        }
    }
}

/// Every VRRP instance's latest state, by name.
type Transitions =
    watch::Receiver<std::collections::HashMap<String, crate::vrrp::sync::MemberState>>;

/// Starts one VRRP driver per interface.
fn start_vrrp(model: &Model, options: &RunOptions) -> (watch::Sender<bool>, Vrrp, Transitions) {
    let (transitions_tx, transitions) = watch::channel(std::collections::HashMap::new());
    let object = &options.bpf_object;
    let (shutdown, stopped) = watch::channel(false);
    // The kernel's record of adverts needs lbd's BPF object; without one VRRP runs on user
    // space alone, and says so once.
    let bpf: Option<Arc<[u8]>> = match object.bytes() {
        _ if !options.vrrp_bpf => None,
        Ok(Some(bytes)) if !model.vrrp_instances.is_empty() => Some(bytes.as_ref().into()),
        Ok(_) => None,
        Err(e) => {
            warn!(error = %e, "reading the BPF object: VRRP adverts recorded in user space only");
            None
        }
    };
    if bpf.is_none() && !model.vrrp_instances.is_empty() {
        warn!(
            asked = options.vrrp_bpf,
            "no BPF object, or --no-vrrp-bpf: VRRP adverts recorded in user space only"
        );
    }
    let notifier = Arc::new(crate::scripts::Notifier::start(&model.vrrp));
    let (groups_tx, groups_rx) = mpsc::unbounded_channel();
    let shared = crate::vrrp::driver::Shared {
        globals: Arc::new(model.vrrp.clone()),
        track: crate::vrrp::tracker::start(&model.vrrp, &stopped),
        notifier: Arc::clone(&notifier),
        groups: groups_tx,
        transitions: transitions_tx,
        bpf,
    };
    let mut vrrp = Vrrp {
        runtime: None,
        shared,
        group_commands: GroupCommands::default(),
        drivers: Vec::new(),
    };
    for (interface, instances) in by_interface(&model.vrrp_instances) {
        let driver = vrrp.spawn_driver(interface, instances);
        vrrp.drivers.push(driver);
    }
    tokio::spawn(run_sync_groups(
        model.vrrp.sync_groups.clone(),
        groups_rx,
        vrrp.group_commands.clone(),
        notifier,
    ));
    (shutdown, vrrp, transitions)
}

/// The sync groups: member reports in, commands out to the members' drivers, group notify.
async fn run_sync_groups(
    groups: Vec<crate::model::SyncGroup>,
    mut reports: mpsc::UnboundedReceiver<crate::vrrp::driver::GroupReport>,
    drivers: GroupCommands,
    notifier: Arc<crate::scripts::Notifier>,
) {
    use crate::{
        scripts::NotifyState,
        vrrp::sync::{Command, MemberState},
    };
    let mut state = crate::vrrp::sync::Groups::new(&groups);
    while let Some(report) = reports.recv().await {
        let outcome = state.report(&report.member, report.state, report.own);
        for command in outcome.commands {
            let member = match &command {
                Command::ForceActive(m) | Command::ForceBackup(m) | Command::GroupFault(m, _) => m,
            };
            let drivers = drivers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(driver) = drivers.get(member) {
                driver.send(command.clone()).ok();
            }
        }
        if let Some((name, group_state)) = outcome.transition {
            info!(group = %name, state = ?group_state, "sync group changed");
            if let Some(group) = groups.iter().find(|g| g.name == name) {
                let word = match group_state {
                    MemberState::Active => NotifyState::Master,
                    MemberState::Backup => NotifyState::Backup,
                    MemberState::Fault => NotifyState::Fault,
                };
                notifier.transition("GROUP", &name, word, 0, &group.notify);
            }
        }
    }
}

/// The health checks and the reconciler that programs what they decide.
struct Lvs {
    health: Arc<crate::health::Health>,
    backend: &'static str,
    stats: watch::Receiver<crate::reconcile::ReconcileStats>,
    reconciler: tokio::task::JoinHandle<()>,
    /// The XDP backend's reconciler, next to the IPVS (or check-only) one.
    xdp_reconciler: Option<tokio::task::JoinHandle<()>>,
    notifier: Arc<crate::scripts::Notifier>,
    servers: Vec<Arc<crate::model::VirtualServer>>,
}

impl Lvs {
    /// Waits for the reconciler's last pass; with `omega`, runs the down notifications.
    async fn stop(self) {
        if tokio::time::timeout(Duration::from_secs(10), self.reconciler)
            .await
            .is_err()
        {
            error!("the reconciler did not finish within 10 s");
        }
        if let Some(xdp) = self.xdp_reconciler
            && tokio::time::timeout(Duration::from_secs(10), xdp)
                .await
                .is_err()
        {
            error!("the XDP reconciler did not finish within 10 s");
        }
        let view = self.health.view();
        for vs in &self.servers {
            let Some(pool) = view.iter().find(|p| p.name == vs.name) else {
                continue;
            };
            for (rs, live) in vs.real_servers.iter().zip(&pool.reals) {
                if live.alive {
                    let name = crate::health::real_name(vs, rs.addr);
                    self.notifier
                        .raw_line(&format!("RS {name} {} DOWN\n", vs.name));
                    if let Some(s) = &rs.notify_down {
                        self.notifier.run(s);
                    }
                }
            }
            if pool.quorum_up {
                self.notifier.raw_line(&format!("VS {} DOWN\n", vs.name));
                if let Some(s) = &vs.quorum_down {
                    self.notifier.run(s);
                }
            }
        }
    }
}

/// The virtual servers with `omega`, which [`Lvs::stop`] needs: usually none.
fn omega_servers(
    servers: &[Arc<crate::model::VirtualServer>],
) -> Vec<Arc<crate::model::VirtualServer>> {
    servers.iter().filter(|vs| vs.omega).cloned().collect()
}

/// How often the reconciler compares the kernel with the desired state even when nothing
/// changed (drift repair).
const RESYNC: Duration = Duration::from_secs(5);

/// Starts health checks and the reconciler for the model's virtual servers: IPVS when the
/// data plane uses it and the kernel has it, otherwise check-only (scripts and FIFO only),
/// which keepalived cannot do (its checker exits without IPVS).
fn start_lvs(state: &mut State, mut stopped: watch::Receiver<bool>) -> Option<Lvs> {
    let model = &state.model;
    if model.virtual_servers.is_empty() {
        return None;
    }
    let notifier = Arc::new(crate::scripts::Notifier::with_fifo(
        model.lvs_notify_fifo.as_deref(),
        model.vrrp.script_user.clone(),
    ));
    let ctx = crate::health::probe::ProbeContext::new(model.vrrp.script_user.clone());
    let health = Arc::new(crate::health::start(
        &model.virtual_servers,
        ctx,
        notifier.clone(),
    ));
    let (stats_tx, stats) = watch::channel(crate::reconcile::ReconcileStats::default());
    let xdp = state
        .xdp_maps
        .take()
        .and_then(|maps| match xdp_backend(maps, &state.model) {
            Ok((backend, view)) => {
                state.xdp_view = Some(view);
                Some(backend)
            }
            Err(e) => {
                error!(error = %e, "the XDP backend could not start: XDP forwards nothing");
                None
            }
        });
    // The XDP reconciler: at stop the maps stay as they are (the program forwards until it is
    // detached).
    let xdp_stopped = stopped.clone();
    let spawn_xdp = |backend, stats: watch::Sender<crate::reconcile::ReconcileStats>| {
        let mut stopped = xdp_stopped;
        let stop = async move {
            let _stopped = stopped.wait_for(|s| *s).await;
        };
        let policy = crate::reconcile::Policy {
            flush_at_start: false,
            on_stop: crate::model::OnStop::Keep,
        };
        tokio::spawn(crate::reconcile::run(
            backend,
            health.desired.clone(),
            RESYNC,
            policy,
            stats,
            None,
            stop,
        ))
    };
    let model = &state.model;
    let stop = async move {
        // Either a stop or a dropped sender ends the reconciler.
        let _stopped = stopped.wait_for(|s| *s).await;
    };
    let wants_ipvs = state.effective_mode().contains("ipvs");
    let ipvs = if wants_ipvs && state.ipvs.as_ref().is_some_and(|s| s.available) {
        match crate::reconcile::ipvs::IpvsBackend::connect() {
            Ok(b) => {
                if let Some(t) = model.ipvs.timeouts
                    && let Err(e) = b.set_timeouts(t)
                {
                    error!(error = %e, "lvs_timeouts not applied");
                }
                Some(b)
            }
            Err(e) => {
                error!(error = %e, "connecting to IPVS: checking and notifying only");
                None
            }
        }
    } else {
        None
    };
    let desired = health.desired.clone();
    let policy = crate::reconcile::Policy {
        flush_at_start: model.ipvs.flush_at_start,
        on_stop: if state.options.keep_ipvs {
            crate::model::OnStop::Keep
        } else {
            model.ipvs.on_stop
        },
    };
    let mut xdp_reconciler = None;
    let (backend, reconciler) = match (ipvs, xdp) {
        (Some(b), xdp) => {
            // IPVS behind XDP: its stats are the ones status shows.
            xdp_reconciler = xdp.map(|x| spawn_xdp(x, watch::channel(Default::default()).0));
            (
                "ipvs",
                tokio::spawn(crate::reconcile::run(
                    b, desired, RESYNC, policy, stats_tx, None, stop,
                )),
            )
        }
        (None, Some(x)) => {
            if wants_ipvs {
                warn!("the kernel has no IPVS: XDP alone programs the real servers");
            }
            ("xdp", spawn_xdp(x, stats_tx))
        }
        (None, None) => {
            if wants_ipvs {
                warn!(
                    "the kernel has no IPVS: real servers are checked and notified, not programmed"
                );
            } else {
                info!(
                    mode = state.effective_mode(),
                    "no data plane programs real servers: checking and notifying only"
                );
            }
            let fake = crate::reconcile::fake::FakeBackend::default();
            (
                "fake",
                tokio::spawn(crate::reconcile::run(
                    fake, desired, RESYNC, policy, stats_tx, None, stop,
                )),
            )
        }
    };
    info!(
        virtual_servers = model.virtual_servers.len(),
        probes = health.probes(),
        backend,
        "health checks running"
    );
    Some(Lvs {
        health,
        backend,
        stats,
        reconciler,
        xdp_reconciler,
        notifier,
        servers: omega_servers(&model.virtual_servers),
    })
}

/// The XDP backend for `model`'s XDP settings, resolving next hops through the kernel.
fn xdp_backend(
    maps: crate::dataplane::xdp::XdpMaps,
    model: &Model,
) -> Result<
    (
        crate::reconcile::xdp::XdpBackend<crate::dataplane::neighbour::KernelNextHops>,
        watch::Receiver<crate::reconcile::xdp::XdpView>,
    ),
    String,
> {
    let x = model
        .dataplane
        .xdp()
        .ok_or_else(|| "no XDP settings".to_owned())?;
    let next_hops = crate::dataplane::neighbour::KernelNextHops::connect()
        .map_err(|e| format!("opening rtnetlink: {e}"))?;
    // Without a configured prefix the outer source is the interface's own address.
    let (own_v4, own_v6) = crate::dataplane::neighbour::interface_addresses(&x.interface)
        .map_err(|e| format!("addresses of {}: {e}", x.interface))?;
    let settings = crate::reconcile::xdp::settings(
        x.mtu,
        x.encap_source_v4.or(own_v4.map(|a| (a, 32))),
        x.encap_source_v6.or(own_v6.map(|a| (a, 128))),
    );
    let backend = crate::reconcile::xdp::XdpBackend::new(maps, next_hops, &settings)
        .map_err(|e| e.to_string())?;
    let view = backend.view();
    Ok((backend, view))
}

/// Every driver's instance statuses; a driver that does not answer within a second is skipped.
async fn vrrp_statuses(
    drivers: &[mpsc::Sender<crate::vrrp::driver::StatusQuery>],
) -> Vec<crate::control::VrrpStatus> {
    let mut all = Vec::new();
    for driver in drivers {
        let (tx, rx) = oneshot::channel();
        if driver.send(tx).await.is_ok()
            && let Ok(Ok(mut statuses)) = tokio::time::timeout(Duration::from_secs(1), rx).await
        {
            all.append(&mut statuses);
        }
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

/// Everything status shows, from the task that owns the state.
async fn full_status(state: &State, lvs: Option<&Lvs>, vrrp: &Vrrp) -> Status {
    let health = lvs.map(|l| l.health.view()).unwrap_or_default();
    let mut status = state.status(&health);
    let vrrp_queries: Vec<_> = vrrp.drivers.iter().map(|d| d.queries.clone()).collect();
    status.vrrp = vrrp_statuses(&vrrp_queries).await;
    if let Some(desired) = lvs.map(|l| &l.health.desired) {
        status.desired_services = desired
            .borrow()
            .iter()
            .map(|(key, svc)| crate::control::ServiceStatus {
                service: key.to_string(),
                scheduler: svc.settings.scheduler.clone(),
                real_servers: svc
                    .dests
                    .iter()
                    .map(|(addr, d)| crate::control::DestStatus {
                        address: addr.to_string(),
                        weight: d.weight,
                        forwarding: d.forwarding.name().to_owned(),
                    })
                    .collect(),
            })
            .collect();
    }
    status.reconciler = lvs.map(|l| {
        let s = l.stats.borrow();
        crate::control::ReconcilerStatus {
            backend: l.backend.to_owned(),
            probes: l.health.probes(),
            passes: s.passes,
            applied: s.applied,
            errors: s.errors,
            last_error: s.last_error.clone(),
        }
    });
    status
}

/// Which keepalived dump a signal asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DumpKind {
    /// SIGUSR1: `keepalived.data` and `keepalived_check.data`.
    Data,
    /// SIGUSR2: `keepalived.stats`.
    Stats,
    /// SIGRTMIN+2: `keepalived.json`.
    Json,
}

/// A dump for the task that owns the state: the files to write, by name.
#[derive(Debug)]
struct DumpRequest {
    kind: DumpKind,
    reply: oneshot::Sender<Vec<(&'static str, String)>>,
}

fn render_dumps(kind: DumpKind, model: &Model, status: &Status) -> Vec<(&'static str, String)> {
    match kind {
        DumpKind::Data => vec![
            (
                "keepalived.data",
                crate::dumps::data_text(model, &status.vrrp),
            ),
            (
                "keepalived_check.data",
                crate::dumps::check_data_text(model, status),
            ),
        ],
        DumpKind::Stats => vec![("keepalived.stats", crate::dumps::stats_text(&status.vrrp))],
        DumpKind::Json => vec![(
            "keepalived.json",
            crate::dumps::json(&status.vrrp, &model.vrrp_instances),
        )],
    }
}

/// Runs lbd on `model` until `shutdown` completes.
pub async fn run(
    model: Model,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    // SIGHUP's default is to terminate: its handler goes in first, and a reload asked for
    // while lbd starts waits for the state to be there.
    let (reloads_tx, mut reloads_rx) = mpsc::channel::<ReloadRequest>(4);
    spawn_reload_signal(reloads_tx.clone());
    let listener = bind_control(&options.control_socket).await?;
    let http = match options.http_address {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| DaemonError::Http { address, source })?,
        ),
        None => None,
    };
    if let Some(path) = &options.pid_file {
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|source| {
            DaemonError::PidFile {
                path: path.clone(),
                source,
            }
        })?;
    }
    let socket = options.control_socket.clone();
    let pid_file = options.pid_file.clone();
    info!(
        config = %options.config_path,
        mode = model.dataplane.name(),
        virtual_servers = model.virtual_servers.len(),
        socket = %socket.display(),
        "lbd starting"
    );
    let (vrrp_shutdown, mut vrrp, transitions) = start_vrrp(&model, &options);
    let sync_daemon = model.ipvs.sync_daemon.clone().map(|config| {
        tokio::spawn(crate::reconcile::sync_daemon::run(
            config,
            transitions,
            vrrp_shutdown.subscribe(),
        ))
    });
    let mut state = State::new(model, options);
    info!(mode = state.effective_mode(), "lbd running");
    let (virtual_servers_count, vrrp_instances_count, mode_name) = (
        state.model.virtual_servers.len(),
        state.model.vrrp_instances.len(),
        state.effective_mode(),
    );
    let (lvs_shutdown, lvs_stopped) = watch::channel(false);
    let mut lvs = start_lvs(&mut state, lvs_stopped);
    crate::sys::release_free_memory();

    let (queries_tx, mut queries_rx) = mpsc::channel::<oneshot::Sender<Status>>(16);
    if let Some(http) = http {
        info!(address = ?http.local_addr().ok(), "serving /metrics and /status over HTTP");
        tokio::spawn(serve_http(
            http,
            queries_tx.clone(),
            reloads_tx.clone(),
            lvs.as_ref().map(|l| l.health.clone()),
        ));
    }
    let control_health = lvs.as_ref().map(|l| l.health.clone());
    if let Some(every) = crate::systemd::watchdog_interval() {
        // A keep-alive only when the task that owns the state answers: a wedged lbd is
        // restarted by systemd, not kept alive by a timer.
        let queries = queries_tx.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if query_status(&queries).await.is_some() {
                    crate::systemd::watchdog();
                }
            }
        });
    }
    let (dumps_tx, mut dumps_rx) = mpsc::channel::<DumpRequest>(4);
    spawn_dumps(dumps_tx, state.options.dump_dir.clone());
    // Borrows the state, which outlives it: the XDP program is released or kept below.
    let owner = async {
        loop {
            let reply = tokio::select! {
                Some(reply) = queries_rx.recv() => reply,
                Some(request) = dumps_rx.recv() => {
                    let status = full_status(&state, lvs.as_ref(), &vrrp).await;
                    request.reply.send(render_dumps(request.kind, &state.model, &status)).ok();
                    continue;
                }
                Some(request) = reloads_rx.recv() => {
                    let answer = reload(&mut state, lvs.as_mut(), &mut vrrp, request.dry_run, request.config).await;
                    request.reply.send(answer).ok();
                    continue;
                }
                else => return,
            };
            let status = full_status(&state, lvs.as_ref(), &vrrp).await;
            // A client that went away no longer wants its answer.
            reply.send(status).ok();
        }
    };
    crate::systemd::ready(&format!(
        "{} virtual servers, {} VRRP instances, data plane {}",
        virtual_servers_count, vrrp_instances_count, mode_name
    ));
    let listen = async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(
                        stream,
                        queries_tx.clone(),
                        reloads_tx.clone(),
                        control_health.clone(),
                    ));
                }
                Err(e) => {
                    warn!(error = %e, "accepting a control connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    tokio::select! {
        () = shutdown => info!("lbd stopping"),
        () = owner => {},
        () = listen => {},
    }
    crate::systemd::stopping();
    // Checks stop; the reconciler releases the services it owns (as keepalived does).
    lvs_shutdown.send(true).ok();
    if let Some(lvs) = lvs {
        lvs.stop().await;
    }
    // The XDP program: detached and unpinned, or with -I left forwarding for the next lbd.
    if let Some(xdp) = state.xdp.take() {
        if state.options.keep_ipvs {
            xdp.keep();
        } else {
            xdp.release();
        }
    }
    // VRRP instances send their priority-0 adverts and release their addresses first.
    vrrp_shutdown.send(true).ok();
    for driver in &vrrp.drivers {
        driver.stop.send(true).ok();
    }
    if let Some(task) = sync_daemon
        && tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
    {
        error!("the IPVS sync daemon task did not stop within 5 s");
    }
    for driver in vrrp.drivers {
        driver.stop().await;
    }
    if let Some(runtime) = vrrp.runtime {
        runtime.finish();
    }
    for path in std::iter::once(socket).chain(pid_file) {
        if let Err(e) = std::fs::remove_file(&path) {
            warn!(path = %path.display(), error = %e, "removing at exit");
        }
    }
    info!("lbd stopped");
    Ok(())
}
