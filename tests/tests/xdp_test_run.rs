//! The XDP program through BPF_PROG_TEST_RUN: a table of input frames with the expected
//! verdict, the one counter slot each must move, and the VIP slot it must count into.
//!
//! At this stage the program only counts: every verdict is XDP_PASS, and a malformed packet
//! must land in its own reason slot, never in a VIP's.
#![expect(
    unused_crate_dependencies,
    reason = "each target of lb-tests uses part of the package's dependencies; cargo cannot scope them"
)]

use std::net::{Ipv4Addr, Ipv6Addr};

use lb_common::{Counter, VipStats};
use lb_tests::packet::{
    ETH_P_IP, ETH_P_IPV6, TCP_ACK, TCP_SYN, arp_request, ethernet, icmp_echo, ipv4, ipv6, tcp, udp,
};
use lbd::{
    dataplane::xdp::{XdpDataplane, vip_key},
    model::Protocol,
};

const XDP_PASS: u32 = 2;
const VIP4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const WILDCARD4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const CLIENT4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

/// VIP slots, in the order given to `set_vips`.
const SLOT_TCP80: usize = 0;
const SLOT_UDP53: usize = 1;
const SLOT_V6_TCP443: usize = 2;
const SLOT_WILDCARD_UDP: usize = 3;

fn dataplane() -> XdpDataplane {
    lb_tests::require_root();
    let mut xdp = XdpDataplane::load(lb_tests::bpf_object()).expect("loading the XDP program");
    xdp.set_vips(&[
        vip_key(VIP4.into(), 80, Protocol::Tcp),
        vip_key(VIP4.into(), 53, Protocol::Udp),
        vip_key(VIP6.into(), 443, Protocol::Tcp),
        vip_key(WILDCARD4.into(), 0, Protocol::Udp),
    ])
    .expect("filling the VIP map");
    xdp
}

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    counter: Counter,
    vip_slot: Option<usize>,
}

fn case(name: &'static str, frame: Vec<u8>, counter: Counter, vip_slot: Option<usize>) -> Case {
    Case {
        name,
        frame,
        counter,
        vip_slot,
    }
}

fn v4(proto: u8, dst: Ipv4Addr, l4: &[u8]) -> Vec<u8> {
    ethernet(ETH_P_IP, None, &ipv4(proto, CLIENT4, dst, &[], 0, l4))
}

fn cases() -> Vec<Case> {
    let syn80 = tcp(40000, 80, TCP_SYN);
    let mut bad_ihl = ipv4(6, CLIENT4, VIP4, &[], 0, &syn80);
    bad_ihl[0] = 0x44;
    let mut bad_version = ipv4(6, CLIENT4, VIP4, &[], 0, &syn80);
    bad_version[0] = 0x65;
    let hop_by_hop = {
        let mut ext = vec![6u8, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&tcp(40000, 443, TCP_SYN));
        ethernet(ETH_P_IPV6, None, &ipv6(0, CLIENT6, VIP6, &ext))
    };
    vec![
        case(
            "TCP SYN to a TCP VIP",
            v4(6, VIP4, &syn80),
            Counter::VipHit,
            Some(SLOT_TCP80),
        ),
        case(
            "TCP ACK to a TCP VIP",
            v4(6, VIP4, &tcp(40000, 80, TCP_ACK)),
            Counter::VipHit,
            Some(SLOT_TCP80),
        ),
        case(
            "UDP to a UDP VIP",
            v4(17, VIP4, &udp(40000, 53, b"query")),
            Counter::VipHit,
            Some(SLOT_UDP53),
        ),
        case(
            "UDP with an empty payload",
            v4(17, VIP4, &udp(40000, 53, b"")),
            Counter::VipHit,
            Some(SLOT_UDP53),
        ),
        case(
            "UDP to the TCP VIP's port",
            v4(17, VIP4, &udp(40000, 80, b"x")),
            Counter::NotVip,
            None,
        ),
        case(
            "TCP to a port that is no VIP",
            v4(6, VIP4, &tcp(40000, 81, TCP_SYN)),
            Counter::NotVip,
            None,
        ),
        case(
            "TCP to an address that is no VIP",
            v4(6, CLIENT4, &syn80),
            Counter::NotVip,
            None,
        ),
        case(
            "UDP to the port-0 wildcard VIP",
            v4(17, WILDCARD4, &udp(40000, 12345, b"x")),
            Counter::VipHit,
            Some(SLOT_WILDCARD_UDP),
        ),
        case(
            "TCP to the UDP-only wildcard VIP",
            v4(6, WILDCARD4, &syn80),
            Counter::NotVip,
            None,
        ),
        case(
            "IPv6 TCP to an IPv6 VIP",
            ethernet(
                ETH_P_IPV6,
                None,
                &ipv6(6, CLIENT6, VIP6, &tcp(40000, 443, TCP_SYN)),
            ),
            Counter::VipHit,
            Some(SLOT_V6_TCP443),
        ),
        case(
            "VLAN-tagged TCP SYN to a VIP",
            ethernet(ETH_P_IP, Some(100), &ipv4(6, CLIENT4, VIP4, &[], 0, &syn80)),
            Counter::VipHit,
            Some(SLOT_TCP80),
        ),
        case(
            "IPv4 with DF set (not a fragment)",
            ethernet(ETH_P_IP, None, &ipv4(6, CLIENT4, VIP4, &[], 0x4000, &syn80)),
            Counter::VipHit,
            Some(SLOT_TCP80),
        ),
        case("ARP", arp_request(), Counter::NotIp, None),
        case(
            "ICMP echo to a VIP",
            v4(1, VIP4, &icmp_echo()),
            Counter::NotTcpUdp,
            None,
        ),
        case(
            "first IPv4 fragment (MF)",
            ethernet(
                ETH_P_IP,
                None,
                &ipv4(17, CLIENT4, VIP4, &[], 0x2000, &udp(40000, 53, b"x")),
            ),
            Counter::Ipv4Fragment,
            None,
        ),
        case(
            "later IPv4 fragment (offset)",
            ethernet(
                ETH_P_IP,
                None,
                &ipv4(17, CLIENT4, VIP4, &[], 0x0010, &udp(40000, 53, b"x")),
            ),
            Counter::Ipv4Fragment,
            None,
        ),
        case(
            "IPv4 with options",
            ethernet(
                ETH_P_IP,
                None,
                &ipv4(6, CLIENT4, VIP4, &[1, 1, 1, 0], 0, &syn80),
            ),
            Counter::Ipv4Options,
            None,
        ),
        case(
            "IPv4 with IHL 4",
            ethernet(ETH_P_IP, None, &bad_ihl),
            Counter::BadHeader,
            None,
        ),
        case(
            "version 6 in an IPv4 frame",
            ethernet(ETH_P_IP, None, &bad_version),
            Counter::BadHeader,
            None,
        ),
        case(
            "IPv6 with a hop-by-hop header",
            hop_by_hop,
            Counter::Ipv6ExtHeader,
            None,
        ),
        case(
            "IPv4 header cut short",
            ethernet(ETH_P_IP, None, &[0x45; 10]),
            Counter::Truncated,
            None,
        ),
        case(
            "TCP header cut short",
            ethernet(
                ETH_P_IP,
                None,
                &ipv4(6, CLIENT4, VIP4, &[], 0, &[0x9c, 0x40]),
            ),
            Counter::Truncated,
            None,
        ),
        case(
            "IPv6 header cut short",
            ethernet(ETH_P_IPV6, None, &[0x60; 30]),
            Counter::Truncated,
            None,
        ),
        case(
            "VLAN tag cut short",
            [&[0u8; 12][..], &[0x81, 0x00, 0x00]].concat(),
            Counter::Truncated,
            None,
        ),
    ]
}

