//! `cargo xtask bench checks`: health checks at scale, and how fast a dead server is seen.
//!
//! Lab: `director` (lbd) -- veth -- `servers`, whose `lo` holds 198.51.100.0/24 and
//! 203.0.113.0/24 (every address of both is local there), served by wildcard listeners in this
//! process; and `victim` on its own veth (2001:db8:1::2) for the detection runs.
//!
//! - Load: 10,000 real servers (100 addresses x 100 ports) with TCP_CHECK at delay_loop 1 s,
//!   then 1,000 (100 x 10) with HTTP_GET; lbd's CPU and RSS over the window. The baseline, in
//!   the same run and the same lab, is a bare loop (this binary's `checks-floor`) making the
//!   same connections (and requests) at the same rate on tokio: what the probes cost without
//!   lbd around them.
//! - Detection: one real server killed (its listener closed: refused) or blackholed (the
//!   victim's route back to the director dropped: the SYN-ACK never comes) at a random phase
//!   of the checks, 20+ times each; the time from the kill to lbd's `RS ... DOWN` line, which
//!   lbd writes right after publishing the new desired table to the reconciler.
//!
//! Goals: 10,000 TCP checks a second in under 25 % of one core and under 64 MB RSS; detection
//! within delay_loop + 10 ms (refused) and delay_loop + connect_timeout + 10 ms (blackholed).

use std::{
    io::{BufRead as _, Write as _},
    net::SocketAddr,
    process::{ExitCode, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use lb_tests::lab::{Lab, Netns, wait_for_path};

use crate::{arg, arg_str, failover::usage_split, median};

const TCP_ADDRS: u16 = 100;
const TCP_PORTS: u16 = 100;
const HTTP_ADDRS: u16 = 100;
const HTTP_PORTS: u16 = 10;

/// The checker of the load rows: TCP connect, 1 s timeout, no retry.
const TCP_CHECK_BLOCK: &str = "TCP_CHECK {\n      connect_timeout 1\n      retry 0\n    }";
/// The HTTP checker of the load rows.
const HTTP_GET_BLOCK: &str = "HTTP_GET {\n      url {\n        path /\n      }\n      connect_timeout 1\n      retry 0\n    }";

fn tcp_targets() -> Vec<SocketAddr> {
    (0..TCP_ADDRS)
        .flat_map(|a| {
            (0..TCP_PORTS).map(move |p| SocketAddr::from(([198, 51, 100, 1 + a as u8], 10_000 + p)))
        })
        .collect()
}

fn http_targets() -> Vec<SocketAddr> {
    (0..HTTP_ADDRS)
        .flat_map(|a| {
            (0..HTTP_PORTS).map(move |p| SocketAddr::from(([203, 0, 113, 1 + a as u8], 8_000 + p)))
        })
        .collect()
}

pub(crate) struct Load {
    pub(crate) lab: Lab,
    pub(crate) director: Netns,
}

/// The director and the servers, with wildcard listeners for both target sets.
fn load_lab() -> Load {
    load_lab_with(TCP_PORTS, HTTP_PORTS)
}

/// The director and the servers (`lo` holding 198.51.100.0/24 and 203.0.113.0/24), with
/// wildcard TCP listeners on ports 10,000 + `0..tcp_ports` that accept and close, and HTTP
/// ones on 8,000 + `0..http_ports`.
pub(crate) fn load_lab_with(tcp_ports: u16, http_ports: u16) -> Load {
    let mut lab = Lab::new();
    let director = lab.netns("director");
    let servers = lab.netns("servers");
    lab.veth(&director, "d0", &servers, "s0");
    director.ip(&["addr", "add", "192.0.2.1/24", "dev", "d0"]);
    servers.ip(&["addr", "add", "192.0.2.2/24", "dev", "s0"]);
    for net in ["198.51.100.0/24", "203.0.113.0/24"] {
        servers.ip(&["addr", "add", net, "dev", "lo"]);
        director.ip(&["route", "add", net, "via", "192.0.2.2"]);
    }
    // Room for 10,000 connections a second through one client address.
    lb_tests::lab::sysctl(&director, "net.ipv4.ip_local_port_range", "10000 65000");
    lb_tests::lab::sysctl(&servers, "net.core.somaxconn", "4096");
    let ready = servers.spawn_within(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            for p in 0..tcp_ports {
                let l = tokio::net::TcpListener::bind(("0.0.0.0", 10_000 + p))
                    .await
                    .expect("bind");
                tokio::spawn(async move {
                    loop {
                        if let Ok((s, _)) = l.accept().await {
                            drop(s);
                        }
                    }
                });
            }
            for p in 0..http_ports {
                let l = tokio::net::TcpListener::bind(("0.0.0.0", 8_000 + p))
                    .await
                    .expect("bind");
                tokio::spawn(async move {
                    loop {
                        if let Ok((s, _)) = l.accept().await {
                            tokio::spawn(serve_http(s));
                        }
                    }
                });
            }
            std::future::pending::<()>().await;
        });
    });
    drop(ready);
    Load { lab, director }
}

