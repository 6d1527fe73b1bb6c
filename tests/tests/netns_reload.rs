//! Reloads that never flap: two lbd directors on a LAN ([`lb_tests::vrrp::lan`]), the master
//! with two VRRP instances and a virtual server whose real servers it checks. Each reload is
//! watched on the wire (adverts and gratuitous ARPs, [`Capture`]) and in status: unchanged
//! instances keep their state with no burst of gratuitous ARPs, checkers keep their verdicts
//! and counters, a VIP moves between instances in one reload, an invalid file changes
//! nothing, and SIGHUP does what `lbctl reload` does.
#![expect(
    unused_crate_dependencies,
    reason = "each target of lb-tests uses part of the package's dependencies; cargo cannot scope them"
)]

use std::{
    net::Ipv4Addr,
    process::{Command, Output},
    time::Duration,
};

use lb_tests::{
    lab::{TcpServer, wait_until},
    vrrp::{Capture, Kind, Router, Seen, lan, wait_master},
};

const VS: &str = "[203.0.113.1]:tcp:80";

/// The directors' keepalived.conf: instances `(name, vrid, vips)`, and real servers
/// `(address, weight)`.
fn conf(
    name: &str,
    priority: u8,
    instances: &[(&str, u8, &[&str])],
    reals: &[(&str, u32)],
) -> String {
    let mut text = format!("global_defs {{\n    router_id {name}\n}}\n");
    for (instance, vrid, vips) in instances {
        text.push_str(&format!(
            "vrrp_instance {instance} {{\n    state BACKUP\n    interface eth0\n    virtual_router_id {vrid}\n    \
             version 3\n    priority {priority}\n    advert_int 0.1\n    virtual_ipaddress {{\n"
        ));
        for vip in *vips {
            text.push_str(&format!("        {vip}/24\n"));
        }
        text.push_str("    }\n}\n");
    }
    text.push_str(
        "virtual_server 203.0.113.1 80 {\n    delay_loop 0.2\n    lb_kind DR\n    protocol TCP\n",
    );
    for (addr, weight) in reals {
        text.push_str(&format!(
            "    real_server {addr} 80 {{\n        weight {weight}\n        TCP_CHECK {{\n            connect_timeout 0.2\n            retry 0\n        }}\n    }}\n"
        ));
    }
    text.push_str("}\n");
    text
}

fn write(r: &Router, text: &str) {
    std::fs::write(r.dir.join(format!("{}.conf", r.name)), text).expect("writing config");
}

fn lbctl(r: &Router, args: &[&str]) -> Output {
    Command::new(lb_tests::workspace_bin("lbctl"))
        .arg("--control-socket")
        .arg(r.socket())
        .args(args)
        .output()
        .expect("running lbctl")
}

/// `lbctl reload --json` on `r`: its report.
fn reload(r: &Router) -> serde_json::Value {
    let out = lbctl(r, &["reload", "--json"]);
    assert!(
        out.status.success(),
        "lbctl reload: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        r.log()
    );
    serde_json::from_slice(&out.stdout).expect("reload report")
}

/// The desired table of the virtual server: (real server, weight).
fn desired(r: &Router) -> Vec<(String, u64)> {
    lb_tests::desired(&r.lbctl_status(), VS)
}

fn instance(r: &Router, name: &str) -> serde_json::Value {
    r.statuses()
        .into_iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no instance {name} in {}", r.lbctl_status()))
}

fn became_active(r: &Router, name: &str) -> u64 {
    instance(r, name)["became_active"]
        .as_u64()
        .expect("became_active")
}

fn holds(r: &Router, vip: &str) -> bool {
    let out = r.ns.run("ip", &["-o", "addr", "show", "dev", "eth0"]);
    String::from_utf8_lossy(&out.stdout).contains(&format!(" {vip}/"))
}

/// The gratuitous ARPs for `vip` and the priority-0 adverts from `src` among `frames`.
fn garps(frames: &[(std::time::Instant, Seen)], vip: &str) -> usize {
    let vip: Ipv4Addr = vip.parse().expect("address");
    frames
        .iter()
        .filter(|(_, s)| matches!(s, Seen::Garp { vip: v, .. } if *v == vip))
        .count()
}

