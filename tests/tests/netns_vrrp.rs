//! VRRP with real packets: lbd with lbd, and lbd with keepalived 2.2.7 in the same virtual
//! router, on a bridged LAN in a namespace lab.
//!
//! Lab: `switch` holds bridge `br0`; routers d1, d2 (d3) each have `eth0` on it with
//! 192.0.2.1, .2, (.3)/24. The virtual router is VRID 51 with VIP 192.0.2.100. Every router,
//! lbd or keepalived, reads the same keepalived.conf text (only the priority and flags differ),
//! which is also what users do. Who is master is read off the kernel (the VIP on `eth0`) and, for
//! lbd, from `lbctl status --json`.
#![expect(
    unused_crate_dependencies,
    reason = "each target of lb-tests uses part of the package's dependencies; cargo cannot scope them"
)]

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use lb_tests::{
    lab::{Lab, Netns, wait_for_path, wait_until},
    packet,
};

const VIP: &str = "192.0.2.100";
const VIP6: &str = "2001:db8::100";
/// Long enough for any takeover these tests cause (the slowest is VRRPv2's 3.6 s down interval).
const TAKEOVER: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Lbd,
    Keepalived,
}

/// One router's settings; rendered as keepalived.conf.
#[derive(Clone, Debug)]
struct Settings {
    version: u8,
    priority: u8,
    advert_int: &'static str,
    /// The virtual address: [`VIP`] (/24) or [`VIP6`] (/64).
    vip: &'static str,
    extra: String,
}

impl Settings {
    fn new(version: u8, priority: u8, advert_int: &'static str) -> Self {
        Self {
            version,
            priority,
            advert_int,
            vip: VIP,
            extra: String::new(),
        }
    }

    fn with(mut self, line: &str) -> Self {
        self.extra.push_str("    ");
        self.extra.push_str(line);
        self.extra.push('\n');
        self
    }

    fn v6(self) -> Self {
        Self { vip: VIP6, ..self }
    }

    fn keepalived_conf(&self, name: &str) -> String {
        let prefix = if self.vip == VIP6 { 64 } else { 24 };
        format!(
            "global_defs {{\n    router_id {name}\n}}\n\
             vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    \
             version {}\n    priority {}\n    advert_int {}\n{}    virtual_ipaddress {{\n        {}/{prefix}\n    }}\n}}\n",
            self.version, self.priority, self.advert_int, self.extra, self.vip
        )
    }
}

/// A router of the lab: its namespace, what runs it, and its running process.
struct Router {
    name: String,
    ns: Netns,
    kind: Kind,
    dir: PathBuf,
    pid: Option<u32>,
    /// The VIP of the settings it last started with.
    vip: &'static str,
}

impl Router {
    fn socket(&self) -> PathBuf {
        self.dir.join(format!("{}.sock", self.name))
    }

