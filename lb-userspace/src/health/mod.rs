//! Health checks: probes of real servers, their verdicts, the pools they make, and the desired
//! IPVS table the reconciler applies.
//!
//! Layers: [`state`] (one checker's verdict, pure), [`pool`] (a virtual server's live set and
//! quorum, pure), [`probe`] (the checkers' I/O) and this module's runner, which owns the tasks.
//! A checker shared by several virtual servers (same target, same check, same timing) is
//! probed once and its verdict fans out to each of them. One scheduler task keeps every probe
//! in a timer heap and runs those due (at most [`MAX_CONCURRENT_PROBES`] at once); first
//! probes are spread over their `warmup` by a hash of the checker, so 10,000 checks do not
//! fire in the same millisecond. Each probe's latency and counts are kept in atomics; only
//! verdict changes and failures are messages, to the supervisor that owns the pools.

pub mod pool;
pub mod probe;
pub mod state;

use std::{
    collections::HashMap,
    hash::{Hash as _, Hasher as _},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tracing::{info, warn};

use self::{
    pool::{Pool, PoolEvent},
    probe::ProbeContext,
    state::{CheckState, Outcome, WeightChange},
};
use crate::{
    model::{Checker, ServiceKey, VirtualServer},
    reconcile::Table,
    scripts::Notifier,
};

/// Probes running at once, at most.
pub const MAX_CONCURRENT_PROBES: usize = 4096;

/// A real server's checker, as status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CheckerView {
    /// keepalived's block name.
    pub kind: String,
    /// Where it probes.
    pub target: String,
    /// Its verdict.
    pub up: bool,
    /// The last probe's latency in microseconds.
    pub last_latency_us: Option<u64>,
    /// The last probe's result in words.
    pub last_detail: String,
    /// Probes run.
    pub probes: u64,
    /// Probes that failed.
    pub failures: u64,
    /// How many probes took at most each of [`LATENCY_BUCKETS_US`] (the last: any longer),
    /// one count per bucket (not cumulative).
    #[serde(default)]
    pub latency_buckets: Vec<u64>,
    /// The sum of every probe's latency, microseconds.
    #[serde(default)]
    pub latency_sum_us: u64,
}

/// Upper bounds of the probe-latency histogram's buckets, microseconds: 0.5 ms to 10 s, then
/// everything longer.
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 2_500_000,
    10_000_000,
];

/// A real server, as status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RealView {
    /// address:port.
    pub address: String,
    /// All its checkers are up.
    pub alive: bool,
    /// Its weight now (configured, changed by dynamic checkers).
    pub weight: u32,
    /// Drained by an operator: weight 0 in the data plane, established connections kept.
    #[serde(default)]
    pub drained: bool,
    /// Its checkers.
    pub checkers: Vec<CheckerView>,
}

/// Which real servers an operator drains or undrains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainTarget {
    /// The real server's address, with a port (that one) or without (every port).
    pub real_server: String,
    /// Only in this virtual server (its keepalived name); `None`: in all.
    pub virtual_server: Option<String>,
}

/// A request to the supervisor.
#[derive(Debug)]
enum Command {
    Disable {
        /// keepalived's name of the virtual server.
        virtual_server: String,
        disabled: bool,
        /// Whether there is such a virtual server.
        reply: tokio::sync::oneshot::Sender<bool>,
    },
    Drain {
        target: DrainTarget,
        drained: bool,
        /// keepalived's names of the real servers it matched.
        reply: tokio::sync::oneshot::Sender<Vec<String>>,
    },
}

/// A virtual server, as status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PoolView {
    /// keepalived's name for it.
    pub name: String,
    /// Whether it has quorum.
    pub quorum_up: bool,
    /// Taken out of service by an operator.
    #[serde(default)]
    pub disabled: bool,
    /// Its real servers.
    pub reals: Vec<RealView>,
}

/// One probe's result, from its task to the supervisor.
#[derive(Debug)]
struct Report {
    probe: usize,
    up: bool,
    weight: Option<WeightChange>,
    changed: bool,
    detail: String,
}

/// Where a probe's verdict goes: (virtual server, real server, checker) indices.
type Subscriber = (usize, usize, usize);

