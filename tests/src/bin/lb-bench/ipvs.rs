//! `cargo xtask bench ipvs`: programming IPVS, in the IPVS VM (Debian's kernel under qemu).
//!
//! - Full apply: 300 virtual services x 100 real servers (30,300 objects) from an empty table,
//!   by lbd's reconciler (list, plan, apply over generic netlink), and the same set through
//!   `ipvsadm -R` in a fresh namespace of the same VM run (the baseline). Each in a new
//!   network namespace; medians over the rounds.
//! - One real-server state change end to end: from the reconciler receiving the new desired
//!   table (a weight set to 0, as a failed check with inhibit_on_failure does) to the kernel's
//!   acknowledgement of the edit; and the same change as a full resync pass (list and diff the
//!   whole table), for scale.
//!
//! Goals: the full apply within 1.5 x `ipvsadm -R`; a single change within 1 ms. The VM runs
//! under TCG (software emulation, no KVM here): absolute times are several times a real
//! machine's; the ratio is the figure that carries over.

use std::{
    net::SocketAddr,
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use lb_tests::lab::Lab;
use lbd::{
    model::{Forwarding, Protocol, ServiceKey},
    reconcile::{
        self, DestSettings, ReconcileStats, ServiceSettings, ServiceState, Table, ipvs::IpvsBackend,
    },
};

use crate::{arg, median};

const SERVICES: u16 = 300;
const REALS: u16 = 100;

fn vip(i: u16) -> SocketAddr {
    SocketAddr::from(([203, 0, 113, 1 + (i / 100) as u8], 1000 + i % 100))
}

fn real(j: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1 + (j / 50) as u8], 8000 + j % 50))
}

fn desired() -> Table {
    (0..SERVICES)
        .map(|i| {
            (
                ServiceKey::Addr {
                    addr: vip(i),
                    protocol: Protocol::Tcp,
                },
                std::sync::Arc::new(ServiceState {
                    settings: ServiceSettings {
                        scheduler: "wrr".to_owned(),
                        flags: 0,
                        timeout: 0,
                        prefix: 32,
                        pe_name: None,
                    },
                    dests: (0..REALS)
                        .map(|j| {
                            (
                                real(j),
                                DestSettings {
                                    weight: 1,
                                    forwarding: Forwarding::Nat,
                                    upper_threshold: 0,
                                    lower_threshold: 0,
                                },
                            )
                        })
                        .collect(),
                }),
            )
        })
        .collect()
}

fn restore_file() -> String {
    let mut text = String::new();
    for i in 0..SERVICES {
        text.push_str(&format!("-A -t {} -s wrr\n", vip(i)));
        for j in 0..REALS {
            text.push_str(&format!("-a -t {} -r {} -m -w 1\n", vip(i), real(j)));
        }
    }
    text
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `ipvs [--rounds N]` on the host: runs `ipvs-inner` in the VM.
pub(crate) fn bench_ipvs(args: &[String]) -> ExitCode {
    if std::env::var_os("RUN_IN_VM").is_some() {
        return inner(args);
    }
    let exe = std::env::current_exe().expect("current exe");
    let status = Command::new("cargo")
        .args(["xtask", "vm", "--"])
        .arg(exe)
        .arg("ipvs")
        .args(args)
        .status()
        .expect("cargo xtask vm");
    if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn inner(args: &[String]) -> ExitCode {
    let rounds = arg(args, "--rounds", 3);
    let restore = restore_file();
    let mut lbd_full = Vec::new();
    let mut ipvsadm_full = Vec::new();
    let mut single = Vec::new();
    let mut resync = Vec::new();
    let want = desired();
    let owned: std::collections::BTreeSet<ServiceKey> = want.keys().copied().collect();
    for _ in 0..rounds {
        // The baseline: ipvsadm -R in its own namespace.
        let mut lab = Lab::new();
        let ns = lab.netns("ipvsadm");
        let mut cmd = ns.command("ipvsadm");
        cmd.arg("-R")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let started = Instant::now();
        let mut child = cmd.spawn().expect("ipvsadm -R");
        {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(restore.as_bytes())
                .expect("restore file");
        }
        assert!(
            child.wait().expect("ipvsadm").success(),
            "ipvsadm -R failed"
        );
        ipvsadm_full.push(ms(started.elapsed()));
        drop(lab);

        // lbd: a pass from empty, then one change as the daemon applies it, then a resync.
        let mut lab = Lab::new();
        let ns = lab.netns("lbd");
        let (full, one, again) = {
            let want = want.clone();
            let owned = owned.clone();
            ns.within(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let mut backend = IpvsBackend::connect().expect("IPVS");
                    let mut stats = ReconcileStats::default();
                    let started = Instant::now();
                    let done = reconcile::pass(&mut backend, &want, &owned, &mut stats).await;
                    let full = started.elapsed();
                    assert_eq!(done.len(), usize::from(SERVICES) * (1 + usize::from(REALS)));
                    assert_eq!(stats.errors, 0, "{:?}", stats.last_error);
                    let mut changed = want.clone();
                    std::sync::Arc::make_mut(
                        changed
                            .get_mut(&ServiceKey::Addr {
                                addr: vip(150),
                                protocol: Protocol::Tcp,
                            })
                            .expect("service"),
                    )
                    .dests
                    .get_mut(&real(42))
                    .expect("real")
                    .weight = 0;
                    let started = Instant::now();
                    let ops = reconcile::plan(&changed, &want, &owned);
                    let done = reconcile::apply_ops(&mut backend, ops, &mut stats).await;
                    let one = started.elapsed();
                    assert_eq!(done.len(), 1);
                    let started = Instant::now();
                    let done = reconcile::pass(&mut backend, &changed, &owned, &mut stats).await;
                    let again = started.elapsed();
                    assert!(done.is_empty(), "a converged table: {done:?}");
                    (full, one, again)
                })
            })
        };
        lbd_full.push(ms(full));
        single.push(ms(one));
        resync.push(ms(again));
        drop(lab);
    }
    let (l, k) = (median(lbd_full), median(ipvsadm_full));
    println!(
        "IPVS in the VM (TCG), {SERVICES} services x {REALS} real servers, median of {rounds} rounds"
    );
    println!("{:<52} {:>10}", "what", "ms");
    println!(
        "{:<52} {:>10.1}",
        "lbd: full apply from empty (list, plan, apply)", l
    );
    println!("{:<52} {:>10.1}", "ipvsadm -R: the same set (baseline)", k);
    println!(
        "{:<52} {:>10.2}   (goal <= 1.5: {})",
        "ratio lbd / ipvsadm -R",
        l / k,
        if l / k <= 1.5 { "met" } else { "MISSED" }
    );
    let one = median(single);
    println!(
        "{:<52} {:>10.3}   (goal <= 1 ms: {})",
        "one real-server change (plan + SET_DEST + ack)",
        one,
        if one <= 1.0 { "met" } else { "MISSED" }
    );
    println!(
        "{:<52} {:>10.1}",
        "resync pass of the whole table (list + diff, no op)",
        median(resync)
    );
    ExitCode::SUCCESS
}
