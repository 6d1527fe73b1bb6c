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
//! - [`RealInfo`] (`LB_REALS`, by real-server id), the Maglev tables (`LB_RINGS`, slot to id),
//!   [`FlowKey`] / [`FlowValue`] (`LB_FLOWS`, the connection table), [`Settings`]
//!   (`LB_SETTINGS`): what the XDP program forwards with; [`flow_hash`] picks a flow's slot.
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
/// Name of the map of master-down timers (`VrrpKey` -> a `bpf_timer`), private to the program;
/// user space holds it open, as the kernel cancels its timers when no process does.
pub const MAP_VRRP_TIMERS: &str = "LB_VRRP_TIMERS";

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
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

/// [`VipInfo::flags`]: forward by IPIP / IP6IP6 encapsulation (keepalived's `lb_kind TUN`);
/// without it, by direct routing (`lb_kind DR`: only the destination MAC changes).
pub const VIP_F_ENCAP: u32 = 1;

/// Value of the VIP map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipInfo {
    /// Slot of this VIP in the per-VIP arrays (`< MAX_VIPS`); its Maglev table is slots
    /// `index * ring_size .. (index + 1) * ring_size` of `LB_RINGS`.
    pub index: u32,
    /// `VIP_F_*` bits.
    pub flags: u32,
}

/// Per-VIP or per-real-server traffic, one value per CPU; user space sums them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipStats {
    /// Packets.
    pub packets: u64,
    /// Their bytes, from the start of the Ethernet header to the end of the frame, as received.
    pub bytes: u64,
}

/// Name of the real-server array (`u32` id -> `RealInfo`).
pub const MAP_REALS: &str = "LB_REALS";
/// Name of the per-CPU per-real-server statistics array (`u32` id -> `VipStats`).
pub const MAP_REAL_STATS: &str = "LB_REAL_STATS";
/// Name of the Maglev tables, all VIPs' back to back (`u32` slot -> real-server id).
pub const MAP_RINGS: &str = "LB_RINGS";
/// Name of the connection table (`FlowKey` -> `FlowValue`), an LRU hash with per-CPU LRU lists.
pub const MAP_FLOWS: &str = "LB_FLOWS";
/// Name of the one-entry settings array (`0` -> `Settings`).
pub const MAP_SETTINGS: &str = "LB_SETTINGS";
/// Real servers the XDP path can address (Katran's default). Id 0 is never used: a ring slot
/// holding 0 means "no real server".
pub const MAX_REALS: u32 = 4096;
/// Flows the connection table holds before the least recently used go.
pub const MAX_FLOWS: u32 = 1 << 20;
/// Maglev table size per VIP unless configured otherwise: a prime, Katran's default.
pub const DEFAULT_RING_SIZE: u32 = 65_537;

/// A real server as the XDP path forwards to it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RealInfo {
    /// Its address (IPv4-mapped for IPv4), network byte order: the outer destination when
    /// encapsulating.
    pub addr: [u8; 16],
    /// Destination MAC of frames to it: its own on the same L2 (DR), else the next hop's.
    pub mac: [u8; 6],
    /// Source MAC of those frames: the egress interface's.
    pub src_mac: [u8; 6],
    /// Egress interface: `XDP_TX` when it is the one the packet came in on, else redirect.
    pub ifindex: u32,
    /// 4 or 6; 0 marks an unused id.
    pub family: u8,
    /// Explicit padding, always zero.
    pub _pad: [u8; 3],
}

/// Key of the connection table: a flow's 5-tuple as it sits in the packet.
///
/// Addresses are held as four native-endian words of the address's bytes in packet order
/// ([`FlowKey::words`]), so the BPF program copies and hashes them a word at a time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// Source address (IPv4-mapped for IPv4).
    pub src: [u32; 4],
    /// Destination address: the VIP.
    pub dst: [u32; 4],
    /// Source port, network byte order.
    pub sport_be: u16,
    /// Destination port, network byte order.
    pub dport_be: u16,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub proto: u8,
    /// Explicit padding, always zero.
    pub _pad: [u8; 3],
}

impl FlowKey {
    /// An address's bytes (network order) as the key's words.
    pub const fn words(addr: [u8; 16]) -> [u32; 4] {
        let mut w = [0u32; 4];
        let mut i = 0;
        while i < 4 {
            w[i] = u32::from_ne_bytes([
                addr[4 * i],
                addr[4 * i + 1],
                addr[4 * i + 2],
                addr[4 * i + 3],
            ]);
            i += 1;
        }
        w
    }
}

/// Value of the connection table: the real server the flow goes to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowValue {
    /// Real-server id.
    pub real: u32,
    /// Explicit padding, always zero.
    pub _pad: u32,
}

/// The XDP path's settings, written by lbd (one entry of `LB_SETTINGS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Settings {
    /// Slots of each VIP's Maglev table (a prime).
    pub ring_size: u32,
    /// Largest IP packet (outer header included) the encapsulating path may send; a larger
    /// one is answered with ICMP fragmentation-needed / packet-too-big.
    pub mtu: u32,
    /// Outer IPv4 source of encapsulated packets: these bits ...
    pub encap_src_v4: [u8; 4],
    /// ... with these bits taken from the flow's hash, so the real server's NIC (RSS on the
    /// outer header) spreads flows over its queues. Zero: always `encap_src_v4`.
    pub encap_src_v4_hash_mask: [u8; 4],
    /// Outer IPv6 source: these bits ...
    pub encap_src_v6: [u8; 16],
    /// ... with these of the last 32 bits from the flow's hash.
    pub encap_src_v6_hash_mask: [u8; 4],
}

