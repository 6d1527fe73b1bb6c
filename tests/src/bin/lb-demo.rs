//! `cargo xtask demo`: lbd in a namespace lab, explained as it runs.
//!
//! A LAN (a bridge in its own namespace) joins a client, two directors and three real servers,
//! each a network namespace. lbd runs on both directors on an embedded configuration
//! (tests/demo/lbd-demo.toml, one priority apart): VRRP elects the master, which holds the
//! VIP; HTTP checks watch the three real servers; the XDP program forwards the VIP's
//! connections to the live ones by direct routing. The client sends an HTTP request to the
//! VIP every 50 ms. Live lines show who is master, which real servers are up and where the
//! requests went. One real server is stopped, then the master director is killed; the demo
//! measures how long each took to be noticed and how long the client went without an
//! answer, and ends with a summary. The lab is removed at the end, on a failure, and on
//! Ctrl-C. `--ci` makes a wrong outcome fail the run (exit 1).
#![expect(
    unused_crate_dependencies,
    reason = "each target of lb-tests uses part of the package's dependencies; cargo cannot scope them"
)]

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use lb_tests::lab::{Lab, NamedServer, Netns, sysctl, wait_for_path, wait_until};

const CONFIG: &str = include_str!("../../demo/lbd-demo.toml");
const VIP: &str = "192.0.2.100";
const TICK: Duration = Duration::from_millis(50);

fn say(text: &str) {
    println!("\n\x1b[1m==> {text}\x1b[0m");
}

