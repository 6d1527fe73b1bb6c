//! lbd's XDP program: a Katran-style L4 forwarder.
//!
//! `lb_xdp` parses Ethernet (with at most one VLAN tag), IPv4 or IPv6, and TCP or UDP, and looks
//! the destination up in `LB_VIPS` (exact port first, then the port-0 wildcard). A VIP packet
//! goes to a real server chosen by the connection table `LB_FLOWS` (an established flow keeps
//! its real server when the set changes; a TCP SYN always hashes afresh) or else by the VIP's
//! Maglev table in `LB_RINGS`, computed by lbd from the live real servers. It is forwarded by
//! direct routing (new destination MAC) or encapsulated in IPIP / IP6IP6, out of the interface
//! it came in on (`XDP_TX`) or redirected to the real server's. Everything else, and anything
//! the program does not understand (fragments, IPv4 options, IPv6 extension headers, truncated
//! headers, a VIP with no live real server), is passed to the kernel, where IPVS is the
//! fallback. Each packet is counted once by outcome (`lb_common::Counter`), per VIP and per
//! real server.
//!
//! Packet access goes through one bounds-checked [`ptr_at`]. Header offsets are const generic
//! parameters (a VLAN tag moves them by four bytes), so the verifier sees constant offsets.
//! The object is built with LLVM's `allows-misaligned-mem-access`: packet fields are loaded
//! whole at any offset (x86-64's and arm64's verifiers allow misaligned packet access), where
//! byte loads cost a stack slot each.
//!
//! The per-packet path makes no kernel call but `bpf_redirect` (and `bpf_xdp_adjust_head`
//! when encapsulating): the VIP and connection tables are arrays, whose lookups the verifier
//! inlines, probed here (`lb_common`'s docs say why and what it saved).
//!
//! `lb_vrrp_tc` records VRRP adverts for the VRRP driver (see its docs).
#![no_std]
#![no_main]
#![expect(
    unsafe_code,
    reason = "BPF programs read packets and maps through raw pointers"
)]

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, TC_ACT_OK, bpf_timer, xdp_action},
    btf_maps,
    helpers::{
        bpf_ktime_get_ns,
        generated::{
            bpf_jiffies64, bpf_redirect, bpf_timer_init, bpf_timer_set_callback, bpf_timer_start,
            bpf_xdp_adjust_head, bpf_xdp_adjust_tail,
        },
    },
    macros::{btf_map, classifier, map, xdp},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};
use lb_common::{
    Counter, DEFAULT_RING_SIZE, FLOW_SETS, FLOW_WAYS, FlowKey, FlowSet, FlowWay, IPPROTO_TCP,
    IPPROTO_UDP, IPPROTO_VRRP, MAX_REALS, MAX_VIPS, MAX_VRRP_ROUTERS, RealInfo, Settings,
    VIP_F_ENCAP, VIP_PROBES, VIP_SLOT_EMPTY, VIP_SLOT_USED, VIP_SLOTS, VipInfo, VipSlot, VipStats,
    VrrpKey, VrrpSeen, VrrpWatched, flow_hash, flow_sets, vip_hash,
};

/// The VIP table: open addressing over [`VIP_SLOTS`] slots, probed inline ([`find_vip`]);
/// lbd writes it through a memory mapping.
#[map(name = "LB_VIPS")]
static LB_VIPS: Array<VipSlot> = Array::with_max_entries(VIP_SLOTS, BPF_F_MMAPABLE);

#[map(name = "LB_VIP_STATS")]
static LB_VIP_STATS: PerCpuArray<VipStats> = PerCpuArray::with_max_entries(MAX_VIPS, 0);

#[map(name = "LB_COUNTERS")]
static LB_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

#[map(name = "LB_REALS")]
static LB_REALS: Array<RealInfo> = Array::with_max_entries(MAX_REALS, 0);

#[map(name = "LB_REAL_STATS")]
static LB_REAL_STATS: PerCpuArray<VipStats> = PerCpuArray::with_max_entries(MAX_REALS, 0);

/// Every VIP's Maglev table back to back. lbd sizes it at load (VIP capacity x ring size) and
/// writes it through a memory mapping.
///
/// Two slots to an element, the even one in the low half: a BPF array rounds every value up to
/// 8 bytes, so one slot an element would take twice the memory (268 MB at Katran's capacity).
#[map(name = "LB_RINGS")]
static LB_RINGS: Array<u64> =
    Array::with_max_entries((MAX_VIPS * DEFAULT_RING_SIZE).div_ceil(2), BPF_F_MMAPABLE);

/// The connection table: [`FLOW_SETS`] sets of [`FLOW_WAYS`] ways, shared by all
/// CPUs and written without locks ([`FlowWay`] says how a torn way is caught).
#[map(name = "LB_FLOWS")]
static LB_FLOWS: Array<FlowSet> = Array::with_max_entries(FLOW_SETS, 0);

#[map(name = "LB_SETTINGS")]
static LB_SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

#[map(name = "LB_VRRP_SEEN")]
static LB_VRRP_SEEN: HashMap<VrrpKey, VrrpSeen> = HashMap::with_max_entries(MAX_VRRP_ROUTERS, 0);

#[map(name = "LB_VRRP_WATCHED")]
static LB_VRRP_WATCHED: HashMap<VrrpKey, VrrpWatched> =
    HashMap::with_max_entries(MAX_VRRP_ROUTERS, 0);

#[map(name = "LB_VRRP_EVENTS")]
static LB_VRRP_EVENTS: RingBuf = RingBuf::with_byte_size(64 * 1024, 0);

/// A watched router's master-down timer (the kernel needs the map's BTF to find the timer).
#[repr(C)]
struct VrrpTimer {
    timer: bpf_timer,
    key: VrrpKey,
    armed: u32,
    _pad: u32,
}

#[btf_map]
static LB_VRRP_TIMERS: btf_maps::HashMap<VrrpKey, VrrpTimer, 4096> = btf_maps::HashMap::new();

