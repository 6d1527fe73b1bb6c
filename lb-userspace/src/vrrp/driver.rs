//! The VRRP driver: the one loop that owns an interface's VRRP sockets and the clock.
//!
//! ```text
//!   raw IPv4 socket (224.0.0.18 + unicast) ─▶ split_ipv4 ─┐
//!   raw IPv6 socket (ff02::12 + unicast) ──▶ recvmsg ────┴▶ AdvertRepr::parse ─┐
//!   rtnetlink link events (RTMGRP_LINK) ──▶ up/down ─▶ set_fault ─────────────┤
//!   sleep_until(min poll_timeout) ──▶ handle_timeout ─────────────────────────▶ Instance
//!                                                                  (one per family+VRID, pure)
//!   status queries (lbctl) ◀── statuses       poll_transmit ─▶ emit ─▶ the family's socket
//!   shutdown ──▶ shutdown (priority 0)        poll_event ─▶ VIPs (rtnetlink), GARP/NA, log
//! ```
//! One driver runs per interface, for that interface's IPv4 and IPv6 instances (an IPv4 and an
//! IPv6 virtual router may share a VRID: they are different routers, RFC 9568 §7.3). Adverts
//! for a VRID no instance has are counted and dropped. The interface going down (no carrier)
//! puts every instance in FAULT, as keepalived does; it coming back starts them afresh. On
//! shutdown every active instance sends its priority-0 advert and its addresses are removed.

use std::{collections::HashMap, net::IpAddr, time::Duration};

use futures_util::StreamExt as _;
use rtnetlink::packet_route::{
    RouteNetlinkMessage,
    link::{LinkFlags, LinkMessage},
};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, oneshot, watch},
};
use tracing::{debug, info, warn};

use super::{
    instance::{self, Event, Instance, State},
    io::{self, Announcer, Link, Sockets4, Sockets6},
    wire::{AdvertRepr, Auth, Envelope, MULTICAST_V4, MULTICAST_V6, Packet, split_ipv4},
};
use crate::{
    control::VrrpStatus,
    model::{VirtualAddress, VrrpInstance},
    time::Instant,
};

/// Gratuitous ARPs / NAs sent on becoming active, and again `GARP_DELAY` later (keepalived's
/// `vrrp_garp_master_repeat` and `vrrp_garp_master_delay` defaults).
const GARP_REPEAT: usize = 5;
/// See [`GARP_REPEAT`].
const GARP_DELAY: Duration = Duration::from_secs(5);

/// A status request: answered with the state of every instance of the driver.
pub type StatusQuery = oneshot::Sender<Vec<VrrpStatus>>;

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
    /// When the second burst of gratuitous ARP / NA is due.
    garp_again_at: Option<Instant>,
    /// Whether the virtual addresses were added (removed again on leaving Active).
    holds_addresses: bool,
}

/// The interface's sockets, apart from [`Driver`] so that a readiness guard on one can be
/// held while the driver changes.
struct Sockets {
    v4: Option<Sockets4>,
    v6: Option<Sockets6>,
    announcer: Announcer,
}

/// What the driver owns: the interface, its instances and the clock.
struct Driver {
    link: Link,
    handle: rtnetlink::Handle,
    timer: crate::clock::Timer,
    running: HashMap<(Family, u8), Running>,
    unknown_vrid: u64,
    link_up: bool,
}

