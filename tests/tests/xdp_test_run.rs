//! The XDP program through BPF_PROG_TEST_RUN: a table of input frames with the expected
//! verdict, the expected output bytes, the counter slots each must move and the VIP and real
//! server it must count into.
//!
//! The expected frames are built here, independently of the program: direct routing rewrites
//! the MACs only; IPIP / IP6IP6 prepend an outer header from the configured source (its host
//! bits from `lb_common::flow_hash`) to the real server; a packet too big to encapsulate comes
//! back as an ICMP error to its sender. Malformed packets must pass unchanged, counted by
//! reason, never forwarded.
#![expect(
    unused_crate_dependencies,
    reason = "each target of lb-tests uses part of the package's dependencies; cargo cannot scope them"
)]

use std::net::{Ipv4Addr, Ipv6Addr};

use lb_common::{Counter, FlowKey, RealInfo, VIP_F_ENCAP, VipInfo, VipStats, flow_hash};
use lb_tests::packet::{
    ETH_P_IP, ETH_P_IPV6, FIXTURE_MACS, TCP_ACK, TCP_SYN, arp_request, ethernet, icmp_echo,
    icmpv6_checksum, internet_checksum, ipv4, ipv6, tcp, udp, with_macs,
};
use lbd::{
    dataplane::xdp::{Capacity, XdpDataplane, XdpMaps, vip_key},
    model::Protocol,
    reconcile::xdp::settings,
};

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;
/// The loopback interface: the frames "arrive" on it, and the real servers are reached
/// through it (so forwarding is XDP_TX), except `REAL_ELSEWHERE`.
const INGRESS: u32 = 1;
const RING: u32 = 13;
const MTU: u32 = 1500;

const VIP4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const WILDCARD4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const CLIENT4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const REAL4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 101);
const REAL4_B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 102);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const REAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x101);
const ENCAP4: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 51, 100, 0), 24);
const ENCAP6: (Ipv6Addr, u8) = (Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 0), 112);

const REAL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x65];
const REAL_B_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x66];
const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xee];

/// VIP slots.
const SLOT_DR_TCP80: u32 = 0;
const SLOT_ENCAP_UDP53: u32 = 1;
const SLOT_ENCAP6_TCP443: u32 = 2;
const SLOT_WILDCARD_UDP: u32 = 3;
const SLOT_EMPTY_TCP8080: u32 = 4;
const SLOT_ELSEWHERE_TCP81: u32 = 5;
const SLOTS: u32 = 6;

/// Real-server ids.
const ID_REAL4: u32 = 1;
const ID_REAL6: u32 = 2;
const ID_ELSEWHERE: u32 = 3;
const ID_REAL4_B: u32 = 4;

fn real(addr: [u8; 16], family: u8, mac: [u8; 6], ifindex: u32) -> RealInfo {
    RealInfo {
        addr,
        mac,
        src_mac: OUR_MAC,
        ifindex,
        family,
        _pad: [0; 3],
    }
}

fn dataplane() -> (XdpDataplane, XdpMaps) {
    dataplane_pinned(None)
}

/// The program and its maps, the maps pinned in `pins` if given.
fn dataplane_pinned(pins: Option<&std::path::Path>) -> (XdpDataplane, XdpMaps) {
    lb_tests::require_root();
    let mut xdp = XdpDataplane::load_pinned(
        lb_tests::bpf_object(),
        Capacity {
            vips: 8,
            ring_size: RING,
        },
        pins,
    )
    .expect("loading the XDP program");
    let mut maps = xdp.take_maps().expect("the forwarding maps");
    maps.set_settings(&settings(MTU, Some(ENCAP4), Some(ENCAP6)))
        .expect("settings");
    let reals = [
        (
            ID_REAL4,
            real(REAL4.to_ipv6_mapped().octets(), 4, REAL_MAC, INGRESS),
        ),
        (ID_REAL6, real(REAL6.octets(), 6, REAL_MAC, INGRESS)),
        (
            ID_ELSEWHERE,
            real(REAL4.to_ipv6_mapped().octets(), 4, REAL_MAC, INGRESS + 1),
        ),
        (
            ID_REAL4_B,
            real(REAL4_B.to_ipv6_mapped().octets(), 4, REAL_B_MAC, INGRESS),
        ),
    ];
    for (id, info) in reals {
        maps.set_real(id, &info).expect("real server");
    }
    let vips = [
        (
            vip_key(VIP4.into(), 80, Protocol::Tcp),
            SLOT_DR_TCP80,
            0,
            ID_REAL4,
        ),
        (
            vip_key(VIP4.into(), 53, Protocol::Udp),
            SLOT_ENCAP_UDP53,
            VIP_F_ENCAP,
            ID_REAL4,
        ),
        (
            vip_key(VIP6.into(), 443, Protocol::Tcp),
            SLOT_ENCAP6_TCP443,
            VIP_F_ENCAP,
            ID_REAL6,
        ),
        (
            vip_key(WILDCARD4.into(), 0, Protocol::Udp),
            SLOT_WILDCARD_UDP,
            0,
            ID_REAL4,
        ),
        (
            vip_key(VIP4.into(), 8080, Protocol::Tcp),
            SLOT_EMPTY_TCP8080,
            0,
            0,
        ),
        (
            vip_key(VIP4.into(), 81, Protocol::Tcp),
            SLOT_ELSEWHERE_TCP81,
            0,
            ID_ELSEWHERE,
        ),
    ];
    for (key, index, flags, id) in vips {
        maps.set_vip(&key, VipInfo { index, flags }).expect("VIP");
        maps.ring_mut(index).fill(id);
    }
    (xdp, maps)
}

