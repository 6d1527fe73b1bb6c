//! lbd's XDP program on veths in namespace labs, with real traffic.
//!
//! - The program attaches in native and generic mode and passes what is not for a VIP.
//! - A director on a LAN with a client and three real servers forwards the client's TCP
//!   connections to the VIP by direct routing, balanced over the real servers; a real server
//!   that fails its health check gets no new connection while its established one carries on.
#![expect(
    unused_crate_dependencies,
    reason = "each target of lb-tests uses part of the package's dependencies; cargo cannot scope them"
)]

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use lb_tests::lab::{Lab, NamedServer, Netns, sysctl, wait_for_path, wait_until};
use lbd::{
    dataplane::xdp::{AttachedMode, Capacity, XdpDataplane},
    model::XdpAttach,
};

const VIP4: &str = "203.0.113.10";
const VIP4_80: &str = "203.0.113.10:80";

/// `client` (192.0.2.1) -- veth -- `director` (192.0.2.2).
struct Topology {
    _lab: Lab,
    client: Netns,
    director: Netns,
}

fn topology() -> Topology {
    lb_tests::require_root();
    let mut lab = Lab::new();
    let client = lab.netns("client");
    let director = lab.netns("director");
    lab.veth(&client, "c0", &director, "d0");
    client.ip(&["addr", "add", "192.0.2.1/24", "dev", "c0"]);
    director.ip(&["addr", "add", "192.0.2.2/24", "dev", "d0"]);
    Topology {
        _lab: lab,
        client,
        director,
    }
}

fn counter(status: &serde_json::Value, name: &str) -> u64 {
    status["dataplane"]["xdp"]["counters"]
        .as_array()
        .expect("counters")
        .iter()
        .find(|c| c[0] == name)
        .and_then(|c| c[1].as_u64())
        .unwrap_or_else(|| panic!("no counter {name}"))
}

#[test]
fn the_program_attaches_natively_and_generically_and_counts_pings() {
    let t = topology();
    for (attach, expected) in [
        (XdpAttach::Native, AttachedMode::Native),
        (XdpAttach::Generic, AttachedMode::Generic),
    ] {
        let director = t.director.clone();
        // The dataplane lives on a thread inside the director: interface names resolve there.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let holder = director.spawn_within(move || {
            let mut xdp = XdpDataplane::load(
                lb_tests::bpf_object(),
                Capacity {
                    vips: 4,
                    ring_size: 13,
                },
            )
            .expect("load");
            let mode = xdp.attach("d0", attach).expect("attach");
            ready_tx.send(mode).expect("report mode");
            rx.recv().ok();
            xdp.counters().expect("counters")
        });
        let mode = ready_rx.recv().expect("attach result");
        assert_eq!(mode, expected);
        let ping = t.client.run(
            "ping",
            &["-n", "-q", "-c", "5", "-i", "0.05", "-W", "1", "192.0.2.2"],
        );
        assert!(
            ping.status.success(),
            "ping through the XDP program: {}",
            String::from_utf8_lossy(&ping.stdout)
        );
        tx.send(()).expect("signal");
        let counters = holder.join().expect("dataplane thread");
        let get = |c: lb_common::Counter| counters[c as usize].1;
        assert!(
            get(lb_common::Counter::NotTcpUdp) >= 5,
            "{attach:?}: the 5 echo requests are ICMP: {counters:?}"
        );
        assert!(
            get(lb_common::Counter::Seen) >= 5,
            "{attach:?}: {counters:?}"
        );
        assert_eq!(
            get(lb_common::Counter::ForwardedDr) + get(lb_common::Counter::NoRealServer),
            0,
            "{attach:?}: no VIP configured: {counters:?}"
        );
    }
}

/// The director and three real servers on one LAN with the client: `client` 192.0.2.1,
/// `director` 192.0.2.2, `rs1`..`rs3` 192.0.2.11-13, each real server holding the VIP on lo
/// and answering with its name on port 80. The client reaches the VIP through the director.
struct DrLab {
    lab: Lab,
    client: Netns,
    director: Netns,
    servers: Vec<(Netns, NamedServer)>,
}

