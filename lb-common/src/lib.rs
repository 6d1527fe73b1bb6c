//! Types shared by lbd's BPF programs (`lb-ebpf`) and its user space (`lb-userspace`).
//!
//! Everything here is `#[repr(C)]` with explicit padding, so the kernel and user space agree on the
//! byte layout of every map key and value; `const` asserts pin the sizes. Addresses are stored in
//! network byte order exactly as they sit in the packet; IPv4 addresses are IPv4-mapped IPv6
//! addresses (`::ffff:a.b.c.d`), so one key type serves both families.
//!
//! # Layout
//! - [`VipKey`] / [`VipInfo`]: the `LB_VIPS` hash map, VIP (address, port, protocol) to its slot.
//! - [`VipStats`]: the per-CPU `LB_VIP_STATS` array, indexed by [`VipInfo::index`].
//! - [`Counter`]: the per-CPU `LB_COUNTERS` array, what the program did with each packet and why.
//! - [`VrrpKey`] / [`VrrpSeen`]: the `LB_VRRP_SEEN` hash map, what the TC program `lb_vrrp_tc`
//!   saw of each virtual router's adverts, for a VRRP driver that may be scheduled late.
//! - the map names, so both sides spell them once.
#![no_std]
#![cfg_attr(
    feature = "user",
    expect(unsafe_code, reason = "aya::Pod impls for map types")
)]

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// Name of the VRRP advert map (`VrrpKey` -> `VrrpSeen`).
pub const MAP_VRRP_SEEN: &str = "LB_VRRP_SEEN";
/// Name of the TC ingress program that records VRRP adverts.
pub const PROG_VRRP_TC: &str = "lb_vrrp_tc";
/// Virtual routers the VRRP advert map holds (every family, VRID and interface).
pub const MAX_VRRP_ROUTERS: u32 = 4096;

/// A virtual router as seen on the wire: interface, VRID, family.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VrrpKey {
    /// The receiving interface's index.
    pub ifindex: u32,
    /// Virtual router id.
    pub vrid: u8,
    /// 4 or 6.
    pub family: u8,
    /// Explicit padding, always zero.
    pub _pad: [u8; 2],
}

/// The adverts of one virtual router: how many, and the latest one's time, sender, priority,
/// version and interval.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VrrpSeen {
    /// Adverts seen (TTL / hop limit 255, VRRP version 2 or 3, type ADVERTISEMENT).
    pub count: u64,
    /// When the latest arrived, `bpf_ktime_get_ns` (CLOCK_MONOTONIC).
    pub last_ns: u64,
    /// Its sender, IPv4-mapped for IPv4.
    pub sender: [u8; 16],
    /// Its priority.
    pub priority: u8,
    /// Its VRRP version.
    pub version: u8,
    /// Its advert interval in centiseconds (v2: seconds × 100).
    pub interval_cs: u16,
    /// Explicit padding, always zero.
    pub _pad: [u8; 4],
}

/// Name of the map of watched virtual routers (`VrrpKey` -> `VrrpWatched`), written by lbd.
pub const MAP_VRRP_WATCHED: &str = "LB_VRRP_WATCHED";
/// Name of the ring buffer of master-down events (`VrrpKey`).
pub const MAP_VRRP_EVENTS: &str = "LB_VRRP_EVENTS";

/// A virtual router a backup of lbd follows: its adverts from a router it would follow re-arm
/// a kernel timer of `down_ns`; when the timer fires, its key goes to the event ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VrrpWatched {
    /// The backup's Master_Down_Interval in nanoseconds.
    pub down_ns: u64,
    /// Adverts of at least this priority re-arm the timer (the backup's own priority with
    /// preempt, 1 without).
    pub min_priority: u8,
    /// Explicit padding, always zero.
    pub _pad: [u8; 7],
}

/// Name of the VIP hash map (`VipKey` -> `VipInfo`).
pub const MAP_VIPS: &str = "LB_VIPS";
/// Name of the per-CPU per-VIP statistics array (`u32` index -> `VipStats`).
pub const MAP_VIP_STATS: &str = "LB_VIP_STATS";
/// Name of the per-CPU packet-counter array (`Counter as u32` -> `u64`).
pub const MAP_COUNTERS: &str = "LB_COUNTERS";
/// Name of the XDP program that counts (and later forwards) VIP traffic.
pub const PROG_XDP: &str = "lb_xdp";
/// Name of the empty XDP program used as the benchmark floor.
pub const PROG_XDP_FLOOR: &str = "lb_xdp_floor";

/// Capacity of the VIP map and of the per-VIP statistics array (Katran's default VIP capacity).
pub const MAX_VIPS: u32 = 512;

/// IP protocol numbers as they appear in [`VipKey::proto`].
pub const IPPROTO_TCP: u8 = 6;
/// UDP's IP protocol number.
pub const IPPROTO_UDP: u8 = 17;

/// Key of the VIP map: destination address, port and L4 protocol of a packet.
///
/// `port == 0` is the wildcard VIP: a packet whose exact (address, port, protocol) is not a VIP
/// matches `(address, 0, protocol)` when that is one.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct VipKey {
    /// IPv6 address, or IPv4-mapped IPv6 address, in network byte order.
    pub addr: [u8; 16],
    /// Destination port in network byte order, as read from the L4 header (0: any port).
    pub port_be: u16,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub proto: u8,
    /// Always 0: makes the padding explicit, so the hash of the key is defined.
    pub _pad: u8,
}