fn snapshot(xdp: &XdpDataplane) -> (Vec<u64>, Vec<VipStats>) {
    let counters = xdp
        .counters()
        .expect("reading counters")
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    let vips = (0..4)
        .map(|i| xdp.vip_stats(i).expect("reading VIP stats"))
        .collect();
    (counters, vips)
}

#[test]
fn every_fixture_moves_exactly_its_counters() {
    let xdp = dataplane();
    for case in cases() {
        let (counters_before, vips_before) = snapshot(&xdp);
        let run = xdp
            .test_run(lb_common::PROG_XDP, &case.frame, 1)
            .expect("BPF_PROG_TEST_RUN");
        assert_eq!(run.verdict, XDP_PASS, "{}: verdict", case.name);
        let (counters_after, vips_after) = snapshot(&xdp);
        for counter in Counter::ALL {
            let delta = counters_after[counter as usize] - counters_before[counter as usize];
            let expected = u64::from(counter == Counter::Seen || counter == case.counter);
            assert_eq!(
                delta,
                expected,
                "{}: counter {} moved by {delta}",
                case.name,
                counter.name()
            );
        }
        for slot in 0..4 {
            let packets = vips_after[slot].packets - vips_before[slot].packets;
            let bytes = vips_after[slot].bytes - vips_before[slot].bytes;
            if case.vip_slot == Some(slot) {
                assert_eq!(
                    (packets, bytes),
                    (1, case.frame.len() as u64),
                    "{}: VIP slot {slot}",
                    case.name
                );
            } else {
                assert_eq!(
                    (packets, bytes),
                    (0, 0),
                    "{}: VIP slot {slot} must not count",
                    case.name
                );
            }
        }
    }
}

#[test]
fn repeated_runs_count_every_repetition() {
    let xdp = dataplane();
    let frame = v4(17, VIP4, &udp(40000, 53, b"query"));
    let before = xdp.vip_stats(SLOT_UDP53 as u32).expect("stats");
    xdp.test_run(lb_common::PROG_XDP, &frame, 1000)
        .expect("BPF_PROG_TEST_RUN");
    let after = xdp.vip_stats(SLOT_UDP53 as u32).expect("stats");
    assert_eq!(after.packets - before.packets, 1000);
    assert_eq!(after.bytes - before.bytes, 1000 * frame.len() as u64);
}

#[test]
fn a_removed_vip_stops_counting() {
    let mut xdp = dataplane();
    let frame = v4(6, VIP4, &tcp(40000, 80, TCP_SYN));
    xdp.set_vips(&[vip_key(VIP4.into(), 53, Protocol::Udp)])
        .expect("shrinking the VIP map");
    let before = xdp.counters().expect("counters");
    xdp.test_run(lb_common::PROG_XDP, &frame, 1)
        .expect("BPF_PROG_TEST_RUN");
    let after = xdp.counters().expect("counters");
    let delta = |c: Counter| after[c as usize].1 - before[c as usize].1;
    assert_eq!((delta(Counter::NotVip), delta(Counter::VipHit)), (1, 0));
}

#[test]
fn the_floor_program_passes_everything() {
    let xdp = dataplane();
    for case in cases() {
        let run = xdp
            .test_run(lb_common::PROG_XDP_FLOOR, &case.frame, 1)
            .expect("BPF_PROG_TEST_RUN");
        assert_eq!(run.verdict, XDP_PASS, "{}", case.name);
    }
}