fn dr_lab() -> DrLab {
    lb_tests::require_root();
    let mut lab = Lab::new();
    let (_switch, hosts) = lab.lan(&["client", "director", "rs1", "rs2", "rs3"]);
    let mut hosts = hosts.into_iter();
    let client = hosts.next().expect("client");
    let director = hosts.next().expect("director");
    client.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]);
    client.ip(&["route", "add", &format!("{VIP4}/32"), "via", "192.0.2.2"]);
    director.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
    let servers = hosts
        .enumerate()
        .map(|(i, rs)| {
            rs.ip(&[
                "addr",
                "add",
                &format!("192.0.2.{}/24", 11 + i),
                "dev",
                "eth0",
            ]);
            rs.ip(&["addr", "add", &format!("{VIP4}/32"), "dev", "lo"]);
            // Direct routing: the VIP is local but never answered for on the LAN.
            sysctl(&rs, "net.ipv4.conf.all.arp_ignore", "1");
            sysctl(&rs, "net.ipv4.conf.all.arp_announce", "2");
            let server = NamedServer::start(&rs, "0.0.0.0:80", &format!("rs{}", i + 1));
            (rs, server)
        })
        .collect();
    DrLab {
        lab,
        client,
        director,
        servers,
    }
}

fn echo(conn: &mut TcpStream, what: &[u8]) -> Vec<u8> {
    conn.write_all(what).expect("write");
    let mut back = vec![0u8; what.len()];
    conn.read_exact(&mut back).expect("echo");
    back
}

/// lbd's TOML for the DR lab: XDP on eth0 (`dataplane_extra` added), one DR virtual server on
/// the VIP (`service`: its port, protocol and timing lines) over rs1..rs3 (`real`: each one's
/// port and checker).
fn three_reals(dataplane_extra: &str, service: &str, real: &str) -> String {
    let reals: Vec<String> = (11..=13)
        .map(|n| format!("{{ address = \"192.0.2.{n}\", {real} }}"))
        .collect();
    lb_tests::xdp_toml(
        "eth0",
        "generic",
        dataplane_extra,
        &format!(
            "[[virtual_server]]\naddress = \"{VIP4}\"\n{service}\nforwarding = \"dr\"\nreal_server = [ {} ]\n",
            reals.join(", ")
        ),
    )
}

/// The name of the real server that answers a connection to the VIP, if one does within 0.3 s.
fn try_greet(client: &Netns) -> Option<String> {
    client.within(|| {
        use std::io::BufRead as _;
        let addr: std::net::SocketAddr = VIP4_80.parse().expect("address");
        let conn = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
        conn.set_read_timeout(Some(Duration::from_millis(300)))
            .ok()?;
        let mut line = String::new();
        std::io::BufReader::new(conn).read_line(&mut line).ok()?;
        Some(line.trim().to_owned())
    })
}

fn alive_reals(status: &serde_json::Value) -> usize {
    status["virtual_servers"][0]["real_servers"]
        .as_array()
        .map_or(0, |r| r.iter().filter(|r| r["alive"] == true).count())
}

