//! VRRP with real packets: lbd with lbd, and lbd with keepalived 2.2.7 in the same virtual
//! router, on a bridged LAN in a namespace lab ([`lb_tests::vrrp`]). Every router, lbd or
//! keepalived, reads the same keepalived.conf text (only the priority and flags differ), which is
//! also what users do.
#![expect(
    unused_crate_dependencies,
    reason = "each target of lb-tests uses part of the package's dependencies; cargo cannot scope them"
)]

use std::{net::Ipv4Addr, time::Duration};

use lb_tests::{
    lab::wait_until,
    packet,
    vrrp::{Kind, Router, Settings, TAKEOVER, VIP, assert_stays_master, lan, wait_master},
};

/// Elects the higher priority, takes over on a crash, and the restarted router preempts back.
fn crash_failover_and_preempt_back(master_kind: Kind, backup_kind: Kind, version: u8) {
    crash_failover_and_preempt_back_with(master_kind, backup_kind, version, |s| s);
}

fn crash_failover_and_preempt_back_with(
    master_kind: Kind,
    backup_kind: Kind,
    version: u8,
    tune: impl Fn(Settings) -> Settings,
) {
    let (mut lab, _, mut r) = lan(&[master_kind, backup_kind]);
    let int = if version == 2 { "1" } else { "0.1" };
    let high = tune(Settings::new(version, 150, int));
    r[1].start(&mut lab, &tune(Settings::new(version, 100, int)));
    r[0].start(&mut lab, &high);
    wait_master(&r, 0, "higher priority");
    if backup_kind == Kind::Lbd {
        wait_until("lbd backup to hear the master", TAKEOVER, || {
            let s = r[1].status();
            s["state"] == "BACKUP"
                && s["active_router"]
                    .as_str()
                    .is_some_and(|a| a.ends_with(" priority 150"))
        });
    }
    // Hold: no flapping while both run (3 down intervals at v2, many more at v3).
    assert_stays_master(&r, 0, Duration::from_secs(if version == 2 { 4 } else { 2 }));

    let became_active = |r: &Router| r.status()["became_active"].as_u64().unwrap();
    let before = (backup_kind == Kind::Lbd).then(|| became_active(&r[1]));
    r[0].stop(&mut lab, "KILL");
    // A crashed router leaves its address behind; a reboot would clear it.
    r[0].clear_vip();
    wait_master(&r, 1, "the master crashed");
    if let Some(before) = before {
        let s = r[1].status();
        assert_eq!(s["state"], "MASTER", "{s}");
        assert_eq!(became_active(&r[1]), before + 1, "{s}");
    }

    r[0].start(&mut lab, &high);
    wait_master(&r, 0, "the higher priority came back and preempts");
    if backup_kind == Kind::Lbd {
        wait_until("lbd to be backup again", TAKEOVER, || {
            r[1].status()["state"] == "BACKUP"
        });
    }
}

/// keepalived's `vrrp_rt_priority`: lbd's VRRP thread (`lbd-vrrp`, where every driver runs)
/// is SCHED_RR at that priority, and only that thread.
#[test]
fn vrrp_rt_priority_puts_the_vrrp_thread_under_sched_rr() {
    let (mut lab, _, mut r) = lan(&[Kind::Lbd]);
    r[0].start(
        &mut lab,
        &Settings::new(3, 150, "0.1").global("vrrp_rt_priority 7"),
    );
    wait_master(&r, 0, "alone");
    let pid = r[0].pid.expect("running");
    // /proc/PID/task/TID/stat: field 40 is rt_priority, 41 the policy (2: SCHED_RR).
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let after_comm = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        // Fields after "(comm) " start at field 3.
        let (rt_priority, policy) = (fields[40 - 3], fields[41 - 3]);
        threads.push((
            comm.trim().to_owned(),
            rt_priority.to_owned(),
            policy.to_owned(),
        ));
    }
    let vrrp: Vec<_> = threads.iter().filter(|t| t.0 == "lbd-vrrp").collect();
    assert_eq!(vrrp.len(), 1, "{threads:?}");
    assert_eq!(
        (vrrp[0].1.as_str(), vrrp[0].2.as_str()),
        ("7", "2"),
        "{threads:?}"
    );
    assert!(
        threads
            .iter()
            .filter(|t| t.0 != "lbd-vrrp")
            .all(|t| t.2 == "0"),
        "every other thread stays SCHED_OTHER: {threads:?}"
    );
}

#[test]
fn lbd_pair_v3_crash_failover_and_preempt_back() {
    crash_failover_and_preempt_back(Kind::Lbd, Kind::Lbd, 3);
}

#[test]
fn lbd_pair_v2_crash_failover_and_preempt_back() {
    crash_failover_and_preempt_back(Kind::Lbd, Kind::Lbd, 2);
}

#[test]
fn keepalived_master_lbd_backup_v2() {
    crash_failover_and_preempt_back(Kind::Keepalived, Kind::Lbd, 2);
}

#[test]
fn keepalived_master_lbd_backup_v3() {
    crash_failover_and_preempt_back(Kind::Keepalived, Kind::Lbd, 3);
}

#[test]
fn lbd_master_keepalived_backup_v2() {
    crash_failover_and_preempt_back(Kind::Lbd, Kind::Keepalived, 2);
}

#[test]
fn lbd_master_keepalived_backup_v3() {
    crash_failover_and_preempt_back(Kind::Lbd, Kind::Keepalived, 3);
}

#[test]
fn lbd_pair_ipv6_crash_failover_and_preempt_back() {
    crash_failover_and_preempt_back_with(Kind::Lbd, Kind::Lbd, 3, Settings::v6);
}

#[test]
fn keepalived_master_lbd_backup_ipv6() {
    crash_failover_and_preempt_back_with(Kind::Keepalived, Kind::Lbd, 3, Settings::v6);
}

#[test]
fn lbd_master_keepalived_backup_ipv6() {
    crash_failover_and_preempt_back_with(Kind::Lbd, Kind::Keepalived, 3, Settings::v6);
}

