//! The VRRP driver: the one loop that owns an interface's VRRP sockets and the clock.
//!
//! ```text
//!   raw IPv4 socket (224.0.0.18 + unicast) ─▶ split_ipv4 ─┐
//!   raw IPv6 socket (ff02::12 + unicast) ──▶ recvmsg ────┴▶ AdvertRepr::parse ─┐
//!   rtnetlink link events (RTMGRP_LINK) ──▶ up/down ─┐                       │
//!   tracker (scripts, files: watch) ─────────────────┴▶ verdict ─▶ set_fault, │
//!                                                             set_priority ──┤
//!   sleep_until(min poll_timeout) ──▶ handle_timeout ─────────────────────────▶ Instance
//!                                                                  (one per family+VRID, pure)
//!   status queries (lbctl) ◀── statuses       poll_transmit ─▶ emit ─▶ the family's socket
//!   shutdown ──▶ shutdown (priority 0)        poll_event ─▶ VIPs (rtnetlink), GARP/NA,
//!                                                            notify scripts and FIFO, log
//! ```
//! One driver runs per interface, for that interface's IPv4 and IPv6 instances (an IPv4 and an
//! IPv6 virtual router may share a VRID: they are different routers, RFC 9568 §7.3). An
//! instance with a VMAC (`use_vmac`) has its own macvlan with the virtual MAC: its VIPs live
//! there, its adverts and gratuitous ARPs leave from it (unless `vmac_xmit_base`), and it
//! listens there, because a macvlan takes the frames whose source is its own MAC (the other
//! routers' adverts) away from the base interface. Adverts for a VRID no instance has are
//! dropped (logged at debug level). The interface going down (no carrier) puts every instance
//! in FAULT, as keepalived does; it coming back starts them afresh. Tracked
//! interfaces, scripts and files ([`super::track`]) set each instance's priority or FAULT. On
//! shutdown every active instance sends its priority-0 advert and its addresses are removed.

use std::{collections::HashMap, net::IpAddr, sync::Arc, task::Poll};

use futures_util::StreamExt as _;
use rtnetlink::packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkFlags, LinkMessage},
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::{
    instance::{self, Event, Instance, State},
    io::{self, Announcer, Link, Receiver, Sender, VmacLink},
    sync::{Command as GroupCommand, MemberState},
    track::{Status, Tracked, Verdict, verdict},
    tracker::TrackValues,
    wire::{AdvertRepr, Auth, Envelope, MULTICAST_V4, MULTICAST_V6, Packet},
};
use crate::{
    control::{KernelAdverts, VrrpCounters, VrrpStatus},
    model::{VirtualAddress, VrrpGlobals, VrrpInstance},
    scripts::{Notifier, NotifyState},
    time::Instant,
};

/// What a tracked object of an instance is, with the weight the instance gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Interface(String),
    Script(String),
    File(String),
}

/// The shared context of every driver: the VRRP globals, the tracker's values and the
/// notifier.
#[derive(Clone, Debug)]
pub struct Shared {
    /// Scripts, files and sync groups.
    pub globals: Arc<VrrpGlobals>,
    /// The tracker's published values.
    pub track: watch::Receiver<Arc<TrackValues>>,
    /// Notify scripts and FIFO.
    pub notifier: Arc<Notifier>,
    /// Where members of sync groups report their transitions.
    pub groups: mpsc::UnboundedSender<GroupReport>,
    /// Where every instance's transitions go (the IPVS sync daemon follows one instance).
    pub transitions: watch::Sender<HashMap<String, MemberState>>,
    /// lbd's BPF object, for the kernel's record of adverts (`None`: user space only).
    pub bpf: Option<Arc<[u8]>>,
}

/// A sync-group member's transition, for the group task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupReport {
    /// The instance.
    pub member: String,
    /// Its new state.
    pub state: MemberState,
    /// Whether the state is its own (not a FAULT the group imposed).
    pub own: bool,
}

/// A status request: answered with the state of every instance of the driver.
pub type StatusQuery = oneshot::Sender<Vec<VrrpStatus>>;

/// A reload's step for one driver. The daemon sends `Remove` to every driver, then `Apply`:
/// an address moving between instances leaves the one before it joins the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadPhase {
    /// Stop the instances that go; changed instances drop the addresses they no longer have.
    Remove,
    /// Change the changed instances in place, start the new ones.
    Apply,
}

/// A reload for one interface's driver: its instances in the new configuration.
#[derive(Debug)]
pub struct ReloadCommand {
    /// Which step.
    pub phase: ReloadPhase,
    /// The interface's instances, as the new configuration has them.
    pub instances: Vec<VrrpInstance>,
    /// What happened; in the `Remove` step, `Err` says why only a restart of the driver can
    /// apply it (nothing was changed then).
    pub reply: oneshot::Sender<Result<InstanceChanges, String>>,
}

/// What a reload did to a driver's instances, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceChanges {
    /// Untouched: state, timers and addresses as they were.
    pub kept: Vec<String>,
    /// Changed in place, keeping their state.
    pub changed: Vec<String>,
    /// Started.
    pub added: Vec<String>,
    /// Stopped (a master sends its priority-0 advert and gives up its addresses).
    pub removed: Vec<String>,
}

/// The address family of a virtual router.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(spec: &VrrpInstance) -> Self {
        match spec.addresses.first() {
            Some(VirtualAddress {
                addr: IpAddr::V6(_),
                ..
            }) => Self::V6,
            _ => Self::V4,
        }
    }
}