/// A probe's running figures, written by its task and read by status: a healthy probe never
/// has to message anyone.
#[derive(Debug, Default)]
struct Counters {
    probes: AtomicU64,
    failures: AtomicU64,
    /// Microseconds; `u64::MAX` before the first probe.
    latency_us: AtomicU64,
    /// The latency histogram: one slot per bound of [`LATENCY_BUCKETS_US`], and one more.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
}

/// The running health checks, on their own thread and runtime (a current-thread tokio
/// runtime: thousands of probes a second without cross-thread wakeups, and nothing they do
/// can delay VRRP on the main runtime).
#[derive(Debug)]
pub struct Health {
    /// The desired IPVS table, for the reconciler.
    pub desired: watch::Receiver<Table>,
    /// Distinct probes (checkers shared by virtual servers count once).
    pub probes: usize,
    view: Arc<Mutex<Vec<PoolView>>>,
    counters: Arc<Vec<Counters>>,
    subscribers: Arc<Vec<Vec<Subscriber>>>,
    commands: mpsc::UnboundedSender<Command>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Health {
    /// Takes the virtual server named `virtual_server` out of service (its services leave
    /// IPVS and XDP; its checks keep running) or back; whether there is one by that name.
    pub async fn disable(&self, virtual_server: String, disabled: bool) -> bool {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = self.commands.send(Command::Disable {
            virtual_server,
            disabled,
            reply,
        });
        sent.is_ok() && answer.await.unwrap_or(false)
    }

    /// Drains (weight 0, connections kept) or undrains the real servers `target` names;
    /// returns their names (empty: none matched).
    pub async fn drain(&self, target: DrainTarget, drained: bool) -> Vec<String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = self.commands.send(Command::Drain {
            target,
            drained,
            reply,
        });
        if sent.is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// What status shows: every pool, its real servers and their checkers' figures.
    pub fn view(&self) -> Vec<PoolView> {
        let mut view = self
            .view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for (probe, subs) in self.subscribers.iter().enumerate() {
            let c = &self.counters[probe];
            for &(v, r, i) in subs {
                if let Some(slot) = view[v].reals[r].checkers.get_mut(i) {
                    slot.probes = c.probes.load(Ordering::Relaxed);
                    slot.failures = c.failures.load(Ordering::Relaxed);
                    slot.last_latency_us =
                        Some(c.latency_us.load(Ordering::Relaxed)).filter(|&l| l != u64::MAX);
                    slot.latency_buckets = c
                        .latency_buckets
                        .iter()
                        .map(|b| b.load(Ordering::Relaxed))
                        .collect();
                    slot.latency_sum_us = c.latency_sum_us.load(Ordering::Relaxed);
                }
            }
        }
        view
    }
}

impl Drop for Health {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The thread may be gone already.
            stop.send(()).ok();
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            warn!("the health-check thread panicked");
        }
    }
}

/// keepalived's name for a real server of `vs`: `[192.0.2.2]:tcp:80`.
pub fn real_name(vs: &VirtualServer, addr: std::net::SocketAddr) -> String {
    let protocol = match vs.services.first() {
        Some(ServiceKey::Addr { protocol, .. }) => *protocol,
        _ => vs.protocol,
    };
    ServiceKey::Addr { addr, protocol }.to_string()
}

