//! `cargo xtask bench xdp`: the XDP program per packet through BPF_PROG_TEST_RUN against a
//! floor program (swap MACs, XDP_TX), and the cost of writing Maglev tables.
//!
//! Per packet: the kernel times each BPF_PROG_TEST_RUN call; a path that grows the frame
//! (encapsulation) cannot be repeated inside one call (the kernel runs the repetitions on the
//! same buffer, so the second would see the outer header), so every path is timed the same
//! way, one repetition per call, `--calls` calls a round, median of `--rounds` rounds, for
//! lbd's program and for the floor alike. Paths that leave the frame's length alone are also
//! timed with `--repeat` repetitions in one call (no per-call timer overhead).
//!
//! Map updates: one real server leaving a 100-real-server VIP (Maglev table computed, changed
//! slots written through the memory-mapped table), and full tables for 512 VIPs.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    process::ExitCode,
    time::{Duration, Instant},
};

use lb_common::{RealInfo, VIP_F_ENCAP, VipInfo};
use lb_tests::packet::{ETH_P_IP, ETH_P_IPV6, TCP_ACK, TCP_SYN, ethernet, ipv4, ipv6, tcp, udp};
use lbd::{
    dataplane::{
        maglev::{self, Endpoint},
        xdp::{Capacity, XdpDataplane, XdpMaps, vip_key},
    },
    model::Protocol,
    reconcile::xdp::settings,
};

use super::{arg, median};

const VIP4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const CLIENT4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// Frames "arrive" on loopback, and the real servers are reached through it: XDP_TX.
const INGRESS: u32 = 1;
const REALS: u32 = 100;

fn real(i: u32) -> (std::net::IpAddr, RealInfo) {
    let v4 = Ipv4Addr::new(198, 51, 100, 0).to_bits() + i;
    let addr = Ipv4Addr::from_bits(v4);
    let info = RealInfo {
        addr: addr.to_ipv6_mapped().octets(),
        mac: [0x02, 0, 0, 0, (i >> 8) as u8, i as u8],
        src_mac: [0x02, 0, 0, 0, 0, 0xee],
        ifindex: INGRESS,
        family: 4,
        _pad: [0; 3],
    };
    (addr.into(), info)
}

fn endpoints(count: u32) -> Vec<Endpoint> {
    (1..=count)
        .map(|id| Endpoint {
            id,
            weight: 1,
            hash: maglev::endpoint_hash(real(id).0),
        })
        .collect()
}

/// 512 VIPs (Katran's capacity) of 100 real servers each; the benchmarked ones among them.
fn fill(maps: &mut XdpMaps) {
    maps.set_settings(&settings(
        1500,
        Some((Ipv4Addr::new(198, 51, 100, 0), 24)),
        None,
    ))
    .expect("settings");
    for id in 1..=REALS {
        maps.set_real(id, &real(id).1).expect("real server");
    }
    let v6real = RealInfo {
        addr: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x101).octets(),
        family: 6,
        ..real(REALS + 1).1
    };
    maps.set_real(REALS + 1, &v6real).expect("IPv6 real server");
    let table = maglev::table(&endpoints(REALS), maps.capacity().ring_size);
    let mut vips = vec![
        (vip_key(VIP4.into(), 80, Protocol::Tcp), 0),
        (vip_key(VIP4.into(), 53, Protocol::Udp), VIP_F_ENCAP),
    ];
    vips.extend((0..509u16).map(|i| {
        (
            vip_key(
                Ipv4Addr::new(198, 51, 100, (i % 250) as u8).into(),
                1000 + i,
                Protocol::Udp,
            ),
            0,
        )
    }));
    for (index, (key, flags)) in vips.iter().enumerate() {
        let index = index as u32;
        maps.set_vip(
            key,
            VipInfo {
                index,
                flags: *flags,
            },
        )
        .expect("VIP");
        maglev::write_delta(maps.ring_mut(index), &table);
    }
    let v6 = 511;
    maps.set_vip(
        &vip_key(VIP6.into(), 443, Protocol::Tcp),
        VipInfo {
            index: v6,
            flags: VIP_F_ENCAP,
        },
    )
    .expect("IPv6 VIP");
    maps.ring_mut(v6).fill(u64::from(REALS + 1));
}

/// Mean kernel ns per packet over `calls` calls of one repetition each.
fn per_call(xdp: &XdpDataplane, prog: &'static str, frame: &[u8], calls: u32) -> f64 {
    let total: Duration = (0..calls)
        .map(|_| {
            xdp.test_run(prog, frame, INGRESS, 1)
                .expect("BPF_PROG_TEST_RUN")
                .duration
        })
        .sum();
    total.as_nanos() as f64 / f64::from(calls)
}

