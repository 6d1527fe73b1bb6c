//! Types shared by lbd's BPF programs (`lb-ebpf`) and its user space (`lb-userspace`).
//!
//! Everything here is `#[repr(C)]` with explicit padding, so the kernel and user space agree on the
//! byte layout of every map key and value; `const` asserts pin the sizes. Addresses are stored in
//! network byte order exactly as they sit in the packet; IPv4 addresses are IPv4-mapped IPv6
//! addresses (`::ffff:a.b.c.d`), so one key type serves both families.
//!
//! # Layout
//! - [`VipKey`] / [`VipInfo`]: a VIP (address, port, protocol) and its slot; the `LB_VIPS` array
//!   holds them as [`VipSlot`]s, an open-addressing table written by lbd through a memory
//!   mapping and probed inline by the program ([`vip_hash`]).
//! - [`VipStats`]: the per-CPU `LB_VIP_STATS` array, indexed by [`VipInfo::index`].
//! - [`Counter`]: the per-CPU `LB_COUNTERS` array, what the program did with each packet and why.
//! - [`RealInfo`] (`LB_REALS`, by real-server id), the Maglev tables (`LB_RINGS`, slot to id,
//!   two 4-byte slots to each 8-byte element: a BPF array rounds every value up to 8 bytes),
//!   [`FlowKey`] / [`FlowSet`] (`LB_FLOWS`, the connection table), [`Settings`]
//!   (`LB_SETTINGS`): what the XDP program forwards with; [`flow_hash`] picks a flow's Maglev
//!   slot and its connection-table set.
//!
//! Why arrays and not BPF hash maps for the two lookups of every packet: a hash-map lookup is
//! three or four kernel function calls (hash, bucket walk, key compare), each paying the return
//! mitigations of the CPU (SRSO safe-RET, retpolines), and an LRU insert takes locks. Measured
//! on the development machine, caches warm: about 28 ns a lookup, and a retransmitted SYN (an
//! LRU update) at 312 ns against 125 ns for an established packet, where the program's own
//! work is tens of ns. An array lookup is inlined by the verifier into a bounds check and
//! an add, and the probing below is plain loads and compares.
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

/// Name of the VIP table: an array of [`VIP_SLOTS`] [`VipSlot`]s, memory-mapped by lbd.
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
/// Name of the connection table: an array of [`FlowSet`]s, set-associative, shared by all CPUs.
pub const MAP_FLOWS: &str = "LB_FLOWS";
/// Name of the one-entry settings array (`0` -> `Settings`).
pub const MAP_SETTINGS: &str = "LB_SETTINGS";
/// Real servers the XDP path can address (Katran's default). Id 0 is never used: a ring slot
/// holding 0 means "no real server".
pub const MAX_REALS: u32 = 4096;
/// Flows the connection table holds: [`FLOW_SETS`] sets of [`FLOW_WAYS`] ways.
pub const MAX_FLOWS: u32 = 1 << 20;
/// Ways of a connection-table set: a new flow takes a free way, else the least recently used.
pub const FLOW_WAYS: usize = 4;
/// Sets of the connection table (a power of two). A flow may be in either of two sets
/// ([`flow_sets`]) and a new one goes to the emptier: simulated, 0.002 % of the flows of a
/// half-full table find both sets full (0.65 % at three quarters), where one set of four
/// ways would leave 3.7 % without room (10.6 %).
pub const FLOW_SETS: u32 = MAX_FLOWS / FLOW_WAYS as u32;
/// Slots of the VIP table: eight per VIP of capacity, so probes are short (a power of two).
pub const VIP_SLOTS: u32 = (MAX_VIPS * 8).next_power_of_two();
/// The most slots a VIP lookup probes: lbd places every VIP within this many of its home slot
/// (at the table's load of at most 1/8, a longer run is practically impossible; lbd refuses
/// the VIP if it happens).
pub const VIP_PROBES: u32 = 16;
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
/// ([`FlowKey::words`]), so the BPF program copies and hashes them a word at a time. Aligned
/// to 8: the program keeps keys on its stack, where LLVM may store two words as one and the
/// verifier refuses a misaligned store.
#[repr(C, align(8))]
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
    /// Explicit padding, always zero (a byte and an aligned half-word: the program stores
    /// keys on its stack, where the verifier refuses misaligned stores).
    pub _pad: u8,
    /// Explicit padding, always zero.
    pub _pad_hi: u16,
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

/// One way of a connection-table set: a flow and the real server it goes to. A cache line.
///
/// Any CPU may write any way, without a lock: `check` is `flow_hash(key) ^ real` and is
/// written last, so a way torn by two CPUs writing it at once (or read while written) fails
/// the check and counts as a miss: the flow is hashed afresh and written again.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowWay {
    /// The flow.
    pub key: FlowKey,
    /// Real-server id (0: the way is free).
    pub real: u32,
    /// `flow_hash(&key) ^ real`.
    pub check: u32,
    /// Low 32 bits of jiffies when the flow was last seen: the least recent way goes first.
    pub stamp: u32,
    /// Explicit padding, always zero.
    pub _pad: [u32; 3],
}

