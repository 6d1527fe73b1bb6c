//! `cargo xtask bench watchdog`: VRRP master detection when the daemons are starved of CPU.
//!
//! Three variants in one run, each a pair of routers at VRRPv3 advert_int 0.05 s: lbd (with
//! the kernel's record of adverts), lbd with `--no-vrrp-bpf` (user space only), keepalived.
//! Starvation: two busy loops per core at the daemons' own priority (nice 0), plus a thread
//! that allocates, touches and frees 256 MiB over and over. The capture that times everything
//! runs at real-time priority, so the figures are the daemons', not the harness's.
//!
//! - Crash failover, idle and starved: overhead of the backup's gratuitous ARP above the
//!   Master_Down_Interval after the master's last advert, median and p99 over the crashes.
//! - A healthy master for a while under starvation: false failovers (runs of adverts from the
//!   backup) and milliseconds of split brain (the length of those runs).

use std::{
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use lb_tests::vrrp::{Capture, Kind, Seen, Settings, lan, wait_master};

use crate::{
    arg,
    failover::{Action, measure_with},
    median,
};

/// CPU and memory pressure until dropped.
struct Starvation {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Starvation {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut threads = Vec::new();
        for _ in 0..2 * cpus {
            let stop = Arc::clone(&stop);
            threads.push(std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }));
        }
        let churn = Arc::clone(&stop);
        threads.push(std::thread::spawn(move || {
            while !churn.load(Ordering::Relaxed) {
                let mut block = vec![0u8; 256 << 20];
                for page in block.chunks_mut(4096) {
                    page[0] = 1;
                }
                std::hint::black_box(&block);
            }
        }));
        Self { stop, threads }
    }
}

impl Drop for Starvation {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            thread.join().ok();
        }
    }
}

#[derive(Clone, Copy)]
struct Variant {
    name: &'static str,
    kind: Kind,
    lbd_args: &'static [&'static str],
}

const VARIANTS: [Variant; 3] = [
    Variant {
        name: "lbd (kernel path)",
        kind: Kind::Lbd,
        lbd_args: &[],
    },
    Variant {
        name: "lbd (user space)",
        kind: Kind::Lbd,
        lbd_args: &["--no-vrrp-bpf"],
    },
    Variant {
        name: "keepalived",
        kind: Kind::Keepalived,
        lbd_args: &[],
    },
];

fn p99(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((v.len() as f64) * 0.99).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// A healthy master for `secs` under starvation: (false failovers, ms of split brain).
fn steady(variant: Variant, secs: u64) -> (usize, f64) {
    let (mut lab, _switch, mut r) = lan(&[variant.kind, variant.kind]);
    for router in &mut r {
        router.lbd_args = variant.lbd_args.iter().map(|a| (*a).to_owned()).collect();
    }
    r[1].start(&mut lab, &Settings::new(3, 100, "0.05"));
    r[0].start(&mut lab, &Settings::new(3, 150, "0.05"));
    wait_master(&r, 0, "higher priority");
    std::thread::sleep(Duration::from_millis(500));
    let capture = Capture::start(&r[1].ns);
    {
        let _starved = Starvation::start();
        std::thread::sleep(Duration::from_secs(secs));
    }
    let frames = capture.finish();
    drop(lab);
    let backup = Ipv4Addr::new(192, 0, 2, 2);
    let sent: Vec<Instant> = frames
        .iter()
        .filter_map(|(at, s)| match s {
            Seen::Advert { src, priority } if *src == backup && *priority > 0 => Some(*at),
            _ => None,
        })
        .collect();
    // Runs of the backup's adverts: a new run starts after a gap of more than 3 intervals.
    let interval = Duration::from_millis(50);
    let mut runs = 0;
    let mut split = Duration::ZERO;
    let mut start: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    for at in sent {
        match last {
            Some(prev) if at.duration_since(prev) <= 3 * interval => {}
            _ => {
                if let (Some(s), Some(l)) = (start, last) {
                    split += l.duration_since(s) + interval;
                }
                runs += 1;
                start = Some(at);
            }
        }
        last = Some(at);
    }
    if let (Some(s), Some(l)) = (start, last) {
        split += l.duration_since(s) + interval;
    }
    (runs, split.as_secs_f64() * 1e3)
}

/// `watchdog [--crashes N] [--steady-secs S]`
pub(crate) fn bench_watchdog(args: &[String]) -> std::process::ExitCode {
    lb_tests::require_root();
    let crashes = arg(args, "--crashes", 20);
    let steady_secs = u64::from(arg(args, "--steady-secs", 300));
    println!(
        "\nVRRPv3 advert_int 0.05 s, master crash (process group SIGKILL), {crashes} crashes each: \
         overhead above Master_Down_Interval (180.5 ms), ms"
    );
    println!(
        "{:<20} {:>12} {:>10} {:>14} {:>12}",
        "", "idle median", "idle p99", "starved median", "starved p99"
    );
    for variant in VARIANTS {
        let mut idle = Vec::new();
        let mut starved = Vec::new();
        for _ in 0..crashes {
            idle.push(
                measure_with(variant.kind, variant.lbd_args, 3, "0.05", Action::Kill).overhead_ms,
            );
            let _starvation = Starvation::start();
            starved.push(
                measure_with(variant.kind, variant.lbd_args, 3, "0.05", Action::Kill).overhead_ms,
            );
        }
        println!(
            "{:<20} {:>12.2} {:>10.2} {:>14.2} {:>12.2}",
            variant.name,
            median(idle.clone()),
            p99(idle),
            median(starved.clone()),
            p99(starved)
        );
    }
    println!(
        "\nhealthy master, {steady_secs} s of starvation (2 busy loops per core at nice 0, 256 MiB churn)"
    );
    println!(
        "{:<20} {:>16} {:>18}",
        "", "false failovers", "split brain ms"
    );
    for variant in VARIANTS {
        let (runs, split) = steady(variant, steady_secs);
        println!("{:<20} {runs:>16} {split:>18.1}", variant.name);
    }
    std::process::ExitCode::SUCCESS
}