#[test]
fn the_xdp_director_forwards_by_direct_routing_and_follows_health() {
    let mut t = dr_lab();
    let dir = t.lab.dir().to_path_buf();
    let config = dir.join("lbd.toml");
    std::fs::write(
        &config,
        three_reals(
            "",
            "port = 80\nprotocol = \"tcp\"\ndelay_loop = 0.2",
            "port = 80, TCP_CHECK = { connect_timeout = 0.5, retry = 0 }",
        ),
    )
    .expect("writing config");
    let socket = dir.join("lbd.sock");
    let mut lbd = t.director.command(lb_tests::workspace_bin("lbd"));
    lbd.args(["run", "--http", "--config"])
        .arg(&config)
        .arg("--control-socket")
        .arg(&socket);
    let lbd_pid = t.lab.spawn("lbd", lbd);
    wait_for_path(&socket, Duration::from_secs(20));
    wait_until("three live real servers", Duration::from_secs(10), || {
        alive_reals(&lb_tests::lbctl_status(&socket)) == 3
    });

    // Balanced: 90 connections over three real servers.
    let mut per_server = std::collections::BTreeMap::<String, usize>::new();
    let mut held = None;
    for _ in 0..90 {
        let (name, conn) = lb_tests::lab::greet(&t.client, VIP4_80);
        *per_server.entry(name.clone()).or_default() += 1;
        if name == "rs2" && held.is_none() {
            held = Some(conn);
        }
    }
    assert_eq!(
        per_server.len(),
        3,
        "every real server got connections: {per_server:?}"
    );
    assert!(
        per_server.values().all(|&n| n >= 12),
        "connections spread over the real servers: {per_server:?}"
    );
    let mut held = held.expect("a connection to rs2");
    assert_eq!(echo(&mut held, b"before"), b"before");

    // rs2 stops listening: its check fails, it leaves the table; its connection carries on.
    // Health reports it down before the reconciler has rewritten the Maglev table: wait for
    // both (the reconciler publishes its count once the XDP maps are written).
    let applied = |status: &serde_json::Value| status["reconciler"]["applied"].as_u64();
    let applied_before = applied(&lb_tests::lbctl_status(&socket)).expect("reconciler count");
    t.servers[1].1.stop_listening();
    wait_until(
        "rs2 down and out of the XDP tables",
        Duration::from_secs(10),
        || {
            let status = lb_tests::lbctl_status(&socket);
            alive_reals(&status) == 2 && applied(&status) > Some(applied_before)
        },
    );
    let mut after = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..60 {
        let (name, _conn) = lb_tests::lab::greet(&t.client, VIP4_80);
        *after.entry(name).or_default() += 1;
    }
    assert!(
        !after.contains_key("rs2"),
        "no new connection to the failed rs2: {after:?}"
    );
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(
        echo(&mut held, b"established"),
        b"established",
        "the connection established to rs2 carries on"
    );

    let status = lb_tests::lbctl_status(&socket);
    let forwarded: u64 = status["virtual_servers"][0]["real_servers"]
        .as_array()
        .expect("real servers")
        .iter()
        .map(|r| r["xdp_packets"].as_u64().expect("per-real XDP counts"))
        .sum();
    assert_eq!(
        status["virtual_servers"][0]["xdp_packets"].as_u64(),
        Some(forwarded),
        "every VIP packet was forwarded to a real server: {status}"
    );
    assert!(counter(&status, "forwarded_dr") >= forwarded, "{status}");
    assert_eq!(counter(&status, "no_real_server"), 0, "{status}");
    check_metrics(&t, &dir, &socket, &status);

    // Draining rs1: no new connection reaches it, its established one carries on.
    let mut to_rs1 = loop {
        let (name, conn) = lb_tests::lab::greet(&t.client, VIP4_80);
        if name == "rs1" {
            break conn;
        }
    };
    let lbctl = |args: &[&str]| {
        let out = std::process::Command::new(lb_tests::workspace_bin("lbctl"))
            .arg("--control-socket")
            .arg(&socket)
            .args(args)
            .output()
            .expect("lbctl");
        assert!(
            out.status.success(),
            "lbctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        lbctl(&["drain", "192.0.2.11:80"]),
        "drained [192.0.2.11]:tcp:80\n"
    );
    let status = lb_tests::lbctl_status(&socket);
    assert_eq!(
        status["virtual_servers"][0]["real_servers"][0]["drained"], true,
        "{status}"
    );
    assert_eq!(
        status["virtual_servers"][0]["real_servers"][0]["weight"], 1,
        "the configured weight stays"
    );
    for _ in 0..20 {
        assert_eq!(
            lb_tests::lab::greet(&t.client, VIP4_80).0,
            "rs3",
            "rs1 drained, rs2 down"
        );
    }
    assert_eq!(
        echo(&mut to_rs1, b"drained"),
        b"drained",
        "the established connection carries on"
    );
    lbctl(&["undrain", "192.0.2.11"]);
    let names: std::collections::BTreeSet<String> = (0..30)
        .map(|_| lb_tests::lab::greet(&t.client, VIP4_80).0)
        .collect();
    assert!(
        names.contains("rs1"),
        "undrained rs1 takes connections again: {names:?}"
    );
    // rs3 is replaced by a machine with another MAC: lbd's resync finds the new next hop.
    t.servers[2]
        .0
        .ip(&["link", "set", "dev", "eth0", "address", "02:00:00:00:aa:13"]);
    t.director
        .run("ip", &["neigh", "flush", "to", "192.0.2.13", "dev", "eth0"]);
    wait_until(
        "rs3 answering through its new MAC",
        Duration::from_secs(20),
        || (0..10).any(|_| try_greet(&t.client).as_deref() == Some("rs3")),
    );
    let missing = std::process::Command::new(lb_tests::workspace_bin("lbctl"))
        .arg("--control-socket")
        .arg(&socket)
        .args(["drain", "192.0.2.99:80"])
        .output()
        .expect("lbctl");
    assert!(
        !missing.status.success(),
        "draining an unknown real server is an error"
    );

    // A clean stop detaches the program and removes the socket.
    let exit = t.lab.stop(lbd_pid, "TERM").expect("lbd exit status");
    assert!(exit.success(), "lbd exited with {exit}");
    assert!(!socket.exists(), "lbd removed its control socket");
    let link = t.director.run("ip", &["link", "show", "dev", "eth0"]);
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "XDP detached after lbd stopped"
    );
}

