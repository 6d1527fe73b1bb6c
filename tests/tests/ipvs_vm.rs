//! IPVS over generic netlink against a real kernel: runs inside the IPVS VM (`cargo xtask test`,
//! tier "vm", or `cargo xtask vm -- <this test binary>`), each test in a fresh network namespace
//! (IPVS state is per namespace). The XDP director's IPIP forwarding is tested here too: real
//! servers decapsulate with the kernel's ipip module, which the host kernel lacks.
#![expect(
    unused_crate_dependencies,
    reason = "each target of lb-tests uses part of the package's dependencies; cargo cannot scope them"
)]

use std::net::IpAddr;

use lb_tests::lab::{Lab, Netns};
use lbd::ipvs::{
    Dest, IpvsClient, IpvsError, Service,
    msg::{IP_VS_CONN_F_DROUTE, IP_VS_CONN_F_MASQ, IP_VS_CONN_F_TUNNEL},
};

/// A director and a servers namespace on one veth: the director 192.0.2.1/24 on `d0`, the
/// servers `addresses` on `s0`.
fn director_and_servers(lab: &mut Lab, addresses: &[&str]) -> (Netns, Netns) {
    let director = lab.netns("director");
    let servers = lab.netns("servers");
    lab.veth(&director, "d0", &servers, "s0");
    director.ip(&["addr", "add", "192.0.2.1/24", "dev", "d0"]);
    for a in addresses {
        servers.ip(&["addr", "add", a, "dev", "s0"]);
    }
    (director, servers)
}

fn in_vm() {
    assert!(
        std::env::var_os("RUN_IN_VM").is_some(),
        "this test needs kernel IPVS: run it with `cargo xtask test` (tier vm) or `cargo xtask vm -- <test binary>`"
    );
}

