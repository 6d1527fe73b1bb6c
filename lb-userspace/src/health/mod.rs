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

mod numbering;
pub mod pool;
pub mod probe;
pub mod state;

use std::{
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

use numbering::{Numbering, Plan, Subscriber};

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

impl Counters {
    /// Takes over `old`'s figures (a probe that a reload kept).
    fn copy_from(&self, old: &Self) {
        let copy = |to: &AtomicU64, from: &AtomicU64| {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        };
        copy(&self.probes, &old.probes);
        copy(&self.failures, &old.failures);
        copy(&self.latency_us, &old.latency_us);
        copy(&self.latency_sum_us, &old.latency_sum_us);
        for (to, from) in self.latency_buckets.iter().zip(&old.latency_buckets) {
            copy(to, from);
        }
    }
}

/// The running health checks, on their own thread and runtime (a current-thread tokio
/// runtime: thousands of probes a second without cross-thread wakeups, and nothing they do
/// can delay VRRP on the main runtime).
#[derive(Debug)]
pub struct Health {
    /// The desired IPVS table, for the reconciler.
    pub desired: watch::Receiver<Table>,
    shared: Arc<Mutex<Shared>>,
    commands: mpsc::UnboundedSender<Command>,
    reloads: mpsc::UnboundedSender<ReloadRequest>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What status reads, replaced as a whole by a reload.
#[derive(Debug)]
struct Shared {
    view: Vec<PoolView>,
    counters: Arc<Vec<Counters>>,
    subscribers: Arc<Vec<Vec<Subscriber>>>,
}

/// What a reload did to the health checks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HealthReload {
    /// Probes that carried on with their state, schedule and counters.
    pub probes_kept: usize,
    /// Probes started (new checkers, or changed ones).
    pub probes_started: usize,
    /// Probes stopped (checkers gone, or changed ones).
    pub probes_stopped: usize,
    /// Real servers that kept their health.
    pub reals_kept: usize,
    /// Whether the desired data-plane table changed.
    pub table_changed: bool,
}

/// A reload on its way: the scheduler remaps the probes, then the supervisor the pools.
#[derive(Debug)]
struct ReloadRequest {
    servers: Vec<Arc<VirtualServer>>,
    reply: tokio::sync::oneshot::Sender<HealthReload>,
}

/// What goes from the scheduler to the supervisor, in order: a reload's remapping sits
/// between the reports with the old probe numbers and those with the new.
#[derive(Debug)]
enum Event {
    Report(Report),
    Reload(Box<PoolsReload>),
}

/// New probe numbers, after a reload that added, removed or changed checkers.
#[derive(Debug)]
struct Renumbered {
    checkers: Vec<Arc<Checker>>,
    subscribers: Vec<Vec<Subscriber>>,
    /// Per new probe: the old probe it continues.
    continues: Vec<Option<usize>>,
    counters: Arc<Vec<Counters>>,
}

/// The supervisor's half of a reload.
#[derive(Debug)]
struct PoolsReload {
    servers: Vec<Arc<VirtualServer>>,
    /// `None`: every probe keeps its number (see [`same_probes`]).
    probes: Option<Renumbered>,
    summary: HealthReload,
    reply: tokio::sync::oneshot::Sender<HealthReload>,
}

impl Health {
    /// Distinct probes running (checkers shared by virtual servers count once).
    pub fn probes(&self) -> usize {
        self.lock().counters.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Moves the checks to `servers`: a checker that is unchanged carries on (its verdict,
    /// schedule and counters), a real server keeps its health, drain and weight, a virtual
    /// server taken out of service stays out; only new or changed checkers start afresh.
    /// The desired table follows, so the reconciler applies only the difference.
    pub async fn reload(&self, servers: Vec<Arc<VirtualServer>>) -> Option<HealthReload> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.reloads.send(ReloadRequest { servers, reply }).ok()?;
        answer.await.ok()
    }

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
        let shared = self.lock();
        let mut view = shared.view.clone();
        for (probe, subs) in shared.subscribers.iter().enumerate() {
            let c = &shared.counters[probe];
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

/// Whether `new` has exactly the probes of `old`, under the same numbers: the same virtual
/// servers (name, services, `ha_suspend`) in the same order, each with the same real servers
/// (by address) carrying equal checkers. What a reload that changes weights, thresholds,
/// schedulers, scripts or quorum leaves: then no probe is re-keyed, and only the changed
/// pools are rebuilt. An unchanged virtual server is the same allocation, compared by pointer.
fn same_probes(old: &[Arc<VirtualServer>], new: &[Arc<VirtualServer>]) -> bool {
    old.len() == new.len()
        && old.iter().zip(new).all(|(o, n)| {
            Arc::ptr_eq(o, n)
                || (o.name == n.name
                    && o.services == n.services
                    && o.ha_suspend == n.ha_suspend
                    && o.real_servers.len() == n.real_servers.len()
                    && o.real_servers
                        .iter()
                        .zip(&n.real_servers)
                        .all(|(a, b)| a.addr == b.addr && a.checkers == b.checkers))
        })
}

/// A fresh probe's status entry.
fn fresh_status(c: &Checker) -> CheckerView {
    CheckerView {
        kind: c.probe.kind.name().to_owned(),
        target: c.probe.target.addr.to_string(),
        up: !c.alpha,
        last_latency_us: None,
        last_detail: "not probed yet".to_owned(),
        probes: 0,
        failures: 0,
        latency_buckets: Vec::new(),
        latency_sum_us: 0,
    }
}

/// The entries of `items`, each to be taken at most once: what a reload moves from the old
/// numbering's places to the new.
fn takeable<T>(items: Vec<T>) -> Vec<Option<T>> {
    items.into_iter().map(Some).collect()
}

fn fresh_counters(n: usize) -> Vec<Counters> {
    (0..n)
        .map(|_| Counters {
            latency_us: AtomicU64::new(u64::MAX),
            ..Counters::default()
        })
        .collect()
}

/// Starts the probes and the supervisor for `servers`. `notifier` writes the LVS FIFO lines
/// and runs notify and quorum scripts.
pub fn start(servers: &[Arc<VirtualServer>], ctx: ProbeContext, notifier: Arc<Notifier>) -> Health {
    let pools: Vec<Pool> = servers.iter().cloned().map(Pool::new).collect();
    let Plan {
        numbering,
        subscribers,
        suspendable,
        ..
    } = Numbering::default().next(servers);
    let checkers = numbering.checkers();
    let mut table = Table::new();
    for pool in &pools {
        table.extend(pool.desired());
    }
    let (desired_tx, desired) = watch::channel(table);
    let counters: Arc<Vec<Counters>> = Arc::new(fresh_counters(checkers.len()));
    let statuses = checkers.iter().map(|c| fresh_status(c)).collect::<Vec<_>>();
    let subscribers = Arc::new(subscribers);
    let shared = Arc::new(Mutex::new(Shared {
        view: full_view(&pools, &statuses, &subscribers),
        counters: counters.clone(),
        subscribers: subscribers.clone(),
    }));
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (reloads, reload_rx) = mpsc::unbounded_channel();
    let supervisor = Supervisor {
        log_all: checkers.iter().map(|c| c.log_all_failures).collect(),
        pools,
        subscribers,
        statuses,
        desired: desired_tx,
        notifier,
        shared: shared.clone(),
    };
    let vips = suspend_vips(servers);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
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
            runtime.block_on(async move {
                let (reports_tx, reports) = mpsc::channel(16 * 1024);
                let mut scheduler = Scheduler {
                    numbering,
                    enabled: Arc::new(Vec::new()),
                    watcher: None,
                    ctx: Arc::new(ctx),
                    reports: reports_tx,
                    counters,
                    generation: 0,
                    stale: 0,
                };
                scheduler.watch_suspendable(vips, &suspendable);
                tokio::spawn(scheduler.run(reload_rx));
                tokio::spawn(supervisor.run(reports, command_rx));
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
        shared,
        commands,
        reloads,
        stop: Some(stop),
        thread,
    }
}

/// `ha_suspend`: a probe all of whose virtual servers have it runs only while one of their
/// addresses is on a local interface (this director is the VRRP master for it).
async fn watch_local_addresses(
    vips: Vec<std::net::IpAddr>,
    suspendable: Vec<usize>,
    enabled: Arc<Vec<AtomicBool>>,
) {
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

/// The addresses of the virtual servers with `ha_suspend`.
fn suspend_vips(servers: &[Arc<VirtualServer>]) -> Vec<std::net::IpAddr> {
    servers
        .iter()
        .filter(|vs| vs.ha_suspend)
        .flat_map(|vs| &vs.services)
        .filter_map(|k| match k {
            ServiceKey::Addr { addr, .. } => Some(addr.ip()),
            ServiceKey::Fwmark { .. } => None,
        })
        .collect()
}

/// What the probe scheduler needs.
struct Scheduler {
    /// The probes, and the configuration they come from.
    numbering: Numbering,
    ctx: Arc<ProbeContext>,
    reports: mpsc::Sender<Event>,
    enabled: Arc<Vec<AtomicBool>>,
    /// The `ha_suspend` watcher, replaced by a reload.
    watcher: Option<tokio::task::AbortHandle>,
    counters: Arc<Vec<Counters>>,
    /// Bumped by each reload; a probe in flight across one finds its new number by its key.
    generation: u64,
    /// How many probes started before the last reload are still in flight.
    stale: usize,
}

type Due = std::collections::BinaryHeap<std::cmp::Reverse<(Instant, usize)>>;

impl Scheduler {
    /// `ha_suspend`: watches the local addresses for the probes all of whose virtual servers
    /// have it.
    fn watch_suspendable(&mut self, vips: Vec<std::net::IpAddr>, suspendable: &[bool]) {
        if let Some(old) = self.watcher.take() {
            old.abort();
        }
        self.enabled = Arc::new(
            (0..suspendable.len())
                .map(|_| AtomicBool::new(true))
                .collect(),
        );
        if suspendable.iter().any(|&s| s) {
            let indices = (0..suspendable.len()).filter(|&i| suspendable[i]).collect();
            let task = tokio::spawn(watch_local_addresses(vips, indices, self.enabled.clone()));
            self.watcher = Some(task.abort_handle());
        }
    }

    /// Moves to a new configuration's probes: those with an old key keep their state, due
    /// time and counters; new ones are spread over their warmup.
    async fn reload(
        &mut self,
        request: ReloadRequest,
        states: &mut Vec<CheckState>,
        due: &mut Due,
        in_flight: usize,
    ) {
        use std::cmp::Reverse;
        if self.numbering.keep(&request.servers) {
            // Every probe carries on under its number: nothing to re-key.
            let n = self.numbering.checkers().len();
            let reload = PoolsReload {
                servers: request.servers,
                probes: None,
                summary: HealthReload {
                    probes_kept: n,
                    ..HealthReload::default()
                },
                reply: request.reply,
            };
            // Closed only while shutting down.
            drop(self.reports.send(Event::Reload(Box::new(reload))).await);
            return;
        }
        let now = Instant::now();
        let Plan {
            numbering,
            subscribers,
            suspendable,
            continues,
        } = self.numbering.next(&request.servers);
        let old_count = self.numbering.checkers().len();
        self.numbering = numbering;
        let checkers = self.numbering.checkers();
        let mut renumber: Vec<Option<usize>> = vec![None; old_count];
        for (new, old) in continues.iter().enumerate() {
            if let Some(old) = *old {
                renumber[old] = Some(new);
            }
        }
        let mut old_states = takeable(std::mem::take(states));
        *states = checkers
            .iter()
            .zip(&continues)
            .map(|(c, old)| {
                old.and_then(|o| old_states[o].take())
                    .unwrap_or_else(|| CheckState::new(c))
            })
            .collect();
        let old_due = std::mem::take(due);
        due.extend(
            old_due
                .into_iter()
                .filter_map(|Reverse((at, old))| Some(Reverse((at, renumber[old]?)))),
        );
        for (id, c) in checkers.iter().enumerate() {
            if continues[id].is_none() {
                due.push(Reverse((now + first_offset(c, c.timing.warmup), id)));
            }
        }
        let counters = fresh_counters(checkers.len());
        for (new, old) in continues.iter().enumerate() {
            if let Some(old) = *old {
                counters[new].copy_from(&self.counters[old]);
            }
        }
        let kept = continues.iter().flatten().count();
        let summary = HealthReload {
            probes_kept: kept,
            probes_started: checkers.len() - kept,
            probes_stopped: old_count - kept,
            reals_kept: 0,
            table_changed: false,
        };
        let checkers = checkers.to_vec();
        self.counters = Arc::new(counters);
        self.generation += 1;
        // Every probe in flight now started before this reload, whatever its generation.
        self.stale = in_flight;
        self.watch_suspendable(suspend_vips(&request.servers), &suspendable);
        let reload = PoolsReload {
            servers: request.servers,
            probes: Some(Renumbered {
                checkers,
                subscribers,
                continues,
                counters: self.counters.clone(),
            }),
            summary,
            reply: request.reply,
        };
        // Closed only while shutting down.
        drop(self.reports.send(Event::Reload(Box::new(reload))).await);
    }

    /// The current number of a probe started in `generation`; `None` when a reload removed it.
    fn current_id(&mut self, id: usize, generation: u64, checker: &Arc<Checker>) -> Option<usize> {
        if generation == self.generation {
            return Some(id);
        }
        if self.stale == 0 {
            return None;
        }
        self.stale -= 1;
        self.numbering.find(checker)
    }

    /// Runs every probe when it is due: one timer heap and the probes in flight, in one task.
    /// A sleeping probe is its verdict and a heap entry (tens of bytes), not a task: 10,000
    /// checks cost a few hundred kilobytes between probes.
    async fn run(mut self, mut reloads: mpsc::UnboundedReceiver<ReloadRequest>) {
        use futures_util::{StreamExt as _, stream::FuturesUnordered};
        use std::cmp::Reverse;
        let now = Instant::now();
        let mut states: Vec<CheckState> = self
            .numbering
            .checkers()
            .iter()
            .map(|c| CheckState::new(c))
            .collect();
        let mut due: Due = self
            .numbering
            .checkers()
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
                let checker = self.numbering.checkers()[id].clone();
                if !self.enabled[id].load(Ordering::Relaxed) {
                    due.push(Reverse((at + checker.timing.delay_loop, id)));
                    continue;
                }
                let ctx = self.ctx.clone();
                let generation = self.generation;
                running.push(async move {
                    let started = Instant::now();
                    let outcome = probe::run(&checker.probe, checker.timing.timeout, &ctx).await;
                    (id, generation, checker, started, outcome)
                });
            }
            let next = due.peek().map(|Reverse((at, _))| *at);
            let can_start = running.len() < MAX_CONCURRENT_PROBES;
            tokio::select! {
                Some((id, generation, checker, started, outcome)) = running.next(), if !running.is_empty() => {
                    // A probe that a reload removed ends here.
                    if let Some(id) = self.current_id(id, generation, &checker) {
                        let delay = self.finish(&mut states[id], id, started, outcome).await;
                        due.push(Reverse((started + delay, id)));
                    }
                }
                () = sleep_until_some(next), if can_start && next.is_some() => {}
                Some(request) = reloads.recv() => {
                    self.reload(request, &mut states, &mut due, running.len()).await;
                }
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
        let delay = match self.numbering.checkers()[id].probe.kind {
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
            drop(self.reports.send(Event::Report(report)).await);
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
    let mut view: Vec<PoolView> = pools.iter().map(pool_view).collect();
    fill_checkers(&mut view, statuses, subscribers, |_| true);
    view
}

/// A pool's status view, its checkers as they start.
fn pool_view(pool: &Pool) -> PoolView {
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
                checkers: rs.checkers.iter().map(fresh_status).collect(),
            })
            .collect(),
    }
}

/// Each checker's entry in the pools `which` selects, from its probe's status.
fn fill_checkers(
    view: &mut [PoolView],
    statuses: &[CheckerView],
    subscribers: &[Vec<Subscriber>],
    which: impl Fn(usize) -> bool,
) {
    for (probe, subs) in subscribers.iter().enumerate() {
        for &(v, r, c) in subs {
            if which(v)
                && let Some(slot) = view[v].reals[r].checkers.get_mut(c)
            {
                slot.clone_from(&statuses[probe]);
            }
        }
    }
}

struct Supervisor {
    pools: Vec<Pool>,
    subscribers: Arc<Vec<Vec<Subscriber>>>,
    statuses: Vec<CheckerView>,
    /// Per probe: `log_all_failures` (every failure is logged, not only transitions).
    log_all: Vec<bool>,
    desired: watch::Sender<Table>,
    notifier: Arc<Notifier>,
    shared: Arc<Mutex<Shared>>,
}

impl Supervisor {
    async fn run(
        mut self,
        mut reports: mpsc::Receiver<Event>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        let mut batch = Vec::with_capacity(256);
        let mut probed = Vec::with_capacity(256);
        // The reports close when the scheduler ends (shutting down); commands are still
        // served.
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
            for event in batch.drain(..) {
                match event {
                    Event::Report(report) => {
                        probed.push(report.probe);
                        self.take(report, &mut touched);
                    }
                    Event::Reload(reload) => {
                        // What came before used the old numbering: settle it first.
                        self.settle(&mut probed, &mut touched);
                        self.reload(*reload);
                    }
                }
            }
            self.settle(&mut probed, &mut touched);
        }
    }

    fn settle(&self, probed: &mut Vec<usize>, touched: &mut Vec<usize>) {
        touched.sort_unstable();
        touched.dedup();
        if !touched.is_empty() {
            self.publish(touched);
        }
        if !probed.is_empty() || !touched.is_empty() {
            self.refresh_view(probed, touched);
        }
        probed.clear();
        touched.clear();
    }

    /// The pools of a new configuration: an unchanged virtual server keeps its pool as it is,
    /// a changed one continues the old pool of its name; then the desired table, where only
    /// the changed pools' services can differ, which the reconciler diffs.
    fn reload(&mut self, reload: PoolsReload) {
        let PoolsReload {
            servers,
            probes,
            mut summary,
            reply,
        } = reload;
        let mut old_pools = takeable(std::mem::take(&mut self.pools));
        let mut events = Vec::new();
        // Per pool: the old pool it is, unchanged.
        let mut moved_from: Vec<Option<usize>> = Vec::with_capacity(servers.len());
        for (v, vs) in servers.into_iter().enumerate() {
            let is_it = |p: &Option<Pool>| p.as_ref().is_some_and(|p| p.is(&vs));
            // Usually at the same place.
            let unchanged = if old_pools.get(v).is_some_and(is_it) {
                Some(v)
            } else {
                old_pools.iter().position(is_it)
            };
            if let Some(j) = unchanged
                && let Some(pool) = old_pools[j].take()
            {
                summary.reals_kept += pool.virtual_server().real_servers.len();
                self.pools.push(pool);
                moved_from.push(Some(j));
                continue;
            }
            let mut pool = Pool::new(vs);
            if let Some(old) = old_pools
                .iter()
                .flatten()
                .find(|p| p.virtual_server().name == pool.virtual_server().name)
            {
                let (kept, changes) = pool.inherit(old);
                summary.reals_kept += kept;
                events.extend(changes.into_iter().map(|e| (v, e)));
            }
            self.pools.push(pool);
            moved_from.push(None);
        }
        let mut touched: Vec<usize> = (0..self.pools.len())
            .filter(|&v| moved_from[v].is_none())
            .collect();
        match probes {
            Some(renumbered) => self.renumber(renumbered, &moved_from, &mut events, &mut touched),
            // The same probes, so the same names and addresses: the touched pools' entries.
            None => self.refresh_view(&[], &touched),
        }
        // The services of the pools that went or changed, and of those that came or changed.
        let mut keys: Vec<ServiceKey> = old_pools
            .iter()
            .flatten()
            .chain(touched.iter().map(|&v| &self.pools[v]))
            .flat_map(|p| p.virtual_server().services.iter().copied())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let mut fresh = Table::new();
        for &v in &touched {
            fresh.extend(self.pools[v].desired());
        }
        summary.table_changed = self.desired.send_if_modified(|table| {
            let mut changed = false;
            for key in keys {
                let entry = fresh.remove(&key);
                if table.get(&key) != entry.as_ref() {
                    changed = true;
                    match entry {
                        Some(e) => table.insert(key, e),
                        None => table.remove(&key),
                    };
                }
            }
            changed
        });
        for (v, event) in events {
            self.notify(v, event, "configuration reloaded");
        }
        info!(
            kept = summary.probes_kept,
            started = summary.probes_started,
            stopped = summary.probes_stopped,
            reals_kept = summary.reals_kept,
            "health checks reloaded"
        );
        reply.send(summary).ok();
    }

    /// A reload's new probe numbers: statuses move with their probes; a pool that changed, or
    /// whose verdicts a kept probe sets, joins `touched`. The status view keeps the unchanged
    /// pools' entries (their probes' statuses moved with them) and builds the others'.
    fn renumber(
        &mut self,
        renumbered: Renumbered,
        moved_from: &[Option<usize>],
        events: &mut Vec<(usize, PoolEvent)>,
        touched: &mut Vec<usize>,
    ) {
        let Renumbered {
            checkers,
            subscribers,
            continues,
            counters,
        } = renumbered;
        // Each old probe continues as one new probe at most: its status moves.
        let mut old_statuses = takeable(std::mem::take(&mut self.statuses));
        self.statuses = checkers
            .iter()
            .zip(&continues)
            .map(|(c, old)| {
                old.and_then(|o| old_statuses.get_mut(o)?.take())
                    .unwrap_or_else(|| fresh_status(c))
            })
            .collect();
        // A kept probe that now also serves a real server it did not: that one takes its
        // current verdict.
        for (probe, subs) in subscribers.iter().enumerate() {
            if continues[probe].is_none() {
                continue;
            }
            let up = self.statuses[probe].up;
            for &(v, r, c) in subs {
                if self.pools[v].check_up(r, c) != Some(up) {
                    let changes = self.pools[v].set_check(r, c, up, None);
                    events.extend(changes.into_iter().map(|e| (v, e)));
                    touched.push(v);
                }
            }
        }
        touched.sort_unstable();
        touched.dedup();
        self.log_all = checkers.iter().map(|c| c.log_all_failures).collect();
        self.subscribers = Arc::new(subscribers);
        let mut shared = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut old_view = takeable(std::mem::take(&mut shared.view));
        let mut view: Vec<PoolView> = self
            .pools
            .iter()
            .zip(moved_from)
            .map(|(pool, from)| {
                from.and_then(|j| old_view.get_mut(j)?.take())
                    .unwrap_or_else(|| pool_view(pool))
            })
            .collect();
        let rebuilt = |v: usize| moved_from[v].is_none();
        fill_checkers(&mut view, &self.statuses, &self.subscribers, rebuilt);
        *shared = Shared {
            view,
            counters,
            subscribers: self.subscribers.clone(),
        };
        drop(shared);
        // Pools whose verdicts a kept probe set show them.
        self.refresh_view(&[], touched);
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
        let mut shared = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let view = &mut shared.view;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(text: &str) -> Vec<Arc<VirtualServer>> {
        crate::config::test_model(text).virtual_servers
    }

    fn conf(weight: u32, port: u16, timeout: u32) -> String {
        format!(
            "virtual_server 192.0.2.1 80 {{\n  real_server 198.51.100.1 {port} {{\n    weight {weight}\n    \
             TCP_CHECK {{\n      connect_timeout {timeout}\n    }}\n  }}\n}}\n"
        )
    }

    #[test]
    fn only_a_change_of_probes_renumbers_them() {
        let base = servers(&conf(1, 80, 1));
        assert!(same_probes(&base, &base));
        // A weight is the pool's business: every probe keeps its number.
        assert!(same_probes(&base, &servers(&conf(5, 80, 1))));
        // Another checker, another real server: renumbered.
        assert!(!same_probes(&base, &servers(&conf(1, 80, 2))));
        assert!(!same_probes(&base, &servers(&conf(1, 81, 1))));
        assert!(!same_probes(&base, &[]));
    }
}