/// Runs the instances of one interface until `shutdown` turns true.
pub async fn run(
    interface: String,
    instances: Vec<VrrpInstance>,
    mut queries: mpsc::Receiver<StatusQuery>,
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

    let (mut driver, sockets) = Driver::open(&interface, instances, handle).await?;
    let mut buffer = vec![0u8; 65536];
    loop {
        driver.flush_all(&sockets).await;
        let sleep = driver.timer.sleep_until(driver.next_deadline());
        tokio::select! {
            ready = readable(sockets.v4.as_ref().map(|s| &s.recv)) => {
                driver.receive_v4(ready, &mut buffer);
            }
            ready = readable(sockets.v6.as_ref().map(|s| &s.socket)) => {
                if let Some(v6) = &sockets.v6 {
                    driver.receive_v6(ready, v6, &mut buffer);
                }
            }
            Some((message, _)) = link_events.next() => {
                if let rtnetlink::packet_core::NetlinkPayload::InnerMessage(
                    RouteNetlinkMessage::NewLink(link) | RouteNetlinkMessage::DelLink(link),
                ) = message.payload
                {
                    driver.link_changed(&link);
                }
            }
            () = sleep => driver.timeout(&sockets.announcer),
            Some(reply) = queries.recv() => {
                reply.send(driver.statuses()).ok();
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

/// Waits until `socket` is readable; forever without one.
async fn readable(
    socket: Option<&AsyncFd<socket2::Socket>>,
) -> Option<tokio::io::unix::AsyncFdReadyGuard<'_, socket2::Socket>> {
    match socket {
        Some(s) => match s.readable().await {
            Ok(guard) => Some(guard),
            Err(e) => {
                warn!(error = %e, "VRRP socket readiness");
                None
            }
        },
        None => std::future::pending().await,
    }
}

impl Driver {
    async fn open(
        interface: &str,
        instances: Vec<VrrpInstance>,
        handle: rtnetlink::Handle,
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
        let v4 = if has(Family::V4) {
            let source = v4_source.ok_or_else(|| no_source("IPv4 address"))?;
            Some(Sockets4::open(&link, source)?)
        } else {
            None
        };
        let v6 = if has(Family::V6) {
            let source = v6_source.ok_or_else(|| no_source("link-local IPv6 address"))?;
            Some(Sockets6::open(&link, source)?)
        } else {
            None
        };
        let announcer = Announcer::open(&link)?;
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
            let mut instance = Instance::new(instance_config(&spec, primary));
            if !link_up {
                warn!(instance = %spec.name, interface = %interface, "interface is down: FAULT");
                instance.set_fault(now, true);
            }
            instance.startup(now);
            running.insert(
                (family, spec.vrid),
                Running {
                    spec,
                    instance,
                    garp_again_at: None,
                    holds_addresses: false,
                },
            );
        }
        let driver = Self {
            link,
            handle,
            timer,
            running,
            unknown_vrid: 0,
            link_up,
        };
        Ok((driver, Sockets { v4, v6, announcer }))
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.running
            .values()
            .flat_map(|r| [r.instance.poll_timeout(), r.garp_again_at])
            .flatten()
            .min()
    }

    fn timeout(&mut self, announcer: &Announcer) {
        let now = crate::clock::now();
        for r in self.running.values_mut() {
            r.instance.handle_timeout(now);
            if r.garp_again_at.is_some_and(|at| now >= at) {
                r.garp_again_at = None;
                announce(r, announcer, &self.link);
            }
        }
    }

    /// Drains the IPv4 socket: a backlog must not age adverts.
    fn receive_v4(
        &mut self,
        ready: Option<tokio::io::unix::AsyncFdReadyGuard<'_, socket2::Socket>>,
        buffer: &mut [u8],
    ) {
        let Some(mut guard) = ready else { return };
        loop {
            match std::io::Read::read(&mut guard.get_inner(), buffer) {
                Ok(len) => {
                    let now = crate::clock::now();
                    match split_ipv4(&buffer[..len]) {
                        Ok((ip, message)) => {
                            let envelope = Envelope {
                                src: ip.src.into(),
                                dst: ip.dst.into(),
                                ttl: ip.ttl,
                            };
                            self.receive(Family::V4, message, &envelope, now);
                        }
                        Err(_) => debug!("dropping a malformed IPv4 datagram"),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "receiving VRRP over IPv4");
                    return;
                }
            }
        }
    }

    /// Drains the IPv6 socket.
    fn receive_v6(
        &mut self,
        ready: Option<tokio::io::unix::AsyncFdReadyGuard<'_, socket2::Socket>>,
        socket: &Sockets6,
        buffer: &mut [u8],
    ) {
        let Some(mut guard) = ready else { return };
        loop {
            match socket.recv(buffer) {
                Ok(received) => {
                    let now = crate::clock::now();
                    let envelope = Envelope {
                        src: received.src.into(),
                        dst: received.dst.into(),
                        ttl: received.hop_limit,
                    };
                    self.receive(Family::V6, &buffer[..received.len], &envelope, now);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "receiving VRRP over IPv6");
                    return;
                }
            }
        }
    }

    fn receive(&mut self, family: Family, message: &[u8], envelope: &Envelope, now: Instant) {
        let Some(&vrid) = message.get(1) else { return };
        let Some(r) = self.running.get_mut(&(family, vrid)) else {
            self.unknown_vrid += 1;
            return;
        };
        match AdvertRepr::parse(
            &Packet::new_unchecked(message),
            envelope,
            r.spec.v3_ipv4_checksum,
        ) {
            Ok(advert) => r.instance.handle_advert(now, envelope.src, &advert),
            Err(e) => {
                r.instance.stats_mut().count_decode_error(e);
                debug!(instance = %r.spec.name, from = %envelope.src, error = %e, counter = e.counter(), "advert dropped");
            }
        }
    }

    /// A link message: FAULT every instance when our interface loses its carrier, start
    /// them again when it is back.
    fn link_changed(&mut self, message: &LinkMessage) {
        if message.header.index != self.link.index {
            return;
        }
        let up = message.header.flags.contains(LinkFlags::Up)
            && message.header.flags.contains(LinkFlags::Running);
        if up == self.link_up {
            return;
        }
        self.link_up = up;
        info!(interface = %self.link.name, up, "link state changed");
        let now = crate::clock::now();
        for r in self.running.values_mut() {
            r.instance.set_fault(now, !up);
        }
    }

    async fn flush_all(&mut self, sockets: &Sockets) {
        for r in self.running.values_mut() {
            flush(r, sockets, &self.link, &self.handle).await;
        }
    }

    async fn shutdown(&mut self, sockets: &Sockets) {
        let now = crate::clock::now();
        for r in self.running.values_mut() {
            r.instance.shutdown(now);
        }
        self.flush_all(sockets).await;
    }

    fn statuses(&self) -> Vec<VrrpStatus> {
        self.running
            .values()
            .map(|r| status(r, &self.link.name))
            .collect()
    }
}

/// Sends what the instance wants sent and acts on its events.
async fn flush(r: &mut Running, sockets: &Sockets, link: &Link, handle: &rtnetlink::Handle) {
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
            let sent = match (dst, &sockets.v4, &sockets.v6) {
                (IpAddr::V4(dst), Some(s), _) => s.send(&bytes, dst),
                (IpAddr::V6(dst), _, Some(s)) => s.send(&bytes, dst),
                _ => Ok(()),
            };
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
                    if let Err(e) = io::add_address(handle, link.index, *vip).await {
                        warn!(instance = %r.spec.name, error = %e, "adding a virtual address");
                    }
                }
                r.holds_addresses = true;
                announce(r, &sockets.announcer, link);
                r.garp_again_at = Some(crate::clock::now() + GARP_DELAY);
            }
            Event::BecameBackup(reason) => {
                info!(instance = %r.spec.name, ?reason, "entering BACKUP state");
                release(r, handle, link).await;
            }
            Event::BecameFault => {
                info!(instance = %r.spec.name, "entering FAULT state");
                release(r, handle, link).await;
            }
            Event::Stopped => {
                info!(instance = %r.spec.name, "stopped");
                release(r, handle, link).await;
            }
        }
    }
}

