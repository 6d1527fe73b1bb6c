//! `cargo xtask bench failover`: VRRP failover of an lbd pair against a keepalived pair, same
//! lab, same keepalived.conf, same run.
//!
//! For each setting (VRRPv3 at advert_int 0.05 and 0.01, VRRPv2 at 1) and each action (the
//! master's process group SIGKILLed, its link set down, a graceful SIGTERM), each repetition
//! builds a fresh two-router LAN (master priority 150, backup 100), waits for a settled master,
//! starts a capture in the backup's namespace, acts right after one of the master's adverts
//! (so the crash's phase is the same for every sample), and waits for the backup's gratuitous ARP
//! for the VIP (after it added the VIP: both implementations add first, and the VIP is checked).
//! Figures per case, medians over the repetitions:
//! - from the action to the backup's first gratuitous ARP;
//! - the overhead above the RFC figure: from the last advert of the master the backup received
//!   (its priority-0 advert when graceful) to that ARP, minus Master_Down_Interval (Skew_Time
//!   when graceful);
//! - lbd / keepalived.
//!
//! Then a steady run at advert_int 0.01 (preemption included, then a quiet period): every
//! change of the router sending adverts is a transition. Then RSS and CPU of one router running
//! 1, 100 and 1,000 instances at advert_int 1 (masters; over 4 interfaces, 250 VRIDs each).

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use lb_tests::{
    lab::{Lab, wait_until},
    vrrp::{Capture, Kind, Router, Seen, Settings, VIP, lan, mac_of, wait_master},
};

use crate::{arg, arg_str, median};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Kill,
    LinkDown,
    Term,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Self::Kill => "crash (SIGKILL)",
            Self::LinkDown => "link down",
            Self::Term => "graceful (SIGTERM)",
        }
    }
}

/// One repetition's figures.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    pub(crate) from_action: Duration,
    /// Last advert heard → backup's ARP, minus the RFC figure (may be negative).
    pub(crate) overhead_ms: f64,
}

/// The RFC figure for the backup (priority 100): Master_Down_Interval, or Skew_Time after a
/// priority-0 advert. keepalived's arithmetic, in µs.
fn theory(version: u8, advert_int: &str, action: Action) -> Duration {
    let interval = Duration::from_secs_f64(advert_int.parse().expect("advert_int"));
    let skew = if version == 2 {
        Duration::from_micros(156 * 1_000_000 / 256)
    } else {
        Duration::from_micros(156 * u64::try_from(interval.as_micros()).unwrap_or(0) / 256)
    };
    match action {
        Action::Term => skew,
        Action::Kill | Action::LinkDown => 3 * interval + skew,
    }
}

fn measure(kind: Kind, version: u8, advert_int: &'static str, action: Action) -> Sample {
    measure_with(kind, &[], version, advert_int, action)
}