/// One instance as the driver runs it.
struct Running {
    spec: VrrpInstance,
    instance: Instance,
    /// When the next burst of gratuitous ARP / NA is due (the delayed one, then refreshes).
    garp_again_at: Option<Instant>,
    /// Whether the delayed burst was sent (later ones are refreshes).
    garp_delayed_sent: bool,
    /// Whether the virtual addresses were added (removed again on leaving Active).
    holds_addresses: bool,
    /// Its tracked objects: what, weight, reverse.
    tracked: Vec<(Source, i32, bool)>,
    /// Whether it is in a sync group (its transitions are reported).
    in_group: bool,
    /// Its own fault: its interface, or a tracked object.
    own_fault: bool,
    /// A fault its sync group imposes.
    group_fault: bool,
    /// Its VMAC interface.
    vmac: Option<VmacLink>,
    /// What the kernel's master-down timer is armed with: (down interval, minimum priority).
    watched: Option<(std::time::Duration, u8)>,
    /// Takeovers decided by the kernel's timer.
    kernel_takeovers: u64,
}

/// The tracked interfaces' and the VIPs' `dev` interfaces that `links` and `devs` do not
/// know yet.
async fn learn_links(
    running: &HashMap<(Family, u8), Running>,
    handle: &rtnetlink::Handle,
    links: &mut HashMap<String, bool>,
    devs: &mut HashMap<String, Link>,
) -> Result<(), io::IoError> {
    for r in running.values() {
        for (source, _, _) in &r.tracked {
            if let Source::Interface(name) = source
                && !links.contains_key(name)
            {
                let up = io::link(handle, name).await.is_ok_and(|l| l.up);
                links.insert(name.clone(), up);
            }
        }
        for vip in &r.spec.addresses {
            if let Some(dev) = &vip.dev
                && !devs.contains_key(dev)
            {
                devs.insert(dev.clone(), io::link(handle, dev).await?);
            }
        }
    }
    Ok(())
}

impl Running {
    fn new(
        spec: VrrpInstance,
        instance: Instance,
        vmac: Option<VmacLink>,
        globals: &VrrpGlobals,
    ) -> Self {
        Self {
            tracked: tracked_objects(&spec, globals),
            in_group: globals
                .sync_groups
                .iter()
                .any(|g| g.members.contains(&spec.name)),
            spec,
            instance,
            garp_again_at: None,
            garp_delayed_sent: false,
            holds_addresses: false,
            own_fault: false,
            group_fault: false,
            vmac,
            watched: None,
            kernel_takeovers: 0,
        }
    }

    /// The interface its VIPs go on unless they name one: its VMAC, else the driver's.
    fn home<'a>(&'a self, link: &'a Link) -> &'a Link {
        self.vmac.as_ref().map_or(link, |v| &v.link)
    }
}

/// How much later than the kernel's master-down timer the driver's own timer acts, when the
/// kernel watches the router: the kernel's event decides, the driver's timer is the fallback.
const KERNEL_GRACE: std::time::Duration = std::time::Duration::from_millis(2);

/// The interface's sockets, apart from [`Driver`] so that a readiness guard on one can be
/// held while the driver changes.
struct Sockets {
    /// Receive sockets: the interface's (per family, for instances without a VMAC), and each
    /// VMAC's (for its instance only).
    receivers: Vec<(Receiver, Option<(Family, u8)>)>,
    /// The interface's send sockets per family.
    base_v4: Option<Sender>,
    base_v6: Option<Sender>,
    /// The send sockets of VMACs that transmit from the VMAC.
    vmac_senders: HashMap<(Family, u8), Sender>,
    announcer: Announcer,
}

impl Sockets {
    fn sender(&self, key: (Family, u8)) -> Option<&Sender> {
        self.vmac_senders.get(&key).or(match key.0 {
            Family::V4 => self.base_v4.as_ref(),
            Family::V6 => self.base_v6.as_ref(),
        })
    }
}

/// What the driver owns: the interface, its instances and the clock.
struct Driver {
    link: Link,
    /// The interfaces of VIPs with `dev`, by name.
    devs: HashMap<String, Link>,
    handle: rtnetlink::Handle,
    timer: crate::clock::Timer,
    running: HashMap<(Family, u8), Running>,
    link_up: bool,
    /// Tracked interfaces by name: up or not.
    links: HashMap<String, bool>,
    shared: Shared,
    /// The kernel's record of adverts on the interface, when lbd's BPF object could attach.
    watch: Option<crate::dataplane::vrrp_watch::VrrpWatch>,
    /// The adverts' source per family (IPv4, IPv6), for instances a reload adds.
    sources: (Option<IpAddr>, Option<IpAddr>),
}