async fn release(r: &mut Running, handle: &rtnetlink::Handle, link: &Link) {
    r.garp_again_at = None;
    if !r.holds_addresses {
        return;
    }
    for vip in &r.spec.addresses {
        if let Err(e) = io::remove_address(handle, link.index, *vip).await {
            warn!(instance = %r.spec.name, error = %e, "removing a virtual address");
        }
    }
    r.holds_addresses = false;
}

/// A burst of gratuitous ARP / unsolicited NA for every address of the instance, alternating
/// addresses as keepalived does.
fn announce(r: &Running, announcer: &Announcer, link: &Link) {
    for _ in 0..GARP_REPEAT {
        for vip in &r.spec.addresses {
            if let Err(e) = announcer.announce(link.mac, vip.addr) {
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
        priority: r.spec.priority,
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
        became_active: stats.became_active,
        adverts_received: stats.adverts_received,
        adverts_sent: stats.adverts_sent,
        priority_zero_received: stats.priority_zero_received,
        priority_zero_sent: stats.priority_zero_sent,
        errors: stats.ttl_errors
            + stats.checksum_errors
            + stats.length_errors
            + stats.other_decode_errors
            + stats.version_errors
            + stats.auth_failures
            + stats.auth_type_mismatch
            + stats.advert_interval_errors
            + stats.address_list_errors,
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