/// The master's link goes down: it goes FAULT and drops its VIP, the backup takes over; the
/// link comes back: it waits as backup, then preempts. Against keepalived as the backup too.
#[test]
fn link_down_faults_the_master_and_link_up_preempts_back() {
    for backup in [Kind::Lbd, Kind::Keepalived] {
        let (mut lab, _, mut r) = lan(&[Kind::Lbd, backup]);
        r[1].start(&mut lab, &Settings::new(3, 100, "0.1"));
        r[0].start(&mut lab, &Settings::new(3, 150, "0.1"));
        wait_master(&r, 0, "higher priority");
        r[0].ns.ip(&["link", "set", "eth0", "down"]);
        wait_until("lbd to go FAULT", TAKEOVER, || {
            r[0].status()["state"] == "FAULT"
        });
        assert!(!r[0].holds_vip(), "a faulty lbd keeps no VIP");
        wait_until(&format!("{backup:?} to take over"), TAKEOVER, || {
            r[1].holds_vip()
        });
        r[0].ns.ip(&["link", "set", "eth0", "up"]);
        wait_master(&r, 0, "link back, preempting");
    }
}

/// A graceful stop sends priority 0: the backup takes over and counts it, and the stopped
/// master gives its address back.
#[test]
fn graceful_stop_hands_over_with_a_priority_zero_advert() {
    let (mut lab, _, mut r) = lan(&[Kind::Lbd, Kind::Lbd]);
    r[1].start(&mut lab, &Settings::new(3, 100, "0.5"));
    r[0].start(&mut lab, &Settings::new(3, 200, "0.5"));
    wait_master(&r, 0, "higher priority");
    r[0].stop(&mut lab, "TERM");
    assert!(!r[0].holds_vip(), "a stopped lbd must release its VIP");
    wait_master(&r, 1, "the master stopped");
    let s = r[1].status();
    assert_eq!(s["priority_zero_received"], 1, "{s}");
    assert_eq!(s["state"], "MASTER", "{s}");
}

/// At equal priority the higher primary address wins (RFC 9568 §6.4.3), against keepalived too.
/// A backup never preempts an active router of its own priority (§6.4.2), so the tie break is
/// between two active routers: each comes up alone (its switch port isolated, carrier up) and
/// becomes master, then the LAN heals and the lower address yields.
#[test]
fn equal_priority_is_decided_by_the_higher_address() {
    for kinds in [
        [Kind::Lbd, Kind::Lbd],
        [Kind::Lbd, Kind::Keepalived],
        [Kind::Keepalived, Kind::Lbd],
    ] {
        let (mut lab, switch, mut r) = lan(&kinds);
        let isolate = |on: &str| {
            for port in ["p-d1", "p-d2"] {
                let out = switch.run("bridge", &["link", "set", "dev", port, "isolated", on]);
                assert!(
                    out.status.success(),
                    "bridge link set {port} isolated {on}: {out:?}"
                );
            }
        };
        isolate("on");
        let settings = Settings::new(3, 100, "0.1");
        r[0].start(&mut lab, &settings);
        r[1].start(&mut lab, &settings);
        wait_until(
            &format!("{kinds:?}: both masters while apart"),
            TAKEOVER,
            || r.iter().all(Router::holds_vip),
        );
        isolate("off");
        wait_master(&r, 1, &format!("{kinds:?}: 192.0.2.2 > 192.0.2.1"));
        assert_stays_master(&r, 1, Duration::from_secs(1));
    }
}

/// With `nopreempt` a higher-priority router that comes up later stays backup.
#[test]
fn nopreempt_leaves_the_lower_priority_master_in_place() {
    let (mut lab, _, mut r) = lan(&[Kind::Lbd, Kind::Lbd]);
    r[1].start(&mut lab, &Settings::new(3, 100, "0.1"));
    wait_master(&r, 1, "alone");
    r[0].start(&mut lab, &Settings::new(3, 150, "0.1").with("nopreempt"));
    assert_stays_master(&r, 1, Duration::from_secs(2));
    assert_eq!(r[0].status()["state"], "BACKUP");
}

/// `preempt_delay`: the higher priority waits that long before taking over.
#[test]
fn preempt_delay_postpones_preemption() {
    let (mut lab, _, mut r) = lan(&[Kind::Lbd, Kind::Lbd]);
    r[1].start(&mut lab, &Settings::new(3, 100, "0.1"));
    wait_master(&r, 1, "alone");
    r[0].start(
        &mut lab,
        &Settings::new(3, 150, "0.1").with("preempt_delay 3"),
    );
    assert_stays_master(&r, 1, Duration::from_secs(2));
    wait_master(&r, 0, "preempt_delay is over");
}

/// The priority-255 address owner takes over at once and never yields.
#[test]
fn the_address_owner_takes_over_at_once() {
    let (mut lab, _, mut r) = lan(&[Kind::Lbd, Kind::Keepalived]);
    r[1].start(&mut lab, &Settings::new(3, 254, "0.1"));
    wait_master(&r, 1, "alone");
    r[0].start(&mut lab, &Settings::new(3, 255, "0.1"));
    wait_master(&r, 0, "the owner");
    let s = r[0].status();
    assert_eq!(s["state"], "MASTER", "{s}");
    assert_eq!(s["priority"], 255, "{s}");
}

/// Three routers: the highest wins; when it dies the next one does, not the lowest.
#[test]
fn three_routers_fail_over_in_priority_order() {
    let (mut lab, _, mut r) = lan(&[Kind::Lbd, Kind::Keepalived, Kind::Lbd]);
    r[2].start(&mut lab, &Settings::new(3, 50, "0.1"));
    r[1].start(&mut lab, &Settings::new(3, 100, "0.1"));
    r[0].start(&mut lab, &Settings::new(3, 150, "0.1"));
    wait_master(&r, 0, "highest priority");
    r[0].stop(&mut lab, "KILL");
    r[0].clear_vip();
    wait_master(&r, 1, "next priority after a crash");
    assert_stays_master(&r, 1, Duration::from_secs(1));
    assert_eq!(r[2].status()["state"], "BACKUP");
}

