//! The reconciler: one task owns the desired IPVS table and drives a data-plane [`Backend`]
//! until the kernel matches it.
//!
//! It is level-triggered and idempotent: each pass observes the backend, [`plan`]s the
//! difference and applies it, so drift (someone ran `ipvsadm -C`) is repaired on the next pass,
//! and a pass with nothing to do does nothing. Operations run in a safe order ([`Op`]'s `Ord`):
//! services before their destinations when adding, destinations before services when deleting,
//! and a weight or threshold change is an edit in place, never a delete and add, so
//! established connections survive. Services lbd never owned are left alone. [`plan`] is pure;
//! the backends ([`fake::FakeBackend`], [`ipvs::IpvsBackend`]) are the only parts that touch
//! anything.

pub mod fake;
pub mod ipvs;
pub mod sync_daemon;
pub mod xdp;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::Duration,
};

use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::model::{Forwarding, OnStop, ServiceKey, VirtualServer};

/// IPVS service flags lbd sets (`linux/ip_vs.h`).
pub mod flags {
    /// `IP_VS_SVC_F_PERSISTENT`.
    pub const PERSISTENT: u32 = 0x0001;
    /// `IP_VS_SVC_F_ONEPACKET`.
    pub const ONEPACKET: u32 = 0x0004;
    /// `IP_VS_SVC_F_SCHED1`.
    pub const SCHED1: u32 = 0x0008;
    /// `IP_VS_SVC_F_SCHED2`.
    pub const SCHED2: u32 = 0x0010;
    /// `IP_VS_SVC_F_SCHED3`.
    pub const SCHED3: u32 = 0x0020;
    /// The flags lbd owns; others (the kernel's `HASHED`) are ignored when comparing.
    pub const OWNED: u32 = PERSISTENT | ONEPACKET | SCHED1 | SCHED2 | SCHED3;
}

/// A service's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSettings {
    /// Scheduler name.
    pub scheduler: String,
    /// `flags::OWNED` bits.
    pub flags: u32,
    /// Persistence timeout, seconds (0: none).
    pub timeout: u32,
    /// Persistence granularity as a prefix length (32 or 128: per client address).
    pub prefix: u8,
    /// Persistence engine.
    pub pe_name: Option<String>,
}

impl ServiceSettings {
    /// The settings `vs` asks for.
    pub fn of(vs: &VirtualServer) -> Self {
        let full = match vs.services.first().map(ServiceKey::family) {
            Some(crate::model::Family::V6) => 128,
            _ => 32,
        };
        let mut flags = 0;
        if vs.persistence.is_some() {
            flags |= flags::PERSISTENT;
        }
        if vs.one_packet {
            flags |= flags::ONEPACKET;
        }
        if vs.scheduler_flags.flag1 {
            flags |= flags::SCHED1;
        }
        if vs.scheduler_flags.flag2 {
            flags |= flags::SCHED2;
        }
        if vs.scheduler_flags.flag3 {
            flags |= flags::SCHED3;
        }
        Self {
            scheduler: vs.scheduler.name().to_owned(),
            flags,
            timeout: vs.persistence.as_ref().map_or(0, |p| p.timeout),
            prefix: vs
                .persistence
                .as_ref()
                .and_then(|p| p.granularity)
                .unwrap_or(full),
            pe_name: vs.persistence.as_ref().and_then(|p| p.engine.clone()),
        }
    }
}

/// A destination's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestSettings {
    /// Weight (0: no new connections).
    pub weight: u32,
    /// Forwarding method.
    pub forwarding: Forwarding,
    /// Upper connection threshold (0: none).
    pub upper_threshold: u32,
    /// Lower connection threshold.
    pub lower_threshold: u32,
}

/// A service with its destinations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceState {
    /// Its settings.
    pub settings: ServiceSettings,
    /// Destinations by address.
    pub dests: BTreeMap<SocketAddr, DestSettings>,
}

/// A whole IPVS table. Services are shared: the desired table is cloned on every change, and
/// a service that did not change is the same allocation, which [`plan`] skips without
/// comparing its destinations (one real server's change in 300 x 100 plans in microseconds).
pub type Table = BTreeMap<ServiceKey, std::sync::Arc<ServiceState>>;