/// Runs the instances of one interface until `shutdown` turns true.
pub async fn run(
    interface: String,
    instances: Vec<VrrpInstance>,
    mut shared: Shared,
    mut group_commands: mpsc::UnboundedReceiver<GroupCommand>,
    mut queries: mpsc::Receiver<StatusQuery>,
    mut reloads: mpsc::Receiver<ReloadCommand>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), io::IoError> {
    let netlink_err = |op: &str| {
        let op = op.to_owned();
        move |source| io::IoError::Socket { op, source }
    };
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(netlink_err("opening rtnetlink"))?;
    let netlink = tokio::spawn(connection);
    // A second connection that only listens to link changes (carrier up and down).
    let (mut monitor, _, mut link_events) =
        rtnetlink::new_connection().map_err(netlink_err("opening rtnetlink"))?;
    rtnetlink::sys::AsyncSocket::socket_mut(monitor.socket_mut())
        .bind(&rtnetlink::sys::SocketAddr::new(
            0,
            rtnetlink::constants::RTMGRP_LINK,
        ))
        .map_err(netlink_err("subscribing to link events"))?;
    let monitor = tokio::spawn(monitor);

    let mut track = shared.track.clone();
    shared.track.mark_unchanged();
    let (mut driver, sockets) = Driver::open(&interface, instances, handle, shared).await?;
    let mut events = driver.watch.as_mut().and_then(|w| w.take_events()).and_then(|ring| {
        crate::sys::async_ring(ring)
            .map_err(|e| warn!(error = %e, "the kernel's master-down events: user-space timers only"))
            .ok()
    });
    let mut buffer = vec![0u8; 65536];
    loop {
        driver.flush_all(&sockets).await;
        driver.rewatch();
        let sleep = driver.timer.sleep_until(driver.next_deadline());
        tokio::select! {
            (index, ready) = readable_any(&sockets.receivers) => {
                let (receiver, only) = &sockets.receivers[index];
                driver.drain(receiver, *only, ready, &mut buffer);
            }
            Some((message, _)) = link_events.next() => {
                match message.payload {
                    rtnetlink::packet_core::NetlinkPayload::InnerMessage(
                        RouteNetlinkMessage::NewLink(link),
                    ) => driver.link_changed(&link, false),
                    rtnetlink::packet_core::NetlinkPayload::InnerMessage(
                        RouteNetlinkMessage::DelLink(link),
                    ) => driver.link_changed(&link, true),
                    _ => {}
                }
            }
            () = sleep => driver.timeout(&sockets.announcer),
            Ok(()) = track.changed() => {
                driver.retrack();
            }
            Some(mut guard) = ring_readable(events.as_mut()) => {
                // Each event is a VrrpKey: ifindex (4 bytes), vrid, family.
                let mut keys = Vec::new();
                while let Some(item) = guard.get_inner_mut().next() {
                    if item.len() >= 6 {
                        let family = if item[5] == 6 { Family::V6 } else { Family::V4 };
                        keys.push((family, item[4]));
                    }
                }
                guard.clear_ready();
                for key in keys {
                    driver.kernel_down(key);
                }
            }
            Some(command) = group_commands.recv() => driver.group_command(command),
            Some(reply) = queries.recv() => {
                reply.send(driver.statuses()).ok();
            }
            Some(command) = reloads.recv() => {
                let done = driver.reload(command.phase, command.instances, &sockets).await;
                command.reply.send(done).ok();
            }
            _ = shutdown.changed() => {
                driver.shutdown(&sockets).await;
                netlink.abort();
                monitor.abort();
                info!(interface = %interface, "VRRP stopped");
                return Ok(());
            }
        }
    }
}

type ReadyGuard<'a> = tokio::io::unix::AsyncFdReadyGuard<'a, socket2::Socket>;

type Ring = aya::maps::RingBuf<aya::maps::MapData>;

/// Waits until the event ring has data; forever without one.
async fn ring_readable(
    ring: Option<&mut tokio::io::unix::AsyncFd<Ring>>,
) -> Option<tokio::io::unix::AsyncFdReadyMutGuard<'_, Ring>> {
    match ring {
        Some(ring) => ring.readable_mut().await.ok(),
        None => std::future::pending().await,
    }
}