/// Where in `[0, warmup)` a probe first fires: a hash of the checker spreads them evenly.
fn first_offset(checker: &Checker, warmup: Duration) -> Duration {
    if warmup.is_zero() {
        return Duration::ZERO;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    checker.hash(&mut h);
    let fraction = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    warmup.mul_f64(fraction)
}

/// Starts the probes and the supervisor for `servers`. `notifier` writes the LVS FIFO lines
/// and runs notify and quorum scripts.
pub fn start(servers: &[VirtualServer], ctx: ProbeContext, notifier: Arc<Notifier>) -> Health {
    let pools: Vec<Pool> = servers.iter().cloned().map(Pool::new).collect();
    // `alpha` only sets where a pool starts: pools that differ in it still share a probe,
    // which starts down only if all of them are alpha and reports its first result to all.
    let mut index: HashMap<Checker, usize> = HashMap::new();
    let mut checkers: Vec<&Checker> = Vec::new();
    let mut alpha: Vec<bool> = Vec::new();
    let mut subscribers: Vec<Vec<Subscriber>> = Vec::new();
    for (v, vs) in servers.iter().enumerate() {
        for (r, rs) in vs.real_servers.iter().enumerate() {
            for (c, checker) in rs.checkers.iter().enumerate() {
                let mut key = checker.clone();
                key.alpha = false;
                let id = *index.entry(key).or_insert_with(|| {
                    checkers.push(checker);
                    alpha.push(true);
                    subscribers.push(Vec::new());
                    checkers.len() - 1
                });
                alpha[id] &= checker.alpha;
                subscribers[id].push((v, r, c));
            }
        }
    }
    drop(index);
    // Exactly sized: 10,000 probes live as long as lbd.
    let checkers: Vec<Arc<Checker>> = checkers
        .iter()
        .zip(&alpha)
        .map(|(&c, &alpha)| Arc::new(Checker { alpha, ..c.clone() }))
        .collect();
    subscribers.shrink_to_fit();
    let suspendable: Vec<bool> = subscribers
        .iter()
        .map(|subs| subs.iter().all(|(v, ..)| servers[*v].ha_suspend))
        .collect();
    let mut table = Table::new();
    for pool in &pools {
        table.extend(pool.desired());
    }
    let (desired_tx, desired) = watch::channel(table);
    let probes = checkers.len();
    let counters: Arc<Vec<Counters>> = Arc::new(
        (0..probes)
            .map(|_| Counters {
                latency_us: AtomicU64::new(u64::MAX),
                ..Counters::default()
            })
            .collect(),
    );
    let enabled: Arc<Vec<AtomicBool>> =
        Arc::new((0..probes).map(|_| AtomicBool::new(true)).collect());
    let statuses = checkers
        .iter()
        .map(|c| CheckerView {
            kind: c.probe.kind.name().to_owned(),
            target: c.probe.target.addr.to_string(),
            up: !c.alpha,
            last_latency_us: None,
            last_detail: "not probed yet".to_owned(),
            probes: 0,
            failures: 0,
            latency_buckets: Vec::new(),
            latency_sum_us: 0,
        })
        .collect::<Vec<_>>();
    let view = Arc::new(Mutex::new(full_view(&pools, &statuses, &subscribers)));
    let subscribers = Arc::new(subscribers);
    let (commands, command_rx) = mpsc::unbounded_channel();
    let supervisor = Supervisor {
        log_all: checkers.iter().map(|c| c.log_all_failures).collect(),
        pools,
        subscribers: subscribers.clone(),
        statuses,
        desired: desired_tx,
        notifier,
        view: view.clone(),
    };
    let watcher = suspendable.iter().any(|&s| s).then(|| {
        watch_local_addresses(
            servers.to_vec(),
            index_subscribers(&suspendable),
            enabled.clone(),
        )
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shared = (counters.clone(), enabled);
    let thread = std::thread::Builder::new()
        .name("lbd-health".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "starting the health-check runtime");
                    return;
                }
            };
            let (counters, enabled) = shared;
            runtime.block_on(async move {
                let (reports_tx, reports) = mpsc::channel(16 * 1024);
                let scheduler = Scheduler {
                    checkers,
                    ctx: Arc::new(ctx),
                    reports: reports_tx,
                    enabled,
                    counters,
                };
                tokio::spawn(scheduler.run());
                tokio::spawn(supervisor.run(reports, command_rx));
                if let Some(watcher) = watcher {
                    tokio::spawn(watcher);
                }
                // Dropping the runtime after this cancels every task.
                drop(stopped.await);
            });
        });
    let thread = match thread {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!(error = %e, "starting the health-check thread");
            None
        }
    };
    Health {
        desired,
        probes,
        view,
        counters,
        subscribers,
        commands,
        stop: Some(stop),
        thread,
    }
}

fn index_subscribers(suspendable: &[bool]) -> Vec<usize> {
    (0..suspendable.len()).filter(|&i| suspendable[i]).collect()
}