/// One change to the backend. The variant order is the order they are applied in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// Create a service (without destinations).
    AddService(ServiceKey, OrdSettings),
    /// Change a service's settings in place.
    EditService(ServiceKey, OrdSettings),
    /// Add a destination.
    AddDest(ServiceKey, SocketAddr, OrdDest),
    /// Change a destination in place (weight, thresholds, forwarding).
    EditDest(ServiceKey, SocketAddr, OrdDest),
    /// Remove a destination.
    DelDest(ServiceKey, SocketAddr),
    /// Remove a service and whatever destinations it still has.
    DelService(ServiceKey),
}

impl Op {
    /// The service it changes.
    pub fn service(&self) -> ServiceKey {
        match self {
            Op::AddService(k, _)
            | Op::EditService(k, _)
            | Op::AddDest(k, ..)
            | Op::EditDest(k, ..)
            | Op::DelDest(k, _)
            | Op::DelService(k) => *k,
        }
    }

    /// Applies it to an in-memory table, failing as the kernel would (adding what exists,
    /// changing or removing what does not).
    pub fn apply_to(&self, table: &mut Table) -> Result<(), BackendError> {
        let fail = |message: &str| BackendError {
            op: format!("{self:?}"),
            message: message.to_owned(),
        };
        match self {
            Op::AddService(k, s) => {
                if table.contains_key(k) {
                    return Err(fail("exists"));
                }
                table.insert(
                    *k,
                    std::sync::Arc::new(ServiceState {
                        settings: s.0.clone(),
                        dests: BTreeMap::new(),
                    }),
                );
            }
            Op::EditService(k, s) => {
                let svc = table.get_mut(k).ok_or_else(|| fail("no such service"))?;
                std::sync::Arc::make_mut(svc).settings = s.0.clone();
            }
            Op::AddDest(k, addr, d) | Op::EditDest(k, addr, d) => {
                let svc = table.get_mut(k).ok_or_else(|| fail("no such service"))?;
                let svc = std::sync::Arc::make_mut(svc);
                let exists = svc.dests.contains_key(addr);
                if exists == matches!(self, Op::AddDest(..)) {
                    return Err(fail(if exists {
                        "exists"
                    } else {
                        "no such destination"
                    }));
                }
                svc.dests.insert(*addr, d.0.clone());
            }
            Op::DelDest(k, addr) => {
                table
                    .get_mut(k)
                    .and_then(|s| std::sync::Arc::make_mut(s).dests.remove(addr))
                    .ok_or_else(|| fail("no such destination"))?;
            }
            Op::DelService(k) => {
                table.remove(k).ok_or_else(|| fail("no such service"))?;
            }
        }
        Ok(())
    }
}

/// [`ServiceSettings`] in an [`Op`] (ordered by nothing: ops sort by kind and key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrdSettings(pub ServiceSettings);

/// [`DestSettings`] in an [`Op`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrdDest(pub DestSettings);