fn ipvsadm(ns: &Netns) -> String {
    let out = ns.run("ipvsadm", &["-Ln"]);
    assert!(
        out.status.success(),
        "ipvsadm -Ln: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ipvsadm -Ln` in `ns` shows every one of `lines`.
fn assert_listed(ns: &Netns, lines: &[&str]) {
    let listing = ipvsadm(ns);
    for line in lines {
        assert!(
            listing.contains(line),
            "ipvsadm -Ln lacks {line:?}:\n{listing}"
        );
    }
}

fn dest(addr: &str, port: u16, fwd_method: u32, weight: u32) -> Dest {
    Dest {
        addr: addr.parse().expect("address"),
        port,
        fwd_method,
        weight,
        u_thresh: 0,
        l_thresh: 0,
        tun_type: 0,
        tun_port: 0,
        tun_flags: 0,
    }
}

#[test]
fn a_service_with_two_destinations_reads_back_through_neli_and_ipvsadm() {
    in_vm();
    let mut lab = Lab::new();
    let ns = lab.netns("director");
    let vip: IpAddr = "203.0.113.10".parse().expect("vip");
    let service = Service::new(vip, 6, 80, "wrr");
    let dests = vec![
        dest("192.0.2.2", 8080, IP_VS_CONN_F_MASQ, 3),
        dest("192.0.2.3", 8080, IP_VS_CONN_F_MASQ, 1),
    ];
    let (info, services, read_dests, duplicate) = {
        let (service, dests) = (service.clone(), dests.clone());
        ns.within(move || {
            let ipvs = IpvsClient::connect().expect("IPVS family");
            let info = ipvs.info().expect("GET_INFO");
            ipvs.new_service(&service).expect("NEW_SERVICE");
            for d in &dests {
                ipvs.new_dest(&service, d).expect("NEW_DEST");
            }
            let duplicate = ipvs.new_service(&service);
            (
                info,
                ipvs.services().expect("GET_SERVICE"),
                ipvs.dests(&service).expect("GET_DEST"),
                duplicate,
            )
        })
    };
    assert_eq!(info.version, (1, 2, 1), "Debian 6.1's IPVS");
    assert!(info.conn_tab_size > 0);
    assert_eq!(services, vec![service.clone()]);
    let mut read_dests = read_dests;
    read_dests.sort_by_key(|d| d.addr);
    assert_eq!(read_dests, dests);
    assert!(
        matches!(duplicate, Err(IpvsError::Kernel { errno, .. }) if errno == libc::EEXIST),
        "a duplicate service is EEXIST: {duplicate:?}"
    );
    assert_listed(
        &ns,
        &[
            "TCP  203.0.113.10:80 wrr",
            "-> 192.0.2.2:8080               Masq    3      0          0",
            "-> 192.0.2.3:8080               Masq    1      0          0",
        ],
    );

    let remaining = ns.within(move || {
        let ipvs = IpvsClient::connect().expect("IPVS family");
        ipvs.del_service(&service).expect("DEL_SERVICE");
        let missing = ipvs.del_service(&service);
        (ipvs.services().expect("GET_SERVICE"), missing)
    });
    assert_eq!(remaining.0, Vec::new());
    assert!(
        matches!(remaining.1, Err(IpvsError::Kernel { errno, .. }) if errno == libc::ESRCH),
        "deleting a missing service is ESRCH: {:?}",
        remaining.1
    );
    assert!(!ipvsadm(&ns).contains("203.0.113.10"));
}

#[test]
fn udp_ipv6_and_every_forwarding_method_read_back() {
    in_vm();
    let mut lab = Lab::new();
    let ns = lab.netns("director");
    let udp = Service::new("203.0.113.11".parse().expect("vip"), 17, 53, "rr");
    let v6 = Service::new("2001:db8::10".parse().expect("vip6"), 6, 443, "sh");
    let udp_dests = vec![
        dest("192.0.2.4", 53, IP_VS_CONN_F_DROUTE, 5),
        dest("192.0.2.5", 53, IP_VS_CONN_F_TUNNEL, 0),
    ];
    let v6_dests = vec![dest("2001:db8::20", 8443, IP_VS_CONN_F_MASQ, 2)];
    let (services, got_udp, got_v6) = {
        let (udp, v6, udp_dests, v6_dests) =
            (udp.clone(), v6.clone(), udp_dests.clone(), v6_dests.clone());
        ns.within(move || {
            let ipvs = IpvsClient::connect().expect("IPVS family");
            for (svc, dests) in [(&udp, &udp_dests), (&v6, &v6_dests)] {
                ipvs.new_service(svc).expect("NEW_SERVICE");
                for d in dests {
                    ipvs.new_dest(svc, d).expect("NEW_DEST");
                }
            }
            (
                ipvs.services().expect("services"),
                ipvs.dests(&udp).expect("dests"),
                ipvs.dests(&v6).expect("dests6"),
            )
        })
    };
    assert_eq!(services.len(), 2);
    assert!(
        services.contains(&udp) && services.contains(&v6),
        "{services:?}"
    );
    let mut got_udp = got_udp;
    got_udp.sort_by_key(|d| d.addr);
    assert_eq!(got_udp, udp_dests);
    assert_eq!(got_v6, v6_dests);
    assert_listed(
        &ns,
        &[
            "UDP  203.0.113.11:53 rr",
            "-> 192.0.2.4:53                 Route   5",
            "-> 192.0.2.5:53                 Tunnel  0",
            "TCP  [2001:db8::10]:443 sh",
            "-> [2001:db8::20]:8443          Masq    2",
        ],
    );
    drop(lab);
}

/// lbd on a keepalived.conf with virtual_server blocks: what it programs reads back through
/// `ipvsadm -Ln`; a dead real server leaves (or stays at weight 0 when inhibited) and comes
/// back; drift (`ipvsadm -C`) is repaired on the next resync; a service lbd does not own is
/// left alone, and lbd's own go at stop.
#[test]
fn lbd_programs_ipvs_from_a_keepalived_conf_and_follows_health() {
    in_vm();
    let mut lab = Lab::new();
    let (director, servers) = director_and_servers(&mut lab, &["192.0.2.2/24", "192.0.2.3/24"]);
    let mut a = lb_tests::lab::TcpServer::start(&servers, "192.0.2.2:80");
    let mut b = lb_tests::lab::TcpServer::start(&servers, "192.0.2.3:80");
    let check = "TCP_CHECK {\n      connect_timeout 1\n      retry 0\n    }";
    let conf = format!(
        "virtual_server 203.0.113.10 80 {{\n  delay_loop 0.5\n  lb_algo wrr\n  lb_kind NAT\n  persistence_timeout 300\n  real_server 192.0.2.2 80 {{\n    weight 3\n    {check}\n  }}\n  real_server 192.0.2.3 80 {{\n    inhibit_on_failure\n    {check}\n  }}\n}}\nvirtual_server fwmark 7 {{\n  delay_loop 0.5\n  lb_algo rr\n  lb_kind DR\n  real_server 192.0.2.2 80 {{\n    {check}\n  }}\n}}\n"
    );
    let (pid, socket, log_path) = start_lbd(&mut lab, &director, "lbd", &conf, &[]);
    // Compared with runs of spaces collapsed: ipvsadm pads its columns.
    let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let listed = |lines: &[&str]| {
        let listing: Vec<String> = ipvsadm(&director).lines().map(words).collect();
        lines.iter().all(|l| listing.contains(&words(l)))
    };
    let wait = |what: &str, lines: &[&str]| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !listed(lines) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}: {lines:?}\nipvsadm -Ln:\n{}\nlbd's log:\n{}",
                ipvsadm(&director),
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait(
        "lbd's services",
        &[
            "TCP  203.0.113.10:80 wrr persistent 300",
            "-> 192.0.2.2:80 Masq 3 0 0",
            "-> 192.0.2.3:80 Masq 1 0 0",
            "FWM  7 rr",
            "-> 192.0.2.2:0 Route 1 0 0",
        ],
    );
    let status = lb_tests::lbctl_status(&socket);
    assert_eq!(
        status["reconciler"]["backend"], "ipvs",
        "{}",
        status["reconciler"]
    );
    // A service lbd does not own.
    let out = director.run("ipvsadm", &["-A", "-t", "198.51.100.1:22", "-s", "rr"]);
    assert!(out.status.success());
    // The inhibited server dies: weight 0, still listed.
    b.kill();
    wait("192.0.2.3 at weight 0", &["-> 192.0.2.3:80 Masq 0 0 0"]);
    // The shared one dies: it leaves both services.
    a.kill();
    lb_tests::lab::wait_until("192.0.2.2 gone", std::time::Duration::from_secs(30), || {
        !ipvsadm(&director).contains("-> 192.0.2.2:")
    });
    a = lb_tests::lab::TcpServer::start(&servers, "192.0.2.2:80");
    wait(
        "192.0.2.2 back in both",
        &["-> 192.0.2.2:80 Masq 3 0 0", "-> 192.0.2.2:0 Route 1 0 0"],
    );
    // Drift: everything flushed behind lbd's back comes back on the next resync.
    assert!(director.run("ipvsadm", &["-C"]).status.success());
    wait(
        "drift repaired",
        &[
            "TCP  203.0.113.10:80 wrr persistent 300",
            "-> 192.0.2.2:80 Masq 3 0 0",
            "FWM  7 rr",
        ],
    );
    // The foreign service was flushed too; add it again: lbd leaves it alone at stop.
    assert!(
        director
            .run("ipvsadm", &["-A", "-t", "198.51.100.1:22", "-s", "rr"])
            .status
            .success()
    );
    lab.stop(pid, "TERM");
    let listing = ipvsadm(&director);
    assert!(
        !listing.contains("203.0.113.10") && !listing.contains("FWM  7"),
        "{listing}"
    );
    assert!(listing.contains("198.51.100.1:22"), "{listing}");
    drop((a, b));
}

/// Starts lbd in `ns` on keepalived.conf text `conf` with `extra` arguments; returns its pid,
/// control socket and log file.
fn start_lbd(
    lab: &mut Lab,
    ns: &Netns,
    name: &str,
    conf: &str,
    extra: &[&str],
) -> (u32, std::path::PathBuf, std::path::PathBuf) {
    let path = lab.dir().join(format!("{name}.conf"));
    std::fs::write(&path, conf).expect("config");
    let socket = lab.dir().join(format!("{name}.sock"));
    let log_path = lab.dir().join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).expect("log");
    let mut lbd = ns.command(lb_tests::workspace_bin("lbd"));
    lbd.arg("run")
        .arg("-f")
        .arg(&path)
        .arg("--control-socket")
        .arg(&socket)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(log);
    let pid = lab.spawn(name, lbd);
    lb_tests::lab::wait_for_path(&socket, std::time::Duration::from_secs(30));
    (pid, socket, log_path)
}