/// A connection-table set: the flows whose hash has these low bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowSet {
    /// Its ways.
    pub ways: [FlowWay; FLOW_WAYS],
}

/// [`VipSlot::key`]'s state byte: never used (ends a probe).
pub const VIP_SLOT_EMPTY: u64 = 0;
/// [`VipSlot::key`]'s state byte: holds a VIP.
pub const VIP_SLOT_USED: u64 = 1;
/// [`VipSlot::key`]'s state byte: held a VIP that was removed (a probe goes on past it).
pub const VIP_SLOT_DELETED: u64 = 2;

/// One slot of the VIP table, as four native-endian words.
///
/// lbd writes a slot through the memory mapping while the program reads it: `info` and the
/// address first, then `key`, whose state byte publishes the slot in one aligned store. The
/// program reads `key` first, so once it sees a slot in use, the rest is that VIP's.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipSlot {
    /// Address bytes 0..8 of the VIP (IPv4-mapped for IPv4), as a native-endian word.
    pub addr_lo: u64,
    /// Address bytes 8..16.
    pub addr_hi: u64,
    /// `port_be | proto << 16 | state << 24`.
    pub key: u64,
    /// `index | flags << 32` ([`VipInfo`]).
    pub info: u64,
}

impl VipSlot {
    /// The `key` word of `key` in state `state`.
    #[inline(always)]
    pub const fn key_word(port_be: u16, proto: u8, state: u64) -> u64 {
        port_be as u64 | (proto as u64) << 16 | state << 24
    }

    /// The state byte of a `key` word.
    #[inline(always)]
    pub const fn state(key: u64) -> u64 {
        (key >> 24) & 0xff
    }

    /// The `addr_lo` and `addr_hi` words of an address.
    #[inline(always)]
    pub const fn addr_words(addr: &[u8; 16]) -> (u64, u64) {
        Self::addr_words_of(&FlowKey::words(*addr))
    }

    /// The `addr_lo` and `addr_hi` words of an address held as [`FlowKey::words`].
    #[inline(always)]
    pub const fn addr_words_of(w: &[u32; 4]) -> (u64, u64) {
        (pair(w[0], w[1]), pair(w[2], w[3]))
    }

    /// The address of `addr_lo` and `addr_hi` words.
    #[inline(always)]
    pub const fn addr_of(addr_lo: u64, addr_hi: u64) -> [u8; 16] {
        let words = [
            addr_lo as u32,
            (addr_lo >> 32) as u32,
            addr_hi as u32,
            (addr_hi >> 32) as u32,
        ];
        let mut addr = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            addr[i] = words[i / 4].to_ne_bytes()[i % 4];
            i += 1;
        }
        addr
    }

    /// The `info` word of `info`.
    #[inline(always)]
    pub const fn info_word(info: VipInfo) -> u64 {
        pair(info.index, info.flags)
    }

    /// The [`VipInfo`] of an `info` word.
    #[inline(always)]
    pub const fn info_of(word: u64) -> VipInfo {
        VipInfo {
            index: word as u32,
            flags: (word >> 32) as u32,
        }
    }
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

/// The hash of a flow that picks its Maglev slot and its connection-table set: a 32-bit mix of
/// the 5-tuple, computed the same way in the kernel and in user space (tests and tools predict
/// where a flow goes).
///
/// Five independent 64-bit lanes, one multiply each, then a finaliser: the lanes' multiplies
/// run side by side, where a chain of 32-bit rounds would run one after another.
#[inline(always)]
pub fn flow_hash(key: &FlowKey) -> u32 {
    let ports = pair(
        u32::from(key.sport_be) | u32::from(key.dport_be) << 16,
        u32::from(key.proto),
    );
    let h = lane(pair(key.src[0], key.src[1]), 0x243f_6a88_85a3_08d3)
        ^ lane(pair(key.src[2], key.src[3]), 0x1319_8a2e_0370_7344).rotate_left(13)
        ^ lane(pair(key.dst[0], key.dst[1]), 0xa409_3822_299f_31d0).rotate_left(26)
        ^ lane(pair(key.dst[2], key.dst[3]), 0x082e_fa98_ec4e_6c89).rotate_left(39)
        ^ lane(ports, 0x4528_21e6_38d0_1377).rotate_left(52);
    fmix64(h) as u32
}

/// The two connection-table sets a flow of hash `hash` may be in: the hash's low bits, and
/// the high bits of the hash times an odd constant (which depend on every bit of it).
#[inline(always)]
pub const fn flow_sets(hash: u32) -> [u32; 2] {
    [
        hash & (FLOW_SETS - 1),
        hash.wrapping_mul(0x9e37_79b1) >> (32 - FLOW_SETS.trailing_zeros()),
    ]
}

