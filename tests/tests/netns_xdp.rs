//! lbd's XDP program on a veth in a namespace lab, checked against real packets.
//!
//! Lab: `client` (192.0.2.1, 2001:db8::1) -- veth -- `director` (192.0.2.2, 2001:db8::2, VIPs
//! 203.0.113.10 and 2001:db8:ffff::10 on lo). lbd runs in the director with XDP on its veth; the
//! client sends real UDP and TCP; tcpdump on the client's side records what it sent, and lbd's
//! per-VIP counts (read with `lbctl status --json`) must equal tcpdump's.
#![expect(
    unused_crate_dependencies,
    reason = "each target of lb-tests uses part of the package's dependencies; cargo cannot scope them"
)]

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use lb_tests::lab::{Lab, Netns, wait_for_path, wait_until};
use lbd::{
    dataplane::xdp::{AttachedMode, Capacity, XdpDataplane},
    model::XdpAttach,
};

const VIP4: &str = "203.0.113.10";
const VIP6: &str = "2001:db8:ffff::10";

struct Topology {
    lab: Lab,
    client: Netns,
    director: Netns,
    dir: PathBuf,
}

fn topology() -> Topology {
    lb_tests::require_root();
    let mut lab = Lab::new();
    let client = lab.netns("client");
    let director = lab.netns("director");
    lab.veth(&client, "c0", &director, "d0");
    client.ip(&["addr", "add", "192.0.2.1/24", "dev", "c0"]);
    client.ip(&["-6", "addr", "add", "2001:db8::1/64", "dev", "c0", "nodad"]);
    director.ip(&["addr", "add", "192.0.2.2/24", "dev", "d0"]);
    director.ip(&["-6", "addr", "add", "2001:db8::2/64", "dev", "d0", "nodad"]);
    director.ip(&["addr", "add", &format!("{VIP4}/32"), "dev", "lo"]);
    director.ip(&["-6", "addr", "add", &format!("{VIP6}/128"), "dev", "lo"]);
    client.ip(&["route", "add", "203.0.113.0/24", "via", "192.0.2.2"]);
    client.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:ffff::/64",
        "via",
        "2001:db8::2",
    ]);
    let dir = lab.dir().to_path_buf();
    Topology {
        lab,
        client,
        director,
        dir,
    }
}

fn vip_packets(status: &serde_json::Value, vip: &str, protocol: &str) -> u64 {
    status["virtual_servers"]
        .as_array()
        .expect("virtual_servers")
        .iter()
        .find(|vs| vs["vip"] == vip && vs["protocol"] == protocol)
        .unwrap_or_else(|| panic!("no virtual server {vip} {protocol} in {status}"))["xdp_packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no XDP count for {vip}: {status}"))
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

/// Starts tcpdump on the client's veth, writing to `pcap`; returns its pid
/// once it is capturing.
fn start_capture(t: &mut Topology, pcap: &Path) -> u32 {
    let log = t.dir.join("tcpdump.log");
    let mut cmd = t.client.command("tcpdump");
    // Both directions: `-Q out` on a veth records only part of what leaves it (seen on 6.18), and
    // the count filters below select the client's packets by destination anyway.
    // --immediate-mode: without it packets wait in the ring until a block retires, and a SIGINT
    // before that loses them ("N received by filter, 0 captured").
    // -B: a capture buffer (KiB) that a burst of test traffic cannot overflow.
    cmd.args([
        "-i",
        "c0",
        "-n",
        "-U",
        "--immediate-mode",
        "-B",
        "8192",
        "-w",
    ])
    .arg(pcap)
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).expect("tcpdump log"));
    let pid = t.lab.spawn("tcpdump", cmd);
    wait_until("tcpdump to listen", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("listening on"))
    });
    pid
}

/// Packets in `pcap` matching the tcpdump `filter`.
fn captured(pcap: &Path, filter: &str) -> u64 {
    let out = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(pcap)
        .arg(filter)
        .stderr(Stdio::null())
        .output()
        .expect("tcpdump -r");
    String::from_utf8_lossy(&out.stdout).lines().count() as u64
}