const CLOCK_MONOTONIC: u64 = 1;
/// bpf_ringbuf_output's flag to notify the reader at once.
const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// The master-down timer fired: no advert from a router to follow for the backup's
/// Master_Down_Interval. Tell lbd.
extern "C" fn vrrp_timer_fired(
    _map: *mut core::ffi::c_void,
    _key: *mut VrrpKey,
    timer: *mut VrrpTimer,
) -> i32 {
    // SAFETY: the kernel passes the entry whose timer fired; it is valid during the callback.
    let key = unsafe { (*timer).key };
    // Rare and urgent: wake the reader now rather than through the adaptive notification.
    let _full = LB_VRRP_EVENTS.output(key, BPF_RB_FORCE_WAKEUP);
    0
}

/// Re-arms `key`'s master-down timer to `down_ns` from now, creating it on first use.
#[inline(always)]
fn arm(key: &VrrpKey, down_ns: u64) {
    if LB_VRRP_TIMERS.get_ptr_mut(key).is_none() {
        let fresh = VrrpTimer {
            timer: bpf_timer { __opaque: [0; 2] },
            key: *key,
            armed: 0,
            _pad: 0,
        };
        let _full = LB_VRRP_TIMERS.insert(key, &fresh, 0);
    }
    let Some(entry) = LB_VRRP_TIMERS.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: the entry is a live map value for the program's run; the timer helpers take the
    // map the timer lives in and the callback as a BPF subprogram.
    unsafe {
        let timer = core::ptr::addr_of_mut!((*entry).timer);
        if (*entry).armed == 0 {
            let map = core::ptr::from_ref(&LB_VRRP_TIMERS).cast_mut().cast();
            if bpf_timer_init(timer, map, CLOCK_MONOTONIC) != 0 {
                return;
            }
            bpf_timer_set_callback(timer, vrrp_timer_fired as *mut core::ffi::c_void);
            (*entry).armed = 1;
        }
        bpf_timer_start(timer, down_ns, 0);
    }
}

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
/// IPv4 flags/fragment-offset field: MF bit and offset mask (DF is fine).
const IPV4_MF_OR_OFFSET: u16 = 0x3fff;
/// IPv4 don't-fragment bit.
const IPV4_DF: u16 = 0x4000;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_ACK: u8 = 0x10;
/// TTL / hop limit of the packets the program builds (outer headers, ICMP errors).
const DEFAULT_TTL: u8 = 64;
/// An ICMP error quotes the offending IPv4 header and 8 bytes of its payload (RFC 792).
const ICMP4_QUOTE: usize = IPV4_HLEN + 8;
/// An ICMPv6 packet-too-big quotes the IPv6 header and 8 bytes of its payload (as Katran; the
/// real server's reply path never needs more to find the socket).
const ICMP6_QUOTE: usize = IPV6_HLEN + 8;

/// Why a packet is passed on: the counter slot to bump.
type Verdict = Result<u32, Counter>;

/// A [`Verdict`] in one register: what the program's BPF functions return. Returned as the
/// `Result` (two 32-bit words), it goes through a stack slot that LLVM may store as one
/// misaligned 64-bit word, which the verifier refuses.
#[repr(transparent)]
struct Packed(u64);

impl Packed {
    #[inline(always)]
    fn of(verdict: Verdict) -> Self {
        Self(match verdict {
            Ok(action) => u64::from(action),
            Err(counter) => 1 << 32 | counter as u64,
        })
    }

    #[inline(always)]
    fn verdict(self) -> Verdict {
        if self.0 >> 32 == 0 {
            return Ok(self.0 as u32);
        }
        // SAFETY: only `of` makes a Packed, and an error's low word is always a `Counter`'s
        // discriminant there. (A lookup in `Counter::ALL` would need a bounds check that
        // 6.1's verifier loses track of.)
        Err(unsafe { core::mem::transmute::<u32, Counter>(self.0 as u32) })
    }
}

/// A bounds-checked pointer to a `T` at `offset` from the start of the packet.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*mut T, Counter> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return Err(Counter::Truncated);
    }
    Ok((start + offset) as *mut T)
}

/// Whether the frame holds `len` bytes from `offset`. Compared as lengths, never as a packet
/// pointer plus `len`: `len` comes from a header, and older verifiers (6.1) do not bound the
/// result of a byte swap, so they refuse pointer arithmetic with it.
#[inline(always)]
fn holds(ctx: &XdpContext, offset: usize, len: usize) -> bool {
    let frame = ctx.data_end() - ctx.data();
    offset <= frame && len <= frame - offset
}

/// Reads a big-endian u16 at `offset`.
#[inline(always)]
fn be16_at(ctx: &XdpContext, offset: usize) -> Result<u16, Counter> {
    // SAFETY: ptr_at checked that the two bytes are inside the packet; u16 reads of packet
    // data are allowed unaligned by the verifier for XDP.
    Ok(u16::from_be(unsafe {
        core::ptr::read_unaligned(ptr_at::<u16>(ctx, offset)?)
    }))
}

/// Copies `N` bytes out of the packet at `offset`.
#[inline(always)]
fn read<const N: usize>(ctx: &XdpContext, offset: usize) -> Result<[u8; N], Counter> {
    // SAFETY: ptr_at checked the `N` bytes are inside the packet.
    Ok(unsafe { core::ptr::read_unaligned(ptr_at::<[u8; N]>(ctx, offset)?) })
}

/// Writes `bytes` into the packet at `offset`.
#[inline(always)]
fn write<const N: usize>(ctx: &XdpContext, offset: usize, bytes: &[u8; N]) -> Result<(), Counter> {
    // SAFETY: ptr_at checked the `N` bytes are inside the packet.
    unsafe { core::ptr::write_unaligned(ptr_at::<[u8; N]>(ctx, offset)?, *bytes) };
    Ok(())
}

