//! `cargo xtask demo`: lbd in a namespace lab, explained as it runs.
//!
//! A LAN (a bridge in its own namespace) joins a client, a director and three real servers,
//! each a network namespace. lbd runs in the director on an embedded configuration
//! (tests/demo/lbd-demo.toml): HTTP checks of the three real servers and its XDP program
//! forwarding the VIP's connections to the live ones by direct routing. The client sends HTTP
//! requests to the VIP and sees which real server answered; one real server is then stopped,
//! lbd's check notices, and the next requests go to the other two. `lbctl status` shows what
//! lbd saw and counted. The lab is removed at the end, on a failure, and on Ctrl-C. `--ci`
//! makes a wrong outcome fail the run (exit 1).
#![expect(
    unused_crate_dependencies,
    reason = "each target of lb-tests uses part of the package's dependencies; cargo cannot scope them"
)]

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use lb_tests::lab::{Lab, NamedServer, Netns, sysctl, wait_for_path, wait_until};

const CONFIG: &str = include_str!("../../demo/lbd-demo.toml");
const VIP: &str = "203.0.113.10";
const REQUESTS: usize = 30;

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

fn status(socket: &Path) -> serde_json::Value {
    serde_json::from_str(&lbctl(socket, true)).expect("status JSON")
}

fn alive(status: &serde_json::Value) -> usize {
    status["virtual_servers"][0]["real_servers"]
        .as_array()
        .map_or(0, |r| r.iter().filter(|r| r["alive"] == true).count())
}

/// `REQUESTS` HTTP requests from the client to the VIP, each on a new connection; the count
/// of answers per real server (a failed request counts under "no answer").
fn requests(client: &Netns) -> BTreeMap<String, usize> {
    client.within(|| {
        let mut answers = BTreeMap::new();
        for i in 0..REQUESTS {
            let answer = (|| -> std::io::Result<String> {
                let addr = format!("{VIP}:80").parse().expect("address");
                let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
                conn.set_read_timeout(Some(Duration::from_secs(2)))?;
                conn.write_all(format!("GET /{i} HTTP/1.0\r\nHost: {VIP}\r\n\r\n").as_bytes())?;
                let mut text = String::new();
                conn.read_to_string(&mut text)?;
                Ok(text.lines().last().unwrap_or_default().to_owned())
            })()
            .unwrap_or_else(|_| "no answer".to_owned());
            *answers.entry(answer).or_default() += 1;
        }
        answers
    })
}

fn show(answers: &BTreeMap<String, usize>) {
    for (server, n) in answers {
        println!("    {server:<10} {n:>3} {}", "#".repeat(*n));
    }
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
        for host in ["switch", "client", "director", "rs1", "rs2", "rs3"] {
            let _deleted = Command::new("ip")
                .args(["netns", "del", &format!("{tag}-{host}")])
                .status();
        }
        std::fs::remove_dir_all(&dir_for_handler).ok();
        eprintln!("\ninterrupted: lab removed");
        std::process::exit(130);
    })
    .expect("installing the Ctrl-C handler");

    say("Building the lab: a LAN with a client, a director and three real servers");
    let (_switch, hosts) = lab.lan(&["client", "director", "rs1", "rs2", "rs3"]);
    let mut hosts = hosts.into_iter();
    let client = hosts.next().expect("client");
    let director = hosts.next().expect("director");
    client.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]);
    client.ip(&["route", "add", &format!("{VIP}/32"), "via", "192.0.2.2"]);
    director.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
    println!("    client    192.0.2.1, reaches the VIP {VIP} through the director");
    println!("    director  192.0.2.2, runs lbd");
    let mut servers: Vec<NamedServer> = hosts
        .enumerate()
        .map(|(i, rs)| {
            let addr = format!("192.0.2.{}", 11 + i);
            rs.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            // Direct routing: each real server holds the VIP but never answers ARP for it.
            rs.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
            sysctl(&rs, "net.ipv4.conf.all.arp_ignore", "1");
            sysctl(&rs, "net.ipv4.conf.all.arp_announce", "2");
            let name = format!("rs{}", i + 1);
            println!("    {name}       {addr}, VIP on lo, an HTTP server answering \"{name}\"");
            NamedServer::http(&rs, "0.0.0.0:80", &name)
        })
        .collect();

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
    wait_until("three real servers up", Duration::from_secs(20), || {
        alive(&status(&socket)) == 3
    });
    println!("    lbd is running (pid {lbd_pid}); its log:");
    for line in std::fs::read_to_string(&log).unwrap_or_default().lines() {
        println!("    | {line}");
    }

    say("lbctl status: three real servers passed their HTTP check");
    print!("{}", lbctl(&socket, false));

    say(&format!(
        "The client sends {REQUESTS} HTTP requests to the VIP, each on a new connection"
    ));
    let before = requests(&client);
    show(&before);
    println!("    The XDP program picked a real server for each connection from the VIP's Maglev");
    println!("    table and forwarded it by direct routing; each real server answered the client");
    println!("    directly (the director only sees the client's half of the conversation).");

    say("rs2's HTTP server stops; lbd's check notices and takes it out of the table");
    let stopped = Instant::now();
    servers[1].stop_listening();
    wait_until("rs2 down", Duration::from_secs(20), || {
        alive(&status(&socket)) == 2
    });
    let detection = stopped.elapsed();
    println!(
        "    rs2 went down in lbd's view {:.0} ms after it stopped (checks every 0.5 s, no retry)",
        detection.as_secs_f64() * 1e3
    );
    let after = requests(&client);
    show(&after);

    say("lbctl status, after the traffic");
    print!("{}", lbctl(&socket, false));
    let status = status(&socket);
    let counter = |name: &str| {
        status["dataplane"]["xdp"]["counters"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c[0] == name))
            .and_then(|c| c[1].as_u64())
    };
    let mode = status["dataplane"]["xdp"]["attach_mode"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let vip_packets = status["virtual_servers"][0]["xdp_packets"].as_u64();

    say("What happened");
    println!("    lbd attached its XDP program to the director's eth0 in {mode} mode.");
    println!(
        "    It forwarded {} packets to the VIP by direct routing (forwarded_dr {}), {} of them",
        vip_packets.map_or("?".to_owned(), |n| n.to_string()),
        counter("forwarded_dr").map_or("?".to_owned(), |n| n.to_string()),
        counter("flow_new").map_or("?".to_owned(), |n| n.to_string()),
    );
    println!("    starting a flow and the rest found in its connection table.");
    println!(
        "    Before rs2 stopped: {}; after: {} (rs2 left the table {:.0} ms after it stopped).",
        summary(&before),
        summary(&after),
        detection.as_secs_f64() * 1e3
    );

    say("Stopping lbd (SIGTERM): the program is detached, the lab removed");
    let exit = lab.stop(lbd_pid, "TERM");
    let link = director.run("ip", &["link", "show", "dev", "eth0"]);
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
    drop(servers);
    drop(lab);

    let answered = |a: &BTreeMap<String, usize>| !a.contains_key("no answer");
    let ok = before.len() == 3
        && answered(&before)
        && after.len() == 2
        && !after.contains_key("rs2")
        && answered(&after)
        && vip_packets.is_some_and(|n| n > 0)
        && detached;
    if ok {
        println!("\ndemo OK");
        ExitCode::SUCCESS
    } else {
        println!(
            "\ndemo: unexpected outcome (before={before:?} after={after:?} vip_packets={vip_packets:?} detached={detached})"
        );
        if ci {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }
}

fn summary(answers: &BTreeMap<String, usize>) -> String {
    answers
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