/// Unicast peers instead of multicast, with lbd and with keepalived on the other side; a
/// third router on the LAN that is not a configured peer hears none of it.
#[test]
fn unicast_peers_with_lbd_and_keepalived() {
    for other in [Kind::Lbd, Kind::Keepalived] {
        let (mut lab, _, mut r) = lan(&[Kind::Lbd, other, Kind::Lbd]);
        let unicast = |me: &str, peer: &str| {
            format!("unicast_src_ip {me}\n    unicast_peer {{\n        {peer}\n    }}")
        };
        let s0 = Settings::new(3, 150, "0.1").with(&unicast("192.0.2.1", "192.0.2.2"));
        let s1 = Settings::new(3, 100, "0.1").with(&unicast("192.0.2.2", "192.0.2.1"));
        r[1].start(&mut lab, &s1);
        r[0].start(&mut lab, &s0);
        wait_master(
            &r,
            0,
            &format!("higher priority over unicast, {other:?} backup"),
        );
        assert_stays_master(&r, 0, Duration::from_secs(1));
        // d3 listens on the multicast group only: unicast adverts are not for it.
        r[2].start(&mut lab, &Settings::new(3, 50, "0.1"));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            r[2].status()["adverts_received"],
            0,
            "d3 heard unicast adverts"
        );
        r[2].stop(&mut lab, "TERM");
        r[2].clear_vip();
        r[0].stop(&mut lab, "TERM");
        wait_master(&r, 1, &format!("lbd stopped, {other:?} takes over"));
    }
}