#[inline(always)]
fn bump(counter: Counter) {
    if let Some(slot) = LB_COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
fn add_traffic(stats: Option<*mut VipStats>, bytes: u64) {
    if let Some(stats) = stats {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe {
            (*stats).packets += 1;
            (*stats).bytes += bytes;
        }
    }
}

/// Forwards VIP traffic; passes the rest to the kernel.
#[xdp]
fn lb_xdp(ctx: XdpContext) -> u32 {
    // `Counter::Seen` is not bumped: it is the sum of the outcomes, which user space adds up
    // (one map write fewer per packet).
    match try_lb_xdp(&ctx) {
        Ok(action) => action,
        Err(counter) => {
            bump(counter);
            xdp_action::XDP_PASS
        }
    }
}

#[inline(always)]
fn try_lb_xdp(ctx: &XdpContext) -> Verdict {
    let ethertype = be16_at(ctx, 12)?;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        const L3: usize = ETH_HLEN + VLAN_HLEN;
        return match be16_at(ctx, ETH_HLEN + 2)? {
            ETH_P_IP => tagged::<L3, { L3 + IPV4_HLEN }, false>(ctx).verdict(),
            ETH_P_IPV6 => tagged::<L3, { L3 + IPV6_HLEN }, true>(ctx).verdict(),
            _ => Err(Counter::NotIp),
        };
    }
    match ethertype {
        ETH_P_IP => ipv4::<ETH_HLEN, { ETH_HLEN + IPV4_HLEN }>(ctx),
        ETH_P_IPV6 => ipv6::<ETH_HLEN, { ETH_HLEN + IPV6_HLEN }>(ctx),
        _ => Err(Counter::NotIp),
    }
}

/// A packet behind a VLAN tag: [`ipv6`] or [`ipv4`] as its own BPF function.
///
/// Untagged IPv4 and IPv6, the common case, are inlined into `lb_xdp`: a BPF-to-BPF call
/// returns through the kernel's return thunk (this CPU runs the SRSO mitigation), which cost
/// every packet about 15 ns. Tagged packets go through these functions, whose frames sit on
/// `lb_xdp`'s: `lb_xdp` (248 bytes), a tagged IPv6 packet (224) and [`flow_victim`] (32) come
/// to 512 bytes with 6.1's rounding of frames to 32, the verifier's limit. A change that
/// grows them fails the program's load, which every XDP test does.
#[inline(never)]
fn tagged<const L3: usize, const L4: usize, const V6: bool>(ctx: &XdpContext) -> Packed {
    Packed::of(if V6 {
        ipv6::<L3, L4>(ctx)
    } else {
        ipv4::<L3, L4>(ctx)
    })
}

/// An IPv4 packet whose header starts at `L3` (and, without options, ends at `L4`).
#[inline(always)]
fn ipv4<const L3: usize, const L4: usize>(ctx: &XdpContext) -> Verdict {
    // SAFETY: ptr_at checked the header is inside the packet; it is only read here.
    let hdr = unsafe { &*ptr_at::<[u8; IPV4_HLEN]>(ctx, L3)? };
    if hdr[0] >> 4 != 4 || hdr[0] & 0x0f < 5 {
        return Err(Counter::BadHeader);
    }
    if hdr[0] & 0x0f != 5 {
        return Err(Counter::Ipv4Options);
    }
    let frag = u16::from_be_bytes([hdr[6], hdr[7]]);
    if frag & IPV4_MF_OR_OFFSET != 0 {
        return Err(Counter::Ipv4Fragment);
    }
    let proto = hdr[9];
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return Err(Counter::NotTcpUdp);
    }
    let ip_len = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    if ip_len < IPV4_HLEN || !holds(ctx, L3, ip_len) {
        return Err(Counter::BadHeader);
    }
    // IPv4-mapped: ::ffff:a.b.c.d.
    let mapped = u32::from_ne_bytes([0, 0, 0xff, 0xff]);
    // SAFETY: ptr_at checked the whole header, addresses included, is inside the packet.
    let (src, dst) = unsafe {
        let addrs = ptr_at::<[u32; 2]>(ctx, L3 + 12)?;
        (
            core::ptr::read_unaligned(addrs.cast::<u32>()),
            core::ptr::read_unaligned(addrs.cast::<u32>().add(1)),
        )
    };
    let flow = FlowKey {
        src: [0, 0, mapped, src],
        dst: [0, 0, mapped, dst],
        proto,
        ..FlowKey::default()
    };
    vip_packet::<L3, L4, false>(ctx, flow, ip_len, frag & IPV4_DF != 0)
}

/// An IPv6 packet whose header starts at `L3` (and, without extension headers, ends at `L4`).
#[inline(always)]
fn ipv6<const L3: usize, const L4: usize>(ctx: &XdpContext) -> Verdict {
    // SAFETY: ptr_at checked the header is inside the packet; it is only read here.
    let hdr = unsafe { &*ptr_at::<[u8; IPV6_HLEN]>(ctx, L3)? };
    if hdr[0] >> 4 != 6 {
        return Err(Counter::BadHeader);
    }
    let next = hdr[6];
    if next != IPPROTO_TCP && next != IPPROTO_UDP {
        return Err(if is_ipv6_ext_header(next) {
            Counter::Ipv6ExtHeader
        } else {
            Counter::NotTcpUdp
        });
    }
    let ip_len = IPV6_HLEN + usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
    if !holds(ctx, L3, ip_len) {
        return Err(Counter::BadHeader);
    }
    // SAFETY: ptr_at checked the whole header, addresses included, is inside the packet.
    let (src, dst) = unsafe {
        (
            core::ptr::read_unaligned(ptr_at::<[u32; 4]>(ctx, L3 + 8)?),
            core::ptr::read_unaligned(ptr_at::<[u32; 4]>(ctx, L3 + 24)?),
        )
    };
    let flow = FlowKey {
        src,
        dst,
        proto: next,
        ..FlowKey::default()
    };
    // IPv6 routers never fragment: a packet too big is always answered.
    vip_packet::<L3, L4, true>(ctx, flow, ip_len, true)
}