/// Counts the datagrams arriving on `port` inside `ns` until dropped.
struct UdpCounter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl UdpCounter {
    fn start(ns: &Netns, port: u16) -> Self {
        use std::sync::{Arc, atomic::AtomicBool};
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let thread = ns.spawn_within(move || {
            let socket = std::net::UdpSocket::bind(("0.0.0.0", port)).expect("bind");
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
            bound_tx.send(()).expect("bound");
            let mut count = 0u64;
            let mut buf = [0u8; 64];
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if socket.recv(&mut buf).is_ok() {
                    count += 1;
                }
            }
            count
        });
        bound_rx.recv().expect("counter bound");
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("counter thread")
    }
}

#[test]
fn a_restarted_lbd_adopts_the_pinned_program_without_losing_a_packet() {
    let mut t = dr_lab();
    let dir = t.lab.dir().to_path_buf();
    let pins = t.lab.bpffs().join("lbd");
    let config = dir.join("lbd.toml");
    std::fs::write(
        &config,
        three_reals(
            &format!("xdp_pin_dir = \"{}\"", pins.display()),
            "port = 5353\nprotocol = \"udp\"\ndelay_loop = 0.5",
            "port = 5353, TCP_CHECK = { connect_port = 80, connect_timeout = 0.5 }",
        ),
    )
    .expect("writing config");
    let socket = dir.join("lbd.sock");
    let start = |t: &mut DrLab| {
        let mut lbd = t.director.command(lb_tests::workspace_bin("lbd"));
        // -I: the program stays attached and pinned for the next lbd.
        lbd.args(["run", "-I", "--config"])
            .arg(&config)
            .arg("--control-socket")
            .arg(&socket);
        let pid = t.lab.spawn("lbd", lbd);
        wait_for_path(&socket, Duration::from_secs(20));
        pid
    };
    let counters: Vec<UdpCounter> = t
        .servers
        .iter()
        .map(|(ns, _)| UdpCounter::start(ns, 5353))
        .collect();
    let first = start(&mut t);
    wait_until("the VIP in XDP", Duration::from_secs(10), || {
        lb_tests::lbctl_status(&socket)["virtual_servers"][0]["xdp_packets"].is_u64()
    });

    // One flow, a datagram every 0.5 ms, while lbd is stopped and started again.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let sender = t.client.spawn_within(move || {
        let udp = std::net::UdpSocket::bind("0.0.0.0:40000").expect("udp");
        let mut sent = 0u64;
        while done_rx.try_recv().is_err() {
            udp.send_to(&sent.to_be_bytes(), (VIP4, 5353))
                .expect("send");
            sent += 1;
            std::thread::sleep(Duration::from_micros(500));
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(500));
    let exit = t.lab.stop(first, "TERM").expect("lbd exit status");
    assert!(exit.success(), "the first lbd exited with {exit}");
    let link = t.director.run("ip", &["link", "show", "dev", "eth0"]);
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "with -I the program stays attached while no lbd runs"
    );
    std::thread::sleep(Duration::from_millis(300));
    let second = start(&mut t);
    wait_until("the VIP in XDP", Duration::from_secs(10), || {
        lb_tests::lbctl_status(&socket)["virtual_servers"][0]["xdp_packets"].is_u64()
    });
    std::thread::sleep(Duration::from_millis(500));
    done_tx.send(()).expect("stop sending");
    let sent = sender.join().expect("sender");
    std::thread::sleep(Duration::from_millis(200));
    let received: Vec<u64> = counters.into_iter().map(UdpCounter::finish).collect();
    eprintln!("restart: {sent} datagrams sent, received per real server {received:?}");
    assert_eq!(
        received.iter().sum::<u64>(),
        sent,
        "every datagram of the flow reached a real server across the restart: {received:?}"
    );
    assert_eq!(
        received.iter().filter(|&&n| n > 0).count(),
        1,
        "the flow kept its real server: {received:?}"
    );
    let status = lb_tests::lbctl_status(&socket);
    assert!(
        status["virtual_servers"][0]["xdp_packets"].as_u64() >= Some(sent),
        "the pinned counters carried over: {status}"
    );

    // A stop without -I detaches and unpins.
    let exit = t.lab.stop(second, "TERM").expect("lbd exit status");
    assert!(exit.success(), "the second lbd exited with {exit}");
    let mut lbd = t.director.command(lb_tests::workspace_bin("lbd"));
    lbd.args(["run", "--config"])
        .arg(&config)
        .arg("--control-socket")
        .arg(&socket);
    let third = t.lab.spawn("lbd", lbd);
    wait_for_path(&socket, Duration::from_secs(20));
    let exit = t.lab.stop(third, "TERM").expect("lbd exit status");
    assert!(exit.success(), "the third lbd exited with {exit}");
    let link = t.director.run("ip", &["link", "show", "dev", "eth0"]);
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "a plain stop detaches"
    );
    let left: Vec<_> = std::fs::read_dir(&pins)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a plain stop unpins everything: {left:?}");
}