fn status(socket: &Path) -> Option<serde_json::Value> {
    let out = Command::new(lb_tests::workspace_bin("lbctl"))
        .arg("--control-socket")
        .arg(socket)
        .args(["status", "--json"])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

fn lbctl_table(socket: &Path) -> String {
    let out = Command::new(lb_tests::workspace_bin("lbctl"))
        .arg("--control-socket")
        .arg(socket)
        .arg("status")
        .output()
        .expect("running lbctl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A director: its namespace, control socket and lbd's pid.
struct Director {
    name: &'static str,
    ns: Netns,
    socket: PathBuf,
    pid: Option<u32>,
}

impl Director {
    fn state(&self) -> String {
        status(&self.socket)
            .and_then(|s| s["vrrp"][0]["state"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "down".to_owned())
    }
}

/// One request's outcome: when it was sent and who answered (`None`: no answer).
type Answer = (Instant, Option<String>);

/// Sends an HTTP request to the VIP every [`TICK`] from the client until `stop`.
fn client_loop(client: &Netns, answers: Arc<Mutex<Vec<Answer>>>, stop: Arc<AtomicBool>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let _thread = client.spawn_within(move || {
        tx.send(()).ok();
        while !stop.load(Ordering::Relaxed) {
            let sent = Instant::now();
            let answer = (|| -> std::io::Result<String> {
                let addr = format!("{VIP}:80").parse().expect("address");
                let mut conn = TcpStream::connect_timeout(&addr, Duration::from_millis(300))?;
                conn.set_read_timeout(Some(Duration::from_millis(300)))?;
                conn.write_all(format!("GET / HTTP/1.0\r\nHost: {VIP}\r\n\r\n").as_bytes())?;
                let mut text = String::new();
                conn.read_to_string(&mut text)?;
                Ok(text.lines().last().unwrap_or_default().to_owned())
            })()
            .ok()
            .filter(|a| a.starts_with("rs"));
            answers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((sent, answer));
            std::thread::sleep(TICK.saturating_sub(sent.elapsed()));
        }
    });
    rx.recv().expect("client running");
}

/// The live line: time, master, real servers in the master's view, and where the requests of
/// the last interval went.
fn live_line(start: Instant, directors: &[Director], answers: &[Answer], since: Instant) -> String {
    let states: Vec<String> = directors
        .iter()
        .map(|d| format!("{} {}", d.name, d.state()))
        .collect();
    let master = directors.iter().find(|d| d.state() == "MASTER");
    let reals = master
        .and_then(|d| status(&d.socket))
        .and_then(|s| {
            s["virtual_servers"][0]["real_servers"]
                .as_array()
                .map(|rs| {
                    rs.iter()
                        .enumerate()
                        .map(|(i, r)| {
                            format!(
                                "rs{} {}",
                                i + 1,
                                if r["alive"] == true { "UP" } else { "DOWN" }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
        })
        .unwrap_or_else(|| "-".to_owned());
    let mut went: BTreeMap<String, usize> = BTreeMap::new();
    for (_, a) in answers.iter().filter(|(t, _)| *t >= since) {
        *went
            .entry(a.clone().unwrap_or_else(|| "no answer".to_owned()))
            .or_default() += 1;
    }
    let went: Vec<String> = went.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(
        "  {:>5.1}s | {} | {} | requests: {}",
        start.elapsed().as_secs_f64(),
        states.join(", "),
        reals,
        went.join(", ")
    )
}

/// Prints live lines for `duration`.
fn live(start: Instant, directors: &[Director], answers: &Mutex<Vec<Answer>>, duration: Duration) {
    let until = Instant::now() + duration;
    while Instant::now() < until {
        let since = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        let snapshot = answers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        println!("{}", live_line(start, directors, &snapshot, since));
    }
}

fn tally(answers: &[Answer], from: Instant, to: Instant) -> BTreeMap<String, usize> {
    let mut went = BTreeMap::new();
    for (_, a) in answers.iter().filter(|(t, _)| *t >= from && *t < to) {
        *went
            .entry(a.clone().unwrap_or_else(|| "no answer".to_owned()))
            .or_default() += 1;
    }
    went
}

fn summary(went: &BTreeMap<String, usize>) -> String {
    went.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
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
        for host in ["switch", "client", "d1", "d2", "rs1", "rs2", "rs3"] {
            let _deleted = Command::new("ip")
                .args(["netns", "del", &format!("{tag}-{host}")])
                .status();
        }
        std::fs::remove_dir_all(&dir_for_handler).ok();
        eprintln!("\ninterrupted: lab removed");
        std::process::exit(130);
    })
    .expect("installing the Ctrl-C handler");

    say("Building the lab: a LAN with a client, two directors and three real servers");
    let (_switch, hosts) = lab.lan(&["client", "d1", "d2", "rs1", "rs2", "rs3"]);
    let mut hosts = hosts.into_iter();
    let client = hosts.next().expect("client");
    client.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]);
    println!("    client   192.0.2.1, sends an HTTP request to the VIP {VIP} every 50 ms");
    let mut directors: Vec<Director> = ["d1", "d2"]
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let ns = hosts.next().expect("director");
            ns.ip(&[
                "addr",
                "add",
                &format!("192.0.2.{}/24", 2 + i),
                "dev",
                "eth0",
            ]);
            println!(
                "    {name}       192.0.2.{}, lbd with VRRP priority {}",
                2 + i,
                150 - 50 * i
            );
            Director {
                name,
                ns,
                socket: dir.join(format!("{name}.sock")),
                pid: None,
            }
        })
        .collect();
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
            println!("    {name}      {addr}, VIP on lo, an HTTP server answering \"{name}\"");
            NamedServer::http(&rs, "0.0.0.0:80", &name)
        })
        .collect();

    say("Starting lbd on both directors (the same file, d2 one priority lower)");
    for line in CONFIG
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        println!("    | {line}");
    }
    for (i, d) in directors.iter_mut().enumerate() {
        let config = dir.join(format!("{}.toml", d.name));
        std::fs::write(
            &config,
            CONFIG.replace("priority = 150", &format!("priority = {}", 150 - 50 * i)),
        )
        .expect("writing the config");
        let log = std::fs::File::create(dir.join(format!("{}.log", d.name))).expect("log file");
        let mut lbd = d.ns.command(lb_tests::workspace_bin("lbd"));
        lbd.args(["run", "--config"])
            .arg(&config)
            .arg("--control-socket")
            .arg(&d.socket)
            .stderr(log)
            .env("RUST_LOG", "info");
        d.pid = Some(lab.spawn(&format!("lbd {}", d.name), lbd));
        wait_for_path(&d.socket, Duration::from_secs(20));
    }
    wait_until(
        "d1 master, three real servers up",
        Duration::from_secs(20),
        || {
            directors[0].state() == "MASTER"
                && directors[1].state() == "BACKUP"
                && status(&directors[0].socket).is_some_and(|s| {
                    s["virtual_servers"][0]["real_servers"]
                        .as_array()
                        .is_some_and(|r| r.iter().all(|r| r["alive"] == true))
                })
        },
    );
    println!("    d1 is MASTER and holds the VIP; d2 is BACKUP. lbctl status on d1:");
    for line in lbctl_table(&directors[0].socket).lines() {
        println!("    | {line}");
    }

    say("The client starts; live view every 0.5 s (master, real servers, where requests went)");
    let answers = Arc::new(Mutex::new(Vec::<Answer>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    client_loop(&client, answers.clone(), stop.clone());
    live(start, &directors, &answers, Duration::from_secs(3));

    say("rs2's HTTP server stops");
    let rs2_stopped = Instant::now();
    servers[1].stop_listening();
    let mut rs2_detected = None;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let since = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        if rs2_detected.is_none()
            && status(&directors[0].socket)
                .is_some_and(|s| s["virtual_servers"][0]["real_servers"][1]["alive"] == false)
        {
            rs2_detected = Some(rs2_stopped.elapsed());
        }
        let snapshot = answers.lock().map(|a| a.clone()).unwrap_or_default();
        println!("{}", live_line(start, &directors, &snapshot, since));
    }

    say("d1, the master director, is killed (SIGKILL: no goodbye advert)");
    let killed = Instant::now();
    if let Some(pid) = directors[0].pid.take() {
        lab.stop(pid, "KILL");
    }
    let mut d2_master = None;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let since = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        if d2_master.is_none() && directors[1].state() == "MASTER" {
            d2_master = Some(killed.elapsed());
        }
        let snapshot = answers.lock().map(|a| a.clone()).unwrap_or_default();
        println!("{}", live_line(start, &directors, &snapshot, since));
    }
    stop.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(400));
    let answers = answers.lock().map(|a| a.clone()).unwrap_or_default();

    // The client's view of the failover: the longest stretch without an answer after the kill.
    let mut gap = Duration::ZERO;
    let mut last_ok = killed;
    for (t, a) in answers.iter().filter(|(t, _)| *t >= killed) {
        if a.is_some() {
            gap = gap.max(t.duration_since(last_ok));
            last_ok = *t;
        }
    }
    let served_after = answers
        .iter()
        .filter(|(t, a)| *t >= killed + gap && a.is_some())
        .count();
    let before = tally(&answers, start, rs2_stopped);
    let between = tally(&answers, rs2_stopped + Duration::from_secs(1), killed);
    let after = tally(&answers, killed, Instant::now());

    say("lbctl status on d2, the new master");
    for line in lbctl_table(&directors[1].socket).lines() {
        println!("    | {line}");
    }

    say("Summary");
    println!(
        "    requests while all was well:           {}",
        summary(&before)
    );
    println!(
        "    after rs2 stopped (from 1 s later):    {}",
        summary(&between)
    );
    println!(
        "    after d1 was killed:                   {}",
        summary(&after)
    );
    println!(
        "    rs2 was out of the table at the first look {} after it stopped (HTTP_GET every 0.5 s, no retry)",
        rs2_detected.map_or("-".to_owned(), |d| format!(
            "{:.0} ms",
            d.as_secs_f64() * 1e3
        ))
    );
    println!(
        "    d2 was MASTER at the first look, {} after d1 died (VRRPv3, advert_int 0.1 s: its Master_Down_Interval is 0.36 s)",
        d2_master.map_or("never".to_owned(), |d| format!(
            "{:.0} ms",
            d.as_secs_f64() * 1e3
        ))
    );
    println!(
        "    the failover as the client saw it: {:.0} ms without an answer, then {served_after} requests answered through d2",
        gap.as_secs_f64() * 1e3
    );

    say("Stopping lbd on d2; removing the lab");
    if let Some(pid) = directors[1].pid.take() {
        lab.stop(pid, "TERM");
    }
    drop(servers);
    drop(lab);

    let ok = before.len() == 3
        && !before.contains_key("no answer")
        && !between.contains_key("rs2")
        && !between.contains_key("no answer")
        && d2_master.is_some()
        && served_after > 10
        && gap < Duration::from_secs(2);
    if ok {
        println!("\ndemo OK");
        ExitCode::SUCCESS
    } else {
        println!(
            "\ndemo: unexpected outcome (before={before:?} between={between:?} after={after:?} d2_master={d2_master:?} gap={gap:?})"
        );
        if ci {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }
}
