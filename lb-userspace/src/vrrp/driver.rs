//! The VRRP driver: the one loop that owns an interface's VRRP sockets and the clock.
//!
//! ```text
//!             raw socket (224.0.0.18 + unicast) ──▶ split_ipv4 ─▶ AdvertRepr::parse ─┐
//!                                                                                   ▼
//!   sleep_until(min poll_timeout) ──▶ handle_timeout ──▶ Instance (one per VRID, pure)
//!                                                                                   │
//!   status queries (lbctl) ◀── statuses          poll_transmit ─▶ emit ─▶ send socket
//!   shutdown ──▶ shutdown (priority 0)           poll_event ─▶ VIPs (rtnetlink), GARP, log
//! ```
//! One driver runs per interface, for that interface's IPv4 instances. Adverts for a VRID no
//! instance has are counted and dropped. On shutdown every instance sends its priority-0 advert
//! (if active) and its addresses are removed.

use std::{collections::HashMap, net::IpAddr, time::Duration};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::{
    instance::{self, Event, Instance, State},
    io::{self, Arp, Link, Sockets4},
    wire::{AdvertRepr, Auth, Envelope, MULTICAST_V4, Packet, split_ipv4},
};
use crate::{
    control::VrrpStatus,
    model::{VirtualAddress, VrrpInstance},
    time::Instant,
};

/// Gratuitous ARPs sent on becoming active, and again `GARP_DELAY` later (keepalived's
/// `vrrp_garp_master_repeat` and `vrrp_garp_master_delay` defaults).
const GARP_REPEAT: usize = 5;
/// See [`GARP_REPEAT`].
const GARP_DELAY: Duration = Duration::from_secs(5);

/// A status request: answered with the state of every instance of the driver.
pub type StatusQuery = oneshot::Sender<Vec<VrrpStatus>>;

/// One instance as the driver runs it.
struct Running {
    spec: VrrpInstance,
    instance: Instance,
    /// When the second burst of gratuitous ARP is due.
    garp_again_at: Option<Instant>,
    /// Whether the virtual addresses were added (removed again on leaving Active).
    holds_addresses: bool,
}

/// Runs the IPv4 instances of one interface until `shutdown` turns true.
pub async fn run(
    interface: String,
    instances: Vec<VrrpInstance>,
    mut queries: mpsc::Receiver<StatusQuery>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), io::IoError> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|source| io::IoError::Socket {
            op: "opening rtnetlink".to_owned(),
            source,
        })?;
    let netlink = tokio::spawn(connection);
    let link = io::link(&handle, &interface).await?;
    let source = instances
        .iter()
        .find_map(|i| i.unicast_src)
        .or(link.primary_v4.map(IpAddr::V4))
        .and_then(|ip| match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .ok_or_else(|| {
            io::IoError::Interface(format!(
                "{interface} has no IPv4 address to send adverts from"
            ))
        })?;
    let sockets = Sockets4::open(&link, source)?;
    let arp = Arp::open(&link)?;
    let clock = Clock::new();
    let mut running: HashMap<u8, Running> = instances
        .into_iter()
        .map(|spec| {
            let config = instance_config(&spec, IpAddr::V4(source));
            (
                spec.vrid,
                Running {
                    instance: Instance::new(config),
                    spec,
                    garp_again_at: None,
                    holds_addresses: false,
                },
            )
        })
        .collect();
    let mut unknown_vrid = 0u64;
    let now = clock.now();
    for r in running.values_mut() {
        info!(instance = %r.spec.name, interface = %interface, vrid = r.spec.vrid, priority = r.spec.priority, "VRRP instance starting");
        r.instance.startup(now);
    }
    let mut buffer = vec![0u8; 65536];
    loop {
        for r in running.values_mut() {
            flush(r, &sockets, &arp, &link, &handle, &clock).await;
        }
        let deadline = running
            .values()
            .flat_map(|r| [r.instance.poll_timeout(), r.garp_again_at])
            .flatten()
            .min();
        let sleep = clock.sleep_until(deadline);
        tokio::select! {
            readable = sockets.recv.readable() => {
                let mut guard = match readable {
                    Ok(guard) => guard,
                    Err(e) => {
                        warn!(error = %e, "VRRP socket readiness");
                        continue;
                    }
                };
                // Drain everything queued: a backlog must not age adverts.
                loop {
                    match std::io::Read::read(&mut guard.get_inner(), &mut buffer) {
                        Ok(len) => {
                            let now = clock.now();
                            receive(&mut running, &buffer[..len], now, &mut unknown_vrid);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            guard.clear_ready();
                            break;
                        }
                        Err(e) => {
                            warn!(error = %e, "receiving VRRP");
                            break;
                        }
                    }
                }
            }
            () = sleep => {
                let now = clock.now();
                for r in running.values_mut() {
                    r.instance.handle_timeout(now);
                    if r.garp_again_at.is_some_and(|at| now >= at) {
                        r.garp_again_at = None;
                        announce(r, &arp, &link);
                    }
                }
            }
            Some(reply) = queries.recv() => {
                let statuses = running.values().map(|r| status(r, &interface)).collect();
                reply.send(statuses).ok();
            }
            _ = shutdown.changed() => {
                let now = clock.now();
                for r in running.values_mut() {
                    r.instance.shutdown(now);
                    flush(r, &sockets, &arp, &link, &handle, &clock).await;
                }
                netlink.abort();
                info!(interface = %interface, "VRRP stopped");
                return Ok(());
            }
        }
    }
}