/// Hop-by-hop, routing, fragment, ESP, AH, destination options, mobility, HIP, shim6.
#[inline(always)]
fn is_ipv6_ext_header(next: u8) -> bool {
    matches!(next, 0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140)
}

/// Exact (address, port, protocol) first, then the port-0 wildcard.
#[inline(always)]
fn lookup_vip(dst: &[u32; 4], port_be: u16, proto: u8) -> Option<VipInfo> {
    let (addr_lo, addr_hi) = VipSlot::addr_words_of(dst);
    find_vip(addr_lo, addr_hi, port_be, proto).or_else(|| find_vip(addr_lo, addr_hi, 0, proto))
}

/// Probes the VIP table from the VIP's home slot to the first empty slot, at most
/// [`VIP_PROBES`] slots (lbd places every VIP within them). Reads each slot's `key` word
/// first: lbd publishes a slot by that word, written last.
#[inline(always)]
fn find_vip(addr_lo: u64, addr_hi: u64, port_be: u16, proto: u8) -> Option<VipInfo> {
    let wanted = VipSlot::key_word(port_be, proto, VIP_SLOT_USED);
    let mut index = vip_hash(addr_lo, addr_hi, port_be, proto);
    for _ in 0..VIP_PROBES {
        index &= VIP_SLOTS - 1;
        let slot = LB_VIPS.get_ptr(index)?;
        // SAFETY: a live map value; volatile keeps the key word's read first.
        unsafe {
            let key = core::ptr::read_volatile(core::ptr::addr_of!((*slot).key));
            if key == wanted
                && core::ptr::read_volatile(core::ptr::addr_of!((*slot).addr_lo)) == addr_lo
                && core::ptr::read_volatile(core::ptr::addr_of!((*slot).addr_hi)) == addr_hi
            {
                let info = core::ptr::read_volatile(core::ptr::addr_of!((*slot).info));
                return Some(VipSlot::info_of(info));
            }
            if VipSlot::state(key) == VIP_SLOT_EMPTY {
                return None;
            }
        }
        index += 1;
    }
    None
}

/// Whether the stored key at `stored` is `flow`, compared a word at a time in place (a copy
/// of the key would cost stack, which the program has little of).
///
/// # Safety
/// `stored` points to a live map value.
#[inline(always)]
unsafe fn same_flow(stored: *const FlowKey, flow: &FlowKey) -> bool {
    let words = stored.cast::<u32>();
    let wanted = core::ptr::from_ref(flow).cast::<u32>();
    let mut i = 0;
    while i < size_of::<FlowKey>() / 4 {
        // SAFETY: both point to FlowKeys (u32-aligned, 40 bytes, no padding bytes).
        if unsafe { *words.add(i) != *wanted.add(i) } {
            return false;
        }
        i += 1;
    }
    true
}

/// Stores `flow` at `stored` a word at a time, in place.
///
/// # Safety
/// `stored` points to a live map value.
#[inline(always)]
unsafe fn write_flow(stored: *mut FlowKey, flow: &FlowKey) {
    let words = stored.cast::<u32>();
    let from = core::ptr::from_ref(flow).cast::<u32>();
    let mut i = 0;
    while i < size_of::<FlowKey>() / 4 {
        // SAFETY: both point to FlowKeys (u32-aligned, 40 bytes, no padding bytes).
        unsafe { core::ptr::write_volatile(words.add(i), *from.add(i)) };
        i += 1;
    }
}

/// The way of set `index` that holds `flow`, if one does. The ways are screened by their
/// `check` alone (the flow's hash with their real server), and only the way that passes has
/// its key compared: one key compare, not four.
#[inline(always)]
fn find_in_set(index: u32, flow: &FlowKey, hash: u32) -> Option<*mut FlowWay> {
    let set = LB_FLOWS.get_ptr_mut(index)?;
    let mut way = 0;
    while way < FLOW_WAYS {
        // SAFETY: a live map value; way < FLOW_WAYS. Plain data, checked by `check`.
        let entry = unsafe { core::ptr::addr_of_mut!((*set).ways[way]) };
        // SAFETY: as above.
        let (real, check) = unsafe { ((*entry).real, (*entry).check) };
        if real != 0 && check == hash ^ real {
            // SAFETY: as above.
            if unsafe { same_flow(core::ptr::addr_of!((*entry).key), flow) } {
                return Some(entry);
            }
            return None;
        }
        way += 1;
    }
    None
}

/// The way of `set` a new flow would take (a free one, else the one seen longest ago), as
/// `free << 34 | age << 2 | way`: how many ways are free and how long ago the way was seen
/// (`u32::MAX`: free). Compared without the way, a larger value is the better set. One
/// number: the scans of two sets then fit the BPF registers with little spilled, which keeps
/// [`flow_victim`]'s stack frame small.
///
/// # Safety
/// `set` points to a live map value.
#[inline(always)]
unsafe fn victim_in_set(set: *const FlowSet, now: u32) -> u64 {
    let mut victim = 0;
    let mut oldest = 0;
    let mut free = 0u64;
    let mut way = 0;
    while way < FLOW_WAYS {
        // SAFETY: a live map value (the caller's promise); way < FLOW_WAYS.
        let (real, stamp) = unsafe { ((*set).ways[way].real, (*set).ways[way].stamp) };
        let age = if real == 0 {
            free += 1;
            u32::MAX
        } else {
            now.wrapping_sub(stamp)
        };
        if age > oldest || way == 0 {
            victim = way;
            oldest = age;
        }
        way += 1;
    }
    free << 34 | u64::from(oldest) << 2 | victim as u64
}

// A way is two bits of `flow_victim`'s answer.
const _: () = assert!(FLOW_WAYS.is_power_of_two() && FLOW_WAYS <= 4);