/// `ha_suspend`: a probe all of whose virtual servers have it runs only while one of their
/// addresses is on a local interface (this director is the VRRP master for it).
async fn watch_local_addresses(
    servers: Vec<VirtualServer>,
    suspendable: Vec<usize>,
    enabled: Arc<Vec<AtomicBool>>,
) {
    let vips: Vec<std::net::IpAddr> = servers
        .iter()
        .filter(|vs| vs.ha_suspend)
        .flat_map(|vs| &vs.services)
        .filter_map(|k| match k {
            ServiceKey::Addr { addr, .. } => Some(addr.ip()),
            ServiceKey::Fwmark { .. } => None,
        })
        .collect();
    loop {
        let local: Vec<std::net::IpAddr> = nix::ifaddrs::getifaddrs()
            .map(|list| {
                list.filter_map(|i| {
                    let a = i.address?;
                    a.as_sockaddr_in()
                        .map(|s| std::net::IpAddr::V4(s.ip()))
                        .or_else(|| a.as_sockaddr_in6().map(|s| std::net::IpAddr::V6(s.ip())))
                })
                .collect()
            })
            .unwrap_or_default();
        let active = vips.is_empty() || vips.iter().any(|v| local.contains(v));
        for &i in &suspendable {
            enabled[i].store(active, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What the probe scheduler needs.
struct Scheduler {
    checkers: Vec<Arc<Checker>>,
    ctx: Arc<ProbeContext>,
    reports: mpsc::Sender<Report>,
    enabled: Arc<Vec<AtomicBool>>,
    counters: Arc<Vec<Counters>>,
}

impl Scheduler {
    /// Runs every probe when it is due: one timer heap and the probes in flight, in one task.
    /// A sleeping probe is its verdict and a heap entry (tens of bytes), not a task: 10,000
    /// checks cost a few hundred kilobytes between probes.
    async fn run(self) {
        use futures_util::{StreamExt as _, stream::FuturesUnordered};
        use std::{cmp::Reverse, collections::BinaryHeap};
        let now = Instant::now();
        let mut states: Vec<CheckState> =
            self.checkers.iter().map(|c| CheckState::new(c)).collect();
        let mut due: BinaryHeap<Reverse<(Instant, usize)>> = self
            .checkers
            .iter()
            .enumerate()
            .map(|(id, c)| Reverse((now + first_offset(c, c.timing.warmup), id)))
            .collect();
        let mut running = FuturesUnordered::new();
        loop {
            let now = Instant::now();
            while running.len() < MAX_CONCURRENT_PROBES {
                let Some(&Reverse((at, id))) = due.peek() else {
                    break;
                };
                if at > now {
                    break;
                }
                due.pop();
                let checker = self.checkers[id].clone();
                if !self.enabled[id].load(Ordering::Relaxed) {
                    due.push(Reverse((at + checker.timing.delay_loop, id)));
                    continue;
                }
                let ctx = self.ctx.clone();
                running.push(async move {
                    let started = Instant::now();
                    let outcome = probe::run(&checker.probe, checker.timing.timeout, &ctx).await;
                    (id, started, outcome)
                });
            }
            let next = due.peek().map(|Reverse((at, _))| *at);
            let can_start = running.len() < MAX_CONCURRENT_PROBES;
            tokio::select! {
                Some((id, started, outcome)) = running.next(), if !running.is_empty() => {
                    let delay = self.finish(&mut states[id], id, started, outcome).await;
                    due.push(Reverse((started + delay, id)));
                }
                () = sleep_until_some(next), if can_start && next.is_some() => {}
                else => return,
            }
        }
    }

    /// Records a probe's result; returns when to run it again.
    async fn finish(
        &self,
        state: &mut CheckState,
        id: usize,
        started: Instant,
        outcome: Outcome,
    ) -> Duration {
        let c = &self.counters[id];
        c.probes.fetch_add(1, Ordering::Relaxed);
        let latency_us = started
            .elapsed()
            .as_micros()
            .try_into()
            .unwrap_or(u64::MAX - 1);
        c.latency_us.store(latency_us, Ordering::Relaxed);
        let bucket = LATENCY_BUCKETS_US.partition_point(|&bound| bound < latency_us);
        if let Some(b) = c.latency_buckets.get(bucket) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        c.latency_sum_us.fetch_add(latency_us, Ordering::Relaxed);
        if !outcome.ok {
            c.failures.fetch_add(1, Ordering::Relaxed);
        }
        let weight_before = state.weight();
        let first = !state.has_run();
        let (changed, delay) = state.observe(&outcome);
        // A tracked file is read often (keepalived watches it with inotify): one read.
        let delay = match self.checkers[id].probe.kind {
            crate::model::ProbeKind::File(_) => Duration::from_millis(100),
            _ => delay,
        };
        // The first verdict goes to every pool (an alpha pool sharing the probe of a pool
        // that is not starts down and waits for it); then only changes and failures.
        let changed = changed || first || state.weight() != weight_before;
        if changed || !outcome.ok {
            let report = Report {
                probe: id,
                up: state.is_up(),
                weight: state.weight(),
                changed,
                detail: outcome.detail,
            };
            // Closed only while shutting down.
            drop(self.reports.send(report).await);
        }
        delay
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The status view of every pool, checkers included.
fn full_view(
    pools: &[Pool],
    statuses: &[CheckerView],
    subscribers: &[Vec<Subscriber>],
) -> Vec<PoolView> {
    let mut view: Vec<PoolView> = pools
        .iter()
        .map(|pool| {
            let vs = pool.virtual_server();
            PoolView {
                name: vs.name.clone(),
                quorum_up: pool.has_quorum(),
                disabled: pool.is_disabled(),
                reals: vs
                    .real_servers
                    .iter()
                    .enumerate()
                    .map(|(i, rs)| RealView {
                        address: rs.addr.to_string(),
                        alive: pool.is_alive(i),
                        weight: pool.weight(i).get(),
                        drained: pool.is_drained(i),
                        checkers: Vec::with_capacity(rs.checkers.len()),
                    })
                    .collect(),
            }
        })
        .collect();
    for (probe, subs) in subscribers.iter().enumerate() {
        for &(v, r, _) in subs {
            view[v].reals[r].checkers.push(statuses[probe].clone());
        }
    }
    view
}

struct Supervisor {
    pools: Vec<Pool>,
    subscribers: Arc<Vec<Vec<Subscriber>>>,
    statuses: Vec<CheckerView>,
    /// Per probe: `log_all_failures` (every failure is logged, not only transitions).
    log_all: Vec<bool>,
    desired: watch::Sender<Table>,
    notifier: Arc<Notifier>,
    view: Arc<Mutex<Vec<PoolView>>>,
}

impl Supervisor {
    async fn run(
        mut self,
        mut reports: mpsc::Receiver<Report>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        let mut batch = Vec::with_capacity(256);
        let mut probed = Vec::with_capacity(256);
        // Without probes (no real server has a checker) the reports close at once; commands
        // are still served.
        let mut reports_open = true;
        loop {
            let received = tokio::select! {
                n = reports.recv_many(&mut batch, 256), if reports_open => n,
                command = commands.recv() => match command {
                    Some(command) => {
                        self.command(command);
                        continue;
                    }
                    None => break,
                },
            };
            if received == 0 {
                reports_open = false;
                continue;
            }
            let mut touched = Vec::new();
            probed.clear();
            for report in batch.drain(..) {
                probed.push(report.probe);
                self.take(report, &mut touched);
            }
            touched.sort_unstable();
            touched.dedup();
            if !touched.is_empty() {
                self.publish(&touched);
            }
            self.refresh_view(&probed, &touched);
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Disable {
                virtual_server,
                disabled,
                reply,
            } => {
                let found = self
                    .pools
                    .iter()
                    .position(|p| p.virtual_server().name == virtual_server);
                if let Some(v) = found
                    && self.pools[v].set_disabled(disabled)
                {
                    info!(
                        virtual_server,
                        disabled, "virtual server taken out of service by the operator"
                    );
                    self.publish(&[v]);
                    self.refresh_view(&[], &[v]);
                }
                reply.send(found.is_some()).ok();
            }
            Command::Drain {
                target,
                drained,
                reply,
            } => {
                let mut matched = Vec::new();
                let mut touched = Vec::new();
                for (v, pool) in self.pools.iter_mut().enumerate() {
                    let vs = pool.virtual_server().clone();
                    if target
                        .virtual_server
                        .as_ref()
                        .is_some_and(|n| *n != vs.name)
                    {
                        continue;
                    }
                    for (i, rs) in vs.real_servers.iter().enumerate() {
                        let addr = rs.addr.to_string();
                        let ip = rs.addr.ip().to_string();
                        if target.real_server != addr && target.real_server != ip {
                            continue;
                        }
                        matched.push(real_name(&vs, rs.addr));
                        if pool.set_drained(i, drained) {
                            touched.push(v);
                            info!(virtual_server = %vs.name, real_server = %real_name(&vs, rs.addr), drained, "real server drained by the operator");
                        }
                    }
                }
                touched.dedup();
                if !touched.is_empty() {
                    self.publish(&touched);
                    self.refresh_view(&[], &touched);
                }
                // The requester may have gone.
                reply.send(matched).ok();
            }
        }
    }

    fn take(&mut self, r: Report, touched: &mut Vec<usize>) {
        let status = &mut self.statuses[r.probe];
        status.up = r.up;
        status.last_detail = r.detail;
        if !r.changed {
            if self.log_all[r.probe] {
                warn!(checker = %status.kind, target = %status.target, detail = %status.last_detail, "check failed");
            }
            return;
        }
        for &(v, rs, c) in &self.subscribers[r.probe] {
            let events = self.pools[v].set_check(rs, c, r.up, r.weight);
            touched.push(v);
            for event in events {
                self.notify(v, event, &self.statuses[r.probe].last_detail);
            }
        }
    }

    /// Replaces the touched pools' services in the desired table, then wakes the reconciler.
    fn publish(&self, touched: &[usize]) {
        self.desired.send_modify(|table| {
            for &v in touched {
                // A virtual server taken out of service takes its services with it.
                for key in &self.pools[v].virtual_server().services {
                    table.remove(key);
                }
                table.extend(self.pools[v].desired());
            }
        });
    }

    fn notify(&self, v: usize, event: PoolEvent, detail: &str) {
        let vs = self.pools[v].virtual_server();
        match event {
            PoolEvent::RealUp(i) | PoolEvent::RealDown(i) => {
                let rs = &vs.real_servers[i];
                let up = matches!(event, PoolEvent::RealUp(_));
                let word = if up { "UP" } else { "DOWN" };
                let name = real_name(vs, rs.addr);
                if up {
                    info!(virtual_server = %vs.name, real_server = %name, "real server up");
                } else {
                    warn!(virtual_server = %vs.name, real_server = %name, detail, "real server down");
                }
                self.notifier
                    .raw_line(&format!("RS {name} {} {word}\n", vs.name));
                let script = if up { &rs.notify_up } else { &rs.notify_down };
                if let Some(s) = script {
                    self.notifier.run(s);
                }
            }
            PoolEvent::QuorumUp | PoolEvent::QuorumDown => {
                let up = event == PoolEvent::QuorumUp;
                if up {
                    info!(virtual_server = %vs.name, "quorum gained");
                } else {
                    warn!(virtual_server = %vs.name, "quorum lost");
                }
                let word = if up { "UP" } else { "DOWN" };
                self.notifier.raw_line(&format!("VS {} {word}\n", vs.name));
                let script = if up { &vs.quorum_up } else { &vs.quorum_down };
                if let Some(s) = script {
                    self.notifier.run(s);
                }
            }
        }
    }

    /// Updates the status view where this batch changed it: the probes' own entries, and the
    /// touched pools' liveness, weights and quorum.
    fn refresh_view(&self, probed: &[usize], touched: &[usize]) {
        let mut view = self
            .view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for &probe in probed {
            for &(v, r, c) in &self.subscribers[probe] {
                if let Some(slot) = view[v].reals[r].checkers.get_mut(c) {
                    slot.clone_from(&self.statuses[probe]);
                }
            }
        }
        for &v in touched {
            let pool = &self.pools[v];
            view[v].quorum_up = pool.has_quorum();
            view[v].disabled = pool.is_disabled();
            for (i, real) in view[v].reals.iter_mut().enumerate() {
                real.alive = pool.is_alive(i);
                real.weight = pool.weight(i).get();
                real.drained = pool.is_drained(i);
            }
        }
    }
}