/// `/metrics` over HTTP (lbd `--http`: 127.0.0.1:9467 in the director) and `lbctl metrics`:
/// valid for promtool, and saying what the status says.
fn check_metrics(
    t: &DrLab,
    dir: &std::path::Path,
    socket: &std::path::Path,
    status: &serde_json::Value,
) {
    let answer = t.director.within(|| {
        let mut conn = TcpStream::connect("127.0.0.1:9467").expect("connecting to lbd's HTTP");
        conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: lbd\r\n\r\n")
            .expect("request");
        let mut answer = String::new();
        conn.read_to_string(&mut answer).expect("answer");
        answer
    });
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let path = dir.join("metrics.txt");
    std::fs::write(&path, body).expect("writing the scrape");
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path).expect("scrape"))
        .output()
        .expect("promtool (Debian's prometheus package; cargo xtask setup installs it)");
    assert!(
        promtool.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&promtool.stdout),
        String::from_utf8_lossy(&promtool.stderr)
    );
    let sample = |line_start: &str| -> u64 {
        body.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no sample {line_start} in:\n{body}"))
    };
    let vs = "virtual_server=\"[203.0.113.10]:tcp:80\"";
    assert_eq!(
        sample(&format!(
            "lbd_real_server_up{{{vs},real_server=\"192.0.2.12:80\"}}"
        )),
        0
    );
    assert_eq!(
        sample(&format!(
            "lbd_real_server_up{{{vs},real_server=\"192.0.2.11:80\"}}"
        )),
        1
    );
    assert_eq!(sample(&format!("lbd_virtual_server_quorum_up{{{vs}}}")), 1);
    // No traffic since the status: the counters are the status's.
    assert_eq!(
        Some(sample(&format!("lbd_xdp_vip_packets_total{{{vs}}}"))),
        status["virtual_servers"][0]["xdp_packets"].as_u64()
    );
    assert_eq!(
        sample("lbd_xdp_packets_total{outcome=\"forwarded_dr\"}"),
        counter(status, "forwarded_dr")
    );
    assert!(
        body.contains("lbd_check_latency_seconds_bucket{"),
        "a latency histogram per checker"
    );
    let lbctl = std::process::Command::new(lb_tests::workspace_bin("lbctl"))
        .arg("--control-socket")
        .arg(socket)
        .arg("metrics")
        .output()
        .expect("lbctl metrics");
    assert!(lbctl.status.success());
    let text = String::from_utf8_lossy(&lbctl.stdout);
    assert!(text.contains("lbd_xdp_vip_packets_total{"), "{text}");
    // A scraper that asks for OpenMetrics gets it.
    let answer = t.director.within(|| {
        let mut conn = TcpStream::connect("127.0.0.1:9467").expect("connecting to lbd's HTTP");
        conn.write_all(
            b"GET /metrics HTTP/1.0\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n",
        )
        .expect("request");
        let mut answer = String::new();
        conn.read_to_string(&mut answer).expect("answer");
        answer
    });
    assert!(answer.contains("application/openmetrics-text"), "{answer}");
    assert!(
        answer.ends_with("# EOF\n"),
        "an OpenMetrics exposition ends with # EOF"
    );
}