/// Where a new flow of hash `hash` goes: `set << 2 | way`, `u64::MAX` if the table is
/// missing. A flow may be in either of its two sets ([`flow_sets`]): a new one goes to the
/// set with more free ways (the power of two choices keeps sets even), and when both are
/// full it takes the way of the two seen longest ago.
///
/// Its own BPF function returning a number: the verifier then carries one state out of it,
/// not one for each way the scans could pick (inlined, they took it past its 1 M
/// instructions). Only a new flow pays the call. Both sets are looked up before either is
/// scanned, each with its own early return: LLVM may otherwise merge the two misses into
/// one path that spills a register the verifier sees as unset.
#[inline(never)]
fn flow_victim(hash: u32, now: u32) -> u64 {
    const WAY: u64 = FLOW_WAYS as u64 - 1;
    let [first, second] = flow_sets(hash);
    let Some(a) = LB_FLOWS.get_ptr(first) else {
        return u64::MAX;
    };
    let Some(b) = LB_FLOWS.get_ptr(second) else {
        return u64::MAX;
    };
    // SAFETY: both are live map values.
    let (a, b) = unsafe { (victim_in_set(a, now), victim_in_set(b, now)) };
    // More free ways first, then the way seen longest ago; the first set on a tie.
    if b >> 2 > a >> 2 {
        u64::from(second) << 2 | b & WAY
    } else {
        u64::from(first) << 2 | a & WAY
    }
}

/// A flow's way in the connection table, and whether it holds the flow (else it is the way
/// to write the flow into).
#[inline(always)]
fn flow_way(flow: &FlowKey, hash: u32, now: u32) -> Option<(*mut FlowWay, bool)> {
    let [first, second] = flow_sets(hash);
    if let Some(way) = find_in_set(first, flow, hash).or_else(|| find_in_set(second, flow, hash)) {
        return Some((way, true));
    }
    let place = flow_victim(hash, now);
    let set = LB_FLOWS.get_ptr_mut((place >> 2) as u32)?;
    let way = place as usize % FLOW_WAYS;
    // SAFETY: a live map value; way < FLOW_WAYS.
    Some((unsafe { core::ptr::addr_of_mut!((*set).ways[way]) }, false))
}

/// The real server `id` if the id is in use.
#[inline(always)]
fn real(id: u32) -> Option<RealInfo> {
    LB_REALS.get(id).copied().filter(|r| r.family != 0)
}

/// A TCP or UDP packet with its addresses in `flow`: forwarded if it is addressed to a VIP
/// with a live real server.
#[inline(always)]
fn vip_packet<const L3: usize, const L4: usize, const V6: bool>(
    ctx: &XdpContext,
    mut flow: FlowKey,
    ip_len: usize,
    dont_fragment: bool,
) -> Verdict {
    // TCP and UDP both start with the two ports.
    let ports: [u8; 4] = read(ctx, L4)?;
    flow.sport_be = u16::from_ne_bytes([ports[0], ports[1]]);
    flow.dport_be = u16::from_ne_bytes([ports[2], ports[3]]);
    let mut starts_flow = false;
    if flow.proto == IPPROTO_TCP {
        let flags: [u8; 1] = read(ctx, L4 + 13)?;
        starts_flow = flags[0] & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN;
    }
    let vip = lookup_vip(&flow.dst, flow.dport_be, flow.proto).ok_or(Counter::NotVip)?;
    let frame_len = (ctx.data_end() - ctx.data()) as u64;
    add_traffic(LB_VIP_STATS.get_ptr_mut(vip.index), frame_len);
    let settings = LB_SETTINGS.get_ptr(0).ok_or(Counter::NoRealServer)?;

    let hash = flow_hash(&flow);
    // Jiffies (inlined by the verifier) order a set's ways by when they were last seen.
    // SAFETY: helper with no arguments.
    let now = unsafe { bpf_jiffies64() } as u32;
    let (way, found) = flow_way(&flow, hash, now).ok_or(Counter::NoRealServer)?;
    // An established flow keeps its real server while that id is in use; a TCP SYN always
    // hashes afresh.
    let mut chosen = None;
    if found && !starts_flow {
        // SAFETY: a live map value.
        let (id, stamp) = unsafe { ((*way).real, (*way).stamp) };
        chosen = real(id).map(|r| (id, r));
        if chosen.is_some() && stamp != now {
            // SAFETY: as above; the stamp is outside the check.
            unsafe { (*way).stamp = now };
        }
    }
    // `FlowHit` is not bumped: user space derives it (forwarded packets that were not new).
    let new_flow = chosen.is_none();
    let (id, real) = match chosen {
        Some(found) => found,
        None => {
            // SAFETY: a live map value, copied out.
            let ring = unsafe { (*settings).ring_size };
            if ring == 0 {
                return Err(Counter::NoRealServer);
            }
            let slot = vip.index.wrapping_mul(ring).wrapping_add(hash % ring);
            let pair = *LB_RINGS.get(slot / 2).ok_or(Counter::NoRealServer)?;
            let id = (pair >> (32 * (slot % 2))) as u32;
            let real = real(id).ok_or(Counter::NoRealServer)?;
            // The check last: until it is written, the way reads as torn (a miss).
            // SAFETY: a live map value.
            unsafe {
                core::ptr::write_volatile(core::ptr::addr_of_mut!((*way).check), 0);
                core::ptr::write_volatile(core::ptr::addr_of_mut!((*way).stamp), now);
                write_flow(core::ptr::addr_of_mut!((*way).key), &flow);
                core::ptr::write_volatile(core::ptr::addr_of_mut!((*way).real), id);
                core::ptr::write_volatile(core::ptr::addr_of_mut!((*way).check), hash ^ id);
            }
            (id, real)
        }
    };
    let family = if V6 { 6 } else { 4 };
    if real.family != family {
        return Err(Counter::NoRealServer);
    }
    let action = if vip.flags & VIP_F_ENCAP != 0 {
        // SAFETY: a live map value, read in place.
        let settings = unsafe { &*settings };
        let outer = if V6 { IPV6_HLEN } else { IPV4_HLEN };
        if ip_len + outer > settings.mtu as usize {
            if !dont_fragment {
                return Err(Counter::TooBigPassed);
            }
            let action = if V6 {
                packet_too_big_v6::<L3>(ctx, settings.mtu).verdict()?
            } else {
                fragmentation_needed_v4::<L3>(ctx, settings.mtu).verdict()?
            };
            bump(Counter::TooBig);
            return Ok(action);
        }
        let source = encap_source::<V6>(settings, hash);
        encapsulate::<L3, V6>(ctx, &real, &source, ip_len)?
    } else {
        write(ctx, 0, &macs(&real))?;
        bump(Counter::ForwardedDr);
        out_of(ctx, &real)
    };
    if new_flow {
        bump(Counter::FlowNew);
    }
    add_traffic(LB_REAL_STATS.get_ptr_mut(id), frame_len);
    Ok(action)
}