/// One repetition; `lbd_args` go to both lbd routers.
pub(crate) fn measure_with(
    kind: Kind,
    lbd_args: &[&str],
    version: u8,
    advert_int: &'static str,
    action: Action,
) -> Sample {
    let (mut lab, _switch, mut r) = lan(&[kind, kind]);
    for router in &mut r {
        router.lbd_args = lbd_args.iter().map(|a| (*a).to_owned()).collect();
    }
    r[1].start(&mut lab, &Settings::new(version, 100, advert_int));
    r[0].start(&mut lab, &Settings::new(version, 150, advert_int));
    wait_master(&r, 0, "higher priority");
    let master = Ipv4Addr::new(192, 0, 2, 1);
    let backup_mac = mac_of(&r[1].ns, "eth0");
    let capture = Capture::start(&r[1].ns);
    // Settled: the backup has heard a few adverts of the master since the capture started.
    wait_until("adverts of the master", Duration::from_secs(10), || {
        capture
            .frames()
            .iter()
            .filter(|(_, s)| matches!(s, Seen::Advert { src, .. } if *src == master))
            .count()
            >= 3
    });
    // Act right after an advert of the master, so that the crash's phase within the advert
    // interval (up to a whole interval, at random) is the same small one for every sample.
    let adverts = |c: &Capture| {
        c.frames()
            .iter()
            .filter(|(_, s)| matches!(s, Seen::Advert { src, .. } if *src == master))
            .count()
    };
    let before = adverts(&capture);
    let deadline = Instant::now() + Duration::from_secs(10);
    while adverts(&capture) == before {
        assert!(Instant::now() < deadline, "no advert of the master");
        std::thread::sleep(Duration::from_micros(100));
    }
    let acted = Instant::now();
    match action {
        Action::Kill => {
            r[0].stop(&mut lab, "KILL");
        }
        Action::Term => {
            r[0].stop(&mut lab, "TERM");
        }
        Action::LinkDown => r[0].ns.ip(&["link", "set", "eth0", "down"]),
    }
    let vip: Ipv4Addr = VIP.parse().expect("VIP");
    let garp_at = || {
        capture.frames().iter().find_map(|(at, s)| {
            (*at > acted
                && *s
                    == Seen::Garp {
                        vip,
                        mac: backup_mac,
                    })
            .then_some(*at)
        })
    };
    wait_until(
        &format!("{kind:?} backup's gratuitous ARP after {}", action.name()),
        Duration::from_secs(15),
        || garp_at().is_some(),
    );
    let garp = garp_at().expect("seen");
    assert!(
        r[1].holds_vip(),
        "the backup announced the VIP without holding it"
    );
    let frames = capture.finish();
    let heard = frames
        .iter()
        .filter(|(at, s)| {
            *at < garp
                && matches!(s, Seen::Advert { src, priority } if *src == master
                    && (action == Action::Term) == (*priority == 0))
        })
        .map(|(at, _)| *at)
        .next_back()
        .expect("an advert of the master before the takeover");
    let overhead = garp.duration_since(heard).as_secs_f64()
        - theory(version, advert_int, action).as_secs_f64();
    drop(lab);
    Sample {
        from_action: garp.duration_since(acted),
        overhead_ms: overhead * 1e3,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn failover_table(reps: u32) {
    println!(
        "\n{:<28} {:>9} {:>10} {:>10} {:>7}   {:>13} {:>13}   {:>19} {:>19}",
        "case",
        "RFC ms",
        "lbd ms",
        "kad ms",
        "ratio",
        "lbd over ms",
        "kad over ms",
        "lbd range ms",
        "kad range ms"
    );
    for (version, advert_int) in [(3u8, "0.05"), (3, "0.01"), (2, "1")] {
        for action in [Action::Kill, Action::LinkDown, Action::Term] {
            let mut lbd = Vec::new();
            let mut kad = Vec::new();
            // Interleaved, so drift on a shared machine hits both alike.
            for _ in 0..reps {
                lbd.push(measure(Kind::Lbd, version, advert_int, action));
                kad.push(measure(Kind::Keepalived, version, advert_int, action));
            }
            let range = |v: &[Sample]| {
                let mut t: Vec<f64> = v.iter().map(|s| ms(s.from_action)).collect();
                t.sort_by(f64::total_cmp);
                format!("{:.1}-{:.1}", t[0], t[t.len() - 1])
            };
            let med = |v: &[Sample]| median(v.iter().map(|s| ms(s.from_action)).collect());
            let over = |v: &[Sample]| median(v.iter().map(|s| s.overhead_ms).collect());
            println!(
                "{:<28} {:>9.1} {:>10.1} {:>10.1} {:>7.2}   {:>13.2} {:>13.2}   {:>19} {:>19}",
                format!("v{version} {advert_int} s {}", action.name()),
                ms(theory(version, advert_int, action)),
                med(&lbd),
                med(&kad),
                med(&lbd) / med(&kad),
                over(&lbd),
                over(&kad),
                range(&lbd),
                range(&kad),
            );
        }
    }
    println!(
        "(ms from the action to the backup's gratuitous ARP, median of {reps}; ratio = lbd/keepalived; \
         over = last advert heard -> ARP, minus the RFC figure in the first column)"
    );
}

/// Starts a backup, then a higher-priority master that preempts it, and watches the adverts
/// for `secs`: returns (changes of sender during the whole run, adverts from the backup after
/// the first second of the master, the longest gap between the master's adverts in ms).
fn steady(kind: Kind, secs: u64) -> (usize, usize, f64) {
    let (mut lab, _switch, mut r) = lan(&[kind, kind]);
    r[1].start(&mut lab, &Settings::new(3, 100, "0.01"));
    wait_master(&r, 1, "alone");
    let capture = Capture::start(&r[1].ns);
    r[0].start(&mut lab, &Settings::new(3, 150, "0.01"));
    wait_master(&r, 0, "preempting");
    std::thread::sleep(Duration::from_secs(secs));
    let frames = capture.finish();
    drop(lab);
    let adverts: Vec<(Instant, Ipv4Addr)> = frames
        .iter()
        .filter_map(|(at, s)| match s {
            Seen::Advert { src, priority } if *priority > 0 => Some((*at, *src)),
            _ => None,
        })
        .collect();
    let master = Ipv4Addr::new(192, 0, 2, 1);
    let changes = adverts.windows(2).filter(|w| w[0].1 != w[1].1).count();
    let first_master = adverts
        .iter()
        .find(|(_, src)| *src == master)
        .map(|(at, _)| *at)
        .expect("the master advertised");
    let settled = first_master + Duration::from_secs(1);
    let late_backup = adverts
        .iter()
        .filter(|(at, src)| *at > settled && *src != master)
        .count();
    let gaps = adverts
        .iter()
        .filter(|(at, src)| *at > settled && *src == master)
        .map(|(at, _)| *at)
        .collect::<Vec<_>>();
    let max_gap = gaps
        .windows(2)
        .map(|w| ms(w[1].duration_since(w[0])))
        .fold(0.0, f64::max);
    (changes, late_backup, max_gap)
}

fn steady_table(secs: u64) {
    println!(
        "\nsteady run, VRRPv3 advert_int 0.01, {secs} s after preemption (Master_Down_Interval 36.1 ms)"
    );
    println!(
        "{:<12} {:>22} {:>30} {:>26}",
        "", "sender changes (all)", "backup adverts after settling", "longest master gap ms"
    );
    for kind in [Kind::Lbd, Kind::Keepalived] {
        let (changes, late, gap) = steady(kind, secs);
        println!(
            "{:<12} {changes:>22} {late:>30} {gap:>26.1}",
            format!("{kind:?}")
        );
    }
    println!(
        "(one sender change is the preemption itself; every further one is a transition, \
         every backup advert after settling a flap)"
    );
}

/// keepalived.conf text for `count` instances at advert_int 1 over 4 interfaces, 250 VRIDs
/// each; eth0-eth2 carry IPv4 VIPs of the three documentation ranges, eth3 IPv6 ones.
fn many_instances_conf(count: usize) -> String {
    let mut conf = String::from("global_defs {\n    router_id many\n}\n");
    for i in 0..count {
        let (interface, vrid) = (i / 250, i % 250 + 1);
        let vip = match interface {
            0 => format!("192.0.2.{vrid}/32"),
            1 => format!("198.51.100.{vrid}/32"),
            2 => format!("203.0.113.{vrid}/32"),
            _ => format!("2001:db8:3::{vrid:x}/64"),
        };
        conf.push_str(&format!(
            "vrrp_instance VI_{i} {{\n    state BACKUP\n    interface eth{interface}\n    \
             virtual_router_id {vrid}\n    version 3\n    priority 150\n    advert_int 1\n    \
             virtual_ipaddress {{\n        {vip}\n    }}\n}}\n"
        ));
    }
    conf
}

/// (RSS in KiB, CPU time in clock ticks) of `pid` and its descendants in its process group.
pub(crate) fn usage(pgid: u32) -> (u64, u64) {
    let (rss, user, system) = usage_split(pgid);
    (rss, user + system)
}

/// (RSS in KiB, user and system CPU time in clock ticks) of the process group `pgid`.
pub(crate) fn usage_split(pgid: u32) -> (u64, u64, u64) {
    let mut rss = 0;
    let mut user = 0;
    let mut system = 0;
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces) start after ") ".
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // rest[0] is field 3 (state): pgrp is field 5, utime 14, stime 15, rss (pages) 24.
        if fields.get(2).and_then(|f| f.parse::<u32>().ok()) != Some(pgid) {
            continue;
        }
        let field = |n: usize| {
            fields
                .get(n - 3)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        user += field(14);
        system += field(15);
        rss += field(24) * 4;
    }
    (rss, user, system)
}

fn resources(kind: Kind, count: usize, window: Duration) -> (u64, f64) {
    let mut lab = Lab::new();
    let router = lab.netns("many");
    let sink = lab.netns("sink");
    for i in 0..4 {
        let interface = format!("eth{i}");
        lab.veth(&router, &interface, &sink, &format!("s{i}"));
    }
    router.ip(&["addr", "add", "192.0.2.254/24", "dev", "eth0"]);
    router.ip(&["addr", "add", "198.51.100.254/24", "dev", "eth1"]);
    router.ip(&["addr", "add", "203.0.113.254/24", "dev", "eth2"]);
    let mut r = Router {
        name: "many".to_owned(),
        ns: router,
        kind,
        dir: lab.dir().to_path_buf(),
        pid: None,
        vip: VIP,
        lbd_args: Vec::new(),
    };
    r.start_conf(&mut lab, &many_instances_conf(count));
    let pid = r.pid.expect("running");
    // Every instance takes over after its 3.4 s down interval; then measure a quiet window.
    std::thread::sleep(Duration::from_secs(5));
    let (_, before) = usage(pid);
    std::thread::sleep(window);
    let (rss, after) = usage(pid);
    // /proc counts in USER_HZ, 100 per second on Linux.
    let cpu = (after - before) as f64 / 100.0 / window.as_secs_f64() * 100.0;
    drop(lab);
    (rss, cpu)
}

fn resources_table(window: Duration) {
    println!(
        "\nresources of one router, all instances master, VRRPv3 advert_int 1, {} s window",
        window.as_secs()
    );
    println!(
        "{:>10} {:>12} {:>12} {:>10} {:>10}",
        "instances", "lbd RSS KiB", "kad RSS KiB", "lbd CPU %", "kad CPU %"
    );
    for count in [1, 100, 1000] {
        let (lbd_rss, lbd_cpu) = resources(Kind::Lbd, count, window);
        let (kad_rss, kad_cpu) = resources(Kind::Keepalived, count, window);
        println!("{count:>10} {lbd_rss:>12} {kad_rss:>12} {lbd_cpu:>10.2} {kad_cpu:>10.2}");
    }
    println!(
        "(RSS and CPU summed over each daemon's process group: keepalived's parent and VRRP child)"
    );
}

/// `failover [--reps N] [--steady-secs S] [--window-secs W] [--only failover,steady,resources]`
pub(crate) fn bench_failover(args: &[String]) -> std::process::ExitCode {
    lb_tests::require_root();
    let reps = arg(args, "--reps", 5);
    let steady_secs = arg(args, "--steady-secs", 60);
    let window = Duration::from_secs(u64::from(arg(args, "--window-secs", 20)));
    let only: Vec<&str> = arg_str(args, "--only")
        .unwrap_or("failover,steady,resources")
        .split(',')
        .collect();
    if only.contains(&"failover") {
        failover_table(reps);
    }
    if only.contains(&"steady") {
        steady_table(u64::from(steady_secs));
    }
    if only.contains(&"resources") {
        resources_table(window);
    }
    std::process::ExitCode::SUCCESS
}
