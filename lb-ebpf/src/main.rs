//! lbd's XDP program.
//!
//! `lb_xdp` parses Ethernet (with at most one VLAN tag), IPv4 or IPv6, and TCP or UDP, looks the
//! destination up in `LB_VIPS` (exact port first, then the port-0 wildcard) and counts the packet
//! per VIP and per reason (`lb_common::Counter`). At this stage it forwards nothing: every packet
//! is passed on to the kernel (`XDP_PASS`), so attaching it can never break a director.
//!
//! Packet access goes through one bounds-checked [`ptr_at`]; anything the program does not
//! understand (fragments, IPv4 options, IPv6 extension headers, truncated headers) is counted and
//! passed up, never guessed at.
#![no_std]
#![no_main]
#![expect(
    unsafe_code,
    reason = "BPF programs read packets and maps through raw pointers"
)]

use aya_ebpf::{
    bindings::{TC_ACT_OK, bpf_timer, xdp_action},
    btf_maps,
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_timer_init, bpf_timer_set_callback, bpf_timer_start},
    },
    macros::{btf_map, classifier, map, xdp},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};
use lb_common::{
    Counter, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_VRRP, MAX_VIPS, MAX_VRRP_ROUTERS, VipInfo, VipKey,
    VipStats, VrrpKey, VrrpSeen, VrrpWatched,
};

#[map(name = "LB_VIPS")]
static LB_VIPS: HashMap<VipKey, VipInfo> = HashMap::with_max_entries(MAX_VIPS, 0);

#[map(name = "LB_VIP_STATS")]
static LB_VIP_STATS: PerCpuArray<VipStats> = PerCpuArray::with_max_entries(MAX_VIPS, 0);

#[map(name = "LB_COUNTERS")]
static LB_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

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

/// Why a packet could not be parsed to a VIP lookup: the counter slot to bump.
type Verdict = Result<(), Counter>;

/// A bounds-checked pointer to a `T` at `offset` from the start of the packet.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*const T, Counter> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return Err(Counter::Truncated);
    }
    Ok((start + offset) as *const T)
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

#[inline(always)]
fn bump(counter: Counter) {
    if let Some(slot) = LB_COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe { *slot += 1 };
    }
}

/// Counts every packet and passes it to the kernel.
#[xdp]
fn lb_xdp(ctx: XdpContext) -> u32 {
    bump(Counter::Seen);
    match try_lb_xdp(&ctx) {
        Ok(()) => bump(Counter::VipHit),
        Err(counter) => bump(counter),
    }
    xdp_action::XDP_PASS
}

#[inline(always)]
fn try_lb_xdp(ctx: &XdpContext) -> Verdict {
    let mut l3 = ETH_HLEN;
    let mut ethertype = be16_at(ctx, 12)?;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = be16_at(ctx, ETH_HLEN + 2)?;
        l3 += VLAN_HLEN;
    }
    let mut key = VipKey::default();
    let l4 = match ethertype {
        ETH_P_IP => parse_ipv4(ctx, l3, &mut key)?,
        ETH_P_IPV6 => parse_ipv6(ctx, l3, &mut key)?,
        _ => return Err(Counter::NotIp),
    };
    // TCP and UDP both carry the destination port at offset 2 of their header.
    key.port_be = u16::to_be(be16_at(ctx, l4 + 2)?);
    let info = lookup_vip(&mut key).ok_or(Counter::NotVip)?;
    if let Some(stats) = LB_VIP_STATS.get_ptr_mut(info.index) {
        let len = (ctx.data_end() - ctx.data()) as u64;
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe {
            (*stats).packets += 1;
            (*stats).bytes += len;
        }
    }
    Ok(())
}

/// Exact (address, port, protocol) first, then the port-0 wildcard.
#[inline(always)]
fn lookup_vip(key: &mut VipKey) -> Option<VipInfo> {
    // SAFETY: the map value is copied out at once; entries are plain data.
    if let Some(info) = unsafe { LB_VIPS.get(&*key) } {
        return Some(*info);
    }
    key.port_be = 0;
    // SAFETY: as above.
    unsafe { LB_VIPS.get(&*key) }.copied()
}

/// Fills the address and protocol of `key`; returns the L4 header offset.
#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, l3: usize, key: &mut VipKey) -> Result<usize, Counter> {
    let hdr: *const [u8; IPV4_HLEN] = ptr_at(ctx, l3)?;
    // SAFETY: ptr_at checked the whole fixed header is inside the packet.
    let hdr = unsafe { &*hdr };
    if hdr[0] >> 4 != 4 || hdr[0] & 0x0f < 5 {
        return Err(Counter::BadHeader);
    }
    if hdr[0] & 0x0f != 5 {
        return Err(Counter::Ipv4Options);
    }
    if u16::from_be_bytes([hdr[6], hdr[7]]) & IPV4_MF_OR_OFFSET != 0 {
        return Err(Counter::Ipv4Fragment);
    }
    let proto = hdr[9];
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return Err(Counter::NotTcpUdp);
    }
    key.addr[10] = 0xff;
    key.addr[11] = 0xff;
    key.addr[12..16].copy_from_slice(&hdr[16..20]);
    key.proto = proto;
    Ok(l3 + IPV4_HLEN)
}

/// Fills the address and protocol of `key`; returns the L4 header offset.
#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, l3: usize, key: &mut VipKey) -> Result<usize, Counter> {
    let hdr: *const [u8; IPV6_HLEN] = ptr_at(ctx, l3)?;
    // SAFETY: ptr_at checked the whole fixed header is inside the packet.
    let hdr = unsafe { &*hdr };
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
    key.addr.copy_from_slice(&hdr[24..40]);
    key.proto = next;
    Ok(l3 + IPV6_HLEN)
}

/// Hop-by-hop, routing, fragment, ESP, AH, destination options, mobility, HIP, shim6.
#[inline(always)]
fn is_ipv6_ext_header(next: u8) -> bool {
    matches!(next, 0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140)
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

/// The benchmark floor: returns `XDP_PASS` without touching the packet.
#[xdp]
fn lb_xdp_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