impl VipKey {
    /// The key for an IPv4 VIP; `addr` and `port` in host order.
    pub const fn v4(addr: [u8; 4], port: u16, proto: u8) -> Self {
        let mut a = [0u8; 16];
        a[10] = 0xff;
        a[11] = 0xff;
        a[12] = addr[0];
        a[13] = addr[1];
        a[14] = addr[2];
        a[15] = addr[3];
        Self {
            addr: a,
            port_be: port.to_be(),
            proto,
            _pad: 0,
        }
    }

    /// The key for an IPv6 VIP; `port` in host order.
    pub const fn v6(addr: [u8; 16], port: u16, proto: u8) -> Self {
        Self {
            addr,
            port_be: port.to_be(),
            proto,
            _pad: 0,
        }
    }
}

/// Value of the VIP map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipInfo {
    /// Slot of this VIP in the per-VIP arrays (`< MAX_VIPS`).
    pub index: u32,
    /// Reserved for forwarding flags (issue 9); 0 today.
    pub flags: u32,
}

/// Per-VIP traffic, one value per CPU; user space sums them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipStats {
    /// Packets addressed to the VIP.
    pub packets: u64,
    /// Their bytes, from the start of the Ethernet header to the end of the frame.
    pub bytes: u64,
}

/// What the XDP program did with a packet and why: slots of the `LB_COUNTERS` array.
///
/// Every packet bumps [`Counter::Seen`] and exactly one other slot.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Every packet the program ran on.
    Seen = 0,
    /// Addressed to a VIP (also counted per VIP).
    VipHit = 1,
    /// A TCP/UDP packet whose destination is not a VIP.
    NotVip = 2,
    /// Neither IPv4 nor IPv6 (ARP, LLDP, ...).
    NotIp = 3,
    /// IPv4/IPv6 carrying neither TCP nor UDP (ICMP, VRRP, ...).
    NotTcpUdp = 4,
    /// An IPv4 fragment: the kernel reassembles it.
    Ipv4Fragment = 5,
    /// IPv4 with options: left to the kernel.
    Ipv4Options = 6,
    /// IPv6 with extension headers: left to the kernel.
    Ipv6ExtHeader = 7,
    /// Shorter than the headers it announces.
    Truncated = 8,
    /// Malformed IP header (bad version or IHL).
    BadHeader = 9,
}

impl Counter {
    /// Number of slots of the counter array.
    pub const COUNT: u32 = 10;
    /// Every counter, in slot order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::Seen,
        Counter::VipHit,
        Counter::NotVip,
        Counter::NotIp,
        Counter::NotTcpUdp,
        Counter::Ipv4Fragment,
        Counter::Ipv4Options,
        Counter::Ipv6ExtHeader,
        Counter::Truncated,
        Counter::BadHeader,
    ];

    /// A stable snake_case name, for logs, the API and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Seen => "seen",
            Counter::VipHit => "vip_hit",
            Counter::NotVip => "not_vip",
            Counter::NotIp => "not_ip",
            Counter::NotTcpUdp => "not_tcp_udp",
            Counter::Ipv4Fragment => "ipv4_fragment",
            Counter::Ipv4Options => "ipv4_options",
            Counter::Ipv6ExtHeader => "ipv6_ext_header",
            Counter::Truncated => "truncated",
            Counter::BadHeader => "bad_header",
        }
    }
}

const _: () = assert!(size_of::<VipKey>() == 20);
const _: () = assert!(size_of::<VipInfo>() == 8);
const _: () = assert!(size_of::<VipStats>() == 16);
const _: () = assert!(Counter::ALL.len() == Counter::COUNT as usize);
const _: () = assert!(size_of::<VrrpKey>() == 8);
const _: () = assert!(size_of::<VrrpSeen>() == 40);
const _: () = assert!(size_of::<VrrpWatched>() == 16);

#[cfg(feature = "user")]
mod pod {
    use super::{VipInfo, VipKey, VipStats, VrrpKey, VrrpSeen, VrrpWatched};
    // SAFETY: repr(C), only integer fields and byte arrays, explicit padding: every bit pattern is
    // a valid value and there are no implicit padding bytes (sizes asserted above).
    unsafe impl aya::Pod for VipKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for VipInfo {}
    // SAFETY: as above.
    unsafe impl aya::Pod for VipStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for VrrpKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for VrrpSeen {}
    // SAFETY: as above.
    unsafe impl aya::Pod for VrrpWatched {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_keys_are_ipv4_mapped_with_network_order_ports() {
        let key = VipKey::v4([203, 0, 113, 10], 80, IPPROTO_TCP);
        assert_eq!(
            key.addr,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 10]
        );
        assert_eq!(key.port_be.to_ne_bytes(), [0, 80]);
        assert_eq!((key.proto, key._pad), (6, 0));
    }

    #[test]
    fn counter_slots_match_their_discriminants() {
        for (slot, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(*counter as usize, slot, "{}", counter.name());
        }
    }
}