/// v2 `auth_type PASS`: a matching password joins the router; a wrong one is dropped, counted,
/// and the router acts as if the peer were silent.
#[test]
fn v2_password_authentication_with_keepalived() {
    let auth = |pass: &str| {
        format!("authentication {{\n        auth_type PASS\n        auth_pass {pass}\n    }}")
    };
    let (mut lab, _, mut r) = lan(&[Kind::Keepalived, Kind::Lbd]);
    r[0].start(
        &mut lab,
        &Settings::new(2, 150, "1").with(&auth("secret12")),
    );
    r[1].start(
        &mut lab,
        &Settings::new(2, 100, "1").with(&auth("secret12")),
    );
    wait_master(&r, 0, "higher priority, same password");
    assert_stays_master(&r, 0, Duration::from_secs(4));
    drop(lab);

    let (mut lab, _, mut r) = lan(&[Kind::Keepalived, Kind::Lbd]);
    r[0].start(
        &mut lab,
        &Settings::new(2, 150, "1").with(&auth("secret12")),
    );
    r[1].start(&mut lab, &Settings::new(2, 100, "1").with(&auth("wrong")));
    // keepalived 2.2.7 stops advertising once it receives an advert it cannot authenticate
    // (seen in a capture: its first advert, lbd's first, then only lbd's), so lbd may see as
    // few as one of its adverts.
    let deadline = std::time::Instant::now() + TAKEOVER;
    while r[1].status()["errors"].as_u64().is_none_or(|e| e == 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "lbd counted no authentication failures: {}\n{}\n{}",
            r[1].status(),
            r[1].log(),
            r[0].log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_until(
        "lbd, ignoring the peer it cannot authenticate, to take over",
        TAKEOVER,
        || r[1].holds_vip(),
    );
}

/// Malformed and hostile adverts at a backup are dropped and counted, and change nothing.
#[test]
fn hostile_adverts_are_dropped_and_counted() {
    let (mut lab, _, mut r) = lan(&[Kind::Lbd, Kind::Lbd, Kind::Lbd]);
    // d1 is master at 0.5 s; d2 is the backup under attack; d3 only sends the hostile adverts.
    r[0].start(&mut lab, &Settings::new(3, 150, "0.5"));
    r[1].start(&mut lab, &Settings::new(3, 100, "0.5"));
    wait_master(&r, 0, "higher priority");
    let before = r[1].status();
    let attacker = r[2].ns.clone();
    let vip: Ipv4Addr = VIP.parse().unwrap();
    let good = packet::vrrp_v3_ipv4(Ipv4Addr::new(192, 0, 2, 3), 51, 254, 50, &[vip]);
    // Each hostile datagram, and the RFC 6527 counter it must raise.
    let mut cases: Vec<(&str, &str, Vec<u8>)> = Vec::new();
    let mut ttl = good.clone();
    ttl[8] = 64;
    packet::refresh_ipv4_checksum(&mut ttl);
    cases.push(("TTL 64", "ttl_errors", ttl));
    let mut checksum = good.clone();
    checksum[20 + 6] ^= 0xff;
    cases.push(("bad checksum", "checksum_errors", checksum));
    cases.push(("truncated", "length_errors", {
        let mut t = good[..20 + 6].to_vec();
        t[2..4].copy_from_slice(&26u16.to_be_bytes());
        packet::refresh_ipv4_checksum(&mut t);
        t
    }));
    let mut version = good.clone();
    version[20] = 0x41;
    cases.push(("version 4", "version_errors", version));
    let mut vtype = good.clone();
    vtype[20] = 0x32;
    cases.push(("type 2", "invalid_type_errors", vtype));
    cases.push((
        "interval 0",
        "advert_interval_errors",
        packet::vrrp_v3_ipv4(Ipv4Addr::new(192, 0, 2, 3), 51, 254, 0, &[vip]),
    ));
    // RFC 9568 §7.1: a v3 address-list mismatch is counted, and the advert still processed:
    // at priority 50 it cannot move anything.
    cases.push((
        "another address list",
        "address_list_errors",
        packet::vrrp_v3_ipv4(
            Ipv4Addr::new(192, 0, 2, 3),
            51,
            50,
            50,
            &[Ipv4Addr::new(192, 0, 2, 99)],
        ),
    ));
    for (what, counter, datagram) in &cases {
        let before = r[1].status()["counters"][counter].as_u64().unwrap();
        for _ in 0..3 {
            attacker.send_ipv4_raw("eth0", datagram.clone());
        }
        wait_until(
            &format!("{what} counted as {counter}"),
            Duration::from_secs(2),
            || r[1].status()["counters"][counter].as_u64().unwrap() == before + 3,
        );
        let s = r[1].status();
        assert_eq!(s["state"], "BACKUP", "{what}: {s}");
        assert!(
            s["active_router"]
                .as_str()
                .is_some_and(|a| a.starts_with("192.0.2.1 ")),
            "{what}: the hostile advert must not replace the master: {s}"
        );
    }
    // Another VRID, even at priority 254, is another router: nothing here changes.
    let other_vrid = packet::vrrp_v3_ipv4(Ipv4Addr::new(192, 0, 2, 3), 77, 254, 50, &[vip]);
    for _ in 0..3 {
        attacker.send_ipv4_raw("eth0", other_vrid.clone());
    }
    std::thread::sleep(Duration::from_millis(100));
    let s = r[1].status();
    assert!(
        s["active_router"]
            .as_str()
            .is_some_and(|a| a.starts_with("192.0.2.1 ")),
        "another VRID's advert must not matter: {s}"
    );
    let after = r[1].status();
    let errors = after["errors"].as_u64().unwrap() - before["errors"].as_u64().unwrap();
    assert_eq!(
        errors,
        3 * cases.len() as u64,
        "every hostile advert counted once: {after}"
    );
    assert_stays_master(&r, 0, Duration::from_secs(1));

    // The well-formed advert at priority 254 is accepted: d2 now sees d3 as the master (the
    // check above is not vacuous).
    attacker.send_ipv4_raw("eth0", good);
    wait_until(
        "the valid advert to be heard",
        Duration::from_secs(2),
        || {
            r[1].status()["active_router"]
                .as_str()
                .is_some_and(|a| a.starts_with("192.0.2.3 priority 254"))
        },
    );
}

/// A notify script that appends its uid and argv to `log` (created writable for the
/// unprivileged user scripts run as).
fn notify_script(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let log = dir.join("notify.log");
    std::fs::write(&log, "").expect("notify log");
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).expect("chmod log");
    let script = dir.join("notify.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$(id -u) $*\" >> {}\n", log.display()),
    )
    .expect("notify script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (script, log)
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Notify scripts get keepalived's exact argv, run as an unprivileged user; the FIFO gets
/// keepalived's exact lines; through BACKUP, MASTER, FAULT (link down), back, and STOP.
#[test]
fn notify_scripts_and_fifo_follow_every_transition() {
    let (mut lab, _, mut r) = lan(&[Kind::Lbd, Kind::Lbd]);
    let dir = lab.dir().to_path_buf();
    let (script, log) = notify_script(&dir);
    let fifo = dir.join("vrrp.fifo");
    let s = script.display();
    let settings = Settings::new(3, 150, "0.1")
        .global(&format!("vrrp_notify_fifo {}", fifo.display()))
        .with(&format!("notify_master \"{s} d1 notify_master\""))
        .with(&format!("notify_backup \"{s} d1 notify_backup\""))
        .with(&format!("notify_fault \"{s} d1 notify_fault\""))
        .with(&format!("notify_stop \"{s} d1 notify_stop\""))
        .with(&format!("notify \"{s} d1 notify\""));
    r[1].start(&mut lab, &Settings::new(3, 100, "0.1"));
    wait_master(&r, 1, "alone");
    // The FIFO's reader: lbd creates the FIFO if missing; we create it first to read from the
    // start, as an external reader would.
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let reader = {
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            let file = std::fs::File::open(&fifo).expect("open FIFO for reading");
            std::io::BufReader::new(file)
                .lines()
                .map_while(Result::ok)
                .take_while(|l| !l.contains(" STOP "))
                .chain(std::iter::once("STOP seen".to_owned()))
                .collect::<Vec<_>>()
        })
    };
    r[0].start(&mut lab, &settings);
    wait_master(&r, 0, "preempting");
    r[0].ns.ip(&["link", "set", "eth0", "down"]);
    wait_until("FAULT", TAKEOVER, || r[0].status()["state"] == "FAULT");
    r[0].ns.ip(&["link", "set", "eth0", "up"]);
    wait_master(&r, 0, "back after the fault");
    r[0].stop(&mut lab, "TERM");
    let mut fifo_lines = reader.join().expect("FIFO reader");
    // When the links come back, the old backup may advertise once more before it hears the
    // preempting master, which then writes keepalived's MASTER_RX_LOWER_PRI line: a race of the
    // test, not a fault; checked for its form and left out.
    for line in fifo_lines
        .iter()
        .filter(|l| l.contains("MASTER_RX_LOWER_PRI"))
    {
        assert_eq!(line, "INSTANCE \"VI_1\" MASTER_RX_LOWER_PRI 150");
    }
    fifo_lines.retain(|l| !l.contains("MASTER_RX_LOWER_PRI"));
    assert_eq!(
        fifo_lines,
        [
            "INSTANCE \"VI_1\" BACKUP 150",
            "INSTANCE \"VI_1\" MASTER 150",
            "INSTANCE \"VI_1\" FAULT 150",
            "INSTANCE \"VI_1\" BACKUP 150",
            "INSTANCE \"VI_1\" MASTER 150",
            "STOP seen",
        ]
    );
    wait_until("every notify script to have run", TAKEOVER, || {
        lines(&log).len() == 12
    });
    let logged = lines(&log);
    let uid = logged[0].split(' ').next().expect("uid").to_owned();
    assert_ne!(
        uid, "0",
        "scripts must not run as root by default: {logged:?}"
    );
    // Specific and generic scripts are separate processes: their order within a transition
    // is not guaranteed (as with keepalived), so compare per transition.
    let mut transitions: Vec<Vec<String>> = logged
        .chunks(2)
        .map(|pair| {
            let mut pair: Vec<String> = pair
                .iter()
                .map(|l| l.split_once(' ').expect("uid argv").1.to_owned())
                .collect();
            pair.sort();
            pair
        })
        .collect();
    transitions.dedup();
    let expected: Vec<Vec<String>> = [
        ["d1 notify INSTANCE VI_1 BACKUP 150", "d1 notify_backup"],
        ["d1 notify INSTANCE VI_1 MASTER 150", "d1 notify_master"],
        ["d1 notify INSTANCE VI_1 FAULT 150", "d1 notify_fault"],
        ["d1 notify INSTANCE VI_1 BACKUP 150", "d1 notify_backup"],
        ["d1 notify INSTANCE VI_1 MASTER 150", "d1 notify_master"],
        ["d1 notify INSTANCE VI_1 STOP 150", "d1 notify_stop"],
    ]
    .iter()
    .map(|p| p.iter().map(|s| (*s).to_owned()).collect())
    .collect();
    assert_eq!(transitions, expected, "{logged:#?}");
}