fn receive(
    running: &mut HashMap<u8, Running>,
    datagram: &[u8],
    now: Instant,
    unknown_vrid: &mut u64,
) {
    let Ok((ip, message)) = split_ipv4(datagram) else {
        debug!("dropping a malformed IPv4 datagram");
        return;
    };
    let Some(&vrid) = message.get(1) else { return };
    let Some(r) = running.get_mut(&vrid) else {
        *unknown_vrid += 1;
        return;
    };
    let envelope = Envelope {
        src: ip.src.into(),
        dst: ip.dst.into(),
        ttl: ip.ttl,
    };
    match AdvertRepr::parse(
        &Packet::new_unchecked(message),
        &envelope,
        r.spec.v3_ipv4_checksum,
    ) {
        Ok(advert) => r.instance.handle_advert(now, envelope.src, &advert),
        Err(e) => {
            r.instance.stats_mut().count_decode_error(e);
            debug!(instance = %r.spec.name, from = %ip.src, error = %e, counter = e.counter(), "advert dropped");
        }
    }
}

/// Sends what the instance wants sent and acts on its events.
async fn flush(
    r: &mut Running,
    sockets: &Sockets4,
    arp: &Arp,
    link: &Link,
    handle: &rtnetlink::Handle,
    clock: &Clock,
) {
    while let Some(advert) = r.instance.poll_transmit() {
        let source = r.instance.config().primary;
        let targets: Vec<IpAddr> = if r.spec.unicast_peers.is_empty() {
            vec![IpAddr::V4(MULTICAST_V4)]
        } else {
            r.spec.unicast_peers.clone()
        };
        for dst in targets {
            let IpAddr::V4(dst4) = dst else { continue };
            let mut bytes = vec![0u8; advert.buffer_len()];
            advert.emit(
                &mut Packet::new_unchecked(&mut bytes[..]),
                source,
                dst,
                r.spec.v3_ipv4_checksum,
            );
            if let Err(e) = sockets.send(&bytes, dst4) {
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
                announce(r, arp, link);
                r.garp_again_at = Some(clock.now() + GARP_DELAY);
            }
            Event::BecameBackup(reason) => {
                info!(instance = %r.spec.name, ?reason, "entering BACKUP state");
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

/// A burst of gratuitous ARP for every IPv4 address of the instance, alternating addresses as
/// keepalived does.
fn announce(r: &Running, arp: &Arp, link: &Link) {
    for _ in 0..GARP_REPEAT {
        for vip in &r.spec.addresses {
            if let VirtualAddress {
                addr: IpAddr::V4(v4),
                ..
            } = vip
                && let Err(e) = arp.announce(link.mac, *v4)
            {
                warn!(instance = %r.spec.name, error = %e, "gratuitous ARP");
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
        version: match r.spec.version {
            super::wire::Version::V2 => 2,
            super::wire::Version::V3 => 3,
        },
        state: match r.instance.state() {
            State::Initialize => "INIT",
            State::Backup { .. } => "BACKUP",
            State::Active { .. } => "MASTER",
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

/// The driver's clock: tokio's (so tests can pause it), as a monotonic [`Instant`].
struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// Sleeps until `deadline`, or forever without one.
    async fn sleep_until(&self, deadline: Option<Instant>) {
        match deadline {
            Some(at) => {
                tokio::time::sleep_until(self.origin + Duration::from_nanos(at.as_nanos())).await
            }
            None => std::future::pending().await,
        }
    }
}