/// What the program must leave in the frame.
enum Output {
    Unchanged,
    Bytes(Vec<u8>),
}

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    verdict: u32,
    output: Output,
    /// Counter slots that move by one besides `Seen`.
    counters: &'static [Counter],
    vip_slot: Option<u32>,
    real: Option<u32>,
}

fn pass(name: &'static str, frame: Vec<u8>, counter: &'static [Counter]) -> Case {
    Case {
        name,
        frame,
        verdict: XDP_PASS,
        output: Output::Unchanged,
        counters: counter,
        vip_slot: None,
        real: None,
    }
}

fn v4(proto: u8, dst: Ipv4Addr, l4: &[u8]) -> Vec<u8> {
    ethernet(ETH_P_IP, None, &ipv4(proto, CLIENT4, dst, &[], 0, l4))
}

fn flow4(proto: u8, dst: Ipv4Addr, sport: u16, dport: u16) -> FlowKey {
    FlowKey {
        src: FlowKey::words(CLIENT4.to_ipv6_mapped().octets()),
        dst: FlowKey::words(dst.to_ipv6_mapped().octets()),
        sport_be: sport.to_be(),
        dport_be: dport.to_be(),
        proto,
        ..FlowKey::default()
    }
}

/// The outer IPv4 source the program must pick for `flow`: the prefix's bits, the host bits
/// (the last byte for a /24) from the flow's hash as it lies in memory.
fn encap_source4(flow: &FlowKey) -> Ipv4Addr {
    let spread = flow_hash(flow).to_ne_bytes();
    let mut a = ENCAP4.0.octets();
    a[3] |= spread[3];
    a.into()
}

fn encap_source6(flow: &FlowKey) -> Ipv6Addr {
    let spread = flow_hash(flow).to_ne_bytes();
    let mut a = ENCAP6.0.octets();
    a[14] |= spread[2];
    a[15] |= spread[3];
    a.into()
}

/// A frame forwarded by direct routing: new MACs, nothing else.
fn direct(frame: &[u8]) -> Vec<u8> {
    with_macs(frame.to_vec(), REAL_MAC, OUR_MAC)
}