pub(crate) fn bench_xdp(args: &[String]) -> ExitCode {
    lb_tests::require_root();
    let calls = arg(args, "--calls", 200_000);
    let repeat = arg(args, "--repeat", 1_000_000);
    let rounds = arg(args, "--rounds", 5);
    let mut xdp = XdpDataplane::load(lb_tests::bpf_object(), Capacity::default())
        .expect("loading the XDP program");
    let mut maps = xdp.take_maps().expect("maps");
    fill(&mut maps);
    let syn = ethernet(
        ETH_P_IP,
        None,
        &ipv4(6, CLIENT4, VIP4, &[], 0, &tcp(40000, 80, TCP_SYN)),
    );
    let ack = ethernet(
        ETH_P_IP,
        None,
        &ipv4(6, CLIENT4, VIP4, &[], 0, &tcp(40000, 80, TCP_ACK)),
    );
    let query = ethernet(
        ETH_P_IP,
        None,
        &ipv4(17, CLIENT4, VIP4, &[], 0, &udp(40001, 53, &[0; 18])),
    );
    let syn6 = ethernet(
        ETH_P_IPV6,
        None,
        &ipv6(6, CLIENT6, VIP6, &tcp(40002, 443, TCP_SYN)),
    );
    let other = ethernet(
        ETH_P_IP,
        None,
        &ipv4(6, CLIENT4, CLIENT4, &[], 0, &tcp(40000, 22, TCP_SYN)),
    );
    // Seed the connection table for the established paths.
    for f in [&ack, &query] {
        xdp.test_run(lb_common::PROG_XDP, f, INGRESS, 1)
            .expect("seed");
    }
    let paths: [(&str, &[u8], bool); 5] = [
        ("new TCP flow (SYN) to a DR VIP", &syn, true),
        ("established TCP flow to a DR VIP", &ack, true),
        ("established UDP flow, IPIP", &query, false),
        ("new IPv6 TCP flow, IP6IP6", &syn6, false),
        ("TCP, not a VIP (two lookups, pass)", &other, true),
    ];
    println!(
        "BPF_PROG_TEST_RUN, kernel ns/packet, median of {rounds} rounds; floor = swap MACs + XDP_TX"
    );
    println!("512 VIPs x 65,537-slot Maglev tables, 100 real servers");
    println!(
        "{:<38} {:>9} {:>9} {:>6} | {:>9} {:>9} {:>6}",
        "path", "lb_xdp", "floor", "ratio", "lb_xdp", "floor", "ratio"
    );
    println!(
        "{:<38} {:>26} | {:>26}",
        "",
        format!("1 repetition x {calls} calls"),
        format!("{repeat} repetitions in 1 call")
    );
    let mut worst: f64 = 0.0;
    for (name, frame, repeatable) in paths {
        let (mut ours, mut floor, mut ours_r, mut floor_r) = (vec![], vec![], vec![], vec![]);
        for _ in 0..rounds {
            ours.push(per_call(&xdp, lb_common::PROG_XDP, frame, calls));
            floor.push(per_call(&xdp, lb_common::PROG_XDP_FLOOR, frame, calls));
            if repeatable {
                let run = |p| {
                    xdp.test_run(p, frame, INGRESS, repeat)
                        .expect("BPF_PROG_TEST_RUN")
                        .duration
                        .as_nanos() as f64
                };
                ours_r.push(run(lb_common::PROG_XDP));
                floor_r.push(run(lb_common::PROG_XDP_FLOOR));
            }
        }
        let (ours, floor) = (median(ours), median(floor));
        worst = worst.max(ours / floor);
        let repeated = if repeatable {
            let (o, f) = (median(ours_r), median(floor_r));
            format!("{o:>9.1} {f:>9.1} {:>6.2}", o / f)
        } else {
            format!("{:>26}", "(grows the frame)")
        };
        println!(
            "{name:<38} {ours:>9.1} {floor:>9.1} {:>6.2} | {repeated}",
            ours / floor
        );
    }
    println!("worst ratio, per call: {worst:.2} (goal: every VIP path within 2 x the floor)");

    // Map updates.
    let ring_size = maps.capacity().ring_size;
    let all = endpoints(REALS);
    let mut compute = Vec::new();
    let mut write = Vec::new();
    let mut changed = 0;
    for round in 0..rounds.max(3) {
        // Alternately one real server leaves and comes back.
        let set = if round % 2 == 0 { &all[1..] } else { &all[..] };
        let t = Instant::now();
        let table = maglev::table(set, ring_size);
        compute.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        changed = maglev::write_delta(maps.ring_mut(0), &table);
        write.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (compute, write) = (median(compute), median(write));
    println!();
    println!("one real server of 100 leaves a VIP (65,537 slots), median:");
    println!(
        "  Maglev table {compute:.3} ms + changed slots written {write:.3} ms = {:.3} ms ({changed} slots changed, {:.1} % ~ 1/N) (goal <= 1 ms)",
        compute + write,
        changed as f64 * 100.0 / f64::from(ring_size)
    );
    let t = Instant::now();
    let tables: Vec<Vec<u32>> = (0..512u32)
        .map(|vip| {
            // Each VIP its own set: 100 of the first 101 real servers.
            let set: Vec<Endpoint> = endpoints(REALS + 1)
                .into_iter()
                .filter(|e| e.id != 1 + vip % (REALS + 1))
                .collect();
            maglev::table(&set, ring_size)
        })
        .collect();
    let compute = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for (vip, table) in tables.iter().enumerate() {
        maglev::write_delta(maps.ring_mut(vip as u32), table);
    }
    let write = t.elapsed().as_secs_f64();
    println!(
        "512 full tables (100 real servers each): computed {:.0} ms, written {:.0} ms, total {:.0} ms (goal <= 1 s)",
        compute * 1e3,
        write * 1e3,
        (compute + write) * 1e3
    );
    ExitCode::SUCCESS
}