/// Waits until one of `receivers` is readable (forever without any): its index and guard.
async fn readable_any(receivers: &[(Receiver, Option<(Family, u8)>)]) -> (usize, ReadyGuard<'_>) {
    std::future::poll_fn(|cx| {
        for (index, (receiver, _)) in receivers.iter().enumerate() {
            match receiver.fd.poll_read_ready(cx) {
                Poll::Ready(Ok(guard)) => return Poll::Ready((index, guard)),
                Poll::Ready(Err(e)) => warn!(error = %e, "VRRP socket readiness"),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}

impl Driver {
    async fn open(
        interface: &str,
        instances: Vec<VrrpInstance>,
        handle: rtnetlink::Handle,
        shared: Shared,
    ) -> Result<(Self, Sockets), io::IoError> {
        let link = io::link(&handle, interface).await?;
        let source = |family: Family| {
            instances
                .iter()
                .filter(|i| Family::of(i) == family)
                .find_map(|i| i.unicast_src)
        };
        let has = |family: Family| instances.iter().any(|i| Family::of(i) == family);
        let v4_source = match source(Family::V4) {
            Some(IpAddr::V4(a)) => Some(a),
            _ => link.primary_v4,
        };
        let v6_source = match source(Family::V6) {
            Some(IpAddr::V6(a)) => Some(a),
            _ => link.link_local_v6,
        };
        let no_source = |what: &str| {
            io::IoError::Interface(format!("{interface} has no {what} to send adverts from"))
        };
        // Instances without a VMAC share the interface's sockets.
        let plain = |family: Family| {
            instances
                .iter()
                .any(|i| Family::of(i) == family && i.vmac.is_none())
        };
        let mut receivers = Vec::new();
        let base_v4 = if has(Family::V4) {
            let source = v4_source.ok_or_else(|| no_source("IPv4 address"))?;
            if plain(Family::V4) {
                receivers.push((Receiver::open(&link, false)?, None));
            }
            Some(Sender::open(&link, source.into())?)
        } else {
            None
        };
        let base_v6 = if has(Family::V6) {
            let source = v6_source.ok_or_else(|| no_source("link-local IPv6 address"))?;
            if plain(Family::V6) {
                receivers.push((Receiver::open(&link, true)?, None));
            }
            Some(Sender::open(&link, source.into())?)
        } else {
            None
        };
        let mut vmac_senders = HashMap::new();
        let announcer = Announcer::open()?;
        let timer = crate::clock::Timer::new().map_err(|source| io::IoError::Socket {
            op: "creating the timerfd".to_owned(),
            source,
        })?;
        let now = crate::clock::now();
        let link_up = link.up;
        let mut running = HashMap::new();
        for spec in instances {
            let family = Family::of(&spec);
            let primary = match family {
                Family::V4 => v4_source.map(IpAddr::V4),
                Family::V6 => v6_source.map(IpAddr::V6),
            }
            .ok_or_else(|| no_source("address"))?;
            info!(instance = %spec.name, interface = %interface, vrid = spec.vrid, priority = spec.priority, %primary, "VRRP instance starting");
            let instance = Instance::new(instance_config(&spec, primary));
            let vmac = match &spec.vmac {
                Some(vmac) => {
                    let v6 = family == Family::V6;
                    let mac = super::announce::virtual_mac(spec.vrid, v6);
                    let created = io::create_vmac(&handle, &link, &vmac.name, mac).await?;
                    info!(instance = %spec.name, vmac = %vmac.name, "VMAC interface created");
                    receivers.push((
                        Receiver::open(&created.link, v6)?,
                        Some((family, spec.vrid)),
                    ));
                    if !vmac.xmit_base {
                        vmac_senders
                            .insert((family, spec.vrid), Sender::open(&created.link, primary)?);
                    }
                    Some(created)
                }
                None => None,
            };
            running.insert(
                (family, spec.vrid),
                Running::new(spec, instance, vmac, &shared.globals),
            );
        }
        // The tracked interfaces' state now; events keep it current.
        let mut links = HashMap::new();
        let mut devs = HashMap::new();
        learn_links(&running, &handle, &mut links, &mut devs).await?;
        let watch = shared.bpf.as_ref().and_then(|object| {
            match crate::dataplane::vrrp_watch::VrrpWatch::attach(object, &link.name, link.index) {
                Ok(watch) => {
                    info!(interface = %link.name, "VRRP adverts recorded in the kernel (TC ingress)");
                    Some(watch)
                }
                Err(e) => {
                    warn!(interface = %link.name, error = %e, "VRRP adverts not recorded in the kernel: user space only");
                    None
                }
            }
        });
        let mut driver = Self {
            sources: (v4_source.map(IpAddr::V4), v6_source.map(IpAddr::V6)),
            watch,
            link,
            devs,
            handle,
            timer,
            running,
            link_up,
            links,
            shared,
        };
        if !link_up {
            warn!(interface = %interface, "interface is down: its instances start in FAULT");
        }
        // Priority and FAULT from the tracked objects first, then start.
        driver.retrack();
        for r in driver.running.values_mut() {
            r.instance.startup(now);
        }
        let sockets = Sockets {
            receivers,
            base_v4,
            base_v6,
            vmac_senders,
            announcer,
        };
        Ok((driver, sockets))
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.running
            .values()
            .flat_map(|r| {
                // The kernel's timer covers Active_Down_Interval, not a Skew_Time handover.
                let grace = if r.watched.is_some() && !r.instance.awaits_handover() {
                    KERNEL_GRACE
                } else {
                    std::time::Duration::ZERO
                };
                [
                    r.instance.poll_timeout().map(|at| at + grace),
                    r.garp_again_at,
                ]
            })
            .flatten()
            .min()
    }

    /// Keeps the kernel's master-down timer of each instance in step with its state: armed
    /// with its down interval while it is a backup, off otherwise.
    fn rewatch(&mut self) {
        let Some(watch) = self.watch.as_mut() else {
            return;
        };
        for (key, r) in &mut self.running {
            let wanted = match r.instance.state() {
                State::Backup { .. } => Some((
                    r.instance.active_down_interval(),
                    if r.spec.preempt {
                        r.instance.priority()
                    } else {
                        1
                    },
                )),
                _ => None,
            };
            if wanted != r.watched {
                match watch.watch(key.1, key.0 == Family::V6, wanted) {
                    Ok(()) => r.watched = wanted,
                    Err(e) => {
                        warn!(instance = %r.spec.name, error = %e, "arming the kernel's master-down timer")
                    }
                }
            }
        }
    }

    /// The kernel's master-down timer fired for `key`.
    fn kernel_down(&mut self, key: (Family, u8)) {
        let now = crate::clock::now();
        let Some(watch) = &self.watch else { return };
        let Some(r) = self.running.get_mut(&key) else {
            return;
        };
        let Some(seen) = watch.seen(key.1, key.0 == Family::V6) else {
            return;
        };
        let before = r.instance.stats().became_active;
        r.instance.handle_kernel_down(now, seen.last);
        if r.instance.stats().became_active != before {
            r.kernel_takeovers += 1;
        }
    }

    fn timeout(&mut self, announcer: &Announcer) {
        let now = crate::clock::now();
        for (key, r) in &mut self.running {
            // Before a backup declares its master down: did the kernel see the master since?
            if let (Some(watch), State::Backup { down_at }) = (&self.watch, r.instance.state())
                && down_at <= now
                && let Some(seen) = watch.seen(key.1, key.0 == Family::V6)
            {
                r.instance.handle_kernel_advert(
                    seen.last,
                    seen.sender,
                    seen.priority,
                    seen.interval_cs,
                );
            }
            r.instance.handle_timeout(now);
            if r.garp_again_at.is_some_and(|at| now >= at) {
                // The delayed burst repeats as the first; refreshes send one each (keepalived's
                // garp_master_refresh_repeat default).
                let count = if r.garp_delayed_sent {
                    1
                } else {
                    r.spec.garp.repeat
                };
                announce(r, announcer, &self.link, &self.devs, count);
                r.garp_delayed_sent = true;
                r.garp_again_at = r.spec.garp.refresh.map(|every| now + every);
            }
        }
    }

    /// Applies the tracked objects (and the interface's own state) to every instance.
    fn retrack(&mut self) {
        let now = crate::clock::now();
        let values = Arc::clone(&self.shared.track.borrow());
        for r in self.running.values_mut() {
            let objects: Vec<Tracked> = r
                .tracked
                .iter()
                .map(|(source, weight, reverse)| Tracked {
                    weight: *weight,
                    reverse: *reverse,
                    status: match source {
                        Source::Interface(name) => Status::Interface {
                            up: self.links.get(name).copied().unwrap_or(false),
                        },
                        Source::Script(name) => Status::Script {
                            good: values.scripts.get(name).copied().unwrap_or(true),
                        },
                        Source::File(name) => Status::File {
                            value: values.files.get(name).copied().unwrap_or(0),
                        },
                    },
                })
                .collect();
            let verdict = verdict(r.spec.priority, &objects);
            if let Verdict::Priority(p) = verdict {
                r.instance.set_priority(now, p);
            }
            r.own_fault = !self.link_up || verdict == Verdict::Fault;
            r.instance.set_fault(now, r.own_fault || r.group_fault);
        }
    }

    /// A command of the instance's sync group.
    fn group_command(&mut self, command: GroupCommand) {
        let now = crate::clock::now();
        let name = match &command {
            GroupCommand::ForceActive(n)
            | GroupCommand::ForceBackup(n)
            | GroupCommand::GroupFault(n, _) => n,
        };
        let Some(r) = self.running.values_mut().find(|r| &r.spec.name == name) else {
            return;
        };
        match command {
            GroupCommand::ForceActive(_) => r.instance.force_active(now),
            GroupCommand::ForceBackup(_) => r.instance.force_backup(now),
            GroupCommand::GroupFault(_, on) => {
                r.group_fault = on;
                r.instance.set_fault(now, r.own_fault || r.group_fault);
            }
        }
    }

    /// Drains a receiver: a backlog must not age adverts. `only` is the instance a VMAC's
    /// receiver serves; the interface's receivers serve the instances without one.
    fn drain(
        &mut self,
        receiver: &Receiver,
        only: Option<(Family, u8)>,
        ready: ReadyGuard<'_>,
        buffer: &mut [u8],
    ) {
        let mut guard = ready;
        loop {
            match receiver.recv(buffer) {
                Ok(received) => {
                    let now = crate::clock::now();
                    let family = if received.envelope.src.is_ipv4() {
                        Family::V4
                    } else {
                        Family::V6
                    };
                    let message = &buffer[received.message.clone()];
                    let Some(&vrid) = message.get(1) else {
                        continue;
                    };
                    let key = (family, vrid);
                    let serves = match only {
                        Some(only) => only == key,
                        None => self.running.get(&key).is_none_or(|r| r.vmac.is_none()),
                    };
                    if serves {
                        self.receive(family, message, &received.envelope, now);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    debug!(error = %e, "dropping a malformed datagram");
                }
                Err(e) => {
                    warn!(error = %e, "receiving VRRP");
                    return;
                }
            }
        }
    }

    fn receive(&mut self, family: Family, message: &[u8], envelope: &Envelope, now: Instant) {
        let Some(&vrid) = message.get(1) else { return };
        let Some(r) = self.running.get_mut(&(family, vrid)) else {
            // Another virtual router on the same link (keepalived's log_unknown_vrids).
            debug!(vrid, from = %envelope.src, "advert for a VRID no instance runs");
            return;
        };
        match AdvertRepr::parse(
            &Packet::new_unchecked(message),
            envelope,
            r.spec.v3_ipv4_checksum,
        ) {
            Ok(advert) => {
                // A backup times the advert by the kernel's stamp of the latest one from its
                // sender, if that is earlier than now: the driver may be reading a backlog.
                let at = match (&self.watch, r.instance.state()) {
                    (Some(watch), State::Backup { .. }) => watch
                        .seen(vrid, family == Family::V6)
                        .filter(|seen| seen.sender == envelope.src)
                        .map_or(now, |seen| seen.last.min(now)),
                    _ => now,
                };
                r.instance.handle_advert(at, envelope.src, &advert);
            }
            Err(e) => {
                r.instance.stats_mut().count_decode_error(e);
                debug!(instance = %r.spec.name, from = %envelope.src, error = %e, counter = e.counter(), "advert dropped");
            }
        }
    }

    /// A link message: FAULT every instance when our interface loses its carrier, start
    /// them again when it is back.
    fn link_changed(&mut self, message: &LinkMessage, deleted: bool) {
        let up = !deleted
            && message.header.flags.contains(LinkFlags::Up)
            && message.header.flags.contains(LinkFlags::Running);
        let mut changed = false;
        if message.header.index == self.link.index && up != self.link_up {
            self.link_up = up;
            info!(interface = %self.link.name, up, "link state changed");
            changed = true;
        }
        let name = message.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(name) => Some(name),
            _ => None,
        });
        if let Some(name) = name
            && let Some(known) = self.links.get_mut(name)
            && *known != up
        {
            *known = up;
            info!(interface = %name, up, "tracked interface changed");
            changed = true;
        }
        if changed {
            self.retrack();
        }
    }

    async fn flush_all(&mut self, sockets: &Sockets) {
        for r in self.running.values_mut() {
            flush(
                r,
                sockets,
                (&self.link, &self.devs),
                &self.handle,
                &self.shared,
            )
            .await;
        }
    }

    async fn shutdown(&mut self, sockets: &Sockets) {
        let now = crate::clock::now();
        for r in self.running.values_mut() {
            r.instance.shutdown(now);
        }
        self.flush_all(sockets).await;
        // The VMACs go, newest first: each restores the base settings it found.
        let mut vmacs: Vec<VmacLink> = self
            .running
            .values_mut()
            .filter_map(|r| r.vmac.take())
            .collect();
        vmacs.sort_by_key(|v| std::cmp::Reverse(v.link.index));
        for vmac in vmacs {
            let name = vmac.link.name.clone();
            if let Err(e) = io::delete_vmac(&self.handle, vmac).await {
                warn!(vmac = %name, error = %e, "removing the VMAC interface");
            }
        }
    }

    /// Where adverts of `family` leave from.
    fn source(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::V4 => self.sources.0,
            Family::V6 => self.sources.1,
        }
    }

    /// A reload's step (see [`ReloadPhase`]). An instance continues when the new
    /// configuration has one with the same name, family and VRID; with the same settings it
    /// is not touched at all.
    async fn reload(
        &mut self,
        phase: ReloadPhase,
        instances: Vec<VrrpInstance>,
        sockets: &Sockets,
    ) -> Result<InstanceChanges, String> {
        let key = |spec: &VrrpInstance| (Family::of(spec), spec.vrid);
        let continues = |r: &Running, specs: &[VrrpInstance]| {
            specs
                .iter()
                .find(|s| key(s) == key(&r.spec))
                .filter(|s| s.name == r.spec.name)
                .cloned()
        };
        let now = crate::clock::now();
        let mut changes = InstanceChanges::default();
        match phase {
            ReloadPhase::Remove => {
                // Only what this driver can do in place; the rest restarts it.
                for spec in &instances {
                    match self.running.get(&key(spec)) {
                        Some(r) if r.spec.name == spec.name => {
                            if r.spec.vmac != spec.vmac || r.spec.unicast_src != spec.unicast_src {
                                return Err(format!(
                                    "{}: use_vmac or unicast_src changed",
                                    spec.name
                                ));
                            }
                        }
                        _ => {
                            let (family, vrid) = key(spec);
                            let source = self.source(family);
                            let plain = sockets.receivers.iter().any(|(r, only)| {
                                only.is_none() && r.is_v6() == (family == Family::V6)
                            });
                            if spec.vmac.is_some()
                                || source.is_none()
                                || !plain
                                || sockets.sender((family, vrid)).is_none()
                                || spec.unicast_src.is_some_and(|s| Some(s) != source)
                            {
                                return Err(format!(
                                    "{}: a new instance needs sockets the interface does not have open",
                                    spec.name
                                ));
                            }
                        }
                    }
                }
                if let Some(r) = self
                    .running
                    .values()
                    .find(|r| r.vmac.is_some() && continues(r, &instances).is_none())
                {
                    return Err(format!("{}: an instance with a VMAC goes", r.spec.name));
                }
                let gone: Vec<(Family, u8)> = self
                    .running
                    .iter()
                    .filter(|(_, r)| continues(r, &instances).is_none())
                    .map(|(k, _)| *k)
                    .collect();
                for k in gone {
                    let Some(mut r) = self.running.remove(&k) else {
                        continue;
                    };
                    info!(instance = %r.spec.name, "VRRP instance removed by a reload");
                    r.instance.shutdown(now);
                    flush(
                        &mut r,
                        sockets,
                        (&self.link, &self.devs),
                        &self.handle,
                        &self.shared,
                    )
                    .await;
                    self.shared.transitions.send_modify(|all| {
                        all.remove(&r.spec.name);
                    });
                    changes.removed.push(r.spec.name);
                }
                for r in self.running.values_mut() {
                    let Some(spec) = continues(r, &instances) else {
                        continue;
                    };
                    let (keep, leave): (Vec<_>, Vec<_>) = r
                        .spec
                        .addresses
                        .drain(..)
                        .partition(|a| spec.addresses.contains(a));
                    r.spec.addresses = keep;
                    if r.holds_addresses {
                        for vip in &leave {
                            let index = vip_link(vip, r.home(&self.link), &self.devs).index;
                            if let Err(e) = io::remove_address(&self.handle, index, vip).await {
                                warn!(instance = %r.spec.name, error = %e, "removing a virtual address");
                            }
                        }
                    }
                }
            }
            ReloadPhase::Apply => {
                let mut announce_new: Vec<((Family, u8), Vec<VirtualAddress>)> = Vec::new();
                let mut started = Vec::new();
                for spec in instances {
                    let k = key(&spec);
                    match self.running.get_mut(&k) {
                        Some(r) if r.spec == spec => changes.kept.push(spec.name),
                        Some(r) => {
                            let new: Vec<VirtualAddress> = spec
                                .addresses
                                .iter()
                                .filter(|a| !r.spec.addresses.contains(a))
                                .cloned()
                                .collect();
                            let primary = r.instance.config().primary;
                            r.instance.reconfigure(now, instance_config(&spec, primary));
                            r.tracked = tracked_objects(&spec, &self.shared.globals);
                            r.in_group = self
                                .shared
                                .globals
                                .sync_groups
                                .iter()
                                .any(|g| g.members.contains(&spec.name));
                            r.spec = spec;
                            info!(instance = %r.spec.name, "VRRP instance changed by a reload, state kept");
                            changes.changed.push(r.spec.name.clone());
                            announce_new.push((k, new));
                        }
                        None => {
                            let Some(primary) = self.source(k.0) else {
                                warn!(instance = %spec.name, "no address to send adverts from");
                                continue;
                            };
                            info!(instance = %spec.name, vrid = spec.vrid, "VRRP instance added by a reload");
                            changes.added.push(spec.name.clone());
                            let instance = Instance::new(instance_config(&spec, primary));
                            let r = Running::new(spec, instance, None, &self.shared.globals);
                            self.running.insert(k, r);
                            started.push(k);
                        }
                    }
                }
                if let Err(e) =
                    learn_links(&self.running, &self.handle, &mut self.links, &mut self.devs).await
                {
                    warn!(error = %e, "a reloaded instance names an interface that is not there");
                }
                self.retrack();
                for k in &started {
                    if let Some(r) = self.running.get_mut(k) {
                        r.instance.startup(now);
                    }
                }
                for (k, new) in announce_new {
                    let Some(r) = self.running.get(&k) else {
                        continue;
                    };
                    if !r.holds_addresses {
                        continue;
                    }
                    for vip in &new {
                        let link = vip_link(vip, r.home(&self.link), &self.devs);
                        if let Err(e) = io::add_address(&self.handle, link.index, vip).await {
                            warn!(instance = %r.spec.name, error = %e, "adding a virtual address");
                        }
                    }
                    for _ in 0..r.spec.garp.repeat {
                        for vip in &new {
                            let link = vip_link(vip, r.home(&self.link), &self.devs);
                            if let Err(e) = sockets.announcer.announce(link, vip.addr) {
                                warn!(instance = %r.spec.name, error = %e, "announcing a virtual address");
                            }
                        }
                    }
                }
            }
        }
        Ok(changes)
    }

    fn statuses(&self) -> Vec<VrrpStatus> {
        let now = crate::clock::now();
        self.running
            .iter()
            .map(|(key, r)| {
                let mut status = status(r, &self.link.name);
                status.kernel = self.watch.as_ref().map(|watch| {
                    let seen = watch.seen(key.1, key.0 == Family::V6);
                    KernelAdverts {
                        adverts: seen.map_or(0, |s| s.count),
                        last_us_ago: seen.map(|s| {
                            u64::try_from(now.saturating_since(s.last).as_micros())
                                .unwrap_or(u64::MAX)
                        }),
                        sender: seen.map(|s| s.sender.to_string()),
                        priority: seen.map(|s| s.priority),
                    }
                });
                status
            })
            .collect()
    }
}

/// Sends what the instance wants sent and acts on its events.
async fn flush(
    r: &mut Running,
    sockets: &Sockets,
    (link, devs): (&Link, &HashMap<String, Link>),
    handle: &rtnetlink::Handle,
    shared: &Shared,
) {
    let notifier = &*shared.notifier;
    let report = |r: &Running, state: MemberState| {
        shared.transitions.send_modify(|all| {
            all.insert(r.spec.name.clone(), state);
        });
        if r.in_group {
            let own = state != MemberState::Fault || r.own_fault;
            let member = r.spec.name.clone();
            shared.groups.send(GroupReport { member, state, own }).ok();
        }
    };
    while let Some(advert) = r.instance.poll_transmit() {
        let source = r.instance.config().primary;
        let group = match source {
            IpAddr::V4(_) => IpAddr::V4(MULTICAST_V4),
            IpAddr::V6(_) => IpAddr::V6(MULTICAST_V6),
        };
        let targets = if r.spec.unicast_peers.is_empty() {
            std::slice::from_ref(&group)
        } else {
            r.spec.unicast_peers.as_slice()
        };
        let mut bytes = vec![0u8; advert.buffer_len()];
        for &dst in targets {
            advert.emit(
                &mut Packet::new_unchecked(&mut bytes[..]),
                source,
                dst,
                r.spec.v3_ipv4_checksum,
            );
            let family = if dst.is_ipv4() {
                Family::V4
            } else {
                Family::V6
            };
            let sent = sockets
                .sender((family, r.spec.vrid))
                .map_or(Ok(()), |s| s.send(&bytes, dst));
            if let Err(e) = sent {
                warn!(instance = %r.spec.name, error = %e, "sending advert");
            }
        }
    }
    while let Some(event) = r.instance.poll_event() {
        match event {
            Event::BecameActive(reason) => {
                info!(instance = %r.spec.name, ?reason, "entering ACTIVE (MASTER) state");
                for vip in &r.spec.addresses {
                    let index = vip_link(vip, r.home(link), devs).index;
                    if let Err(e) = io::add_address(handle, index, vip).await {
                        warn!(instance = %r.spec.name, error = %e, "adding a virtual address");
                    }
                }
                r.holds_addresses = true;
                announce(r, &sockets.announcer, link, devs, r.spec.garp.repeat);
                let now = crate::clock::now();
                r.garp_delayed_sent = r.spec.garp.delay.is_zero();
                r.garp_again_at = if r.garp_delayed_sent {
                    r.spec.garp.refresh.map(|every| now + every)
                } else {
                    Some(now + r.spec.garp.delay)
                };
                notify(r, notifier, NotifyState::Master);
                report(r, MemberState::Active);
            }
            Event::BecameBackup(reason) => {
                info!(instance = %r.spec.name, ?reason, "entering BACKUP state");
                release(r, handle, link, devs).await;
                notify(r, notifier, NotifyState::Backup);
                report(r, MemberState::Backup);
            }
            Event::BecameFault => {
                info!(instance = %r.spec.name, "entering FAULT state");
                release(r, handle, link, devs).await;
                notify(r, notifier, NotifyState::Fault);
                report(r, MemberState::Fault);
            }
            Event::Stopped => {
                info!(instance = %r.spec.name, "stopped");
                release(r, handle, link, devs).await;
                notify(r, notifier, NotifyState::Stop);
            }
            Event::PriorityChanged(priority) => {
                info!(instance = %r.spec.name, priority, "effective priority changed");
                if r.spec.notify_priority_changes {
                    let word = if r.instance.is_active() {
                        "MASTER_PRIORITY"
                    } else {
                        "BACKUP_PRIORITY"
                    };
                    notifier.line("INSTANCE", &r.spec.name, word, priority);
                }
            }
            Event::ActiveHeardLower { from, priority } => {
                debug!(instance = %r.spec.name, %from, priority, "lower-priority advert while MASTER");
                notifier.line(
                    "INSTANCE",
                    &r.spec.name,
                    "MASTER_RX_LOWER_PRI",
                    r.instance.priority(),
                );
            }
        }
    }
}

fn notify(r: &Running, notifier: &Notifier, state: NotifyState) {
    notifier.transition(
        "INSTANCE",
        &r.spec.name,
        state,
        r.instance.priority(),
        &r.spec.notify,
    );
}

/// An instance's tracked objects with their weights: the instance's own weight for the object,
/// else the object's (a script's or file's weight; 0 for an interface).
fn tracked_objects(spec: &VrrpInstance, globals: &VrrpGlobals) -> Vec<(Source, i32, bool)> {
    let mut objects = Vec::new();
    for t in &spec.track_interfaces {
        objects.push((
            Source::Interface(t.name.clone()),
            t.weight.unwrap_or(0),
            t.reverse,
        ));
    }
    for t in &spec.track_scripts {
        let script = globals.scripts.iter().find(|s| s.name == t.name);
        let weight = t.weight.or(script.map(|s| s.weight)).unwrap_or(0);
        let reverse = t.reverse || script.is_some_and(|s| s.reverse);
        objects.push((Source::Script(t.name.clone()), weight, reverse));
    }
    for t in &spec.track_files {
        let file = globals.track_files.iter().find(|f| f.name == t.name);
        let weight = t.weight.or(file.map(|f| f.weight)).unwrap_or(1);
        let reverse = t.reverse || file.is_some_and(|f| f.reverse);
        objects.push((Source::File(t.name.clone()), weight, reverse));
    }
    objects
}

/// The interface a VIP goes on: its `dev`, else the instance's.
fn vip_link<'a>(vip: &VirtualAddress, own: &'a Link, devs: &'a HashMap<String, Link>) -> &'a Link {
    vip.dev.as_ref().and_then(|d| devs.get(d)).unwrap_or(own)
}

async fn release(
    r: &mut Running,
    handle: &rtnetlink::Handle,
    link: &Link,
    devs: &HashMap<String, Link>,
) {
    r.garp_again_at = None;
    if !r.holds_addresses {
        return;
    }
    for vip in &r.spec.addresses {
        let index = vip_link(vip, r.home(link), devs).index;
        if let Err(e) = io::remove_address(handle, index, vip).await {
            warn!(instance = %r.spec.name, error = %e, "removing a virtual address");
        }
    }
    r.holds_addresses = false;
}

/// A burst of `count` gratuitous ARPs / unsolicited NAs for every address of the instance,
/// alternating addresses as keepalived does.
fn announce(
    r: &Running,
    announcer: &Announcer,
    link: &Link,
    devs: &HashMap<String, Link>,
    count: u32,
) {
    for _ in 0..count {
        for vip in &r.spec.addresses {
            if let Err(e) = announcer.announce(vip_link(vip, r.home(link), devs), vip.addr) {
                warn!(instance = %r.spec.name, error = %e, "announcing a virtual address");
            }
        }
    }
}

fn status(r: &Running, interface: &str) -> VrrpStatus {
    let stats = r.instance.stats();
    VrrpStatus {
        name: r.spec.name.clone(),
        interface: interface.to_owned(),
        vrid: r.spec.vrid,
        version: r.spec.version.number(),
        state: match r.instance.state() {
            State::Initialize => "INIT",
            State::Backup { .. } => "BACKUP",
            State::Active { .. } => "MASTER",
            State::Fault => "FAULT",
        }
        .to_owned(),
        priority: r.instance.priority(),
        active_router: r
            .instance
            .active_router()
            .map(|(ip, p)| format!("{ip} priority {p}")),
        advert_int_cs: r.instance.active_adver_int_cs(),
        addresses: r
            .spec
            .addresses
            .iter()
            .map(|a| format!("{}/{}", a.addr, a.prefix))
            .collect(),
        vmac: r.vmac.as_ref().map(|v| v.link.name.clone()),
        kernel: None,
        kernel_takeovers: r.kernel_takeovers,
        became_active: stats.became_active,
        adverts_received: stats.adverts_received,
        adverts_sent: stats.adverts_sent,
        priority_zero_received: stats.priority_zero_received,
        priority_zero_sent: stats.priority_zero_sent,
        errors: stats.errors(),
        counters: VrrpCounters {
            released_master: stats.released_active,
            ttl_errors: stats.ttl_errors,
            checksum_errors: stats.checksum_errors,
            length_errors: stats.length_errors,
            version_errors: stats.version_errors,
            invalid_type_errors: stats.invalid_type_errors,
            vrid_errors: stats.vrid_errors,
            advert_interval_errors: stats.advert_interval_errors,
            address_list_errors: stats.address_list_errors,
            invalid_auth_type: stats.invalid_auth_type,
            auth_type_mismatch: stats.auth_type_mismatch,
            auth_failures: stats.auth_failures,
            ip_header_errors: stats.ip_header_errors,
        },
    }
}

/// The pure instance's configuration for a model instance sending from `primary`.
pub fn instance_config(spec: &VrrpInstance, primary: IpAddr) -> instance::Config {
    instance::Config {
        version: spec.version,
        vrid: spec.vrid,
        priority: spec.priority,
        advert_int_cs: spec.advert_int_cs,
        addresses: spec.addresses.iter().map(|a| a.addr).collect(),
        primary,
        preempt: spec.preempt,
        preempt_delay: spec.preempt_delay,
        start_active: spec.start_active,
        auth: spec.auth_pass.as_deref().map_or(Auth::None, Auth::simple),
        down_timer_adverts: 3,
        check_addresses: true,
    }
}