/// Destination then source MAC of a frame to `real`.
#[inline(always)]
fn macs(real: &RealInfo) -> [u8; 12] {
    let mut m = [0u8; 12];
    m[..6].copy_from_slice(&real.mac);
    m[6..].copy_from_slice(&real.src_mac);
    m
}

/// `XDP_TX` when the real server is reached through the interface the packet came in on, else
/// a redirect to its interface.
#[inline(always)]
fn out_of(ctx: &XdpContext, real: &RealInfo) -> u32 {
    if real.ifindex as usize == ctx.ingress_ifindex() {
        return xdp_action::XDP_TX;
    }
    // SAFETY: helper call with plain integers; it returns XDP_REDIRECT or XDP_ABORTED.
    unsafe { bpf_redirect(real.ifindex, 0) as u32 }
}

/// The outer source address of an encapsulated flow (IPv4-mapped for IPv4): the configured
/// one, with the configured bits taken from the flow's hash.
#[inline(always)]
fn encap_source<const V6: bool>(settings: &Settings, hash: u32) -> [u8; 16] {
    let spread = hash.to_ne_bytes();
    let mut source = [0u8; 16];
    let (base, mask) = if V6 {
        source[..12].copy_from_slice(&settings.encap_src_v6[..12]);
        let mut base = [0u8; 4];
        base.copy_from_slice(&settings.encap_src_v6[12..]);
        (base, settings.encap_src_v6_hash_mask)
    } else {
        (settings.encap_src_v4, settings.encap_src_v4_hash_mask)
    };
    let mut i = 0;
    while i < 4 {
        source[12 + i] = base[i] | (spread[i] & mask[i]);
        i += 1;
    }
    source
}

/// Prepends an outer IPv4 (IPIP) or IPv6 (IP6IP6) header from `source` to `real` (the caller
/// checked the result fits the MTU).
///
/// Inlined into its caller: a BPF-to-BPF call returns through the kernel's return thunk (this
/// CPU runs the SRSO mitigation), and the call cost the IPIP path about 10 ns a packet
/// (`cargo xtask bench xdp`: 137-151 ns against 129-131 inlined, the floor 68).
#[inline(always)]
fn encapsulate<const L3: usize, const V6: bool>(
    ctx: &XdpContext,
    real: &RealInfo,
    source: &[u8; 16],
    ip_len: usize,
) -> Verdict {
    let outer = if V6 { IPV6_HLEN } else { IPV4_HLEN };
    // The inner header's first bytes, read before the frame moves.
    let inner: [u8; 4] = read(ctx, L3)?;
    // The EtherType, or the VLAN tag and the EtherType: they move to the new front (the outer
    // header has the inner one's family, so the EtherType stays).
    let link: [u8; 6] = read(ctx, ETH_HLEN - 2)?;
    // SAFETY: helper call on this program's own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(outer as i32)) } != 0 {
        return Err(Counter::AdjustFailed);
    }
    write(ctx, 0, &macs(real))?;
    if L3 > ETH_HLEN {
        write(ctx, ETH_HLEN - 2, &link)?;
    } else {
        write(ctx, ETH_HLEN - 2, &[link[0], link[1]])?;
    }
    if V6 {
        let mut h = [0u8; IPV6_HLEN];
        // Version 6; the inner traffic class and flow label carry over.
        h[0] = inner[0];
        h[1] = inner[1];
        h[2] = inner[2];
        h[3] = inner[3];
        h[4..6].copy_from_slice(&(ip_len as u16).to_be_bytes());
        h[6] = IPPROTO_IPV6;
        h[7] = DEFAULT_TTL;
        h[8..24].copy_from_slice(source);
        h[24..40].copy_from_slice(&real.addr);
        write(ctx, L3, &h)?;
    } else {
        let mut h = [0u8; IPV4_HLEN];
        h[0] = 0x45;
        h[1] = inner[1];
        h[2..4].copy_from_slice(&((ip_len + IPV4_HLEN) as u16).to_be_bytes());
        h[8] = DEFAULT_TTL;
        h[9] = IPPROTO_IPIP;
        h[12..16].copy_from_slice(&source[12..]);
        h[16..20].copy_from_slice(&real.addr[12..16]);
        let sum = checksum(&h, 0);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        write(ctx, L3, &h)?;
    }
    bump(Counter::ForwardedEncap);
    Ok(out_of(ctx, real))
}

/// The Internet checksum of `bytes` (even length) on top of the partial sum `sum`.
#[inline(always)]
fn checksum<const N: usize>(bytes: &[u8; N], sum: u32) -> u16 {
    fold(sum + sum16(bytes))
}

/// The one's-complement sum of `bytes` (even length) as 16-bit words, unfolded.
#[inline(always)]
fn sum16<const N: usize>(bytes: &[u8; N]) -> u32 {
    let mut sum = 0u32;
    let mut i = 0;
    while i + 1 < N {
        sum += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        i += 2;
    }
    sum
}

