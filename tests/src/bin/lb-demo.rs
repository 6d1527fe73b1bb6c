//! `cargo xtask demo`: lbd in a namespace lab, explained as it runs.
//!
//! A client and a director, each a network namespace, joined by a veth pair. lbd runs in the
//! director on an embedded configuration (tests/demo/lbd-demo.toml) with its XDP program on the
//! director's veth. The client sends HTTP requests and DNS-style datagrams to the VIP, and pings
//! it; `lbctl status` shows what the XDP program counted. The lab is removed at the end, on a
//! failure, and on Ctrl-C. `--ci` makes a wrong outcome fail the run (exit 1).
#![expect(
    unused_crate_dependencies,
    reason = "each target of lb-tests uses part of the package's dependencies; cargo cannot scope them"
)]

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream, UdpSocket},
    path::Path,
    process::{Command, ExitCode},
    time::Duration,
};

use lb_tests::lab::{Lab, wait_for_path, wait_until};

const CONFIG: &str = include_str!("../../demo/lbd-demo.toml");
const VIP: &str = "203.0.113.10";

fn say(text: &str) {
    println!("\n\x1b[1m==> {text}\x1b[0m");
}

fn lbctl(socket: &Path, json: bool) -> String {
    let mut cmd = Command::new(lb_tests::workspace_bin("lbctl"));
    cmd.arg("--control-socket").arg(socket).arg("status");
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("running lbctl");
    assert!(
        out.status.success(),
        "lbctl status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn main() -> ExitCode {
    let ci = std::env::args().any(|a| a == "--ci");
    if !lb_tests::lab::is_root() {
        eprintln!("the demo builds network namespaces and loads BPF: run it as root");
        return ExitCode::FAILURE;
    }
    let mut lab = Lab::new();
    let tag = lab.tag().to_owned();
    let dir = lab.dir().to_path_buf();
    let dir_for_handler = dir.clone();
    // Ctrl-C reaches lbd too (same process group), which stops on SIGINT; the lab goes here.
    ctrlc::set_handler(move || {
        for host in ["client", "director"] {
            let _deleted = Command::new("ip")
                .args(["netns", "del", &format!("{tag}-{host}")])
                .status();
        }
        std::fs::remove_dir_all(&dir_for_handler).ok();
        eprintln!("\ninterrupted: lab removed");
        std::process::exit(130);
    })
    .expect("installing the Ctrl-C handler");

    say("Building the lab: two network namespaces joined by a veth pair");
    let client = lab.netns("client");
    let director = lab.netns("director");
    lab.veth(&client, "c0", &director, "d0");
    client.ip(&["addr", "add", "192.0.2.1/24", "dev", "c0"]);
    director.ip(&["addr", "add", "192.0.2.2/24", "dev", "d0"]);
    director.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
    client.ip(&["route", "add", "203.0.113.0/24", "via", "192.0.2.2"]);
    println!("    client   {}: 192.0.2.1 on c0", client.name);
    println!(
        "    director {}: 192.0.2.2 on d0, VIP {VIP} on lo",
        director.name
    );

    let config = dir.join("lbd-demo.toml");
    std::fs::write(&config, CONFIG).expect("writing the config");
    let socket = dir.join("lbd.sock");
    let log = dir.join("lbd.log");

    say("Starting lbd in the director on its embedded demo configuration");
    for line in CONFIG
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        println!("    | {line}");
    }
    let mut lbd = director.command(lb_tests::workspace_bin("lbd"));
    lbd.args(["run", "--config"])
        .arg(&config)
        .arg("--control-socket")
        .arg(&socket);
    lbd.stderr(std::fs::File::create(&log).expect("log file"))
        .env("RUST_LOG", "info");
    let lbd_pid = lab.spawn("lbd", lbd);
    wait_for_path(&socket, Duration::from_secs(20));
    wait_until("lbd to log that it runs", Duration::from_secs(20), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("lbd running"))
    });
    println!("    lbd is running (pid {lbd_pid}); its log:");
    for line in std::fs::read_to_string(&log).unwrap_or_default().lines() {
        println!("    | {line}");
    }

    say("lbctl status, before any traffic");
    print!("{}", lbctl(&socket, false));

    say(
        "The director serves HTTP on the VIP; the client sends 10 requests, 5 datagrams and 3 pings",
    );
    let listener: TcpListener =
        director.within(|| TcpListener::bind((VIP, 80)).expect("bind VIP:80"));
    let server = std::thread::spawn(move || {
        for _ in 0..10 {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 256];
            let n = conn.read(&mut buf).expect("read");
            let body = format!("hello from the director, you sent {n} bytes\n");
            let answer = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(answer.as_bytes()).expect("write");
        }
    });
    let first_answer = client.within(|| {
        let mut first = String::new();
        for i in 0..10 {
            let mut conn = TcpStream::connect((VIP, 80)).expect("connect to the VIP");
            conn.write_all(format!("GET /{i} HTTP/1.0\r\nHost: {VIP}\r\n\r\n").as_bytes())
                .expect("request");
            let mut answer = String::new();
            conn.read_to_string(&mut answer).expect("answer");
            if i == 0 {
                first = answer.lines().last().unwrap_or_default().to_owned();
            }
        }
        let udp = UdpSocket::bind("0.0.0.0:0").expect("udp");
        for i in 0..5u8 {
            udp.send_to(&[i; 40], (VIP, 53)).expect("datagram");
        }
        first
    });
    server.join().expect("server");
    let ping = client.run(
        "ping",
        &["-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", VIP],
    );
    println!("    first HTTP answer: {first_answer}");
    println!(
        "    ping: {}",
        String::from_utf8_lossy(&ping.stdout)
            .lines()
            .find(|l| l.contains("transmitted"))
            .unwrap_or("?")
    );
    std::thread::sleep(Duration::from_millis(300));

    say("lbctl status, after the traffic");
    print!("{}", lbctl(&socket, false));
    let status: serde_json::Value =
        serde_json::from_str(&lbctl(&socket, true)).expect("status JSON");
    let packets = |vip: &str| {
        status["virtual_servers"]
            .as_array()
            .and_then(|v| v.iter().find(|vs| vs["vip"] == vip))
            .and_then(|vs| vs["xdp_packets"].as_u64())
    };
    let counter = |name: &str| {
        status["dataplane"]["xdp"]["counters"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c[0] == name))
            .and_then(|c| c[1].as_u64())
    };
    let (http, dns, icmp) = (
        packets(&format!("{VIP}:80")),
        packets(&format!("{VIP}:53")),
        counter("not_tcp_udp"),
    );
    let mode = status["dataplane"]["xdp"]["attach_mode"]
        .as_str()
        .unwrap_or("?")
        .to_owned();

    say("What happened");
    println!(
        "    lbd attached its XDP program to d0 in {mode} mode; it counts packets per VIP before the kernel's stack."
    );
    println!(
        "    203.0.113.10:80/tcp counted {} packets: the 10 connections' SYNs, requests, ACKs and FINs.",
        http.map_or("no".to_owned(), |n| n.to_string())
    );
    println!(
        "    203.0.113.10:53/udp counted {} packets: the 5 datagrams.",
        dns.map_or("no".to_owned(), |n| n.to_string())
    );
    println!(
        "    The pings are not TCP or UDP: passed on and counted as not_tcp_udp ({}).",
        icmp.map_or("?".to_owned(), |n| n.to_string())
    );
    println!(
        "    Every packet was passed on to the kernel (XDP_PASS): forwarding comes with the XDP fast path."
    );

    say("Stopping lbd (SIGTERM): the program is detached, the lab removed");
    let exit = lab.stop(lbd_pid, "TERM");
    let link = director.run("ip", &["link", "show", "dev", "d0"]);
    let detached = !String::from_utf8_lossy(&link.stdout).contains("xdp");
    println!(
        "    lbd exited ({}); XDP {}",
        exit.map_or("?".to_owned(), |s| s.to_string()),
        if detached {
            "detached"
        } else {
            "STILL ATTACHED"
        }
    );
    drop(lab);

    let ok =
        dns == Some(5) && http.is_some_and(|n| n >= 30) && icmp.is_some_and(|n| n >= 3) && detached;
    if ok {
        println!("\ndemo OK");
        ExitCode::SUCCESS
    } else {
        println!(
            "\ndemo: unexpected outcome (http={http:?} dns={dns:?} icmp={icmp:?} detached={detached})"
        );
        if ci {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }
}