/// `lvs_flush` empties the table at start; `lvs_timeouts` is applied; with `-I`
/// (`--dont-release-ipvs`) lbd leaves the table at stop, and a restarted lbd adopts it with no
/// operation at all.
#[test]
fn flush_timeouts_and_a_restart_that_adopts_the_table() {
    in_vm();
    let mut lab = Lab::new();
    let (director, servers) = director_and_servers(&mut lab, &["192.0.2.2/24"]);
    let server = lb_tests::lab::TcpServer::start(&servers, "192.0.2.2:80");
    assert!(
        director
            .run("ipvsadm", &["-A", "-t", "198.51.100.1:22", "-s", "rr"])
            .status
            .success()
    );
    let conf = "global_defs {\n  lvs_flush\n  lvs_timeouts tcp 900 tcpfin 120 udp 300\n}\nvirtual_server 203.0.113.20 443 {\n  delay_loop 0.5\n  lb_algo sh\n  sh-port\n  lb_kind TUN type gue port 6080 remcsum\n  real_server 192.0.2.2 80 {\n    weight 7\n    uthreshold 100\n    lthreshold 10\n    TCP_CHECK {\n      connect_timeout 1\n      retry 0\n    }\n  }\n}\nvirtual_server 203.0.113.21 5060 {\n  protocol UDP\n  lb_algo rr\n  persistence_timeout 60\n  persistence_engine sip\n  real_server 192.0.2.2 5060 {\n    weight 1\n  }\n}\n";
    let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let listing = || ipvsadm(&director);
    let (pid, socket, log) = start_lbd(&mut lab, &director, "lbd", conf, &["-I"]);
    lb_tests::lab::wait_until("lbd's service", std::time::Duration::from_secs(30), || {
        listing().contains("203.0.113.20:443")
    });
    let first = listing();
    assert!(
        !first.contains("198.51.100.1:22"),
        "lvs_flush removed the foreign service:\n{first}"
    );
    assert!(
        words(&first).contains("TCP 203.0.113.20:443 sh (sh-port)"),
        "{first}"
    );
    assert!(
        words(&first).contains("UDP 203.0.113.21:5060 rr persistent 60 pe sip"),
        "{first}"
    );
    let detail = String::from_utf8_lossy(&director.run("ipvsadm", &["-Ln", "--thresholds"]).stdout)
        .into_owned();
    assert!(
        words(&detail).contains("-> 192.0.2.2:80 100 10"),
        "{detail}"
    );
    let tunnel = String::from_utf8_lossy(&director.run("ipvsadm", &["-Ln", "--tun-info"]).stdout)
        .into_owned();
    assert!(
        words(&tunnel).contains("-> 192.0.2.2:80 Tunnel gue:6080:r+c 7 0 0"),
        "{tunnel}\nlog:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let timeouts =
        String::from_utf8_lossy(&director.run("ipvsadm", &["-L", "--timeout"]).stdout).into_owned();
    assert!(words(&timeouts).contains("900 120 300"), "{timeouts}");
    // Stopped with -I: the table stays.
    lab.stop(pid, "TERM");
    assert_eq!(words(&listing()), words(&first), "-I leaves IPVS as it was");
    // A restarted lbd (without lvs_flush) finds its table and applies nothing.
    let conf2 = conf.replace("  lvs_flush\n", "");
    let (pid, socket2, _) = start_lbd(&mut lab, &director, "lbd2", &conf2, &[]);
    lb_tests::lab::wait_until("a pass", std::time::Duration::from_secs(30), || {
        lb_tests::lbctl_status(&socket2)["reconciler"]["passes"].as_u64() >= Some(2)
    });
    let status = lb_tests::lbctl_status(&socket2);
    assert_eq!(
        status["reconciler"]["applied"], 0,
        "{}",
        status["reconciler"]
    );
    assert_eq!(words(&listing()), words(&first));
    lab.stop(pid, "TERM");
    assert!(
        !listing().contains("203.0.113.20"),
        "released at stop without -I"
    );
    drop((server, socket));
}

/// Real TCP connections through lbd's IPVS, NAT and DR: both real servers take new
/// connections; one dies, its check fails, it leaves IPVS, new connections go to the survivor
/// and a connection established to the survivor before carries on (IPVS drops the packets of
/// connections to a removed destination: keepalived's `inhibit_on_failure` is the answer to
/// that, weight 0).
#[test]
fn nat_and_dr_forward_real_connections_and_follow_health() {
    in_vm();
    let mut lab = Lab::new();
    let (_switch, hosts) = lab.lan(&["director", "srva", "srvb"]);
    let [director, srva, srvb] = [hosts[0].clone(), hosts[1].clone(), hosts[2].clone()];
    let client = lab.netns("client");
    lab.veth(&client, "c0", &director, "d1");
    director.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]);
    director.ip(&["addr", "add", "198.51.100.1/24", "dev", "d1"]);
    director.ip(&["addr", "add", "203.0.113.10/32", "dev", "lo"]);
    director.ip(&["addr", "add", "203.0.113.11/32", "dev", "lo"]);
    lb_tests::lab::sysctl(&director, "net.ipv4.ip_forward", "1");
    // DR replies come back through the director here (the client's only path), with the
    // VIP, one of the director's own addresses, as their source.
    lb_tests::lab::sysctl(&director, "net.ipv4.conf.eth0.accept_local", "1");
    client.ip(&["addr", "add", "198.51.100.2/24", "dev", "c0"]);
    client.ip(&["route", "add", "203.0.113.0/24", "via", "198.51.100.1"]);
    for (ns, addr) in [(&srva, "192.0.2.2/24"), (&srvb, "192.0.2.3/24")] {
        ns.ip(&["addr", "add", addr, "dev", "eth0"]);
        ns.ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.1"]);
        // DR: the VIP on lo, never answered for in ARP.
        ns.ip(&["addr", "add", "203.0.113.11/32", "dev", "lo"]);
        lb_tests::lab::sysctl(ns, "net.ipv4.conf.all.arp_ignore", "1");
        lb_tests::lab::sysctl(ns, "net.ipv4.conf.all.arp_announce", "2");
    }
    let mut a = lb_tests::lab::NamedServer::start(&srva, "0.0.0.0:80", "srva");
    let mut b = lb_tests::lab::NamedServer::start(&srvb, "0.0.0.0:80", "srvb");
    let check = "TCP_CHECK {\n      connect_timeout 1\n      retry 0\n    }";
    let conf = format!(
        "virtual_server 203.0.113.10 80 {{\n  delay_loop 0.5\n  lb_algo rr\n  lb_kind NAT\n  real_server 192.0.2.2 80 {{\n    {check}\n  }}\n  real_server 192.0.2.3 80 {{\n    {check}\n  }}\n}}\nvirtual_server 203.0.113.11 80 {{\n  delay_loop 0.5\n  lb_algo rr\n  lb_kind DR\n  real_server 192.0.2.2 80 {{\n    {check}\n  }}\n  real_server 192.0.2.3 80 {{\n    {check}\n  }}\n}}\n"
    );
    let (pid, socket, _log) = start_lbd(&mut lab, &director, "lbd", &conf, &[]);
    lb_tests::lab::wait_until(
        "four destinations",
        std::time::Duration::from_secs(30),
        || ipvsadm(&director).matches("-> 192.0.2.").count() == 4,
    );
    for vip in ["203.0.113.10:80", "203.0.113.11:80"] {
        let names: std::collections::BTreeSet<String> = (0..6)
            .map(|_| lb_tests::lab::greet(&client, vip).0)
            .collect();
        assert_eq!(
            names,
            ["srva".to_owned(), "srvb".to_owned()].into(),
            "{vip}: both real servers take connections"
        );
    }
    // An established connection to the survivor-to-be, through NAT.
    let mut held = loop {
        let (name, conn) = lb_tests::lab::greet(&client, "203.0.113.10:80");
        if name == "srva" {
            break conn;
        }
    };
    b.stop_listening();
    lb_tests::lab::wait_until(
        "srvb leaves IPVS",
        std::time::Duration::from_secs(30),
        || !ipvsadm(&director).contains("192.0.2.3:80"),
    );
    for vip in ["203.0.113.10:80", "203.0.113.11:80"] {
        for _ in 0..6 {
            assert_eq!(
                lb_tests::lab::greet(&client, vip).0,
                "srva",
                "{vip}: new connections go to the survivor"
            );
        }
    }
    {
        use std::io::{BufRead as _, Write as _};
        held.write_all(b"still there?\n")
            .expect("write on the held connection");
        let mut line = String::new();
        let read = std::io::BufReader::new(held.try_clone().expect("clone")).read_line(&mut line);
        let conns =
            String::from_utf8_lossy(&director.run("ipvsadm", &["-Lnc"]).stdout).into_owned();
        assert!(
            read.is_ok(),
            "no echo ({read:?}); IPVS connections:\n{conns}\n{}",
            ipvsadm(&director)
        );
        assert_eq!(
            line, "still there?\n",
            "the established connection carries on"
        );
    }
    drop(held);
    // The kernel's counters, as lbd lists them (the kernel sums its per-CPU counters on its
    // estimator's tick, every 2 s).
    let nat = || {
        lb_tests::lbctl_status(&socket)["ipvs_services"]
            .as_array()
            .expect("ipvs_services")
            .iter()
            .find(|s| s["service"] == "[203.0.113.10]:tcp:80")
            .expect("the NAT service listed")
            .clone()
    };
    lb_tests::lab::wait_until("IPVS counters", std::time::Duration::from_secs(15), || {
        let n = nat();
        n["stats"]["conns"].as_u64() >= Some(12)
            && n["stats"]["outbytes"].as_u64() > Some(0)
            && n["real_servers"][0]["stats"]["conns"].as_u64() >= Some(6)
    });
    let n = nat();
    assert_eq!(n["real_servers"][0]["address"], "192.0.2.2:80", "{n}");
    assert!(
        n["real_servers"][0]["inactive_conns"].as_u64() > Some(0),
        "{n}"
    );
    lab.stop(pid, "TERM");
    a.stop_listening();
}