impl PartialOrd for OrdSettings {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdSettings {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl PartialOrd for OrdDest {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdDest {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// The operations that take `observed` to `desired`, in the order to apply them. Services in
/// `observed` that are not in `owned` are never touched.
pub fn plan(desired: &Table, observed: &Table, owned: &BTreeSet<ServiceKey>) -> Vec<Op> {
    let mut ops = Vec::new();
    for (key, want) in desired {
        let have = observed.get(key);
        if have.is_some_and(|have| std::sync::Arc::ptr_eq(have, want)) {
            continue;
        }
        match have {
            None => ops.push(Op::AddService(*key, OrdSettings(want.settings.clone()))),
            Some(have) if have.settings != want.settings => {
                ops.push(Op::EditService(*key, OrdSettings(want.settings.clone())));
            }
            Some(_) => {}
        }
        let empty = BTreeMap::new();
        let have_dests = have.map_or(&empty, |h| &h.dests);
        for (addr, d) in &want.dests {
            match have_dests.get(addr) {
                None => ops.push(Op::AddDest(*key, *addr, OrdDest(d.clone()))),
                Some(h) if h != d => ops.push(Op::EditDest(*key, *addr, OrdDest(d.clone()))),
                Some(_) => {}
            }
        }
        for addr in have_dests.keys().filter(|a| !want.dests.contains_key(a)) {
            ops.push(Op::DelDest(*key, *addr));
        }
    }
    for key in observed.keys() {
        if !desired.contains_key(key) && owned.contains(key) {
            ops.push(Op::DelService(*key));
        }
    }
    ops.sort();
    ops
}

/// A backend error: which operation, and why.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {message}")]
pub struct BackendError {
    /// The operation, in words.
    pub op: String,
    /// Why it failed.
    pub message: String,
}

/// A data plane the reconciler programs.
pub trait Backend: Send {
    /// Its name, for logs and status.
    fn name(&self) -> &'static str;
    /// The table as it is now.
    fn observe(&mut self) -> impl Future<Output = Result<Table, BackendError>> + Send;
    /// Applies one operation.
    fn apply(&mut self, op: &Op) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Called after each batch of operations: a backend that programs a whole service at once
    /// (the XDP backend's Maglev tables) does it here, once per batch.
    fn finish(&mut self) -> impl Future<Output = Result<(), BackendError>> + Send {
        std::future::ready(Ok(()))
    }
}

/// What the reconciler has done, for status and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileStats {
    /// Passes run.
    pub passes: u64,
    /// Operations applied.
    pub applied: u64,
    /// Operations that failed.
    pub errors: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
}

/// Runs one pass: observe, plan, apply. Every operation is tried even when one fails (an
/// error in one service never holds back the others); returns the ops applied.
pub async fn pass<B: Backend>(
    backend: &mut B,
    desired: &Table,
    owned: &BTreeSet<ServiceKey>,
    stats: &mut ReconcileStats,
) -> Vec<Op> {
    stats.passes += 1;
    let observed = match backend.observe().await {
        Ok(t) => t,
        Err(e) => {
            warn!(backend = backend.name(), error = %e, "observing the data plane");
            stats.errors += 1;
            stats.last_error = Some(e.to_string());
            return Vec::new();
        }
    };
    apply_ops(backend, plan(desired, &observed, owned), stats).await
}

/// Applies `ops` in order, skipping the destinations of a service that could not be created;
/// returns the ops applied.
pub async fn apply_ops<B: Backend>(
    backend: &mut B,
    ops: Vec<Op>,
    stats: &mut ReconcileStats,
) -> Vec<Op> {
    let mut failed_services = BTreeSet::new();
    let mut done = Vec::with_capacity(ops.len());
    for op in ops {
        // Destinations of a service that could not be created would fail one by one.
        if let Op::AddDest(key, ..) | Op::EditDest(key, ..) = &op
            && failed_services.contains(key)
        {
            continue;
        }
        match backend.apply(&op).await {
            Ok(()) => {
                debug!(backend = backend.name(), ?op, "applied");
                stats.applied += 1;
                done.push(op);
            }
            Err(e) => {
                warn!(backend = backend.name(), error = %e, "data-plane operation failed");
                if let Op::AddService(key, _) = &op {
                    failed_services.insert(*key);
                }
                stats.errors += 1;
                stats.last_error = Some(e.to_string());
            }
        }
    }
    if !done.is_empty()
        && let Err(e) = backend.finish().await
    {
        warn!(backend = backend.name(), error = %e, "data-plane update failed");
        stats.errors += 1;
        stats.last_error = Some(e.to_string());
    }
    done
}

/// What the reconciler does with services it did not program: at start (`lvs_flush`) and at
/// stop (`lvs_flush_on_stop`, `--dont-release-ipvs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Empty the whole table before the first pass.
    pub flush_at_start: bool,
    /// At stop.
    pub on_stop: OnStop,
}

/// The reconciler task: applies each new desired table at once, and resyncs every `resync`.
/// Publishes its stats. When `stop` completes it does what `policy` says (by default removes
/// every service it owns, as keepalived releases its virtual servers) and returns.
pub async fn run<B: Backend>(
    mut backend: B,
    mut desired: watch::Receiver<Table>,
    resync: Duration,
    policy: Policy,
    stats_out: watch::Sender<ReconcileStats>,
    applied: Option<mpsc::UnboundedSender<Vec<Op>>>,
    stop: impl Future<Output = ()>,
) {
    let mut owned: BTreeSet<ServiceKey> = BTreeSet::new();
    let mut stats = ReconcileStats::default();
    if policy.flush_at_start {
        // Owning everything there is: the first pass removes what lbd does not want.
        match backend.observe().await {
            Ok(table) => owned.extend(table.keys().copied()),
            Err(e) => warn!(backend = backend.name(), error = %e, "lvs_flush: listing the table"),
        }
    }
    let mut tick = tokio::time::interval(resync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = std::pin::pin!(stop);
    // The table as the backend holds it after the last clean pass: a change of the desired
    // table is applied as its difference from this, without listing the kernel (one real
    // server's change is one operation); the periodic resync lists and repairs everything.
    let mut believed: Option<Table> = None;
    let mut resyncing = true;
    loop {
        let table = desired.borrow_and_update().clone();
        owned.extend(table.keys().copied());
        let errors = stats.errors;
        let done = match (&believed, resyncing) {
            (Some(before), false) => {
                stats.passes += 1;
                let ops = plan(&table, before, &owned);
                apply_ops(&mut backend, ops, &mut stats).await
            }
            _ => pass(&mut backend, &table, &owned, &mut stats).await,
        };
        // After an error the next pass lists the kernel again.
        believed = (stats.errors == errors).then_some(table);
        stats_out.send_replace(stats.clone());
        if let Some(tx) = &applied
            && !done.is_empty()
        {
            // A closed receiver only means nobody listens any more.
            drop(tx.send(done));
        }
        tokio::select! {
            changed = desired.changed() => {
                if changed.is_err() { break }
                resyncing = false;
            }
            _ = tick.tick() => resyncing = true,
            () = &mut stop => break,
        }
    }
    match policy.on_stop {
        OnStop::Keep => {}
        OnStop::Release | OnStop::FlushAll => {
            if policy.on_stop == OnStop::FlushAll
                && let Ok(table) = backend.observe().await
            {
                owned.extend(table.keys().copied());
            }
            let done = pass(&mut backend, &Table::new(), &owned, &mut stats).await;
            debug!(
                backend = backend.name(),
                removed = done.len(),
                "released services at stop"
            );
        }
    }
    stats_out.send_replace(stats);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn key(port: u16) -> ServiceKey {
        ServiceKey::Addr {
            addr: SocketAddr::from(([203, 0, 113, 1], port)),
            protocol: Protocol::Tcp,
        }
    }

    fn settings() -> ServiceSettings {
        ServiceSettings {
            scheduler: "wlc".into(),
            flags: 0,
            timeout: 0,
            prefix: 32,
            pe_name: None,
        }
    }

    fn dest(weight: u32) -> DestSettings {
        DestSettings {
            weight,
            forwarding: Forwarding::Nat,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }

    fn table(entries: &[(u16, &[(u8, u32)])]) -> Table {
        entries
            .iter()
            .map(|(port, dests)| {
                (
                    key(*port),
                    std::sync::Arc::new(ServiceState {
                        settings: settings(),
                        dests: dests
                            .iter()
                            .map(|(host, w)| (SocketAddr::from(([192, 0, 2, *host], 80)), dest(*w)))
                            .collect(),
                    }),
                )
            })
            .collect()
    }

    fn kinds(ops: &[Op]) -> Vec<&'static str> {
        ops.iter()
            .map(|op| match op {
                Op::AddService(..) => "add-service",
                Op::EditService(..) => "edit-service",
                Op::AddDest(..) => "add-dest",
                Op::EditDest(..) => "edit-dest",
                Op::DelDest(..) => "del-dest",
                Op::DelService(..) => "del-service",
            })
            .collect()
    }

    #[test]
    fn services_come_before_their_destinations_and_go_after_them() {
        let owned: BTreeSet<_> = [key(80), key(81)].into();
        let ops = plan(
            &table(&[(80, &[(2, 1), (3, 1)])]),
            &table(&[(81, &[(4, 1)])]),
            &owned,
        );
        assert_eq!(
            kinds(&ops),
            ["add-service", "add-dest", "add-dest", "del-service"]
        );
    }

    #[test]
    fn weight_changes_are_edits_in_place() {
        let owned: BTreeSet<_> = [key(80)].into();
        let ops = plan(
            &table(&[(80, &[(2, 0), (3, 1)])]),
            &table(&[(80, &[(2, 5), (3, 1), (4, 1)])]),
            &owned,
        );
        assert_eq!(kinds(&ops), ["edit-dest", "del-dest"]);
    }

    #[test]
    fn a_converged_table_plans_nothing_and_foreign_services_are_left_alone() {
        let t = table(&[(80, &[(2, 1)])]);
        assert!(plan(&t, &t, &[key(80)].into()).is_empty());
        let foreign = table(&[(80, &[(2, 1)]), (8080, &[(9, 1)])]);
        assert!(plan(&t, &foreign, &[key(80)].into()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn changes_apply_as_differences_and_the_resync_lists_and_repairs() {
        let (tx, rx) = watch::channel(table(&[(80, &[(2, 1), (3, 1)])]));
        let (stats_tx, _stats) = watch::channel(ReconcileStats::default());
        let (applied_tx, mut applied) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let backend = std::sync::Arc::new(tokio::sync::Mutex::new(fake::FakeBackend::default()));
        let shared = Shared(backend.clone());
        let task = tokio::spawn(run(
            shared,
            rx,
            Duration::from_secs(5),
            Policy::default(),
            stats_tx,
            Some(applied_tx),
            async {
                drop(stop_rx.await);
            },
        ));
        assert_eq!(
            kinds(&applied.recv().await.unwrap()),
            ["add-service", "add-dest", "add-dest"]
        );
        let listed = backend.lock().await.observes();
        // One real server's weight: one edit, and no listing of the table.
        tx.send_modify(|t| {
            std::sync::Arc::make_mut(t.get_mut(&key(80)).unwrap())
                .dests
                .get_mut(&SocketAddr::from(([192, 0, 2, 3], 80)))
                .unwrap()
                .weight = 0;
        });
        assert_eq!(kinds(&applied.recv().await.unwrap()), ["edit-dest"]);
        assert_eq!(backend.lock().await.observes(), listed);
        // Drift is found on the resync.
        backend.lock().await.flush();
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(applied.recv().await.unwrap().len(), 3);
        assert!(backend.lock().await.observes() > listed);
        stop_tx.send(()).unwrap();
        task.await.unwrap();
        assert!(backend.lock().await.table().is_empty(), "released at stop");
    }

    /// A fake backend the test can look into while the reconciler runs.
    struct Shared(std::sync::Arc<tokio::sync::Mutex<fake::FakeBackend>>);

    impl Backend for Shared {
        fn name(&self) -> &'static str {
            "shared fake"
        }

        async fn observe(&mut self) -> Result<Table, BackendError> {
            self.0.lock().await.observe().await
        }

        async fn apply(&mut self, op: &Op) -> Result<(), BackendError> {
            self.0.lock().await.apply(op).await
        }
    }

    #[tokio::test]
    async fn a_pass_repairs_drift_and_carries_on_past_errors() {
        let mut backend = fake::FakeBackend::default();
        let desired = table(&[(80, &[(2, 1)]), (81, &[(3, 1)])]);
        let owned: BTreeSet<_> = desired.keys().copied().collect();
        let mut stats = ReconcileStats::default();
        backend.fail_service(key(80));
        let done = pass(&mut backend, &desired, &owned, &mut stats).await;
        assert_eq!(
            kinds(&done),
            ["add-service", "add-dest"],
            "81 is programmed despite 80"
        );
        assert_eq!(stats.errors, 1);
        backend.heal();
        pass(&mut backend, &desired, &owned, &mut stats).await;
        assert_eq!(backend.table(), &desired);
        // Someone runs `ipvsadm -C`: the next pass puts everything back.
        backend.flush();
        let done = pass(&mut backend, &desired, &owned, &mut stats).await;
        assert_eq!(done.len(), 4);
        assert_eq!(backend.table(), &desired);
        assert!(
            pass(&mut backend, &desired, &owned, &mut stats)
                .await
                .is_empty()
        );
    }
}