async fn serve_http(mut s: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = [0u8; 2048];
    let mut have = 0;
    while have < buf.len() {
        match s.read(&mut buf[have..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
        if buf[..have].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let _written = s
        .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        .await;
}

fn config(targets: &[SocketAddr], check: &str, per_vs: usize) -> String {
    let mut conf = String::new();
    for (i, chunk) in targets.chunks(per_vs).enumerate() {
        conf.push_str(&format!(
            "virtual_server 192.0.2.{} {} {{\n  delay_loop 1\n  lb_algo rr\n",
            100 + i / 100,
            1000 + i % 100
        ));
        for t in chunk {
            conf.push_str(&format!(
                "  real_server {} {} {{\n    {check}\n  }}\n",
                t.ip(),
                t.port()
            ));
        }
        conf.push_str("}\n");
    }
    conf
}

/// Starts lbd in `ns` on `conf`; returns its pid and control socket.
fn start_lbd(lab: &mut Lab, ns: &Netns, name: &str, conf: &str) -> (u32, std::path::PathBuf) {
    start_lbd_with(lab, ns, name, conf, &[])
}

/// lbd's HTTP API in the director, for the operations figures.
const HTTP_ARGS: &[&str] = &["--http", "127.0.0.1:9467"];

/// As [`start_lbd`], with more arguments for `lbd run`.
fn start_lbd_with(
    lab: &mut Lab,
    ns: &Netns,
    name: &str,
    conf: &str,
    extra: &[&str],
) -> (u32, std::path::PathBuf) {
    let dir = lab.dir().to_owned();
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, conf).expect("config");
    let socket = dir.join(format!("{name}.sock"));
    let mut cmd = ns.command(lb_tests::workspace_bin("lbd"));
    cmd.arg("run")
        .arg("-f")
        .arg(&path)
        .args(["--dataplane", "none"])
        .args(extra)
        .arg("--control-socket")
        .arg(&socket)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let pid = lab.spawn_group(name, cmd);
    wait_for_path(&socket, Duration::from_secs(30));
    (pid, socket)
}

/// CPU (% of one core: total, and its user-space part) and RSS (KiB) of process group `pgid`
/// over `window`.
fn measure(pgid: u32, window: Duration) -> (f64, f64, u64) {
    let (_, user0, sys0) = usage_split(pgid);
    std::thread::sleep(window);
    let (rss, user1, sys1) = usage_split(pgid);
    // /proc counts in USER_HZ, 100 per second on Linux.
    let pct = |ticks: u64| ticks as f64 / 100.0 / window.as_secs_f64() * 100.0;
    (pct(user1 + sys1 - user0 - sys0), pct(user1 - user0), rss)
}

/// One load row: lbd, then the floor, on the same targets.
fn load_row(
    load: &mut Load,
    what: &str,
    targets: &[SocketAddr],
    check: &str,
    floor_kind: &str,
    window: Duration,
) {
    let (pid, socket) = start_lbd(
        &mut load.lab,
        &load.director.clone(),
        &format!("lbd-{floor_kind}"),
        &config(targets, check, 100),
    );
    // Warmup spreads the first probes over one delay_loop; then let it settle.
    std::thread::sleep(Duration::from_secs(5));
    let status = lb_tests::lbctl_status(&socket);
    let (cpu, user, rss) = measure(pid, window);
    let after = lb_tests::lbctl_status(&socket);
    load.lab.stop(pid, "TERM");
    let probes = |s: &serde_json::Value| -> u64 {
        s["virtual_servers"]
            .as_array()
            .expect("virtual servers")
            .iter()
            .flat_map(|vs| vs["real_servers"].as_array().cloned().unwrap_or_default())
            .flat_map(|rs| rs["checkers"].as_array().cloned().unwrap_or_default())
            .map(|c| c["probes"].as_u64().unwrap_or(0))
            .sum()
    };
    let rate = (probes(&after) - probes(&status)) as f64 / window.as_secs_f64();
    let down: usize = after["virtual_servers"]
        .as_array()
        .expect("virtual servers")
        .iter()
        .flat_map(|vs| vs["real_servers"].as_array().cloned().unwrap_or_default())
        .filter(|rs| rs["alive"] == false)
        .count();
    // The floor: the same connections at the same rate, bare.
    let mut floor = load.director.command(std::env::current_exe().expect("exe"));
    floor
        .args(["checks-floor", floor_kind])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let floor_pid = load.lab.spawn_group("floor", floor);
    std::thread::sleep(Duration::from_secs(3));
    let (floor_cpu, floor_user, floor_rss) = measure(floor_pid, window);
    load.lab.stop(floor_pid, "KILL");
    println!(
        "{what:<20} {rate:>9.0} {cpu:>9.1} {user:>9.1} {:>9.1} {floor_cpu:>10.1} {floor_user:>9.1} {:>7.2} {:>9.1} {:>9.1} {down:>6}",
        rss as f64 / 1024.0,
        cpu / floor_cpu.max(0.01),
        floor_rss as f64 / 1024.0,
        (rss as f64 / 1024.0) / (floor_rss as f64 / 1024.0).max(0.01),
    );
}

/// `checks-floor tcp|http`: connects to every target once a second, spread evenly, with
/// nothing else: the baseline of the load rows.
pub(crate) fn floor(args: &[String]) -> ExitCode {
    let http = args.first().map(String::as_str) == Some("http");
    let targets = if http { http_targets() } else { tcp_targets() };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let n = targets.len() as u32;
        for (i, t) in targets.into_iter().enumerate() {
            let offset = Duration::from_secs(1) * i as u32 / n;
            tokio::spawn(async move {
                let mut next = tokio::time::Instant::now() + offset;
                loop {
                    tokio::time::sleep_until(next).await;
                    next += Duration::from_secs(1);
                    let Ok(Ok(mut s)) = tokio::time::timeout(
                        Duration::from_secs(1),
                        tokio::net::TcpStream::connect(t),
                    )
                    .await
                    else {
                        continue;
                    };
                    if http {
                        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                        let _sent = s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await;
                        let mut buf = Vec::new();
                        let _read = s.read_to_end(&mut buf).await;
                    } else {
                        let _linger = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                    }
                }
            });
        }
        std::future::pending::<()>().await;
    });
    ExitCode::SUCCESS
}