    fn start(&mut self, lab: &mut Lab, settings: &Settings) {
        assert!(self.pid.is_none(), "{} is already running", self.name);
        self.vip = settings.vip;
        let conf = self.dir.join(format!("{}.conf", self.name));
        std::fs::write(&conf, settings.keepalived_conf(&self.name)).expect("writing config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", self.name)))
            .expect("log file");
        let pid = match self.kind {
            Kind::Lbd => {
                let socket = self.socket();
                std::fs::remove_file(&socket).ok();
                let mut cmd = self.ns.command(lb_tests::workspace_bin("lbd"));
                cmd.args(["run", "--dataplane", "none", "--config"])
                    .arg(&conf)
                    .arg("--control-socket")
                    .arg(&socket)
                    .env("RUST_LOG", "info")
                    .stdout(Stdio::null())
                    .stderr(log);
                let pid = lab.spawn(&format!("lbd {}", self.name), cmd);
                wait_for_path(&socket, Duration::from_secs(20));
                pid
            }
            Kind::Keepalived => {
                let mut cmd = self.ns.command("keepalived");
                let pid_file = |suffix: &str| self.dir.join(format!("{}{suffix}.pid", self.name));
                // A crashed keepalived leaves its pid files behind, and refuses to start over
                // them ("daemon is already running"); a reboot clears /run.
                for suffix in ["", "_vrrp", "_chk", "_bfd"] {
                    std::fs::remove_file(pid_file(suffix)).ok();
                }
                cmd.args(["-n", "-l", "-D", "-P", "-f"])
                    .arg(&conf)
                    .arg("-p")
                    .arg(pid_file(""))
                    .arg("-r")
                    .arg(pid_file("_vrrp"))
                    .arg("-c")
                    .arg(pid_file("_chk"))
                    .arg("-b")
                    .arg(pid_file("_bfd"))
                    .stdout(log.try_clone().expect("log file"))
                    .stderr(log);
                let pid = lab.spawn_group(&format!("keepalived {}", self.name), cmd);
                wait_for_path(&pid_file("_vrrp"), Duration::from_secs(20));
                pid
            }
        };
        self.pid = Some(pid);
    }

    /// Stops the router with `signal` (keepalived: its whole process group, as a crash or
    /// `systemctl stop` would).
    fn stop(&mut self, lab: &mut Lab, signal: &str) {
        let pid = self.pid.take().expect("router running");
        // keepalived's VRRP child is not the process the lab waits for: wait for it too.
        let child = std::fs::read_to_string(self.dir.join(format!("{}_vrrp.pid", self.name)))
            .ok()
            .filter(|_| self.kind == Kind::Keepalived)
            .and_then(|p| p.trim().parse::<u32>().ok());
        lab.stop(pid, signal);
        if let Some(child) = child {
            wait_until(
                "keepalived's VRRP process to exit",
                Duration::from_secs(10),
                || !Path::new(&format!("/proc/{child}")).exists(),
            );
        }
    }

    fn holds_vip(&self) -> bool {
        let out = self.ns.run("ip", &["-o", "addr", "show", "dev", "eth0"]);
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {}/", self.vip))
    }

    /// Removes the VIP a crashed router left behind (a reboot would).
    fn clear_vip(&self) {
        let prefix = if self.vip == VIP6 { 128 } else { 32 };
        self.ns.ip(&[
            "addr",
            "flush",
            "dev",
            "eth0",
            "to",
            &format!("{}/{prefix}", self.vip),
        ]);
    }

    /// lbd's view of its one instance.
    fn status(&self) -> serde_json::Value {
        assert_eq!(self.kind, Kind::Lbd, "only lbd has lbctl");
        let out = Command::new(lb_tests::workspace_bin("lbctl"))
            .arg("--control-socket")
            .arg(self.socket())
            .args(["status", "--json"])
            .output()
            .expect("running lbctl");
        assert!(
            out.status.success(),
            "lbctl status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("lbctl --json prints JSON");
        status["vrrp"][0].clone()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }
}