/// The hash of a flow that picks its Maglev slot: a 32-bit mix of the 5-tuple, computed the
/// same way in the kernel and in user space (tests and tools predict where a flow goes).
#[inline(always)]
pub fn flow_hash(key: &FlowKey) -> u32 {
    let mut h: u32 = 0x9e37_79b9 ^ u32::from(key.proto);
    let mut i = 0;
    while i < 4 {
        h = mix(h ^ key.src[i]);
        h = mix(h ^ key.dst[i]);
        i += 1;
    }
    h = mix(h ^ (u32::from(key.sport_be) << 16 | u32::from(key.dport_be)));
    fmix(h)
}

/// One round of MurmurHash3's body.
#[inline(always)]
const fn mix(h: u32) -> u32 {
    let k = h
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    k.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64)
}

/// MurmurHash3's finaliser: every input bit affects every output bit.
#[inline(always)]
const fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// What the XDP program did with a packet and why: slots of the `LB_COUNTERS` array.
///
/// Every packet bumps exactly one outcome slot (every slot but `Seen`, `FlowNew` and
/// `FlowHit`); a forwarded packet also bumps one of `FlowNew` / `FlowHit`. The program leaves
/// `Seen` alone: user space reports it as the sum of the outcomes.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Every packet the program ran on (the sum of the outcome slots, added up in user space).
    Seen = 0,
    /// Addressed to a VIP and forwarded by direct routing (MAC rewrite).
    ForwardedDr = 1,
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
    /// Malformed IP header (bad version or IHL, total length beyond the frame).
    BadHeader = 9,
    /// Addressed to a VIP and forwarded encapsulated (IPIP or IP6IP6).
    ForwardedEncap = 10,
    /// Addressed to a VIP with no live real server: passed to the kernel (IPVS, sorry server).
    NoRealServer = 11,
    /// Too big to encapsulate: answered with ICMP fragmentation-needed / packet-too-big.
    TooBig = 12,
    /// Too big to encapsulate and allowed to be fragmented: passed to the kernel.
    TooBigPassed = 13,
    /// The kernel refused to grow or shrink the frame (`bpf_xdp_adjust_head/tail`): passed.
    AdjustFailed = 14,
    /// A forwarded packet that started a flow (a TCP SYN, or a miss in the connection table).
    FlowNew = 15,
    /// A forwarded packet of a flow found in the connection table.
    FlowHit = 16,
}

impl Counter {
    /// Number of slots of the counter array.
    pub const COUNT: u32 = 17;
    /// Every counter, in slot order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::Seen,
        Counter::ForwardedDr,
        Counter::NotVip,
        Counter::NotIp,
        Counter::NotTcpUdp,
        Counter::Ipv4Fragment,
        Counter::Ipv4Options,
        Counter::Ipv6ExtHeader,
        Counter::Truncated,
        Counter::BadHeader,
        Counter::ForwardedEncap,
        Counter::NoRealServer,
        Counter::TooBig,
        Counter::TooBigPassed,
        Counter::AdjustFailed,
        Counter::FlowNew,
        Counter::FlowHit,
    ];

    /// A stable snake_case name, for logs, the API and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Seen => "seen",
            Counter::ForwardedDr => "forwarded_dr",
            Counter::NotVip => "not_vip",
            Counter::NotIp => "not_ip",
            Counter::NotTcpUdp => "not_tcp_udp",
            Counter::Ipv4Fragment => "ipv4_fragment",
            Counter::Ipv4Options => "ipv4_options",
            Counter::Ipv6ExtHeader => "ipv6_ext_header",
            Counter::Truncated => "truncated",
            Counter::BadHeader => "bad_header",
            Counter::ForwardedEncap => "forwarded_encap",
            Counter::NoRealServer => "no_real_server",
            Counter::TooBig => "too_big",
            Counter::TooBigPassed => "too_big_passed",
            Counter::AdjustFailed => "adjust_failed",
            Counter::FlowNew => "flow_new",
            Counter::FlowHit => "flow_hit",
        }
    }

    /// Whether every packet bumps exactly one of these (all but `Seen`, `FlowNew`, `FlowHit`).
    pub const fn is_outcome(self) -> bool {
        !matches!(self, Counter::Seen | Counter::FlowNew | Counter::FlowHit)
    }
}

const _: () = assert!(size_of::<VipKey>() == 20);
const _: () = assert!(size_of::<VipInfo>() == 8);
const _: () = assert!(size_of::<VipStats>() == 16);
const _: () = assert!(Counter::ALL.len() == Counter::COUNT as usize);
const _: () = assert!(size_of::<VrrpKey>() == 8);
const _: () = assert!(size_of::<VrrpSeen>() == 40);
const _: () = assert!(size_of::<VrrpWatched>() == 16);
const _: () = assert!(size_of::<RealInfo>() == 36);
const _: () = assert!(size_of::<FlowKey>() == 40);
const _: () = assert!(size_of::<FlowValue>() == 8);
const _: () = assert!(size_of::<Settings>() == 36);

#[cfg(feature = "user")]
mod pod {
    use super::{
        FlowKey, FlowValue, RealInfo, Settings, VipInfo, VipKey, VipStats, VrrpKey, VrrpSeen,
        VrrpWatched,
    };
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
    // SAFETY: as above.
    unsafe impl aya::Pod for RealInfo {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FlowValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Settings {}
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
