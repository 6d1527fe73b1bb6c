//! `cargo xtask bench <name>`: lbd's benchmarks. Each prints its figures next to a baseline
//! measured in the same run.
//!
//! - `failover [--reps N] [--steady-secs S] [--window-secs W] [--only ...]`: VRRP failover,
//!   steadiness and resources of lbd against keepalived 2.2.7 in the same lab ([`failover`]).
//! - `watchdog [--crashes N] [--steady-secs S]`: VRRP under CPU starvation, lbd with and
//!   without the kernel's record of adverts, and keepalived ([`watchdog`]).
//! - `checks [--window-secs W] [--kills N] [--only load,detection]`: health checks at scale
//!   (10,000 TCP, 1,000 HTTP) against a bare connect loop, and detection latency ([`checks`]).
//! - `ipvs [--rounds N]`: 300 x 100 applied by lbd's reconciler against `ipvsadm -R`, and one
//!   real-server change, in the IPVS VM ([`ipvs`]).
//! - `xdp [--repeat N] [--rounds R]`: BPF_PROG_TEST_RUN ns per packet of lbd's XDP program on
//!   each path (VIP hit TCP/UDP/IPv6, non-VIP, non-IP), against an empty XDP program (the floor,
//!   which is the harness's own cost) on the same frames.
#![expect(
    unused_crate_dependencies,
    reason = "each target of lb-tests uses part of the package's dependencies; cargo cannot scope them"
)]

mod checks;
mod failover;
mod ipvs;
mod watchdog;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    process::ExitCode,
};

use lb_tests::packet::{
    ETH_P_IP, ETH_P_IPV6, TCP_SYN, arp_request, ethernet, ipv4, ipv6, tcp, udp,
};
use lbd::{
    dataplane::xdp::{XdpDataplane, vip_key},
    model::Protocol,
};

fn arg(args: &[String], name: &str, default: u32) -> u32 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number, not {v}"))
        })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench_xdp(args: &[String]) -> ExitCode {
    lb_tests::require_root();
    let repeat = arg(args, "--repeat", 1_000_000);
    let rounds = arg(args, "--rounds", 7);
    let vip4 = Ipv4Addr::new(203, 0, 113, 10);
    let vip6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
    let client = Ipv4Addr::new(192, 0, 2, 1);
    let client6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    let mut xdp = XdpDataplane::load(lb_tests::bpf_object()).expect("loading the XDP program");
    // A realistic map: 512 VIPs (the map's capacity), the benchmarked ones among them.
    let mut vips = vec![
        vip_key(vip4.into(), 80, Protocol::Tcp),
        vip_key(vip6.into(), 443, Protocol::Tcp),
    ];
    vips.extend((0..510u16).map(|i| {
        vip_key(
            Ipv4Addr::new(198, 51, 100, (i % 250) as u8).into(),
            1000 + i,
            Protocol::Udp,
        )
    }));
    xdp.set_vips(&vips).expect("filling the VIP map");
    let frames = [
        (
            "IPv4 TCP SYN to a VIP",
            ethernet(
                ETH_P_IP,
                None,
                &ipv4(6, client, vip4, &[], 0, &tcp(40000, 80, TCP_SYN)),
            ),
        ),
        (
            "IPv6 TCP SYN to a VIP",
            ethernet(
                ETH_P_IPV6,
                None,
                &ipv6(6, client6, vip6, &tcp(40000, 443, TCP_SYN)),
            ),
        ),
        (
            "IPv4 UDP to one of 512 VIPs",
            ethernet(
                ETH_P_IP,
                None,
                &ipv4(
                    17,
                    client,
                    Ipv4Addr::new(198, 51, 100, 7),
                    &[],
                    0,
                    &udp(40000, 1007, &[0; 18]),
                ),
            ),
        ),
        (
            "IPv4 TCP, not a VIP (two lookups)",
            ethernet(
                ETH_P_IP,
                None,
                &ipv4(6, client, client, &[], 0, &tcp(40000, 22, TCP_SYN)),
            ),
        ),
        ("ARP (not IP)", arp_request()),
    ];
    println!(
        "BPF_PROG_TEST_RUN, {repeat} repetitions x {rounds} rounds, median of rounds, kernel ns/packet"
    );
    println!(
        "{:<42} {:>10} {:>10} {:>10} {:>8}",
        "path", "lb_xdp", "floor", "program", "ratio"
    );
    for (name, frame) in &frames {
        let mut ours = Vec::new();
        let mut floor = Vec::new();
        // Interleave the two programs so drift on a shared machine hits both alike.
        for _ in 0..rounds {
            let run = |prog| {
                xdp.test_run(prog, frame, repeat)
                    .expect("BPF_PROG_TEST_RUN")
                    .duration
                    .as_nanos() as f64
            };
            ours.push(run(lb_common::PROG_XDP));
            floor.push(run(lb_common::PROG_XDP_FLOOR));
        }
        let (ours, floor) = (median(ours), median(floor));
        println!(
            "{name:<42} {ours:>10.1} {floor:>10.1} {:>10.1} {:>8.2}",
            ours - floor,
            ours / floor
        );
    }
    println!(
        "(program = lb_xdp - floor: the program's own cost; floor = an empty XDP program on the same frame)"
    );
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("xdp") => bench_xdp(&args[1..]),
        Some("failover") => failover::bench_failover(&args[1..]),
        Some("watchdog") => watchdog::bench_watchdog(&args[1..]),
        Some("checks") => checks::bench_checks(&args[1..]),
        Some("ipvs") => ipvs::bench_ipvs(&args[1..]),
        Some("checks-floor") => checks::floor(&args[1..]),
        other => {
            eprintln!(
                "unknown benchmark {other:?}; available: xdp, failover, watchdog, checks, ipvs"
            );
            ExitCode::FAILURE
        }
    }
}
