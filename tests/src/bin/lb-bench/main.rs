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
//! - `config [--rounds N] [--only parse,reload]`: the 65,024-instance `~SEQ` example parsed
//!   against `keepalived -t`, and one-line reloads of 300 x 100 real servers ([`config`]).
//! - `xdp [--repeat N] [--rounds R]`: BPF_PROG_TEST_RUN ns per packet of lbd's XDP program on
//!   each path (VIP hit TCP/UDP/IPv6, non-VIP, non-IP), against an empty XDP program (the floor,
//!   which is the harness's own cost) on the same frames.
#![expect(
    unused_crate_dependencies,
    reason = "each target of lb-tests uses part of the package's dependencies; cargo cannot scope them"
)]

mod checks;
mod config;
mod failover;
mod ipvs;
mod watchdog;
mod xdp;

use std::process::ExitCode;

/// The number after flag `name`, else `default`.
pub(crate) fn arg(args: &[String], name: &str, default: u32) -> u32 {
    arg_str(args, name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} takes a number, not {v}"))
    })
}

/// The value after flag `name`, if given.
pub(crate) fn arg_str<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("xdp") => xdp::bench_xdp(&args[1..]),
        Some("failover") => failover::bench_failover(&args[1..]),
        Some("watchdog") => watchdog::bench_watchdog(&args[1..]),
        Some("checks") => checks::bench_checks(&args[1..]),
        Some("ipvs") => ipvs::bench_ipvs(&args[1..]),
        Some("config") => config::bench_config(&args[1..]),
        Some("checks-floor") => checks::floor(&args[1..]),
        other => {
            eprintln!(
                "unknown benchmark {other:?}; available: xdp, failover, watchdog, checks, ipvs, config"
            );
            ExitCode::FAILURE
        }
    }
}