/// track_script with a negative weight lowers the master below its backup, which takes over;
/// the script recovering moves the VIP back. track_file with weight 0 and track_interface
/// without a weight put the instance in FAULT.
#[test]
fn tracked_scripts_files_and_interfaces_move_the_vip() {
    let (mut lab, _, mut r) = lan(&[Kind::Lbd, Kind::Keepalived]);
    let dir = lab.dir().to_path_buf();
    let flag = dir.join("fail");
    let file = dir.join("track.value");
    std::fs::write(&file, "0\n").expect("track file");
    // A second interface of d1 to track (the kernel here has no dummy driver: a veth pair).
    r[0].ns.ip(&[
        "link", "add", "trk0", "type", "veth", "peer", "name", "trk1",
    ]);
    r[0].ns.ip(&["link", "set", "trk1", "up"]);
    r[0].ns.ip(&["link", "set", "trk0", "up"]);
    let settings = Settings::new(3, 150, "0.1")
        .block(&format!(
            "vrrp_script chk {{\n    script \"/bin/sh -c 'test ! -e {}'\"\n    interval 0.1\n    weight -60\n}}",
            flag.display()
        ))
        .block(&format!(
            "vrrp_track_file tf {{\n    file {}\n    weight 0\n}}",
            file.display()
        ))
        .with("track_script {\n        chk\n    }")
        .with("track_file {\n        tf\n    }")
        .with("track_interface {\n        trk0\n    }");
    r[1].start(&mut lab, &Settings::new(3, 100, "0.1"));
    r[0].start(&mut lab, &settings);
    wait_master(&r, 0, "higher priority");

    std::fs::write(&flag, "").expect("flag");
    wait_master(&r, 1, "the script failed: 150 - 60 = 90 < 100");
    assert_eq!(r[0].status()["priority"], 90);
    std::fs::remove_file(&flag).expect("flag");
    wait_master(&r, 0, "the script recovered");
    assert_eq!(r[0].status()["priority"], 150);

    std::fs::write(&file, "1\n").expect("track file");
    wait_until("FAULT from the file", TAKEOVER, || {
        r[0].status()["state"] == "FAULT"
    });
    wait_master(&r, 1, "lbd in FAULT");
    std::fs::write(&file, "0\n").expect("track file");
    wait_master(&r, 0, "the file is back to 0");

    // The peer going down takes trk0's carrier: tracked as down.
    r[0].ns.ip(&["link", "set", "trk1", "down"]);
    wait_until("FAULT from the interface", TAKEOVER, || {
        r[0].status()["state"] == "FAULT"
    });
    wait_master(&r, 1, "lbd in FAULT");
    r[0].ns.ip(&["link", "set", "trk1", "up"]);
    wait_master(&r, 0, "trk0 is back");
}

/// A sync group over two LANs: the member on the second LAN losing its link puts the whole
/// group in FAULT, so the backup (keepalived, with the same group) takes both VIPs; the link
/// coming back brings both back.
#[test]
fn a_sync_group_moves_together() {
    let (mut lab, _, mut r) = lan(&[Kind::Lbd, Kind::Keepalived]);
    // The second LAN: a bridge in its own namespace, eth1 of each router on it.
    let switch2 = lab.netns("switch2");
    switch2.ip(&["link", "add", "br1", "type", "bridge"]);
    switch2.ip(&["link", "set", "br1", "type", "bridge", "forward_delay", "0"]);
    switch2.ip(&["link", "set", "br1", "up"]);
    for (i, router) in r.iter().enumerate() {
        let port = format!("q-d{}", i + 1);
        lab.veth(&router.ns, "eth1", &switch2, &port);
        switch2.ip(&["link", "set", &port, "master", "br1"]);
        router.ns.ip(&[
            "addr",
            "add",
            &format!("198.51.100.{}/24", i + 1),
            "dev",
            "eth1",
        ]);
    }
    let group = |priority: u8| {
        Settings::new(3, priority, "0.1")
            .block(&format!(
                "vrrp_instance VI_2 {{\n    state BACKUP\n    interface eth1\n    virtual_router_id 52\n    \
                 version 3\n    priority {priority}\n    advert_int 0.1\n    virtual_ipaddress {{\n        \
                 198.51.100.100/24\n    }}\n}}"
            ))
            .block("vrrp_sync_group G {\n    group {\n        VI_1\n        VI_2\n    }\n}")
    };
    let holds_second = |router: &Router| {
        let out = router.ns.run("ip", &["-o", "addr", "show", "dev", "eth1"]);
        String::from_utf8_lossy(&out.stdout).contains(" 198.51.100.100/")
    };
    r[1].start(&mut lab, &group(100));
    r[0].start(&mut lab, &group(150));
    wait_master(&r, 0, "higher priority");
    wait_until("lbd to hold the second VIP", TAKEOVER, || {
        holds_second(&r[0]) && !holds_second(&r[1])
    });

    r[0].ns.ip(&["link", "set", "eth1", "down"]);
    wait_master(&r, 1, "VI_2's fault takes VI_1 along");
    wait_until("keepalived to hold the second VIP", TAKEOVER, || {
        holds_second(&r[1])
    });
    assert_eq!(r[0].status()["state"], "FAULT", "VI_1 in its group's FAULT");

    r[0].ns.ip(&["link", "set", "eth1", "up"]);
    wait_master(&r, 0, "the group recovered and preempts");
    wait_until("lbd to hold the second VIP again", TAKEOVER, || {
        holds_second(&r[0]) && !holds_second(&r[1])
    });
}