/// `lvs_sync_daemon`: the kernel's sync daemon runs as backup, turns master when the VRRP
/// instance it follows becomes MASTER, and stops with lbd.
#[test]
fn the_sync_daemon_follows_its_vrrp_instance() {
    in_vm();
    let mut lab = Lab::new();
    let director = lab.netns("director");
    let peer = lab.netns("peer");
    lab.veth(&director, "d0", &peer, "p0");
    director.ip(&["addr", "add", "192.0.2.1/24", "dev", "d0"]);
    let conf = "global_defs {\n  lvs_sync_daemon d0 VI_1 id 7\n}\nvrrp_instance VI_1 {\n  interface d0\n  state BACKUP\n  version 3\n  virtual_router_id 9\n  priority 100\n  advert_int 0.5\n  virtual_ipaddress {\n    192.0.2.100/24\n  }\n}\n";
    let daemons = || {
        let out = director.run("ipvsadm", &["-L", "--daemon"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (pid, _socket, log) = start_lbd(&mut lab, &director, "lbd", conf, &["--no-vrrp-bpf"]);
    let log = || std::fs::read_to_string(&log).unwrap_or_default();
    let wait = |what: &str, want: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !daemons().contains(want) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}: {}\nlbd's log:\n{}",
                daemons(),
                log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait(
        "the backup daemon",
        "backup sync daemon (mcast=d0, syncid=7,",
    );
    wait(
        "the master daemon",
        "master sync daemon (mcast=d0, syncid=7,",
    );
    assert!(!daemons().contains("backup sync daemon"), "{}", daemons());
    lab.stop(pid, "TERM");
    assert!(
        !daemons().contains("sync daemon"),
        "stopped with lbd: {}",
        daemons()
    );
}

/// One keepalived.conf, run by keepalived 2.2.7 (checkers only) in one namespace and by lbd in
/// another, each with the same real servers: both kernels' IPVS tables end up the same.
#[test]
fn lbd_programs_what_keepalived_programs_from_the_same_file() {
    in_vm();
    let conf = "virtual_server 203.0.113.10 80 {\n  delay_loop 1\n  lb_algo wrr\n  lb_kind NAT\n  protocol TCP\n  persistence_timeout 300\n  persistence_granularity 255.255.255.0\n  real_server 192.0.2.2 80 {\n    weight 3\n    TCP_CHECK {\n      connect_timeout 1\n    }\n  }\n  real_server 192.0.2.3 80 {\n    weight 2\n    uthreshold 100\n    lthreshold 10\n    TCP_CHECK {\n      connect_timeout 1\n    }\n  }\n  real_server 192.0.2.4 80 {\n    inhibit_on_failure\n    TCP_CHECK {\n      connect_timeout 1\n    }\n  }\n  real_server 192.0.2.5 80 {\n    TCP_CHECK {\n      connect_timeout 1\n    }\n  }\n}\nvirtual_server 2001:db8::10 443 {\n  delay_loop 1\n  lb_algo sh\n  sh-port\n  lb_kind DR\n  protocol TCP\n  real_server 2001:db8::2 443 {\n    weight 5\n    TCP_CHECK {\n      connect_timeout 1\n    }\n  }\n}\nvirtual_server fwmark 7 {\n  delay_loop 1\n  lb_algo rr\n  lb_kind TUN\n  real_server 192.0.2.2 80 {\n    TCP_CHECK {\n      connect_timeout 1\n    }\n  }\n}\nvirtual_server 203.0.113.11 53 {\n  protocol UDP\n  lb_algo rr\n  ops\n  real_server 192.0.2.2 53 {\n    weight 1\n  }\n}\n";
    let mut lab = Lab::new();
    let mut servers = Vec::new();
    let mut director = |name: &str, lab: &mut Lab| {
        let ns = lab.netns(name);
        for a in ["192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"] {
            ns.ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"]);
        }
        ns.ip(&["-6", "addr", "add", "2001:db8::2/128", "dev", "lo"]);
        // 192.0.2.4 and .5 have no server: one inhibited at weight 0, one removed.
        for addr in ["192.0.2.2:80", "192.0.2.3:80", "[2001:db8::2]:443"] {
            servers.push(lb_tests::lab::TcpServer::start(&ns, addr));
        }
        ns
    };
    let lbd_ns = director("lbd", &mut lab);
    let ka_ns = director("keepalived", &mut lab);
    let (lbd_pid, _socket, _log) = start_lbd(&mut lab, &lbd_ns, "lbd", conf, &[]);
    let path = lab.dir().join("keepalived.conf");
    std::fs::write(&path, conf).expect("config");
    let pid_file = |suffix: &str| lab.dir().join(format!("keepalived{suffix}.pid"));
    let mut keepalived = ka_ns.command("keepalived");
    keepalived
        .args(["-n", "-l", "-D", "-C", "-f"])
        .arg(&path)
        .arg("-p")
        .arg(pid_file(""))
        .arg("-c")
        .arg(pid_file("_chk"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let ka_pid = lab.spawn_group("keepalived", keepalived);
    // Each listing as sorted lines with their columns' spacing collapsed.
    let table = |ns: &Netns| {
        let mut lines: Vec<String> = ipvsadm(ns)
            .lines()
            .skip(3)
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        lines.sort();
        lines
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (ours, theirs) = (table(&lbd_ns), table(&ka_ns));
        // Both settled: the inhibited server at 0 and the dead one gone on both sides.
        let settled = |t: &[String]| {
            t.iter()
                .any(|l| l.starts_with("-> 192.0.2.4:80") && l.contains(" 0 0 0"))
                && !t.iter().any(|l| l.starts_with("-> 192.0.2.5:80"))
        };
        if settled(&ours) && settled(&theirs) {
            assert_eq!(
                ours, theirs,
                "lbd's IPVS table (left) against keepalived's (right)"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not settled within 30 s:\nlbd:\n{}\nkeepalived:\n{}",
            ours.join("\n"),
            theirs.join("\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    lab.stop(lbd_pid, "TERM");
    lab.stop(ka_pid, "TERM");
    drop(servers);
}

/// The XDP director encapsulates in IPIP: a client's connections to the VIP reach two real
/// servers that decapsulate with the kernel's `tunl0` and answer the client directly, balanced
/// over both; one stops, its check fails, new connections go to the other while an
/// established one to it carries on.
#[test]
fn the_xdp_director_forwards_in_ipip_to_real_servers_that_decapsulate() {
    in_vm();
    let mut lab = Lab::new();
    let (_switch, hosts) = lab.lan(&["client", "director", "srva", "srvb"]);
    let [client, director, srva, srvb] = [
        hosts[0].clone(),
        hosts[1].clone(),
        hosts[2].clone(),
        hosts[3].clone(),
    ];
    client.ip(&["addr", "add", "192.0.2.100/24", "dev", "eth0"]);
    client.ip(&["route", "add", "203.0.113.10/32", "via", "192.0.2.1"]);
    director.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]);
    // Loads the ipip module if it is not yet: every namespace gets its fallback device tunl0
    // (an error here only means the module was loaded already).
    let _probe = director.run(
        "ip",
        &[
            "link",
            "add",
            "ipipprobe",
            "type",
            "ipip",
            "remote",
            "192.0.2.250",
        ],
    );
    let tunl0 = srva.run("ip", &["link", "show", "tunl0"]);
    assert!(
        tunl0.status.success(),
        "the VM kernel's ipip gives every namespace tunl0: {}",
        String::from_utf8_lossy(&tunl0.stderr)
    );
    for (ns, addr) in [(&srva, "192.0.2.2/24"), (&srvb, "192.0.2.3/24")] {
        ns.ip(&["addr", "add", addr, "dev", "eth0"]);
        ns.ip(&["link", "set", "tunl0", "up"]);
        ns.ip(&["addr", "add", "203.0.113.10/32", "dev", "lo"]);
        // The inner source (the client) arrives on tunl0, its route is on eth0.
        for conf in ["all", "tunl0", "eth0"] {
            lb_tests::lab::sysctl(ns, &format!("net.ipv4.conf.{conf}.rp_filter"), "0");
        }
        lb_tests::lab::sysctl(ns, "net.ipv4.conf.all.arp_ignore", "1");
    }
    let _a = lb_tests::lab::NamedServer::start(&srva, "0.0.0.0:80", "srva");
    let mut b = lb_tests::lab::NamedServer::start(&srvb, "0.0.0.0:80", "srvb");
    let real = |addr: &str| {
        format!(
            "{{ address = \"{addr}\", port = 80, TCP_CHECK = {{ connect_timeout = 1, retry = 0 }} }}"
        )
    };
    let conf = lb_tests::xdp_toml(
        "eth0",
        "generic",
        "xdp_encap_source = \"198.51.100.0/24\"",
        &format!(
            r#"
[[virtual_server]]
address = "203.0.113.10"
port = 80
protocol = "tcp"
forwarding = "tun"
delay_loop = 0.5
real_server = [ {}, {} ]
"#,
            real("192.0.2.2"),
            real("192.0.2.3")
        ),
    );
    let path = lab.dir().join("lbd.toml");
    std::fs::write(&path, conf).expect("config");
    let socket = lab.dir().join("lbd.sock");
    let mut lbd = director.command(lb_tests::workspace_bin("lbd"));
    lbd.args(["run", "--config"])
        .arg(&path)
        .arg("--control-socket")
        .arg(&socket);
    lab.spawn("lbd", lbd);
    lb_tests::lab::wait_for_path(&socket, std::time::Duration::from_secs(30));
    lb_tests::lab::wait_until("the VIP in XDP", std::time::Duration::from_secs(30), || {
        lb_tests::lbctl_status(&socket)["virtual_servers"][0]["xdp_packets"].is_u64()
    });
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut held = None;
    for _ in 0..20 {
        let (name, conn) = lb_tests::lab::greet(&client, "203.0.113.10:80");
        if name == "srvb" && held.is_none() {
            held = Some(conn);
        }
        *seen.entry(name).or_default() += 1;
    }
    assert_eq!(
        seen.len(),
        2,
        "both real servers take connections: {seen:?}"
    );
    let mut held = held.expect("a connection to srvb");
    b.stop_listening();
    lb_tests::lab::wait_until("srvb down", std::time::Duration::from_secs(30), || {
        lb_tests::lbctl_status(&socket)["virtual_servers"][0]["real_servers"][1]["alive"] == false
    });
    for _ in 0..10 {
        assert_eq!(lb_tests::lab::greet(&client, "203.0.113.10:80").0, "srva");
    }
    use std::io::{Read as _, Write as _};
    held.write_all(b"still there\n").expect("write");
    let mut back = [0u8; 12];
    held.read_exact(&mut back)
        .expect("echo over the established connection");
    assert_eq!(&back, b"still there\n");
    let status = lb_tests::lbctl_status(&socket);
    let encapsulated = status["dataplane"]["xdp"]["counters"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c[0] == "forwarded_encap"))
        .and_then(|c| c[1].as_u64());
    assert!(encapsulated.is_some_and(|n| n > 0), "{status}");
}