fn cases() -> Vec<Case> {
    let syn80 = tcp(40000, 80, TCP_SYN);
    let mut bad_ihl = ipv4(6, CLIENT4, VIP4, &[], 0, &syn80);
    bad_ihl[0] = 0x44;
    let mut bad_version = ipv4(6, CLIENT4, VIP4, &[], 0, &syn80);
    bad_version[0] = 0x65;
    let mut long_total = ipv4(6, CLIENT4, VIP4, &[], 0, &syn80);
    long_total[2..4].copy_from_slice(&200u16.to_be_bytes());
    lb_tests::packet::refresh_ipv4_checksum(&mut long_total);
    let hop_by_hop = {
        let mut ext = vec![6u8, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&tcp(40000, 443, TCP_SYN));
        ethernet(ETH_P_IPV6, None, &ipv6(0, CLIENT6, VIP6, &ext))
    };

    let dr_syn = v4(6, VIP4, &syn80);
    let dr_ack = v4(6, VIP4, &tcp(40000, 80, TCP_ACK));
    let vlan_syn = ethernet(ETH_P_IP, Some(7), &ipv4(6, CLIENT4, VIP4, &[], 0, &syn80));
    let wildcard = v4(17, WILDCARD4, &udp(40000, 12345, b"x"));

    let query = udp(40001, 53, b"query");
    let inner = ipv4(17, CLIENT4, VIP4, &[], 0, &query);
    let source = encap_source4(&flow4(17, VIP4, 40001, 53));
    let ipip = ethernet(ETH_P_IP, None, &ipv4(4, source, REAL4, &[], 0, &inner));
    let ipip_vlan = ethernet(ETH_P_IP, Some(7), &ipv4(4, source, REAL4, &[], 0, &inner));

    let syn443 = tcp(40002, 443, TCP_SYN);
    let inner6 = ipv6(6, CLIENT6, VIP6, &syn443);
    let flow6 = FlowKey {
        src: FlowKey::words(CLIENT6.octets()),
        dst: FlowKey::words(VIP6.octets()),
        sport_be: 40002u16.to_be(),
        dport_be: 443u16.to_be(),
        proto: 6,
        ..FlowKey::default()
    };
    let ip6ip6 = ethernet(
        ETH_P_IPV6,
        None,
        &ipv6(41, encap_source6(&flow6), REAL6, &inner6),
    );

    // 1472 bytes of payload: 1500 as an IPv4 packet, 1520 encapsulated.
    let big = udp(40003, 53, &[0x5a; 1472 - 8]);
    let big_df = ipv4(17, CLIENT4, VIP4, &[], 0x4000, &big);
    let frag_needed = {
        let mut icmp = vec![3u8, 4, 0, 0, 0, 0];
        icmp.extend_from_slice(&((MTU - 20) as u16).to_be_bytes());
        icmp.extend_from_slice(&big_df[..28]);
        let sum = internet_checksum(&icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        ethernet(ETH_P_IP, None, &ipv4(1, VIP4, CLIENT4, &[], 0, &icmp))
    };
    let big6 = ipv6(
        6,
        CLIENT6,
        VIP6,
        &[tcp(40004, 443, TCP_SYN), vec![0x5a; 1440]].concat(),
    );
    let too_big6 = {
        let mut icmp = vec![2u8, 0, 0, 0];
        icmp.extend_from_slice(&(MTU - 40).to_be_bytes());
        icmp.extend_from_slice(&big6[..48]);
        let sum = icmpv6_checksum(VIP6, CLIENT6, &icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        ethernet(ETH_P_IPV6, None, &ipv6(58, VIP6, CLIENT6, &icmp))
    };
    let swap = |frame: Vec<u8>| with_macs(frame, FIXTURE_MACS.1, FIXTURE_MACS.0);

    vec![
        Case {
            name: "TCP SYN to a DR VIP: new MACs, XDP_TX",
            output: Output::Bytes(direct(&dr_syn)),
            frame: dr_syn,
            verdict: XDP_TX,
            counters: &[Counter::ForwardedDr, Counter::FlowNew],
            vip_slot: Some(SLOT_DR_TCP80),
            real: Some(ID_REAL4),
        },
        Case {
            name: "the same flow's ACK: found in the connection table",
            output: Output::Bytes(direct(&dr_ack)),
            frame: dr_ack,
            verdict: XDP_TX,
            counters: &[Counter::ForwardedDr, Counter::FlowHit],
            vip_slot: Some(SLOT_DR_TCP80),
            real: Some(ID_REAL4),
        },
        Case {
            name: "VLAN-tagged TCP SYN to a DR VIP: the tag stays",
            output: Output::Bytes(direct(&vlan_syn)),
            frame: vlan_syn,
            verdict: XDP_TX,
            counters: &[Counter::ForwardedDr, Counter::FlowNew],
            vip_slot: Some(SLOT_DR_TCP80),
            real: Some(ID_REAL4),
        },
        Case {
            name: "UDP to the port-0 wildcard VIP",
            output: Output::Bytes(direct(&wildcard)),
            frame: wildcard,
            verdict: XDP_TX,
            counters: &[Counter::ForwardedDr, Counter::FlowNew],
            vip_slot: Some(SLOT_WILDCARD_UDP),
            real: Some(ID_REAL4),
        },
        Case {
            name: "UDP to an IPIP VIP: outer IPv4 header from the encap prefix",
            frame: v4(17, VIP4, &query),
            verdict: XDP_TX,
            output: Output::Bytes(with_macs(ipip, REAL_MAC, OUR_MAC)),
            counters: &[Counter::ForwardedEncap, Counter::FlowNew],
            vip_slot: Some(SLOT_ENCAP_UDP53),
            real: Some(ID_REAL4),
        },
        Case {
            name: "VLAN-tagged UDP to an IPIP VIP: the tag stays in front",
            frame: ethernet(ETH_P_IP, Some(7), &inner),
            verdict: XDP_TX,
            output: Output::Bytes(with_macs(ipip_vlan, REAL_MAC, OUR_MAC)),
            counters: &[Counter::ForwardedEncap, Counter::FlowHit],
            vip_slot: Some(SLOT_ENCAP_UDP53),
            real: Some(ID_REAL4),
        },
        Case {
            name: "TCP SYN to an IPv6 VIP: IP6IP6",
            frame: ethernet(ETH_P_IPV6, None, &inner6),
            verdict: XDP_TX,
            output: Output::Bytes(with_macs(ip6ip6, REAL_MAC, OUR_MAC)),
            counters: &[Counter::ForwardedEncap, Counter::FlowNew],
            vip_slot: Some(SLOT_ENCAP6_TCP443),
            real: Some(ID_REAL6),
        },
        Case {
            name: "IPv4 with DF too big to encapsulate: ICMP fragmentation needed",
            frame: ethernet(ETH_P_IP, None, &big_df),
            verdict: XDP_TX,
            output: Output::Bytes(swap(frag_needed)),
            counters: &[Counter::TooBig],
            vip_slot: Some(SLOT_ENCAP_UDP53),
            real: Some(ID_REAL4),
        },
        Case {
            name: "IPv6 too big to encapsulate: ICMPv6 packet too big",
            frame: ethernet(ETH_P_IPV6, None, &big6),
            verdict: XDP_TX,
            output: Output::Bytes(swap(too_big6)),
            counters: &[Counter::TooBig],
            vip_slot: Some(SLOT_ENCAP6_TCP443),
            real: Some(ID_REAL6),
        },
        Case {
            vip_slot: Some(SLOT_ENCAP_UDP53),
            ..pass(
                "IPv4 without DF too big to encapsulate: the kernel fragments",
                ethernet(ETH_P_IP, None, &ipv4(17, CLIENT4, VIP4, &[], 0, &big)),
                &[Counter::TooBigPassed],
            )
        },
        Case {
            vip_slot: Some(SLOT_EMPTY_TCP8080),
            ..pass(
                "TCP to a VIP with no live real server",
                v4(6, VIP4, &tcp(40000, 8080, TCP_SYN)),
                &[Counter::NoRealServer],
            )
        },
        Case {
            name: "a real server behind another interface: redirected",
            output: Output::Bytes(direct(&v4(6, VIP4, &tcp(40000, 81, TCP_SYN)))),
            frame: v4(6, VIP4, &tcp(40000, 81, TCP_SYN)),
            verdict: XDP_REDIRECT,
            counters: &[Counter::ForwardedDr, Counter::FlowNew],
            vip_slot: Some(SLOT_ELSEWHERE_TCP81),
            real: Some(ID_ELSEWHERE),
        },
        pass(
            "UDP to the TCP VIP's port",
            v4(17, VIP4, &udp(40000, 80, b"x")),
            &[Counter::NotVip],
        ),
        pass(
            "TCP to a port that is no VIP",
            v4(6, VIP4, &tcp(40000, 82, TCP_SYN)),
            &[Counter::NotVip],
        ),
        pass(
            "TCP to an address that is no VIP",
            v4(6, CLIENT4, &syn80),
            &[Counter::NotVip],
        ),
        pass(
            "TCP to the UDP-only wildcard VIP",
            v4(6, WILDCARD4, &syn80),
            &[Counter::NotVip],
        ),
        pass("ARP", arp_request(), &[Counter::NotIp]),
        pass(
            "ICMP echo to a VIP",
            v4(1, VIP4, &icmp_echo()),
            &[Counter::NotTcpUdp],
        ),
        pass(
            "first IPv4 fragment (MF)",
            ethernet(
                ETH_P_IP,
                None,
                &ipv4(17, CLIENT4, VIP4, &[], 0x2000, &udp(40000, 53, b"x")),
            ),
            &[Counter::Ipv4Fragment],
        ),
        pass(
            "later IPv4 fragment (offset)",
            ethernet(
                ETH_P_IP,
                None,
                &ipv4(17, CLIENT4, VIP4, &[], 0x0010, &udp(40000, 53, b"x")),
            ),
            &[Counter::Ipv4Fragment],
        ),
        pass(
            "IPv4 with options",
            ethernet(
                ETH_P_IP,
                None,
                &ipv4(6, CLIENT4, VIP4, &[1, 1, 1, 0], 0, &syn80),
            ),
            &[Counter::Ipv4Options],
        ),
        pass(
            "IPv4 with IHL 4",
            ethernet(ETH_P_IP, None, &bad_ihl),
            &[Counter::BadHeader],
        ),
        pass(
            "version 6 in an IPv4 frame",
            ethernet(ETH_P_IP, None, &bad_version),
            &[Counter::BadHeader],
        ),
        pass(
            "IPv4 total length beyond the frame",
            ethernet(ETH_P_IP, None, &long_total),
            &[Counter::BadHeader],
        ),
        pass(
            "IPv6 with a hop-by-hop header",
            hop_by_hop,
            &[Counter::Ipv6ExtHeader],
        ),
        pass(
            "IPv4 header cut short",
            ethernet(ETH_P_IP, None, &[0x45; 10]),
            &[Counter::Truncated],
        ),
        pass(
            "TCP header cut short",
            ethernet(
                ETH_P_IP,
                None,
                &ipv4(6, CLIENT4, VIP4, &[], 0, &[0x9c, 0x40]),
            ),
            &[Counter::Truncated],
        ),
        pass(
            "TCP header without its flags",
            ethernet(
                ETH_P_IP,
                None,
                &ipv4(6, CLIENT4, VIP4, &[], 0, &syn80[..12]),
            ),
            &[Counter::Truncated],
        ),
        pass(
            "IPv6 header cut short",
            ethernet(ETH_P_IPV6, None, &[0x60; 30]),
            &[Counter::Truncated],
        ),
        pass(
            "VLAN tag cut short",
            [&[0u8; 12][..], &[0x81, 0x00, 0x00]].concat(),
            &[Counter::Truncated],
        ),
    ]
}

struct Snapshot {
    counters: Vec<u64>,
    vips: Vec<VipStats>,
    reals: Vec<VipStats>,
}

fn snapshot(xdp: &XdpDataplane) -> Snapshot {
    Snapshot {
        counters: xdp
            .counters()
            .expect("reading counters")
            .into_iter()
            .map(|(_, n)| n)
            .collect(),
        vips: (0..SLOTS)
            .map(|i| xdp.vip_stats(i).expect("VIP stats"))
            .collect(),
        reals: (0..=ID_REAL4_B)
            .map(|i| xdp.real_stats(i).expect("real stats"))
            .collect(),
    }
}

fn traffic_delta(after: &[VipStats], before: &[VipStats], i: usize) -> (u64, u64) {
    (
        after[i].packets - before[i].packets,
        after[i].bytes - before[i].bytes,
    )
}

#[test]
fn every_fixture_gives_its_verdict_bytes_and_counters() {
    let (xdp, _maps) = dataplane();
    for case in cases() {
        let before = snapshot(&xdp);
        let run = xdp
            .test_run(lb_common::PROG_XDP, &case.frame, INGRESS, 1)
            .expect("BPF_PROG_TEST_RUN");
        let after = snapshot(&xdp);
        let moved: Vec<_> = Counter::ALL
            .iter()
            .filter(|c| after.counters[**c as usize] != before.counters[**c as usize])
            .map(|c| c.name())
            .collect();
        assert_eq!(
            run.verdict, case.verdict,
            "{}: verdict (counters moved: {moved:?})",
            case.name
        );
        match &case.output {
            Output::Unchanged => assert_eq!(run.output, case.frame, "{}: output", case.name),
            Output::Bytes(want) => {
                assert_eq!(run.output, *want, "{}: output bytes", case.name);
            }
        }
        for counter in Counter::ALL {
            let delta = after.counters[counter as usize] - before.counters[counter as usize];
            let expected = u64::from(counter == Counter::Seen || case.counters.contains(&counter));
            assert_eq!(
                delta,
                expected,
                "{}: counter {} moved by {delta}",
                case.name,
                counter.name()
            );
        }
        let len = case.frame.len() as u64;
        for slot in 0..SLOTS {
            let want = if case.vip_slot == Some(slot) {
                (1, len)
            } else {
                (0, 0)
            };
            assert_eq!(
                traffic_delta(&after.vips, &before.vips, slot as usize),
                want,
                "{}: VIP slot {slot}",
                case.name
            );
        }
        // A packet answered with ICMP or passed is counted for the VIP, not for a real server.
        let forwarded = case.verdict != XDP_PASS && !case.counters.contains(&Counter::TooBig);
        for id in 0..=ID_REAL4_B {
            let want = if forwarded && case.real == Some(id) {
                (1, len)
            } else {
                (0, 0)
            };
            assert_eq!(
                traffic_delta(&after.reals, &before.reals, id as usize),
                want,
                "{}: real server {id}",
                case.name
            );
        }
    }
}

/// The real server's MAC the program wrote into a forwarded frame.
fn chosen_mac(xdp: &XdpDataplane, frame: &[u8]) -> [u8; 6] {
    let run = xdp
        .test_run(lb_common::PROG_XDP, frame, INGRESS, 1)
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!(run.verdict, XDP_TX);
    run.output[..6].try_into().expect("a MAC")
}

#[test]
fn established_flows_keep_their_real_server_and_a_syn_hashes_afresh() {
    let (xdp, mut maps) = dataplane();
    let syn = v4(6, VIP4, &tcp(41000, 80, TCP_SYN));
    let ack = v4(6, VIP4, &tcp(41000, 80, TCP_ACK));
    assert_eq!(chosen_mac(&xdp, &syn), REAL_MAC);
    // The real server leaves the VIP's table: the flow stays, a new connection moves.
    maps.ring_mut(SLOT_DR_TCP80).fill(ID_REAL4_B);
    assert_eq!(chosen_mac(&xdp, &ack), REAL_MAC, "established flow");
    assert_eq!(chosen_mac(&xdp, &syn), REAL_B_MAC, "a SYN hashes afresh");
    assert_eq!(chosen_mac(&xdp, &ack), REAL_B_MAC, "and is remembered");
    // An ACK of a flow never seen (the table lost it) is hashed too.
    let stray = v4(6, VIP4, &tcp(41001, 80, TCP_ACK));
    assert_eq!(chosen_mac(&xdp, &stray), REAL_B_MAC);
    // A freed id (family 0) is never forwarded to: its flows are hashed again.
    maps.set_real(ID_REAL4_B, &RealInfo::default())
        .expect("freeing");
    maps.ring_mut(SLOT_DR_TCP80).fill(ID_REAL4);
    assert_eq!(chosen_mac(&xdp, &ack), REAL_MAC);
}

/// A client: its address and source port, to VIP4:80 over TCP.
type Client = (Ipv4Addr, u16);

/// The two connection-table sets of a client's flow.
fn sets_of(client: Client) -> [u32; 2] {
    lb_common::flow_sets(flow_hash(&key_of(client)))
}

/// `count` clients whose flows' first set is `set` (254 addresses x 64,512 ports: about 62
/// flows per set), never CLIENT4 (192.0.2.1).
fn clients_of_set(set: u32, count: usize) -> Vec<Client> {
    let clients: Vec<Client> = (2..=255u8)
        .flat_map(|host| (1024..=u16::MAX).map(move |p| (Ipv4Addr::new(192, 0, 2, host), p)))
        .filter(|&c| sets_of(c)[0] == set)
        .take(count)
        .collect();
    assert_eq!(clients.len(), count, "{count} flows of set {set}");
    clients
}

/// A TCP frame of `client` to VIP4:80.
fn client_frame((client, port): Client, flags: u8) -> Vec<u8> {
    ethernet(
        ETH_P_IP,
        None,
        &ipv4(6, client, VIP4, &[], 0, &tcp(port, 80, flags)),
    )
}

#[test]
fn flows_that_share_their_first_set_are_all_kept() {
    let (xdp, mut maps) = dataplane();
    // Five flows whose first set is the same four-way set: all five are kept.
    let clients = clients_of_set(sets_of((CLIENT4, 1024))[0], 5);
    for &c in &clients {
        assert_eq!(chosen_mac(&xdp, &client_frame(c, TCP_SYN)), REAL_MAC);
    }
    maps.ring_mut(SLOT_DR_TCP80).fill(ID_REAL4_B);
    for (i, &c) in clients.iter().enumerate() {
        let mac = chosen_mac(&xdp, &client_frame(c, TCP_ACK));
        assert_eq!(mac, REAL_MAC, "flow {i} ({c:?}) kept");
    }
}

/// The key of a client's flow.
fn key_of((client, sport): Client) -> FlowKey {
    FlowKey {
        src: FlowKey::words(client.to_ipv6_mapped().octets()),
        ..flow4(6, VIP4, sport, 80)
    }
}

#[test]
fn a_new_flow_takes_the_emptier_set_and_else_the_way_seen_longest_ago() {
    use aya::maps::{Array, MapData};
    use lb_common::{FlowSet, FlowWay};
    let pins = Pins(format!("/sys/fs/bpf/lbd-test-sets-{}", std::process::id()).into());
    let (xdp, _maps) = dataplane_pinned(Some(&pins.0));
    let mut table = pins.flows();
    let newcomer = (1024..=u16::MAX)
        .map(|p| (CLIENT4, p))
        .find(|&c| sets_of(c)[0] != sets_of(c)[1])
        .expect("a flow with two distinct sets");
    let [first, second] = sets_of(newcomer);
    // The program's clock, from the stamp of a flow it just wrote.
    let probe = (2048..=u16::MAX)
        .map(|p| (CLIENT4, p))
        .find(|&c| !sets_of(c).iter().any(|s| [first, second].contains(s)))
        .expect("a flow of other sets");
    assert_eq!(chosen_mac(&xdp, &client_frame(probe, TCP_SYN)), REAL_MAC);
    let set = table.get(&sets_of(probe)[0], 0).expect("the probe's set");
    let now = set
        .ways
        .iter()
        .find(|w| w.key == key_of(probe))
        .expect("the probe's way")
        .stamp;
    // Ways of other flows (their check fails, so they are never found; only occupied).
    let resident = |i: u16, stamp: u32| FlowWay {
        key: flow4(17, VIP4, 9000 + i, 53),
        real: ID_REAL4,
        stamp,
        ..FlowWay::default()
    };
    let fill = |table: &mut Array<MapData, FlowSet>, set: u32, ways: &[FlowWay]| {
        let mut value = FlowSet::default();
        value.ways[..ways.len()].copy_from_slice(ways);
        table.set(set, value, 0).expect("writing a set");
    };
    let holder = |table: &Array<MapData, FlowSet>| {
        [first, second].map(|set| {
            table
                .get(&set, 0)
                .expect("a set")
                .ways
                .iter()
                .position(|w| w.key == key_of(newcomer) && w.real == ID_REAL4)
        })
    };
    // Three ways of the first set taken, two of the second: the newcomer goes to the second.
    fill(&mut table, first, &[0, 1, 2].map(|i| resident(i, now)));
    fill(&mut table, second, &[3, 4].map(|i| resident(i, now)));
    assert_eq!(chosen_mac(&xdp, &client_frame(newcomer, TCP_SYN)), REAL_MAC);
    assert_eq!(
        holder(&table),
        [None, Some(2)],
        "the emptier set's first free way"
    );
    // Both full: the way of the two seen longest ago goes, here the second set's way 1.
    fill(&mut table, first, &[0, 1, 2, 3].map(|i| resident(i, now)));
    let mut ways = [4, 5, 6, 7].map(|i| resident(i, now));
    ways[1].stamp = now.wrapping_sub(1000);
    fill(&mut table, second, &ways);
    assert_eq!(chosen_mac(&xdp, &client_frame(newcomer, TCP_SYN)), REAL_MAC);
    assert_eq!(holder(&table), [None, Some(1)], "the way seen longest ago");
    drop(table);
    xdp.release();
}

/// Removes a bpffs pin directory when dropped, whatever the test did.
struct Pins(std::path::PathBuf);

impl Pins {
    /// The connection table pinned here, to read and write as the program does.
    fn flows(&self) -> aya::maps::Array<aya::maps::MapData, lb_common::FlowSet> {
        use aya::maps::{Array, Map, MapData};
        let pinned =
            MapData::from_pin(self.0.join(lb_common::MAP_FLOWS)).expect("the pinned table");
        Array::try_from(Map::Array(pinned)).expect("an array of sets")
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

#[test]
fn a_torn_way_of_the_connection_table_is_a_miss() {
    let pins = Pins(format!("/sys/fs/bpf/lbd-test-torn-{}", std::process::id()).into());
    let (xdp, mut maps) = dataplane_pinned(Some(&pins.0));
    let syn = v4(6, VIP4, &tcp(43000, 80, TCP_SYN));
    let ack = v4(6, VIP4, &tcp(43000, 80, TCP_ACK));
    assert_eq!(chosen_mac(&xdp, &syn), REAL_MAC);
    maps.ring_mut(SLOT_DR_TCP80).fill(ID_REAL4_B);
    assert_eq!(chosen_mac(&xdp, &ack), REAL_MAC, "remembered");
    // Two CPUs wrote the flow's way at once: the real server of one write, the check of the
    // other (ID_ELSEWHERE would be a redirect, not XDP_TX).
    let flow = flow4(6, VIP4, 43000, 80);
    // The first insert into an empty table takes the flow's first set.
    let index = lb_common::flow_sets(flow_hash(&flow))[0];
    let mut flows = pins.flows();
    let mut set = flows.get(&index, 0).expect("the flow's set");
    let way = set
        .ways
        .iter()
        .position(|w| w.key == flow && w.real == ID_REAL4)
        .expect("the flow's way");
    set.ways[way].real = ID_ELSEWHERE;
    flows.set(index, set, 0).expect("tearing the way");
    assert_eq!(
        chosen_mac(&xdp, &ack),
        REAL_B_MAC,
        "a torn way is a miss: the flow is hashed afresh"
    );
    // Written again whole, the flow is found again.
    maps.ring_mut(SLOT_DR_TCP80).fill(ID_REAL4);
    assert_eq!(chosen_mac(&xdp, &ack), REAL_B_MAC, "remembered again");
    drop(maps);
    xdp.release();
}

#[test]
fn flows_spread_over_the_table_by_their_hash() {
    let (xdp, mut maps) = dataplane();
    // Slots alternate between two real servers: where each flow lands follows flow_hash.
    let ring: Vec<u32> = (0..RING)
        .map(|i| if i % 2 == 0 { ID_REAL4 } else { ID_REAL4_B })
        .collect();
    lbd::dataplane::maglev::write_delta(maps.ring_mut(SLOT_DR_TCP80), &ring);
    let mut seen = [0usize; 2];
    for sport in 42000..42064u16 {
        let slot = flow_hash(&flow4(6, VIP4, sport, 80)) % RING;
        let want = if ring[slot as usize] == ID_REAL4 {
            REAL_MAC
        } else {
            REAL_B_MAC
        };
        let got = chosen_mac(&xdp, &v4(6, VIP4, &tcp(sport, 80, TCP_SYN)));
        assert_eq!(got, want, "source port {sport}");
        seen[usize::from(got == REAL_B_MAC)] += 1;
    }
    assert!(
        seen[0] > 10 && seen[1] > 10,
        "64 flows over two real servers: {seen:?}"
    );
}

#[test]
fn repeated_runs_count_every_repetition() {
    let (xdp, _maps) = dataplane();
    // Direct routing leaves the frame's length alone, so each repetition sees the same packet.
    let frame = v4(6, VIP4, &tcp(40000, 80, TCP_ACK));
    let before = xdp.vip_stats(SLOT_DR_TCP80).expect("stats");
    xdp.test_run(lb_common::PROG_XDP, &frame, INGRESS, 1000)
        .expect("BPF_PROG_TEST_RUN");
    let after = xdp.vip_stats(SLOT_DR_TCP80).expect("stats");
    assert_eq!(after.packets - before.packets, 1000);
    assert_eq!(after.bytes - before.bytes, 1000 * frame.len() as u64);
}

#[test]
fn a_removed_vip_is_passed() {
    let (xdp, mut maps) = dataplane();
    let frame = v4(6, VIP4, &tcp(40000, 80, TCP_SYN));
    maps.remove_vip(&vip_key(VIP4.into(), 80, Protocol::Tcp))
        .expect("removing the VIP");
    let run = xdp
        .test_run(lb_common::PROG_XDP, &frame, INGRESS, 1)
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!((run.verdict, &run.output), (XDP_PASS, &frame));
}

#[test]
fn the_floor_program_swaps_macs_and_transmits() {
    let (xdp, _maps) = dataplane();
    for case in cases() {
        let run = xdp
            .test_run(lb_common::PROG_XDP_FLOOR, &case.frame, 0, 1)
            .expect("BPF_PROG_TEST_RUN");
        if case.frame.len() < 12 {
            assert_eq!(run.verdict, XDP_PASS, "{}", case.name);
            continue;
        }
        assert_eq!(run.verdict, XDP_TX, "{}", case.name);
        let mut want = case.frame.clone();
        want[..6].copy_from_slice(&case.frame[6..12]);
        want[6..12].copy_from_slice(&case.frame[..6]);
        assert_eq!(run.output, want, "{}", case.name);
    }
}