fn leaving_adverts(frames: &[(std::time::Instant, Seen)], src: &str) -> usize {
    let src: Ipv4Addr = src.parse().expect("address");
    frames
        .iter()
        .filter(|(_, s)| matches!(s, Seen::Advert { src: a, priority: 0 } if *a == src))
        .count()
}

fn checker_probes(r: &Router, real: &str) -> u64 {
    let status = r.lbctl_status();
    status["virtual_servers"][0]["real_servers"]
        .as_array()
        .expect("real servers")
        .iter()
        .find(|s| s["address"] == real)
        .map_or(0, |s| s["checkers"][0]["probes"].as_u64().expect("probes"))
}

#[test]
fn reloads_apply_only_the_difference_and_never_flap() {
    let (mut lab, switch, mut r) = lan(&[Kind::Lbd, Kind::Lbd]);
    // Real servers on d1 itself: .1 and .2 answer, .3 does not.
    for addr in [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.3",
        "198.51.100.4",
    ] {
        r[0].ns
            .ip(&["addr", "add", &format!("{addr}/32"), "dev", "lo"]);
    }
    let _one = TcpServer::start(&r[0].ns, "198.51.100.1:80");
    let _two = TcpServer::start(&r[0].ns, "198.51.100.2:80");
    let _four = TcpServer::start(&r[0].ns, "198.51.100.4:80");
    let reals = [
        ("198.51.100.1", 1),
        ("198.51.100.2", 1),
        ("198.51.100.3", 1),
    ];
    let two: [(&str, u8, &[&str]); 2] = [
        ("VI_1", 51, &["192.0.2.100"]),
        ("VI_2", 52, &["192.0.2.101"]),
    ];
    let d2_conf = conf("d2", 100, &two, &reals);
    let dumps = lab.dir().join("dumps");
    std::fs::create_dir_all(&dumps).expect("dump dir");
    r[0].lbd_args = vec!["--dump-dir".into(), dumps.display().to_string()];
    r[1].start_conf(&mut lab, &d2_conf);
    r[0].start_conf(&mut lab, &conf("d1", 150, &two, &reals));
    wait_master(&r, 0, "higher priority");
    wait_until(
        "d1 master of both, .3 found dead",
        Duration::from_secs(15),
        || {
            instance(&r[0], "VI_2")["state"] == "MASTER"
                && instance(&r[1], "VI_2")["state"] == "BACKUP"
                && desired(&r[0])
                    == [
                        ("198.51.100.1:80".to_owned(), 1),
                        ("198.51.100.2:80".to_owned(), 1),
                    ]
        },
    );
    let active_before = (became_active(&r[0], "VI_1"), became_active(&r[0], "VI_2"));
    let backup_before = became_active(&r[1], "VI_1");
    let capture = Capture::start(&switch);

    // 1. The same file: nothing changes.
    let report = reload(&r[0]);
    assert_eq!(report["applied"], true, "{report}");
    assert_eq!(report["vrrp_kept"], 2, "{report}");
    assert_eq!(report["dataplane_operations"], 0, "{report}");
    assert_eq!(report["health"]["probes_kept"], 3, "{report}");
    assert_eq!(report["health"]["probes_started"], 0, "{report}");
    for part in ["vrrp_instances", "virtual_servers", "real_servers"] {
        for what in ["added", "removed", "changed"] {
            assert_eq!(
                report["plan"][part][what],
                serde_json::json!([]),
                "{report}"
            );
        }
    }

    // 2. One real server's weight: only it changes; the dead one stays dead (its verdict is
    // kept, not reset to up), the live checkers keep their counters.
    let probes_before = checker_probes(&r[0], "198.51.100.1:80");
    assert!(probes_before > 0);
    let reals2 = [
        ("198.51.100.1", 1),
        ("198.51.100.2", 3),
        ("198.51.100.3", 1),
    ];
    write(&r[0], &conf("d1", 150, &two, &reals2));
    let report = reload(&r[0]);
    assert_eq!(
        report["plan"]["real_servers"]["changed"],
        serde_json::json!([format!("{VS} / 198.51.100.2:80")]),
        "{report}"
    );
    assert_eq!(
        report["plan"]["vrrp_instances"]["changed"],
        serde_json::json!([])
    );
    assert_eq!(report["health"]["probes_kept"], 3, "{report}");
    assert_eq!(report["health"]["probes_started"], 0, "{report}");
    assert_eq!(report["health"]["probes_stopped"], 0, "{report}");
    assert_eq!(report["health"]["reals_kept"], 3, "{report}");
    assert_eq!(report["vrrp_kept"], 2, "{report}");
    assert_eq!(
        report["dataplane_operations"], 1,
        "one operation, for that real server only: {report}"
    );
    assert_eq!(
        desired(&r[0]),
        [
            ("198.51.100.1:80".to_owned(), 1),
            ("198.51.100.2:80".to_owned(), 3),
        ],
        "right after the reload: .3 is still known dead"
    );
    assert!(checker_probes(&r[0], "198.51.100.1:80") >= probes_before);

    // A real server added, then removed: the probes are numbered anew; the others carry on
    // (the dead one is still dead, the live ones keep their counters), only the newcomer's
    // probe starts, and only it reaches the data plane.
    for (added, expected) in [(true, 3), (false, 2)] {
        let probes_before = checker_probes(&r[0], "198.51.100.1:80");
        let mut reals = reals2.to_vec();
        if added {
            reals.push(("198.51.100.4", 1));
        }
        write(&r[0], &conf("d1", 150, &two, &reals));
        let report = reload(&r[0]);
        assert_eq!(report["health"]["probes_kept"], 3, "{report}");
        assert_eq!(
            report["health"]["probes_started"],
            u64::from(added),
            "{report}"
        );
        assert_eq!(
            report["health"]["probes_stopped"],
            u64::from(!added),
            "{report}"
        );
        assert_eq!(report["health"]["reals_kept"], 3, "{report}");
        assert!(checker_probes(&r[0], "198.51.100.1:80") >= probes_before);
        let now = desired(&r[0]);
        assert!(
            !now.iter().any(|(a, _)| a == "198.51.100.3:80"),
            "right after the reload: .3 is still known dead: {now:?}"
        );
        wait_until("the newcomer up, or gone", Duration::from_secs(5), || {
            desired(&r[0]).len() == expected
        });
        assert_eq!(
            r[0].lbctl_status()["virtual_servers"][0]["real_servers"]
                .as_array()
                .map(Vec::len),
            Some(expected + 1),
            "status shows every real server"
        );
    }

    // SIGUSR1: keepalived's data dumps show the reloaded configuration and the live state.
    let pid = r[0].pid.expect("d1 runs").to_string();
    assert!(
        Command::new("kill")
            .args(["-USR1", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let check_data = dumps.join("keepalived_check.data");
    wait_until("keepalived_check.data", Duration::from_secs(5), || {
        std::fs::metadata(&check_data).is_ok_and(|m| m.len() > 0)
    });
    let text = std::fs::read_to_string(&check_data).expect("check data");
    assert!(
        text.contains("\n VS VIP = 203.0.113.1, VPORT = 80\n"),
        "{text}"
    );
    assert!(
        text.contains("   RIP = 198.51.100.2, RPORT = 80, WEIGHT = 3 EFF WEIGHT = 3\n"),
        "{text}"
    );
    let dead = text
        .split("------< Real server >------")
        .find(|block| block.contains("RIP = 198.51.100.3,"))
        .expect("the dead real server's block");
    assert!(
        dead.contains("\n   alive = 0\n") && dead.contains("num failed checkers = 1"),
        "{dead}"
    );
    let data = std::fs::read_to_string(dumps.join("keepalived.data")).expect("data");
    assert!(
        data.contains(" VRRP Instance = VI_2\n   VRRP Version = 3\n   State = MASTER\n"),
        "{data}"
    );

    // 3. A VIP moves from VI_2 to VI_1, and VI_2 gets another: one reload, on both directors.
    let moved: [(&str, u8, &[&str]); 2] = [
        ("VI_1", 51, &["192.0.2.100", "192.0.2.101"]),
        ("VI_2", 52, &["192.0.2.102"]),
    ];
    write(&r[1], &conf("d2", 100, &moved, &reals2));
    write(&r[0], &conf("d1", 150, &moved, &reals2));
    let backup_report = reload(&r[1]);
    assert_eq!(backup_report["vrrp_changed"], 2, "{backup_report}");
    let report = reload(&r[0]);
    assert_eq!(report["vrrp_changed"], 2, "{report}");
    assert_eq!(report["vrrp_restarted"], serde_json::json!([]), "{report}");
    assert_eq!(report["health"]["probes_started"], 0, "{report}");
    assert_eq!(report["dataplane_operations"], 0, "{report}");
    for vip in ["192.0.2.100", "192.0.2.101", "192.0.2.102"] {
        assert!(holds(&r[0], vip), "d1 holds {vip} after one reload");
        assert!(!holds(&r[1], vip), "d2 holds no VIP");
    }
    assert_eq!(
        instance(&r[0], "VI_1")["addresses"],
        serde_json::json!(["192.0.2.100/24", "192.0.2.101/24"])
    );
    // Let a few adverts pass, then read the wire.
    std::thread::sleep(Duration::from_millis(500));
    let frames = capture.finish();
    assert_eq!(
        garps(&frames, "192.0.2.100"),
        0,
        "no gratuitous ARP for an address that stayed: {frames:?}"
    );
    assert!(
        garps(&frames, "192.0.2.102") > 0,
        "the new address is announced"
    );
    assert_eq!(leaving_adverts(&frames, "192.0.2.1"), 0, "{frames:?}");
    assert_eq!(
        (became_active(&r[0], "VI_1"), became_active(&r[0], "VI_2")),
        active_before,
        "no VRRP transition on the master"
    );
    assert_eq!(
        became_active(&r[1], "VI_1"),
        backup_before,
        "none on the backup"
    );
    assert_eq!(instance(&r[1], "VI_1")["state"], "BACKUP");

    // 4. An invalid file changes nothing.
    write(
        &r[0],
        "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 300\n}\n",
    );
    let out = lbctl(&r[0], &["reload"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("d1.conf:3"),
        "the error names file:line: {said}"
    );
    assert!(said.contains("nothing changed"), "{said}");
    assert_eq!(instance(&r[0], "VI_1")["state"], "MASTER");
    assert!(holds(&r[0], "192.0.2.101"));

    // 5. check-config --diff against the running lbd.
    let fewer: [(&str, u32); 2] = [("198.51.100.1", 1), ("198.51.100.2", 3)];
    let candidate = r[0].dir.join("candidate.conf");
    std::fs::write(&candidate, conf("d1", 150, &moved, &fewer)).expect("candidate");
    let out = Command::new(lb_tests::workspace_bin("lbd"))
        .arg("check-config")
        .arg(&candidate)
        .arg("--diff")
        .arg("--control-socket")
        .arg(r[0].socket())
        .output()
        .expect("lbd check-config --diff");
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{diff}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        diff.trim(),
        format!("~ virtual server {VS}\n- real server {VS} / 198.51.100.3:80"),
        "{diff}"
    );

    // 6. SIGHUP: an instance is removed (its priority-0 advert, its address gone) and one
    // added; the others are untouched.
    let capture = Capture::start(&switch);
    let three: [(&str, u8, &[&str]); 2] = [
        ("VI_1", 51, &["192.0.2.100", "192.0.2.101"]),
        ("VI_3", 53, &["192.0.2.103"]),
    ];
    write(&r[0], &conf("d1", 150, &three, &fewer));
    let pid = r[0].pid.expect("d1 runs").to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    wait_until("VI_3 master after SIGHUP", Duration::from_secs(10), || {
        r[0].statuses()
            .iter()
            .any(|s| s["name"] == "VI_3" && s["state"] == "MASTER")
    });
    assert!(!r[0].statuses().iter().any(|s| s["name"] == "VI_2"));
    assert!(
        !holds(&r[0], "192.0.2.102"),
        "the removed instance's address is gone"
    );
    assert!(holds(&r[0], "192.0.2.103"));
    wait_until(
        "the real server left the table",
        Duration::from_secs(5),
        || desired(&r[0]).len() == 2,
    );
    let frames = capture.finish();
    assert!(
        leaving_adverts(&frames, "192.0.2.1") >= 1,
        "the removed instance said it leaves: {frames:?}"
    );
    assert_eq!(garps(&frames, "192.0.2.100"), 0, "{frames:?}");
    assert_eq!(became_active(&r[0], "VI_1"), active_before.0);
    assert!(r[0].log().contains("reloaded"), "{}", r[0].log());
}