/// The detection runs: `kills` kills of each kind; prints median and p99 against the goal.
fn detection(kills: u32) {
    let mut lab = Lab::new();
    let director = lab.netns("director");
    let victim = lab.netns("victim");
    lab.veth(&director, "d0", &victim, "v0");
    director.ip(&["-6", "addr", "add", "2001:db8:1::1/64", "dev", "d0"]);
    victim.ip(&["-6", "addr", "add", "2001:db8:1::2/64", "dev", "v0"]);
    let fifo = lab.dir().join("lvs.fifo");
    let conf = format!(
        "global_defs {{\n  lvs_notify_fifo {}\n}}\nvirtual_server 2001:db8:ffff::1 80 {{\n  delay_loop 1\n  real_server 2001:db8:1::2 80 {{\n    TCP_CHECK {{\n      connect_timeout 1\n      retry 0\n    }}\n  }}\n}}\n",
        fifo.display()
    );
    // The victim's listener: closed on request (refused), reopened after.
    let listen = |victim: &Netns| {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let (tx, rx) = mpsc::channel::<Instant>();
        let thread = victim.spawn_within(move || {
            let l = std::net::TcpListener::bind("[2001:db8:1::2]:80").expect("bind");
            l.set_nonblocking(true).expect("nonblocking");
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => drop(c),
                    Err(_) => std::thread::sleep(Duration::from_micros(200)),
                }
            }
            drop(l);
            tx.send(Instant::now()).ok();
        });
        (stop, rx, thread)
    };
    let mut server = Some(listen(&victim));
    let (pid, _socket) = start_lbd(&mut lab, &director, "lbd-detect", &conf);
    wait_for_path(&fifo, Duration::from_secs(10));
    let reader = std::fs::File::open(&fifo).expect("FIFO");
    let (lines_tx, lines) = mpsc::channel::<(Instant, String)>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(reader).lines() {
            let Ok(line) = line else { return };
            if lines_tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    let wait_line = |word: &str| -> Instant {
        loop {
            let (at, line) = lines
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no RS {word} line within 10 s"));
            if line.starts_with("RS ") && line.ends_with(word) {
                return at;
            }
        }
    };
    let mut refused = Vec::new();
    let mut blackholed = Vec::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut phase = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        Duration::from_micros(rng % 1_000_000)
    };
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..kills {
        // Refused: the listener closes; lbd's next probe gets a reset.
        std::thread::sleep(phase());
        let (stop, closed, thread) = server.take().expect("server");
        stop.store(true, Ordering::Relaxed);
        let killed = closed.recv().expect("closed");
        thread.join().expect("server thread");
        let seen = wait_line("DOWN");
        refused.push(seen.duration_since(killed));
        server = Some(listen(&victim));
        wait_line("UP");
        // Blackholed: replies to the director vanish; the probe times out.
        std::thread::sleep(phase());
        let killed = Instant::now();
        victim.ip(&["-6", "route", "add", "blackhole", "2001:db8:1::1/128"]);
        let seen = wait_line("DOWN");
        blackholed.push(seen.duration_since(killed));
        victim.ip(&["-6", "route", "del", "blackhole", "2001:db8:1::1/128"]);
        wait_line("UP");
    }
    lab.stop(pid, "TERM");
    let stats = |v: &[Duration]| {
        let ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        let mut sorted = ms.clone();
        sorted.sort_by(f64::total_cmp);
        let p99 = sorted[((sorted.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)];
        (median(ms), p99, sorted[sorted.len() - 1])
    };
    println!(
        "\ndetection: kill → RS DOWN, delay_loop 1 s, connect_timeout 1 s, retry 0, {kills} kills each"
    );
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>10} {:>6}",
        "kind", "median ms", "p99 ms", "max ms", "goal ms", "met"
    );
    for (kind, v, goal) in [
        ("refused", &refused, 1010.0),
        ("blackholed", &blackholed, 2010.0),
    ] {
        let (med, p99, max) = stats(v);
        println!(
            "{kind:<12} {med:>10.1} {p99:>10.1} {max:>10.1} {goal:>10.0} {:>6}",
            if max <= goal { "yes" } else { "NO" }
        );
    }
}