/// A LAN of routers, each of `kinds`, with addresses 192.0.2.1, .2, ...
fn lan(kinds: &[Kind]) -> (Lab, Netns, Vec<Router>) {
    lb_tests::require_root();
    assert!(
        Command::new("keepalived")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            || !kinds.contains(&Kind::Keepalived),
        "keepalived is missing: run `cargo xtask setup`"
    );
    let mut lab = Lab::new();
    let names: Vec<String> = (1..=kinds.len()).map(|i| format!("d{i}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (switch, hosts) = lab.lan(&name_refs);
    let dir = lab.dir().to_path_buf();
    let routers = hosts
        .into_iter()
        .zip(kinds)
        .enumerate()
        .map(|(i, (ns, kind))| {
            ns.ip(&[
                "addr",
                "add",
                &format!("192.0.2.{}/24", i + 1),
                "dev",
                "eth0",
            ]);
            Router {
                name: names[i].clone(),
                ns,
                kind: *kind,
                dir: dir.clone(),
                pid: None,
                vip: VIP,
            }
        })
        .collect();
    (lab, switch, routers)
}

/// Waits until exactly `master` of `routers` holds the VIP; on timeout, fails with every
/// router's log.
fn wait_master(routers: &[Router], master: usize, why: &str) {
    let deadline = std::time::Instant::now() + TAKEOVER;
    let settled = || {
        routers
            .iter()
            .enumerate()
            .all(|(i, r)| r.pid.is_none() || r.holds_vip() == (i == master))
    };
    while !settled() {
        if std::time::Instant::now() > deadline {
            let logs: Vec<String> = routers
                .iter()
                .map(|r| {
                    format!(
                        "--- {} ({:?}) holds VIP: {}\n{}",
                        r.name,
                        r.kind,
                        r.holds_vip(),
                        r.log()
                    )
                })
                .collect();
            panic!(
                "timed out after {TAKEOVER:?} waiting for {} alone to hold {VIP} ({why})\n{}",
                routers[master].name,
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts for `period` that `master` keeps the VIP and no other running router takes it.
fn assert_stays_master(routers: &[Router], master: usize, period: Duration) {
    let deadline = std::time::Instant::now() + period;
    while std::time::Instant::now() < deadline {
        for (i, r) in routers.iter().enumerate() {
            if r.pid.is_some() {
                assert_eq!(
                    r.holds_vip(),
                    i == master,
                    "{} {} the VIP while {} should be the only master\n{}",
                    r.name,
                    if i == master { "lost" } else { "took" },
                    routers[master].name,
                    r.log()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

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

/// Unicast peers instead of multicast, with keepalived on the other side.
#[test]
fn unicast_peers_with_keepalived() {
    let (mut lab, _, mut r) = lan(&[Kind::Lbd, Kind::Keepalived]);
    let unicast = |me: &str, peer: &str| {
        format!("unicast_src_ip {me}\n    unicast_peer {{\n        {peer}\n    }}")
    };
    let s0 = Settings::new(3, 150, "0.1").with(&unicast("192.0.2.1", "192.0.2.2"));
    let s1 = Settings::new(3, 100, "0.1").with(&unicast("192.0.2.2", "192.0.2.1"));
    r[1].start(&mut lab, &s1);
    r[0].start(&mut lab, &s0);
    wait_master(&r, 0, "higher priority over unicast");
    assert_stays_master(&r, 0, Duration::from_secs(1));
    r[0].stop(&mut lab, "TERM");
    wait_master(&r, 1, "lbd stopped");
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
    wait_until("lbd to count authentication failures", TAKEOVER, || {
        r[1].status()["errors"].as_u64().is_some_and(|e| e >= 2)
    });
    assert!(
        r[1].holds_vip(),
        "lbd ignores a peer it cannot authenticate"
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
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut ttl = good.clone();
    ttl[8] = 64;
    packet::refresh_ipv4_checksum(&mut ttl);
    cases.push(("TTL 64", ttl));
    let mut checksum = good.clone();
    checksum[20 + 6] ^= 0xff;
    cases.push(("bad checksum", checksum));
    cases.push(("truncated", {
        let mut t = good[..20 + 6].to_vec();
        t[2..4].copy_from_slice(&26u16.to_be_bytes());
        packet::refresh_ipv4_checksum(&mut t);
        t
    }));
    let mut version = good.clone();
    version[20] = 0x41;
    cases.push(("version 4", version));
    let mut vtype = good.clone();
    vtype[20] = 0x32;
    cases.push(("type 2", vtype));
    for (what, datagram) in &cases {
        for _ in 0..3 {
            attacker.send_ipv4_raw("eth0", datagram.clone());
        }
        std::thread::sleep(Duration::from_millis(50));
        let s = r[1].status();
        assert_eq!(s["state"], "BACKUP", "{what}: {s}");
        assert!(
            s["active_router"]
                .as_str()
                .is_some_and(|a| a.starts_with("192.0.2.1 ")),
            "{what}: the hostile advert must not replace the master: {s}"
        );
    }
    let after = r[1].status();
    let errors = after["errors"].as_u64().unwrap() - before["errors"].as_u64().unwrap();
    assert_eq!(
        errors,
        3 * cases.len() as u64,
        "every hostile advert counted: {after}"
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