/// The home slot of a VIP in the VIP table (before masking), from its slot words.
#[inline(always)]
pub fn vip_hash(addr_lo: u64, addr_hi: u64, port_be: u16, proto: u8) -> u32 {
    let h = lane(addr_lo, 0x243f_6a88_85a3_08d3)
        ^ lane(addr_hi, 0x1319_8a2e_0370_7344).rotate_left(21)
        ^ lane(VipSlot::key_word(port_be, proto, 0), 0xa409_3822_299f_31d0).rotate_left(42);
    fmix64(h) as u32
}

/// `lo` and `hi` as one native 64-bit word, `lo` in the low half.
#[inline(always)]
const fn pair(lo: u32, hi: u32) -> u64 {
    lo as u64 | (hi as u64) << 32
}

/// One lane: the word and a constant, multiplied by an odd constant, high half folded down.
#[inline(always)]
const fn lane(x: u64, k: u64) -> u64 {
    let x = (x ^ k).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 29)
}

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
#[inline(always)]
const fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// What the XDP program did with a packet and why: slots of the `LB_COUNTERS` array.
///
/// Every packet bumps exactly one outcome slot (every slot but `Seen`, `FlowNew` and
/// `FlowHit`); a forwarded packet also counts as one of `FlowNew` / `FlowHit`. The program
/// writes neither `Seen` nor `FlowHit` (one write fewer a packet each): user space reports
/// `Seen` as the sum of the outcomes and `FlowHit` as the forwarded packets that were not
/// `FlowNew`.
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
const _: () = assert!(size_of::<FlowWay>() == 64);
const _: () = assert!(size_of::<FlowSet>() == 64 * FLOW_WAYS);
const _: () = assert!(size_of::<VipSlot>() == 32);
const _: () = assert!(FLOW_SETS.is_power_of_two() && VIP_SLOTS.is_power_of_two());
const _: () = assert!(size_of::<Settings>() == 36);

#[cfg(feature = "user")]
mod pod {
    use super::{
        FlowKey, FlowSet, RealInfo, Settings, VipInfo, VipKey, VipSlot, VipStats, VrrpKey,
        VrrpSeen, VrrpWatched,
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
    unsafe impl aya::Pod for FlowSet {}
    // SAFETY: as above.
    unsafe impl aya::Pod for VipSlot {}
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
    fn vip_slot_words_round_trip() {
        let key = VipKey::v6(
            [0x20, 1, 0xd, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
            443,
            IPPROTO_TCP,
        );
        let (lo, hi) = VipSlot::addr_words(&key.addr);
        assert_eq!(VipSlot::addr_of(lo, hi), key.addr);
        let word = VipSlot::key_word(key.port_be, key.proto, VIP_SLOT_USED);
        assert_eq!(VipSlot::state(word), VIP_SLOT_USED);
        let info = VipInfo {
            index: 511,
            flags: VIP_F_ENCAP,
        };
        assert_eq!(VipSlot::info_of(VipSlot::info_word(info)), info);
    }

    /// The flow hash picks Maglev slots and connection-table sets: IPv4 flows that differ
    /// only in the client's port must spread evenly over both.
    #[test]
    fn flow_hash_spreads_flows_evenly() {
        const BINS: usize = 251;
        let mut slots = [0u32; BINS];
        let mut sets = [0u32; 256];
        let flows = 64_000u32;
        for i in 0..flows {
            let key = FlowKey {
                src: FlowKey::words(VipKey::v4([192, 0, 2, (i >> 16) as u8], 0, 6).addr),
                dst: FlowKey::words(VipKey::v4([203, 0, 113, 10], 0, 6).addr),
                sport_be: ((1024 + i) as u16).to_be(),
                dport_be: 80u16.to_be(),
                proto: IPPROTO_TCP,
                _pad: 0,
                _pad_hi: 0,
            };
            let h = flow_hash(&key);
            slots[h as usize % BINS] += 1;
            sets[(h & 255) as usize] += 1;
        }
        for (bins, name) in [(&slots[..], "Maglev slot"), (&sets[..], "table set")] {
            let mean = f64::from(flows) / bins.len() as f64;
            let chi2: f64 = bins
                .iter()
                .map(|&n| (f64::from(n) - mean).powi(2) / mean)
                .sum();
            // Degrees of freedom ~ bins; a uniform hash stays well under 1.5 x.
            assert!(
                chi2 < 1.5 * bins.len() as f64,
                "{name}: chi-square {chi2:.0} over {} bins",
                bins.len()
            );
        }
    }

    #[test]
    fn vip_hash_separates_ports_and_protocols() {
        let (lo, hi) = VipSlot::addr_words(&VipKey::v4([203, 0, 113, 10], 0, 6).addr);
        let a = vip_hash(lo, hi, 80u16.to_be(), IPPROTO_TCP);
        assert_ne!(a, vip_hash(lo, hi, 80u16.to_be(), IPPROTO_UDP));
        assert_ne!(a, vip_hash(lo, hi, 81u16.to_be(), IPPROTO_TCP));
        assert_ne!(a, vip_hash(lo, hi, 0, IPPROTO_TCP));
    }

    #[test]
    fn counter_slots_match_their_discriminants() {
        for (slot, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(*counter as usize, slot, "{}", counter.name());
        }
    }
}