/// Milliseconds of `n` runs of `f`: median and maximum.
fn timed(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut samples: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    (samples[samples.len() / 2], samples[samples.len() - 1])
}

/// #8's figures: RSS idle and with 10,000 real servers; `/metrics` scrape time and `lbctl
/// status` latency with 1,000 real servers.
fn operations() {
    let mut load = load_lab();
    let director = load.director.clone();
    println!();
    println!("operations (check-only lbd, --http on 127.0.0.1:9467 in the director)");
    let (pid, _) = start_lbd_with(&mut load.lab, &director, "idle", "", HTTP_ARGS);
    std::thread::sleep(Duration::from_secs(2));
    let (idle_rss, ..) = usage_split(pid);
    load.lab.stop(pid, "TERM");
    let tcp = config(&tcp_targets(), TCP_CHECK_BLOCK, 100);
    let (pid, _) = start_lbd_with(&mut load.lab, &director, "tcp10k", &tcp, HTTP_ARGS);
    std::thread::sleep(Duration::from_secs(10));
    let (rss_10k, ..) = usage_split(pid);
    load.lab.stop(pid, "TERM");
    let http = config(&http_targets(), HTTP_GET_BLOCK, 100);
    let (pid, socket) = start_lbd_with(&mut load.lab, &director, "http1k", &http, HTTP_ARGS);
    std::thread::sleep(Duration::from_secs(5));
    let (rss_1k, ..) = usage_split(pid);
    let mut size = 0;
    let scrape = timed(50, || {
        let body = director.within(|| {
            use std::io::{Read as _, Write as _};
            let mut conn = std::net::TcpStream::connect("127.0.0.1:9467").expect("lbd's HTTP");
            conn.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
                .expect("request");
            let mut body = Vec::new();
            conn.read_to_end(&mut body).expect("answer");
            body.len()
        });
        size = body;
    });
    let status = timed(50, || {
        let answer = lbd::control::call(
            &socket,
            &lbd::control::Request::Status,
            Duration::from_secs(5),
        )
        .expect("status");
        assert!(matches!(answer, lbd::control::Response::Status(_)));
    });
    let lbctl = timed(20, || {
        let out = std::process::Command::new(lb_tests::workspace_bin("lbctl"))
            .arg("--control-socket")
            .arg(&socket)
            .arg("status")
            .stdout(Stdio::null())
            .status()
            .expect("lbctl");
        assert!(out.success());
    });
    load.lab.stop(pid, "TERM");
    println!(
        "  lbd RSS idle (no virtual server): {:.1} MiB",
        idle_rss as f64 / 1024.0
    );
    println!(
        "  lbd RSS with 10,000 real servers (TCP_CHECK, 10 s in): {:.1} MiB",
        rss_10k as f64 / 1024.0
    );
    println!(
        "  lbd RSS with 1,000 real servers (HTTP_GET): {:.1} MiB",
        rss_1k as f64 / 1024.0
    );
    println!(
        "  /metrics with 1,000 real servers ({} KiB): median {:.2} ms, max {:.2} ms of 50 scrapes",
        size / 1024,
        scrape.0,
        scrape.1
    );
    println!(
        "  status over the control socket: median {:.2} ms, max {:.2} ms of 50; `lbctl status` (a process, table printed): median {:.2} ms, max {:.2} ms of 20",
        status.0, status.1, lbctl.0, lbctl.1
    );
}