/// VIP options: an IPv4 VIP with `dev`, `label` and `brd` goes on that interface with them;
/// an IPv6 VIP on an interface that does duplicate address detection is usable at once (added
/// without DAD: never tentative, never failed by the old master's stale copy).
#[test]
fn vip_options_and_ipv6_without_dad() {
    let (mut lab, _, mut r) = lan(&[Kind::Lbd]);
    r[0].ns.ip(&[
        "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p",
    ]);
    for dev in ["eth1p", "eth1"] {
        r[0].ns.ip(&["link", "set", dev, "up"]);
    }
    lb_tests::lab::sysctl(&r[0].ns, "net.ipv6.conf.eth0.accept_dad", "1");
    let v4 = Settings::new(3, 150, "0.1")
        .with("virtual_ipaddress {\n        198.51.100.100/24 dev eth1 label eth1:vip brd 198.51.100.255\n    }")
        .block(
            "vrrp_instance VI_6 {\n    interface eth0\n    version 3\n    virtual_router_id 52\n    \
             advert_int 0.1\n    virtual_ipaddress {\n        2001:db8::200/64\n    }\n}",
        );
    // The rig's VIP line stays: VI_1 has 192.0.2.100 on eth0 and 198.51.100.100 on eth1.
    r[0].start(&mut lab, &v4);
    wait_master(&r, 0, "alone");
    let ns = r[0].ns.clone();
    let show = |dev: &str| {
        let out = ns.run("ip", &["-o", "addr", "show", "dev", dev]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until("the dev VIP on eth1", TAKEOVER, || {
        show("eth1").contains(" 198.51.100.100/24 brd 198.51.100.255 ")
    });
    assert!(show("eth1").contains("eth1:vip"), "label: {}", show("eth1"));
    assert!(
        !show("eth0").contains("198.51.100.100"),
        "not on eth0: {}",
        show("eth0")
    );
    wait_until("the IPv6 VIP", TAKEOVER, || {
        show("eth0").contains(" 2001:db8::200/64 ")
    });
    let line = show("eth0")
        .lines()
        .find(|l| l.contains("2001:db8::200/64"))
        .expect("IPv6 VIP")
        .to_owned();
    assert!(line.contains("nodad"), "added without DAD: {line}");
    assert!(!line.contains("tentative"), "usable at once: {line}");
    r[0].stop(&mut lab, "TERM");
    assert!(!show("eth1").contains("198.51.100.100"), "released on stop");
}

/// `use_vmac`: the VIP lives on a macvlan with the VRRP virtual MAC, adverts and gratuitous
/// ARPs carry that MAC, and failover works both ways with keepalived doing the same. On stop
/// lbd removes its VMAC and restores the base interface's ARP settings.
#[test]
fn vmac_failover_with_keepalived() {
    let (mut lab, switch, mut r) = lan(&[Kind::Keepalived, Kind::Lbd]);
    let vmac = |priority: u8| Settings::new(3, priority, "0.1").with("use_vmac");
    let arp_ignore = |router: &Router| {
        let out = router
            .ns
            .run("cat", &["/proc/sys/net/ipv4/conf/eth0/arp_ignore"]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(arp_ignore(&r[1]), "0");
    r[1].start(&mut lab, &vmac(100));
    r[0].start(&mut lab, &vmac(150));
    wait_master(&r, 0, "keepalived, higher priority");
    wait_until("lbd to hear keepalived through its VMAC", TAKEOVER, || {
        r[1].status()["active_router"]
            .as_str()
            .is_some_and(|a| a.ends_with("priority 150"))
    });
    assert_eq!(r[1].status()["vmac"], "vrrp.51");
    assert_eq!(
        arp_ignore(&r[1]),
        "1",
        "the base interface leaves ARP to the VMAC"
    );

    // The bridge learns the virtual MAC where the master is; after the crash, at lbd's port.
    let fdb = || {
        let out = switch.run("bridge", &["fdb", "show", "br", "br0"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let learned_at = |port: &str| {
        fdb()
            .lines()
            .any(|l| l.starts_with("00:00:5e:00:01:33 dev ") && l.contains(&format!("dev {port} ")))
    };
    wait_until(
        "the virtual MAC learned at keepalived's port",
        TAKEOVER,
        || learned_at("p-d1"),
    );
    r[0].stop(&mut lab, "KILL");
    r[0].clear_vip();
    wait_master(&r, 1, "keepalived crashed");
    let vip_dev = r[1].ns.run("ip", &["-o", "addr", "show", "dev", "vrrp.51"]);
    assert!(
        String::from_utf8_lossy(&vip_dev.stdout).contains(&format!(" {VIP}/")),
        "lbd's VIP is on its VMAC"
    );
    wait_until("the virtual MAC learned at lbd's port", TAKEOVER, || {
        learned_at("p-d2")
    });

    r[1].stop(&mut lab, "TERM");
    let gone = r[1].ns.run("ip", &["link", "show", "vrrp.51"]);
    assert!(!gone.status.success(), "lbd removes its VMAC on stop");
    assert_eq!(arp_ignore(&r[1]), "0", "and restores the base interface");
}

/// garp_master_repeat, garp_master_delay and garp_master_refresh shape the announcements: a
/// burst on becoming master, a second one after the delay, then one every refresh.
#[test]
fn gratuitous_arp_bursts_follow_the_garp_settings() {
    use lb_tests::vrrp::{Capture, Seen, mac_of};
    let (mut lab, _, mut r) = lan(&[Kind::Lbd]);
    let capture = Capture::start(&r[0].ns);
    let settings = Settings::new(3, 150, "0.1")
        .global("vrrp_garp_master_delay 1")
        .with("garp_master_repeat 2")
        .with("garp_master_refresh 2");
    r[0].start(&mut lab, &settings);
    wait_master(&r, 0, "alone");
    std::thread::sleep(Duration::from_millis(3_700));
    let mac = mac_of(&r[0].ns, "eth0");
    let vip: Ipv4Addr = VIP.parse().unwrap();
    let garps: Vec<std::time::Instant> = capture
        .finish()
        .into_iter()
        .filter(|(_, s)| *s == Seen::Garp { vip, mac })
        .map(|(at, _)| at)
        .collect();
    assert!(garps.len() >= 5, "2 + 2 + 1 at least: {}", garps.len());
    let since = |i: usize| garps[i].duration_since(garps[0]).as_secs_f64();
    // The first burst, the delayed one 1 s later, the first refresh 2 s after that (wide
    // windows: this checks which setting drives which burst, not timer precision; keepalived's
    // defaults would send the second burst only at +5 s).
    assert!(since(1) < 0.3, "first burst of 2: {}", since(1));
    for i in [2, 3] {
        assert!(
            (0.8..1.8).contains(&since(i)),
            "second burst at +1 s: {}",
            since(i)
        );
    }
    assert!(
        (2.8..3.7).contains(&since(4)),
        "first refresh at +3 s: {}",
        since(4)
    );
}

/// The kernel's count of a virtual router's adverts equals the adverts on the wire, with lbd's
/// XDP program on the same interface (the TC recorder runs after it).
#[test]
fn the_kernel_counts_every_advert_on_the_wire() {
    use lb_tests::vrrp::{Capture, Seen};
    let (mut lab, _, mut r) = lan(&[Kind::Lbd, Kind::Lbd]);
    r[1].lbd_args = ["--dataplane", "xdp", "--xdp-interface", "eth0"]
        .map(str::to_owned)
        .to_vec();
    r[1].start(&mut lab, &Settings::new(3, 100, "0.1"));
    let capture = Capture::start(&r[1].ns);
    r[0].start(&mut lab, &Settings::new(3, 150, "0.1"));
    wait_master(&r, 0, "higher priority");
    std::thread::sleep(Duration::from_secs(2));
    // The master stops; the backup's own adverts leave, they do not arrive.
    r[0].stop(&mut lab, "KILL");
    std::thread::sleep(Duration::from_millis(500));
    let master = Ipv4Addr::new(192, 0, 2, 1);
    let on_wire = capture
        .finish()
        .iter()
        .filter(|(_, s)| matches!(s, Seen::Advert { src, .. } if *src == master))
        .count() as u64;
    let kernel = r[1].status()["kernel"].clone();
    let status = r[1].lbctl_status();
    assert_eq!(
        status["dataplane"]["xdp"]["interface"], "eth0",
        "XDP attached: {status}"
    );
    assert!(on_wire > 15, "adverts of the master captured: {on_wire}");
    assert_eq!(kernel["adverts"], on_wire, "kernel record: {kernel}");
    assert_eq!(kernel["sender"], "192.0.2.1", "{kernel}");
    assert_eq!(kernel["priority"], 150, "{kernel}");
}

/// A backup frozen (SIGSTOP) for many times its Master_Down_Interval while the master stays
/// healthy does not take over when it runs again, with 40 instances at advert_int 0.02 s:
/// more adverts arrive during the freeze than its socket buffer holds. The kernel's record
/// kept counting through the freeze.
#[test]
fn a_frozen_backup_does_not_take_over_from_a_healthy_master() {
    let (mut lab, _, mut r) = lan(&[Kind::Lbd, Kind::Lbd]);
    let conf = |priority: u8| {
        let mut conf = String::new();
        for vrid in 1..=40u8 {
            conf.push_str(&format!(
                "vrrp_instance VI_{vrid:02} {{\n    state BACKUP\n    interface eth0\n    virtual_router_id {vrid}\n    \
                 version 3\n    priority {priority}\n    advert_int 0.02\n    virtual_ipaddress {{\n        \
                 198.51.100.{vrid}/32\n    }}\n}}\n"
            ));
        }
        conf
    };
    r[1].start_conf(&mut lab, &conf(100));
    r[0].start_conf(&mut lab, &conf(150));
    wait_until("every instance of d2 to follow d1", TAKEOVER, || {
        r[1].statuses().iter().all(|s| {
            s["state"] == "BACKUP"
                && s["active_router"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("192.0.2.1 "))
        })
    });
    let before: Vec<serde_json::Value> = r[1].statuses();
    let pid = r[1].pid.expect("running");
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args(["-s", sig, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -s {sig} {pid}");
    };
    signal("STOP");
    // 2 s: 55 times the 36.4 ms down interval; 4,000 adverts against a 1 MiB socket buffer.
    std::thread::sleep(Duration::from_secs(2));
    signal("CONT");
    std::thread::sleep(Duration::from_secs(1));
    let after = r[1].statuses();
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            a["state"], "BACKUP",
            "{}: took over after the freeze: {a}",
            a["name"]
        );
        assert_eq!(a["became_active"], b["became_active"], "{a}");
        let counted =
            a["kernel"]["adverts"].as_u64().unwrap() - b["kernel"]["adverts"].as_u64().unwrap();
        assert!(
            counted >= 100,
            "the kernel counted through the freeze: {counted} for {}",
            a["name"]
        );
    }
    let out = r[1].ns.run("ip", &["-o", "addr", "show"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("198.51.100."),
        "no VIP was ever taken"
    );
}

/// After a master crash the backup's takeover is decided by the kernel's master-down timer
/// (its ring-buffer event wakes the driver), IPv4 and IPv6; without BPF (`--no-vrrp-bpf`) the
/// driver's own timer does it.
#[test]
fn a_crash_is_taken_over_on_the_kernel_timer_event() {
    for (settings, no_bpf) in [
        (Settings::new(3, 100, "0.05"), false),
        (Settings::new(3, 100, "0.05").v6(), false),
        (Settings::new(3, 100, "0.05"), true),
    ] {
        let (mut lab, _, mut r) = lan(&[Kind::Lbd, Kind::Lbd]);
        if no_bpf {
            r[1].lbd_args = vec!["--no-vrrp-bpf".to_owned()];
        }
        r[1].start(&mut lab, &settings);
        let high = Settings {
            priority: 150,
            ..settings.clone()
        };
        r[0].start(&mut lab, &high);
        wait_master(&r, 0, "higher priority");
        // The kernel's timer is armed by the adverts after the backup registered: wait for a
        // few (the first interval after becoming backup rests on the driver's own timer).
        std::thread::sleep(Duration::from_millis(300));
        r[0].stop(&mut lab, "KILL");
        r[0].clear_vip();
        wait_master(&r, 1, "the master crashed");
        let s = r[1].status();
        let expected = u64::from(!no_bpf);
        assert_eq!(s["kernel_takeovers"], expected, "{s}");
        assert_eq!(s["kernel"].is_null(), no_bpf, "{s}");
    }
}

/// keepalived's signal dumps: lbd's SIGUSR2 `keepalived.stats` has the form of keepalived
/// 2.2.7's own (numbers aside), its JSON dump keepalived's structure and key names, and every
/// line of its SIGUSR1 `keepalived.data` is one keepalived writes, at the same indentation.
#[test]
fn signal_dumps_have_keepalived_s_form() {
    let (mut lab, _, mut r) = lan(&[Kind::Lbd, Kind::Keepalived]);
    let dumps = lab.dir().join("dumps");
    std::fs::create_dir_all(&dumps).expect("dump dir");
    r[0].lbd_args = vec!["--dump-dir".into(), dumps.display().to_string()];
    r[1].start(&mut lab, &Settings::new(3, 100, "0.1"));
    r[0].start(&mut lab, &Settings::new(3, 150, "0.1"));
    wait_master(&r, 0, "higher priority");
    // keepalived writes to fixed paths in /tmp; clear them first.
    for name in ["keepalived.stats", "keepalived.json", "keepalived.data"] {
        std::fs::remove_file(std::path::Path::new("/tmp").join(name)).ok();
    }
    let json_signal = format!("{}", libc_sigrtmin() + 2);
    for (signal, name) in [
        ("USR1", "keepalived.data"),
        ("USR2", "keepalived.stats"),
        (json_signal.as_str(), "keepalived.json"),
    ] {
        for (router, dir) in [
            (&r[0], dumps.clone()),
            (&r[1], std::path::PathBuf::from("/tmp")),
        ] {
            let pid = router.pid.expect("running").to_string();
            assert!(
                std::process::Command::new("kill")
                    .args([&format!("-{signal}"), &pid])
                    .status()
                    .expect("kill")
                    .success()
            );
            let path = dir.join(name);
            wait_until(
                &format!("{} to write {name}", router.name),
                Duration::from_secs(5),
                || std::fs::metadata(&path).is_ok_and(|m| m.len() > 0),
            );
        }
    }
    let mask = |text: &str| -> String {
        let mut out = String::new();
        let mut in_number = false;
        for ch in text.chars() {
            if ch.is_ascii_digit() {
                if !in_number {
                    out.push('N');
                }
                in_number = true;
            } else {
                out.push(ch);
                in_number = false;
            }
        }
        out
    };
    // A data line's key: its indentation and what comes before " = " (or its first two
    // words), numbers masked.
    let data_keys = |text: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .map(|line| {
                let key = match line.split_once(" = ") {
                    Some((key, _)) => key.to_owned(),
                    None => {
                        let indent = line.len() - line.trim_start().len();
                        let words: Vec<&str> = line.split_whitespace().take(2).collect();
                        format!("{}{}", " ".repeat(indent), words.join(" "))
                    }
                };
                mask(&key)
            })
            .collect()
    };
    let ours = std::fs::read_to_string(dumps.join("keepalived.data")).expect("lbd's data");
    let theirs = std::fs::read_to_string("/tmp/keepalived.data").expect("keepalived's data");
    let foreign: Vec<String> = data_keys(&ours)
        .difference(&data_keys(&theirs))
        .cloned()
        .collect();
    assert!(
        foreign.is_empty(),
        "lines keepalived does not write: {foreign:?}\nlbd:\n{ours}\nkeepalived:\n{theirs}"
    );
    for line in [
        "------< VRRP Topology >------",
        " VRRP Instance = VI_1",
        "   State = MASTER",
        "   Virtual Router ID = 51",
        "   Advert interval = 100 milli-sec",
    ] {
        assert!(ours.lines().any(|l| l == line), "{line:?} in\n{ours}");
    }
    assert!(theirs.lines().any(|l| l == "   State = BACKUP"));
    let ours = std::fs::read_to_string(dumps.join("keepalived.stats")).expect("lbd's stats");
    let theirs = std::fs::read_to_string("/tmp/keepalived.stats").expect("keepalived's stats");
    assert_eq!(
        mask(&ours),
        mask(&theirs),
        "lbd:\n{ours}\nkeepalived:\n{theirs}"
    );
    let mode = std::fs::metadata(dumps.join("keepalived.stats")).expect("stats");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    let parse = |path: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).expect("json")).expect("valid JSON")
    };
    let ours = parse(&dumps.join("keepalived.json"));
    let theirs = parse(std::path::Path::new("/tmp/keepalived.json"));
    let keys = |v: &serde_json::Value, part: &str| -> std::collections::BTreeSet<String> {
        v[0][part]
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(keys(&ours, "stats"), keys(&theirs, "stats"));
    let missing: Vec<_> = keys(&ours, "data")
        .difference(&keys(&theirs, "data"))
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "keys keepalived does not have: {missing:?}"
    );
    assert_eq!(ours[0]["data"]["iname"], "VI_1");
    assert_eq!(ours[0]["data"]["state"], 2, "MASTER");
    assert_eq!(theirs[0]["data"]["state"], 1, "BACKUP");
    assert_eq!(ours[0]["data"]["vrid"], theirs[0]["data"]["vrid"]);
    assert_eq!(
        ours[0]["data"]["ifp_ifname"],
        theirs[0]["data"]["ifp_ifname"]
    );
    assert_eq!(
        ours[0]["data"]["vips"],
        theirs[0]["data"]["vips"]
            .as_array()
            .map(|v| {
                // keepalived's backup lists its VIPs without " set".
                serde_json::Value::Array(
                    v.iter()
                        .map(|s| {
                            serde_json::Value::String(format!(
                                "{} set",
                                s.as_str().unwrap_or_default()
                            ))
                        })
                        .collect(),
                )
            })
            .unwrap_or_default()
    );
}

/// SIGRTMIN on Linux with glibc (the kernel's 32 plus the two glibc keeps).
fn libc_sigrtmin() -> i32 {
    34
}
