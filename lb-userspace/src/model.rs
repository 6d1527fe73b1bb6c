//! The validated desired state: what lbd is asked to run.
//!
//! Built only by [`crate::config`]; its types make illegal states unrepresentable (a weight out
//! of range, an XDP mode without an interface, a real server of the wrong address family), so
//! everything downstream can trust it.

use std::net::{IpAddr, SocketAddr};

/// The whole desired state of one director.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    /// Which data plane programs the virtual servers.
    pub dataplane: Dataplane,
    /// Virtual servers, in configuration order.
    pub virtual_servers: Vec<VirtualServer>,
    /// VRRP instances, in configuration order.
    pub vrrp_instances: Vec<VrrpInstance>,
    /// keepalived's `router_id`, shown in status.
    pub router_id: Option<String>,
}

/// Which data plane programs the virtual servers, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dataplane {
    /// Check and notify only: nothing is programmed.
    None,
    /// Kernel IPVS only (keepalived's model; no BPF at all).
    Ipvs,
    /// The XDP fast path only, on this interface.
    Xdp(XdpSettings),
    /// XDP in front, IPVS behind for everything XDP passes up.
    XdpIpvs(XdpSettings),
}

impl Dataplane {
    /// The XDP settings, when the mode has an XDP part.
    pub fn xdp(&self) -> Option<&XdpSettings> {
        match self {
            Dataplane::Xdp(x) | Dataplane::XdpIpvs(x) => Some(x),
            Dataplane::None | Dataplane::Ipvs => None,
        }
    }

    /// Whether the mode programs IPVS.
    pub fn uses_ipvs(&self) -> bool {
        matches!(self, Dataplane::Ipvs | Dataplane::XdpIpvs(_))
    }

    /// The name users write in the config and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Dataplane::None => "none",
            Dataplane::Ipvs => "ipvs",
            Dataplane::Xdp(_) => "xdp",
            Dataplane::XdpIpvs(_) => "xdp+ipvs",
        }
    }
}

/// Where and how the XDP program is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpSettings {
    /// Interface the program is attached to.
    pub interface: String,
    /// Attach mode.
    pub attach: XdpAttach,
}

/// XDP attach mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttach {
    /// Native (driver) mode where the driver has it, else generic; lbd says which it got.
    Auto,
    /// Native mode or fail.
    Native,
    /// Generic (SKB) mode.
    Generic,
}

/// L4 protocol of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP (IPVS only; the XDP path passes it up).
    Sctp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// Lower-case name, as in the TOML format.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// How IPVS forwards to a real server (keepalived's `lb_kind` / `lvs_method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forwarding {
    /// Masquerading (NAT).
    Nat,
    /// Direct routing (same L2).
    Dr,
    /// IP-in-IP tunnel.
    Tun,
}

impl Forwarding {
    /// Lower-case name, as in the TOML format.
    pub fn name(self) -> &'static str {
        match self {
            Forwarding::Nat => "nat",
            Forwarding::Dr => "dr",
            Forwarding::Tun => "tun",
        }
    }
}

/// An IPVS scheduler name (rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduler(String);

impl Scheduler {
    /// The schedulers Linux IPVS ships.
    pub const KNOWN: [&'static str; 14] = [
        "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh",
        "twos",
    ];

    /// A scheduler, if `name` is one the kernel has.
    pub fn new(name: &str) -> Option<Self> {
        Self::KNOWN.contains(&name).then(|| Self(name.to_owned()))
    }

    /// The name IPVS knows it by.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl Default for Scheduler {
    /// keepalived's default, `wlc`.
    fn default() -> Self {
        Self("wlc".to_owned())
    }
}

/// A real-server weight: 0 (drained) to 65535, as keepalived allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Weight(u16);

impl Weight {
    /// A weight, if in range.
    pub fn new(value: i64) -> Option<Self> {
        u16::try_from(value).ok().map(Self)
    }

    /// The weight.
    pub fn get(self) -> u32 {
        u32::from(self.0)
    }
}

impl Default for Weight {
    /// keepalived's default weight, 1.
    fn default() -> Self {
        Self(1)
    }
}

/// A virtual service: VIP, port and protocol, with its real servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualServer {
    /// VIP and port (port 0: every port, IPVS persistence-style wildcard).
    pub vip: SocketAddr,
    /// L4 protocol.
    pub protocol: Protocol,
    /// IPVS scheduler.
    pub scheduler: Scheduler,
    /// Forwarding method of its real servers.
    pub forwarding: Forwarding,
    /// Real servers, all of the VIP's address family.
    pub real_servers: Vec<RealServer>,
}

/// A real server of a virtual service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealServer {
    /// Address and port.
    pub addr: SocketAddr,
    /// Weight.
    pub weight: Weight,
}

/// Whether two addresses are of the same family.
pub(crate) fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_bounded_like_keepalived() {
        assert_eq!(Weight::new(0).map(Weight::get), Some(0));
        assert_eq!(Weight::new(65535).map(Weight::get), Some(65535));
        assert_eq!(Weight::new(65536), None);
        assert_eq!(Weight::new(-1), None);
        assert_eq!(Weight::default().get(), 1);
    }

    #[test]
    fn only_kernel_schedulers_exist() {
        assert_eq!(
            Scheduler::new("mh").map(|s| s.name().to_owned()),
            Some("mh".to_owned())
        );
        assert!(Scheduler::new("roundrobin").is_none());
        assert_eq!(Scheduler::default().name(), "wlc");
    }
}

/// A VRRP instance (keepalived's `vrrp_instance`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VrrpInstance {
    /// Its name (notify scripts and logs use it).
    pub name: String,
    /// The interface it runs on.
    pub interface: String,
    /// VRRP version.
    pub version: crate::vrrp::wire::Version,
    /// Virtual router id, 1-255.
    pub vrid: u8,
    /// Priority, 1-255 (255: the address owner).
    pub priority: u8,
    /// Advertisement interval in centiseconds (v2: whole seconds).
    pub advert_int_cs: u16,
    /// Start active (keepalived's `state MASTER`).
    pub start_active: bool,
    /// Preempt a lower-priority active router (keepalived's default; `nopreempt` turns it off).
    pub preempt: bool,
    /// Delay before preempting (keepalived's `preempt_delay`).
    pub preempt_delay: std::time::Duration,
    /// The virtual addresses with their prefix lengths, all of one family.
    pub addresses: Vec<VirtualAddress>,
    /// v2 simple-password authentication (keepalived's `auth_type PASS`).
    pub auth_pass: Option<String>,
    /// The source address of adverts (default: the interface's primary address).
    pub unicast_src: Option<IpAddr>,
    /// Unicast peers; empty means multicast.
    pub unicast_peers: Vec<IpAddr>,
    /// How the VRRPv3 checksum over IPv4 is computed.
    pub v3_ipv4_checksum: crate::vrrp::wire::V3Ipv4Checksum,
}

/// A virtual address of a VRRP instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtualAddress {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length (keepalived's default: 32 or 128).
    pub prefix: u8,
}