/// Folds a 32-bit sum to the 16-bit checksum.
#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The unfolded 16-bit-word sum of `N` packet bytes at `offset`, read in place.
#[inline(always)]
fn sum_packet<const N: usize>(ctx: &XdpContext, offset: usize) -> Result<u32, Counter> {
    let start = ptr_at::<[u8; N]>(ctx, offset)?.cast::<u8>();
    let mut sum = 0u32;
    let mut i = 0;
    // One 16-bit load and add per word: the sum stays in a register.
    while i + 1 < N {
        // SAFETY: ptr_at checked the `N` bytes are inside the packet; i + 1 < N.
        let word = unsafe { core::ptr::read_unaligned(start.add(i).cast::<u16>()) };
        sum += u32::from(u16::from_be(word));
        i += 2;
    }
    Ok(sum)
}

/// Copies `N` bytes inside the packet from `from` to `to` (regions that do not overlap).
#[inline(always)]
fn move_within<const N: usize>(ctx: &XdpContext, from: usize, to: usize) -> Result<(), Counter> {
    let src = ptr_at::<[u8; N]>(ctx, from)?;
    let dst = ptr_at::<[u8; N]>(ctx, to)?;
    // SAFETY: both ranges were bounds-checked; the callers' offsets never overlap.
    unsafe { core::ptr::copy_nonoverlapping(src, dst, 1) };
    Ok(())
}

/// Grows the frame by `grow` bytes in front and cuts it to `keep` bytes: the room for the
/// headers of an ICMP error in front of the part of the original it quotes.
#[inline(always)]
fn make_room(ctx: &XdpContext, grow: usize, keep: usize) -> Result<(), Counter> {
    // SAFETY: helper call on this program's own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(grow as i32)) } != 0 {
        return Err(Counter::AdjustFailed);
    }
    let len = ctx.data_end() - ctx.data();
    if len < keep {
        return Err(Counter::Truncated);
    }
    // SAFETY: helper call on this program's own context.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, -((len - keep) as i32)) } != 0 {
        return Err(Counter::AdjustFailed);
    }
    Ok(())
}

/// Turns the frame into an ICMP fragmentation-needed error back to its sender (RFC 1191),
/// quoting its IPv4 header and first 8 payload bytes; `XDP_TX`.
#[inline(never)]
fn fragmentation_needed_v4<const L3: usize>(ctx: &XdpContext, mtu: u32) -> Packed {
    Packed::of((|| -> Verdict {
        const NEW_HDRS: usize = IPV4_HLEN + 8;
        make_room(ctx, NEW_HDRS, L3 + NEW_HDRS + ICMP4_QUOTE)?;
        // The original frame now starts at NEW_HDRS, its IPv4 header (the quote) at
        // L3 + NEW_HDRS, right where an ICMP error carries it: answer from its destination to
        // its source.
        reply_ethernet::<L3>(ctx, NEW_HDRS, ETH_P_IP)?;
        let quote = L3 + NEW_HDRS;
        write(
            ctx,
            L3,
            &[0x45, 0, 0, 0, 0, 0, 0, 0, DEFAULT_TTL, IPPROTO_ICMP, 0, 0],
        )?;
        write(
            ctx,
            L3 + 2,
            &((NEW_HDRS + ICMP4_QUOTE) as u16).to_be_bytes(),
        )?;
        move_within::<4>(ctx, quote + 16, L3 + 12)?;
        move_within::<4>(ctx, quote + 12, L3 + 16)?;
        let sum = fold(sum_packet::<IPV4_HLEN>(ctx, L3)?);
        write(ctx, L3 + 10, &sum.to_be_bytes())?;
        // Destination unreachable, fragmentation needed and DF set, the next-hop MTU the sender
        // must fit: the inner packet's room.
        let room = (mtu.wrapping_sub(IPV4_HLEN as u32) as u16).to_be_bytes();
        write(ctx, L3 + IPV4_HLEN, &[3, 4, 0, 0, 0, 0, room[0], room[1]])?;
        let sum = fold(sum_packet::<{ 8 + ICMP4_QUOTE }>(ctx, L3 + IPV4_HLEN)?);
        write(ctx, L3 + IPV4_HLEN + 2, &sum.to_be_bytes())?;
        Ok(xdp_action::XDP_TX)
    })())
}

/// Turns the frame into an ICMPv6 packet-too-big error back to its sender (RFC 4443 §3.2),
/// quoting its IPv6 header and first 8 payload bytes; `XDP_TX`.
#[inline(never)]
fn packet_too_big_v6<const L3: usize>(ctx: &XdpContext, mtu: u32) -> Packed {
    Packed::of((|| -> Verdict {
        const NEW_HDRS: usize = IPV6_HLEN + 8;
        const PAYLOAD: u16 = (8 + ICMP6_QUOTE) as u16;
        make_room(ctx, NEW_HDRS, L3 + NEW_HDRS + ICMP6_QUOTE)?;
        reply_ethernet::<L3>(ctx, NEW_HDRS, ETH_P_IPV6)?;
        let quote = L3 + NEW_HDRS;
        let len = PAYLOAD.to_be_bytes();
        write(
            ctx,
            L3,
            &[0x60, 0, 0, 0, len[0], len[1], IPPROTO_ICMPV6, DEFAULT_TTL],
        )?;
        move_within::<16>(ctx, quote + 24, L3 + 8)?;
        move_within::<16>(ctx, quote + 8, L3 + 24)?;
        let room = mtu.wrapping_sub(IPV6_HLEN as u32).to_be_bytes();
        write(
            ctx,
            L3 + IPV6_HLEN,
            &[2, 0, 0, 0, room[0], room[1], room[2], room[3]],
        )?;
        // Over the pseudo-header (source, destination, upper-layer length, next header) and the
        // message.
        let sum = sum_packet::<32>(ctx, L3 + 8)?
            + u32::from(PAYLOAD)
            + u32::from(IPPROTO_ICMPV6)
            + sum_packet::<{ 8 + ICMP6_QUOTE }>(ctx, L3 + IPV6_HLEN)?;
        write(ctx, L3 + IPV6_HLEN + 2, &fold(sum).to_be_bytes())?;
        Ok(xdp_action::XDP_TX)
    })())
}