/// `checks [--window-secs W] [--kills N] [--only load,detection,operations]`
pub(crate) fn bench_checks(args: &[String]) -> ExitCode {
    lb_tests::require_root();
    let window = Duration::from_secs(u64::from(arg(args, "--window-secs", 60)));
    let kills = arg(args, "--kills", 20);
    let only = arg_str(args, "--only").unwrap_or("load,detection,operations");
    if only.contains("load") {
        let mut load = load_lab();
        println!(
            "health-check load, delay_loop 1 s, {} s window; floor = the same connections from a bare tokio loop",
            window.as_secs()
        );
        println!(
            "{:<20} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9} {:>7} {:>9} {:>9} {:>6}",
            "checks",
            "probes/s",
            "lbd CPU%",
            "lbd user",
            "lbd MiB",
            "floor CPU%",
            "floor usr",
            "ratio",
            "floor MiB",
            "RSS ratio",
            "down"
        );
        load_row(
            &mut load,
            "10,000 TCP_CHECK",
            &tcp_targets(),
            TCP_CHECK_BLOCK,
            "tcp",
            window,
        );
        load_row(
            &mut load,
            "1,000 HTTP_GET",
            &http_targets(),
            HTTP_GET_BLOCK,
            "http",
            window,
        );
        println!(
            "(CPU in % of one core, user = its user-space part; the rest is the kernel's TCP work, which on veth includes the servers' side; goal for 10,000 TCP_CHECK: < 25 % and < 64 MiB)"
        );
    }
    if only.contains("detection") {
        detection(kills);
    }
    if only.contains("operations") {
        operations();
    }
    std::io::stdout().flush().ok();
    ExitCode::SUCCESS
}