#[test]
fn lbd_counts_the_packets_the_client_sent_to_each_vip() {
    let mut t = topology();
    let config = t.dir.join("lbd.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[dataplane]
mode = "xdp"
xdp_interface = "d0"

[[virtual_server]]
address = "{VIP4}"
port = 53
protocol = "udp"
real_server = [ {{ address = "192.0.2.20", port = 53 }} ]

[[virtual_server]]
address = "{VIP4}"
port = 80
protocol = "tcp"
real_server = [ {{ address = "192.0.2.20", port = 80 }} ]

[[virtual_server]]
address = "{VIP6}"
port = 53
protocol = "udp"
"#
        ),
    )
    .expect("writing config");
    let socket = t.dir.join("lbd.sock");
    let mut lbd = t.director.command(lb_tests::workspace_bin("lbd"));
    lbd.args(["run", "--config"])
        .arg(&config)
        .arg("--control-socket")
        .arg(&socket);
    let lbd_pid = t.lab.spawn("lbd", lbd);
    wait_for_path(&socket, Duration::from_secs(20));
    let status = lb_tests::lbctl_status(&socket);
    assert_eq!(status["dataplane"]["mode"], "xdp", "{status}");
    assert_eq!(status["dataplane"]["xdp"]["interface"], "d0", "{status}");

    // A TCP server on the VIP inside the director, so connections complete.
    let listener: TcpListener = t
        .director
        .within(|| TcpListener::bind((VIP4, 80)).expect("bind VIP:80"));
    let server = std::thread::spawn(move || {
        for _ in 0..5 {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 64];
            let n = conn.read(&mut buf).expect("read request");
            conn.write_all(&buf[..n]).expect("echo");
        }
    });

    let pcap = t.dir.join("client.pcap");
    let tcpdump = start_capture(&mut t, &pcap);
    t.client.within(|| {
        let udp = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
        for i in 0..20u8 {
            udp.send_to(&[i; 32], (VIP4, 53)).expect("send to VIP:53");
            udp.send_to(&[i; 8], (VIP4, 9999))
                .expect("send to VIP:9999 (not a VIP)");
        }
        let udp6 = UdpSocket::bind("[::]:0").expect("udp6 socket");
        for i in 0..7u8 {
            udp6.send_to(&[i; 100], (VIP6, 53))
                .expect("send to VIP6:53");
        }
        for i in 0..5u8 {
            let addr: SocketAddr = format!("{VIP4}:80").parse().expect("addr");
            let mut conn =
                TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect VIP:80");
            conn.write_all(&[i; 10]).expect("write");
            let mut echo = [0u8; 10];
            conn.read_exact(&mut echo).expect("read echo");
        }
    });
    server.join().expect("server thread");
    // Let the last FIN/ACK exchanges finish before the capture stops.
    std::thread::sleep(Duration::from_millis(500));
    t.lab.stop(tcpdump, "INT");
    let status = lb_tests::lbctl_status(&socket);

    let sent_udp53 = captured(&pcap, &format!("dst host {VIP4} and udp dst port 53"));
    let sent_tcp80 = captured(&pcap, &format!("dst host {VIP4} and tcp dst port 80"));
    let sent_udp6 = captured(&pcap, &format!("ip6 dst host {VIP6} and udp dst port 53"));
    let sent_other = captured(&pcap, &format!("dst host {VIP4} and udp dst port 9999"));
    let capture_log = || {
        let log = std::fs::read_to_string(t.dir.join("tcpdump.log")).unwrap_or_default();
        let size = std::fs::metadata(&pcap).map(|m| m.len()).unwrap_or(0);
        format!("tcpdump log: {log}; pcap {size} bytes")
    };
    assert_eq!(
        sent_udp53,
        20,
        "tcpdump saw every datagram to VIP:53 ({})",
        capture_log()
    );
    assert_eq!(sent_udp6, 7, "tcpdump saw every datagram to VIP6:53");
    assert!(
        sent_tcp80 >= 5 * 3,
        "at least SYN, data and FIN per connection, saw {sent_tcp80}"
    );
    assert_eq!(
        vip_packets(&status, &format!("{VIP4}:53"), "udp"),
        sent_udp53,
        "{status}"
    );
    assert_eq!(
        vip_packets(&status, &format!("{VIP4}:80"), "tcp"),
        sent_tcp80,
        "{status}"
    );
    assert_eq!(
        vip_packets(&status, &format!("[{VIP6}]:53"), "udp"),
        sent_udp6,
        "{status}"
    );
    assert_eq!(counter(&status, "not_vip"), sent_other, "{status}");
    let to_vips = captured(&pcap, &format!("dst host {VIP4} or dst host {VIP6}"));
    assert!(
        counter(&status, "seen") >= to_vips,
        "XDP saw fewer packets than the client sent: {status}"
    );

    // A clean stop detaches the program and removes the socket.
    let exit = t.lab.stop(lbd_pid, "TERM").expect("lbd exit status");
    assert!(exit.success(), "lbd exited with {exit}");
    assert!(!socket.exists(), "lbd removed its control socket");
    let link = t.director.run("ip", &["link", "show", "dev", "d0"]);
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "XDP detached after lbd stopped"
    );
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
            let mut xdp = XdpDataplane::load(lb_tests::bpf_object(), Capacity { vips: 4, ring_size: 13 }).expect("load");
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