/// Writes the Ethernet header (and VLAN tag) of a reply to the frame whose own Ethernet
/// header now starts at `old`: MACs swapped, EtherType `ethertype`.
#[inline(always)]
fn reply_ethernet<const L3: usize>(
    ctx: &XdpContext,
    old: usize,
    ethertype: u16,
) -> Result<(), Counter> {
    move_within::<6>(ctx, old + 6, 0)?;
    move_within::<6>(ctx, old, 6)?;
    if L3 > ETH_HLEN {
        move_within::<4>(ctx, old + ETH_HLEN - 2, ETH_HLEN - 2)?;
    }
    write(ctx, L3 - 2, &ethertype.to_be_bytes())
}

/// Records every VRRP advert arriving on the interface in `LB_VRRP_SEEN`, as it arrives,
/// whatever lbd's VRRP driver is doing; always lets the packet through (the driver still
/// receives it). Only what a router must check before anything else is checked here: IP
/// protocol 112, TTL / hop limit 255 (RFC 9568 §7.1: a packet from off-link never counts),
/// version 2 or 3, type ADVERTISEMENT; the driver uses the record only for the router it has
/// already heard through the full checks.
#[classifier]
fn lb_vrrp_tc(ctx: TcContext) -> i32 {
    let _recorded = try_lb_vrrp_tc(&ctx);
    TC_ACT_OK
}

/// A bounds-checked pointer to a `T` at `offset` from the start of the frame (TC).
#[inline(always)]
fn tc_ptr_at<T>(ctx: &TcContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

#[inline(always)]
fn try_lb_vrrp_tc(ctx: &TcContext) -> Option<()> {
    let eth: *const [u8; ETH_HLEN] = tc_ptr_at(ctx, 0)?;
    // SAFETY: tc_ptr_at checked the header is inside the frame.
    let eth = unsafe { &*eth };
    let mut l3 = ETH_HLEN;
    let mut ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        let tag: *const [u8; VLAN_HLEN] = tc_ptr_at(ctx, ETH_HLEN)?;
        // SAFETY: as above.
        let tag = unsafe { &*tag };
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        l3 += VLAN_HLEN;
    }
    let mut key = VrrpKey {
        // SAFETY: the context's skb pointer is valid for the program's run.
        ifindex: unsafe { (*ctx.skb.skb).ifindex },
        ..VrrpKey::default()
    };
    let mut sender = [0u8; 16];
    let vrrp = match ethertype {
        ETH_P_IP => {
            let hdr: *const [u8; IPV4_HLEN] = tc_ptr_at(ctx, l3)?;
            // SAFETY: as above.
            let hdr = unsafe { &*hdr };
            if hdr[9] != IPPROTO_VRRP || hdr[8] != 255 || hdr[0] >> 4 != 4 {
                return None;
            }
            sender[10] = 0xff;
            sender[11] = 0xff;
            sender[12..16].copy_from_slice(&hdr[12..16]);
            key.family = 4;
            l3 + usize::from(hdr[0] & 0x0f) * 4
        }
        ETH_P_IPV6 => {
            let hdr: *const [u8; IPV6_HLEN] = tc_ptr_at(ctx, l3)?;
            // SAFETY: as above.
            let hdr = unsafe { &*hdr };
            if hdr[6] != IPPROTO_VRRP || hdr[7] != 255 || hdr[0] >> 4 != 6 {
                return None;
            }
            sender.copy_from_slice(&hdr[8..24]);
            key.family = 6;
            l3 + IPV6_HLEN
        }
        _ => return None,
    };
    // Bounded for the verifier: IHL is at most 15 words.
    if vrrp > l3 + 60 {
        return None;
    }
    let head: *const [u8; 8] = tc_ptr_at(ctx, vrrp)?;
    // SAFETY: as above.
    let head = unsafe { &*head };
    let version = head[0] >> 4;
    if head[0] & 0x0f != 1 || !(version == 2 || version == 3) {
        return None;
    }
    key.vrid = head[1];
    let interval_cs = if version == 2 {
        u16::from(head[5]) * 100
    } else {
        u16::from_be_bytes([head[4], head[5]]) & 0x0fff
    };
    // SAFETY: helper with no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let seen = VrrpSeen {
        count: 1,
        last_ns: now,
        sender,
        priority: head[2],
        version,
        interval_cs,
        _pad: [0; 4],
    };
    // A backup of lbd watches this router: an advert it would follow re-arms its timer.
    // SAFETY: the value is copied out at once.
    if let Some(watched) = unsafe { LB_VRRP_WATCHED.get(&key) }
        && seen.priority != 0
        && seen.priority >= watched.min_priority
    {
        arm(&key, watched.down_ns);
    }
    match LB_VRRP_SEEN.get_ptr_mut(&key) {
        Some(entry) => {
            // SAFETY: the map entry stays valid while the program runs. One router's adverts
            // come one at a time through one receive path, so the plain increment does not
            // race in practice (BPF has no 64-bit fetch-add through core here).
            unsafe {
                (*entry).count += 1;
                (*entry).last_ns = now;
                (*entry).sender = sender;
                (*entry).priority = seen.priority;
                (*entry).version = version;
                (*entry).interval_cs = interval_cs;
            }
        }
        None => {
            let _full = LB_VRRP_SEEN.insert(&key, &seen, 0);
        }
    }
    Some(())
}

/// The benchmark floor: swaps the MACs and returns `XDP_TX` (the least a forwarder does);
/// passes what is shorter than an Ethernet header.
#[xdp]
fn lb_xdp_floor(ctx: XdpContext) -> u32 {
    let Ok(macs) = read::<12>(&ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    let mut swapped = [0u8; 12];
    swapped[..6].copy_from_slice(&macs[6..]);
    swapped[6..].copy_from_slice(&macs[..6]);
    if write(&ctx, 0, &swapped).is_err() {
        return xdp_action::XDP_PASS;
    }
    xdp_action::XDP_TX
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
