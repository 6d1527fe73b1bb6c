//! Every checker against real servers in a namespace: up, down, refused, timeout, slow, wrong
//! status, wrong digest, wrong DNS answer, garbage, and hostile servers (endless body,
//! slowloris, huge headers, broken TLS) that must not stall a probe past its timeout.
//!
//! Lab: one namespace `host` with the servers on 192.0.2.2-9 (on `lo`) and the probes run
//! in-process (lbd's probe functions on a tokio runtime inside the namespace). A veth to a
//! second namespace `void` carries 198.51.100.0/24, where 198.51.100.9 has a static neighbour
//! entry but no host: packets to it vanish (a blackholed server).
#![expect(
    unused_crate_dependencies,
    reason = "each target of lb-tests uses part of the package's dependencies; cargo cannot scope them"
)]

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use lb_tests::{
    desired,
    lab::{Lab, Netns, TcpServer, wait_until},
};
use lbd::{
    health::{probe, state::Outcome},
    model::{
        BodyRegex, FileProbe, HttpProbe, HttpVersion, MiscProbe, Probe, ProbeKind, Script, Target,
        TlsProbe, UdpProbe, UrlCheck,
    },
};

const BLACKHOLE: &str = "198.51.100.9";

struct Topo {
    lab: Lab,
    host: Netns,
}

fn topo() -> Topo {
    lb_tests::require_root();
    let mut lab = Lab::new();
    let host = lab.netns("host");
    let void = lab.netns("void");
    for i in 2..=9 {
        host.ip(&["addr", "add", &format!("192.0.2.{i}/32"), "dev", "lo"]);
    }
    host.ip(&["-6", "addr", "add", "2001:db8::2/128", "dev", "lo"]);
    lab.veth(&host, "v0", &void, "v1");
    host.ip(&["addr", "add", "198.51.100.1/24", "dev", "v0"]);
    void.ip(&["addr", "add", "198.51.100.2/24", "dev", "v1"]);
    let mac = String::from_utf8(void.run("cat", &["/sys/class/net/v1/address"]).stdout)
        .expect("mac")
        .trim()
        .to_owned();
    host.ip(&[
        "neigh",
        "add",
        BLACKHOLE,
        "lladdr",
        &mac,
        "dev",
        "v0",
        "nud",
        "permanent",
    ]);
    Topo { lab, host }
}

fn target(addr: &str) -> Target {
    Target {
        addr: addr.parse().expect("address"),
        bind_addr: None,
        bind_port: None,
        bind_if: None,
        fwmark: None,
    }
}

/// Runs `probe` in the host namespace; returns its outcome and how long it took.
fn run(t: &Topo, probe: Probe, timeout: Duration) -> (Outcome, Duration) {
    t.host.within(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let ctx = probe::ProbeContext::new(None);
            let start = Instant::now();
            let outcome = probe::run(&probe, timeout, &ctx).await;
            (outcome, start.elapsed())
        })
    })
}

fn up(t: &Topo, probe: Probe) -> Outcome {
    let (o, _) = run(t, probe, Duration::from_secs(2));
    assert!(o.ok, "expected up: {o:?}");
    o
}

fn down(t: &Topo, probe: Probe, timeout: Duration) -> (Outcome, Duration) {
    let (o, took) = run(t, probe, timeout);
    assert!(!o.ok, "expected down: {o:?}");
    assert!(
        took < timeout + Duration::from_millis(500),
        "a probe must end by its timeout ({timeout:?}), took {took:?}: {o:?}"
    );
    (o, took)
}

/// A TCP server in the host namespace: `handle` serves each connection on its own thread.
fn serve(t: &Topo, addr: &str, handle: fn(TcpStream)) {
    let addr: SocketAddr = addr.parse().expect("address");
    let listener = t
        .host
        .within(move || TcpListener::bind(addr).expect("bind"));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || handle(conn));
        }
    });
}

/// Reads a request head; returns it.
fn read_head(conn: &TcpStream) -> String {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            return head;
        }
        head.push_str(&line);
    }
}

fn http(path: &str) -> ProbeKind {
    ProbeKind::Http(HttpProbe {
        tls: None,
        version: HttpVersion::Http10,
        urls: vec![UrlCheck {
            path: path.to_owned(),
            digest: None,
            status: vec![200..=299],
            virtualhost: None,
            regex: None,
        }],
        virtualhost: None,
    })
}

fn with_url(kind: ProbeKind, f: impl FnOnce(&mut UrlCheck)) -> ProbeKind {
    let ProbeKind::Http(mut h) = kind else {
        unreachable!()
    };
    f(&mut h.urls[0]);
    ProbeKind::Http(h)
}

fn at(addr: &str, kind: ProbeKind) -> Probe {
    Probe {
        target: target(addr),
        kind,
    }
}

fn web_server(mut conn: TcpStream) {
    let head = read_head(&conn);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let host_ok = head.to_ascii_lowercase().contains("host: www.example.org");
    let (status, body) = match path.as_str() {
        "/ok" => ("200 OK", "all good\n".to_owned()),
        "/error" => ("500 Internal Server Error", "boom\n".to_owned()),
        "/moved" => ("301 Moved Permanently", String::new()),
        "/vhost" if host_ok => ("200 OK", "vhost\n".to_owned()),
        "/vhost" => ("404 Not Found", String::new()),
        "/slow" => {
            std::thread::sleep(Duration::from_secs(3));
            ("200 OK", "late\n".to_owned())
        }
        _ => ("404 Not Found", String::new()),
    };
    let reply = format!(
        "HTTP/1.0 {status}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(reply.as_bytes()).ok();
}

/// MD5 of "all good\n", as keepalived's genhash prints it.
const ALL_GOOD_MD5: &str = "95bb3d49cb3c05440732fbfe2b405112";

fn md5_of(hex: &str) -> [u8; 16] {
    let bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    bytes.try_into().expect("16 bytes")
}

#[test]
fn tcp_check_up_refused_and_blackholed() {
    let t = topo();
    serve(&t, "192.0.2.2:80", |_| {});
    up(&t, at("192.0.2.2:80", ProbeKind::Tcp));
    let (o, took) = down(
        &t,
        at("192.0.2.2:81", ProbeKind::Tcp),
        Duration::from_secs(2),
    );
    assert!(o.detail.contains("refused"), "{o:?}");
    assert!(
        took < Duration::from_secs(1),
        "refusal is immediate, not a timeout: {took:?}"
    );
    let (o, took) = down(
        &t,
        at(&format!("{BLACKHOLE}:80"), ProbeKind::Tcp),
        Duration::from_millis(500),
    );
    assert!(took >= Duration::from_millis(450), "{o:?} after {took:?}");
    drop(t.lab);
}

#[test]
fn http_get_status_digest_regex_and_virtualhost() {
    let t = topo();
    serve(&t, "192.0.2.3:80", web_server);
    up(&t, at("192.0.2.3:80", http("/ok")));
    let (o, _) = down(
        &t,
        at("192.0.2.3:80", http("/error")),
        Duration::from_secs(2),
    );
    assert!(o.detail.contains("500"), "{o:?}");
    down(
        &t,
        at("192.0.2.3:80", http("/moved")),
        Duration::from_secs(2),
    );
    up(
        &t,
        at(
            "192.0.2.3:80",
            with_url(http("/moved"), |u| u.status = vec![200..=299, 301..=301]),
        ),
    );
    up(
        &t,
        at(
            "192.0.2.3:80",
            with_url(http("/ok"), |u| u.digest = Some(md5_of(ALL_GOOD_MD5))),
        ),
    );
    let (o, _) = down(
        &t,
        at(
            "192.0.2.3:80",
            with_url(http("/ok"), |u| u.digest = Some([0; 16])),
        ),
        Duration::from_secs(2),
    );
    assert!(o.detail.contains("digest"), "{o:?}");
    let regex = |pattern: &str, no_match: bool| BodyRegex {
        pattern: pattern.to_owned(),
        no_match,
        caseless: false,
        min_offset: 0,
        max_offset: None,
    };
    up(
        &t,
        at(
            "192.0.2.3:80",
            with_url(http("/ok"), |u| u.regex = Some(regex("good", false))),
        ),
    );
    down(
        &t,
        at(
            "192.0.2.3:80",
            with_url(http("/ok"), |u| u.regex = Some(regex("good", true))),
        ),
        Duration::from_secs(2),
    );
    down(
        &t,
        at("192.0.2.3:80", http("/vhost")),
        Duration::from_secs(2),
    );
    up(
        &t,
        at(
            "192.0.2.3:80",
            with_url(http("/vhost"), |u| {
                u.virtualhost = Some("www.example.org".into());
            }),
        ),
    );
    // Slow: down within a short timeout, up within a long one.
    down(
        &t,
        at("192.0.2.3:80", http("/slow")),
        Duration::from_secs(1),
    );
    let (o, _) = run(
        &t,
        at("192.0.2.3:80", http("/slow")),
        Duration::from_secs(5),
    );
    assert!(o.ok, "{o:?}");
    let (o, _) = down(&t, at("192.0.2.3:81", http("/ok")), Duration::from_secs(2));
    assert!(o.detail.contains("refused"), "{o:?}");
}

#[test]
fn hostile_http_servers_cannot_stall_or_grow_a_probe() {
    let t = topo();
    // Garbage instead of HTTP.
    serve(&t, "192.0.2.4:80", |mut c| {
        read_head(&c);
        c.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\x00\x01\x02").ok();
    });
    // An endless body.
    serve(&t, "192.0.2.4:81", |mut c| {
        read_head(&c);
        c.write_all(b"HTTP/1.0 200 OK\r\n\r\n").ok();
        let chunk = vec![b'x'; 64 * 1024];
        while c.write_all(&chunk).is_ok() {}
    });
    // Slowloris: one header byte every 100 ms, forever.
    serve(&t, "192.0.2.4:82", |mut c| {
        read_head(&c);
        c.write_all(b"HTTP/1.0 200 OK\r\n").ok();
        while c.write_all(b"X").is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    // Huge headers.
    serve(&t, "192.0.2.4:83", |mut c| {
        read_head(&c);
        let mut reply = b"HTTP/1.0 200 OK\r\n".to_vec();
        for i in 0..20_000 {
            reply.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(40)).as_bytes());
        }
        reply.extend_from_slice(b"\r\n");
        c.write_all(&reply).ok();
    });
    let digest = |kind| with_url(kind, |u| u.digest = Some([0; 16]));
    let (o, _) = down(&t, at("192.0.2.4:80", http("/")), Duration::from_secs(2));
    assert!(o.detail.contains("HTTP"), "{o:?}");
    let (o, took) = down(
        &t,
        at("192.0.2.4:81", digest(http("/"))),
        Duration::from_secs(5),
    );
    assert!(
        o.detail.contains("longer than"),
        "the body read stops at its bound: {o:?} after {took:?}"
    );
    let (_, took) = down(&t, at("192.0.2.4:82", http("/")), Duration::from_secs(1));
    assert!(took >= Duration::from_millis(900), "{took:?}");
    let (o, took) = down(&t, at("192.0.2.4:83", http("/")), Duration::from_secs(2));
    assert!(took < Duration::from_secs(1), "{o:?} after {took:?}");
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl {args:?}");
}

/// A test CA in `dir` and a server certificate it signed: (CA, certificate, key) paths.
fn certificate(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=lbd test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-subj", "/CN=www.example.org"];
    csr.extend(ec);
    csr.extend(["-keyout", "key.pem", "-out", "server.csr"]);
    openssl(dir, &csr);
    // Extensions make it an X.509 v3 certificate, which webpki requires.
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:www.example.org\n",
    )
    .expect("write extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            "server.ext",
            "-out",
            "cert.pem",
        ],
    );
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

#[test]
fn ssl_get_against_openssl_and_a_broken_tls_server() {
    let mut t = topo();
    let (ca, cert, key) = certificate(t.lab.dir());
    let mut server = t.host.command("openssl");
    server
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            "192.0.2.5:443",
            "-cert",
        ])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    t.lab.spawn("openssl s_server", server);
    let host = t.host.clone();
    wait_until(
        "openssl s_server listening",
        Duration::from_secs(10),
        || host.within(|| TcpStream::connect("192.0.2.5:443").is_ok()),
    );
    let ssl = |sni: Option<&str>, ca: Option<PathBuf>| {
        let ProbeKind::Http(mut h) = http("/") else {
            unreachable!()
        };
        h.tls = Some(TlsProbe {
            sni: sni.map(str::to_owned),
            ca,
            certificate: None,
            key: None,
        });
        ProbeKind::Http(h)
    };
    up(&t, at("192.0.2.5:443", ssl(None, None)));
    up(&t, at("192.0.2.5:443", ssl(Some("www.example.org"), None)));
    // With a CA, the chain must verify (the name is not checked: servers go by address).
    up(&t, at("192.0.2.5:443", ssl(None, Some(ca))));
    let elsewhere = t.lab.dir().join("other");
    std::fs::create_dir_all(&elsewhere).expect("dir");
    let (other, ..) = certificate(&elsewhere);
    let (o, _) = down(
        &t,
        at("192.0.2.5:443", ssl(None, Some(other))),
        Duration::from_secs(2),
    );
    assert!(o.detail.contains("TLS"), "{o:?}");
    // Plain HTTP garbage where TLS is expected.
    serve(&t, "192.0.2.5:444", |mut c| {
        c.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nnot TLS at all")
            .ok();
    });
    let (o, _) = down(
        &t,
        at("192.0.2.5:444", ssl(None, None)),
        Duration::from_secs(2),
    );
    assert!(o.detail.contains("TLS"), "{o:?}");
    // A TLS server that never answers the handshake.
    serve(&t, "192.0.2.5:445", |mut c| {
        let mut buf = [0u8; 4096];
        while c.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
    });
    down(
        &t,
        at("192.0.2.5:445", ssl(None, None)),
        Duration::from_secs(1),
    );
}

#[test]
fn smtp_check_greeting_helo_and_garbage() {
    let t = topo();
    serve(&t, "192.0.2.6:25", |mut c| {
        c.write_all(b"220-mx.example.org ESMTP\r\n220 ready\r\n")
            .ok();
        let mut reader = BufReader::new(c.try_clone().expect("clone"));
        let mut line = String::new();
        reader.read_line(&mut line).ok();
        let reply: &[u8] = if line.starts_with("HELO lbd.example.org") {
            b"250 mx.example.org\r\n"
        } else {
            b"501 bad HELO\r\n"
        };
        c.write_all(reply).ok();
        reader.read_line(&mut line).ok();
        c.write_all(b"221 bye\r\n").ok();
    });
    serve(&t, "192.0.2.6:26", |mut c| {
        c.write_all(b"554 go away\r\n").ok();
    });
    serve(&t, "192.0.2.6:27", |mut c| {
        c.write_all(b"hello? \x00\x01\r\n").ok();
    });
    let smtp = |name: &str| ProbeKind::Smtp {
        helo_name: Some(name.to_owned()),
    };
    up(&t, at("192.0.2.6:25", smtp("lbd.example.org")));
    let (o, _) = down(
        &t,
        at("192.0.2.6:25", smtp("other")),
        Duration::from_secs(2),
    );
    assert!(o.detail.contains("501"), "{o:?}");
    let (o, _) = down(
        &t,
        at("192.0.2.6:26", smtp("lbd.example.org")),
        Duration::from_secs(2),
    );
    assert!(o.detail.contains("554"), "{o:?}");
    let (o, _) = down(
        &t,
        at("192.0.2.6:27", smtp("lbd.example.org")),
        Duration::from_secs(2),
    );
    assert!(o.detail.contains("malformed"), "{o:?}");
    down(
        &t,
        at("192.0.2.6:28", smtp("lbd.example.org")),
        Duration::from_secs(2),
    );
}

/// A DNS answer to `query` (copied id and question) with `rcode` and, if given, one A record.
fn dns_answer(query: &[u8], rcode: u8, a: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = query.to_vec();
    out[2] = 0x81; // QR, RD
    out[3] = 0x80 | rcode; // RA, rcode
    out[6..8].copy_from_slice(&[0, u8::from(a.is_some())]);
    if let Some(addr) = a {
        // A pointer to the question's name, type A, class IN, TTL 60, 4 bytes.
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        out.extend_from_slice(&addr);
    }
    out
}

#[test]
fn dns_check_answers_wrong_answers_and_garbage() {
    let t = topo();
    let socket = t
        .host
        .within(|| UdpSocket::bind("192.0.2.7:53").expect("bind 53"));
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let q = &buf[..n];
            // The question name's first label picks the behaviour.
            let label = q.get(13..13 + usize::from(q[12])).unwrap_or_default();
            let reply = match label {
                b"good" => dns_answer(q, 0, Some([192, 0, 2, 80])),
                b"missing" => dns_answer(q, 3, None),
                b"empty" => dns_answer(q, 0, None),
                b"silent" => continue,
                _ => b"\xde\xad garbage".to_vec(),
            };
            socket.send_to(&reply, from).ok();
        }
    });
    let dns = |name: &str| ProbeKind::Dns {
        record_type: "A".to_owned(),
        name: name.to_owned(),
    };
    up(&t, at("192.0.2.7:53", dns("good.example.org")));
    let (o, _) = down(
        &t,
        at("192.0.2.7:53", dns("missing.example.org")),
        Duration::from_secs(2),
    );
    assert!(o.detail.contains("rcode"), "{o:?}");
    let (o, _) = down(
        &t,
        at("192.0.2.7:53", dns("empty.example.org")),
        Duration::from_secs(2),
    );
    assert!(o.detail.contains("no A record"), "{o:?}");
    down(
        &t,
        at("192.0.2.7:53", dns("garbage.example.org")),
        Duration::from_secs(2),
    );
    let (_, took) = down(
        &t,
        at("192.0.2.7:53", dns("silent.example.org")),
        Duration::from_millis(500),
    );
    assert!(took >= Duration::from_millis(450));
    let (o, _) = down(
        &t,
        at("192.0.2.7:54", dns("good.example.org")),
        Duration::from_secs(2),
    );
    assert!(o.detail.contains("refused"), "ICMP port unreachable: {o:?}");
}

#[test]
fn udp_check_replies_patterns_and_port_unreachable() {
    let t = topo();
    let socket = t
        .host
        .within(|| UdpSocket::bind("192.0.2.8:5000").expect("bind"));
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let mut reply = vec![0xa5, 0x01];
            reply.extend_from_slice(&buf[..n]);
            socket.send_to(&reply, from).ok();
        }
    });
    let silent = t
        .host
        .within(|| UdpSocket::bind("192.0.2.8:5001").expect("bind"));
    let udp = |pattern: Option<Vec<(Option<u8>, Option<u8>)>>| {
        ProbeKind::Udp(UdpProbe {
            payload: vec![0x42],
            require_reply: pattern,
            min_reply_length: 0,
            max_reply_length: 255,
        })
    };
    up(
        &t,
        at(
            "192.0.2.8:5000",
            udp(Some(vec![(Some(0xa), None), (Some(0), Some(1))])),
        ),
    );
    let (o, _) = down(
        &t,
        at("192.0.2.8:5000", udp(Some(vec![(Some(0xb), None)]))),
        Duration::from_secs(2),
    );
    assert!(o.detail.contains("does not match"), "{o:?}");
    let (o, _) = down(&t, at("192.0.2.8:5002", udp(None)), Duration::from_secs(1));
    assert!(o.detail.contains("refused"), "{o:?}");
    // Silence without require_reply is up (no ICMP error); with it, down.
    let (o, _) = run(
        &t,
        at("192.0.2.8:5001", udp(None)),
        Duration::from_millis(300),
    );
    assert!(o.ok, "{o:?}");
    down(
        &t,
        at("192.0.2.8:5001", udp(Some(vec![(None, None)]))),
        Duration::from_millis(300),
    );
    drop(silent);
}

#[test]
fn ping_check_v4_v6_and_blackholed() {
    let t = topo();
    up(&t, at("192.0.2.9:0", ProbeKind::Ping));
    up(&t, at("[2001:db8::2]:0", ProbeKind::Ping));
    down(
        &t,
        at(&format!("{BLACKHOLE}:0"), ProbeKind::Ping),
        Duration::from_millis(500),
    );
    // Many targets at once through the one shared socket.
    let outcomes = t.host.within(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let ctx = std::sync::Arc::new(probe::ProbeContext::new(None));
            let mut tasks = Vec::new();
            for i in 0..200u32 {
                let ctx = ctx.clone();
                let addr = format!("192.0.2.{}:0", 2 + i % 8);
                tasks.push(tokio::spawn(async move {
                    probe::run(&at(&addr, ProbeKind::Ping), Duration::from_secs(2), &ctx)
                        .await
                        .ok
                }));
            }
            let mut ok = 0;
            for t in tasks {
                ok += usize::from(t.await.expect("task"));
            }
            ok
        })
    });
    assert_eq!(outcomes, 200, "every echo matched to its waiter");
}

#[test]
fn misc_check_exit_codes_dynamic_weight_and_timeout() {
    let t = topo();
    let misc = |cmd: &str, dynamic: bool| {
        ProbeKind::Misc(MiscProbe {
            script: Script {
                argv: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
                user: None,
            },
            dynamic,
        })
    };
    up(&t, at("192.0.2.2:0", misc("exit 0", false)));
    down(
        &t,
        at("192.0.2.2:0", misc("exit 1", false)),
        Duration::from_secs(2),
    );
    let o = up(&t, at("192.0.2.2:0", misc("exit 7", true)));
    assert_eq!(o.weight, Some(lbd::health::state::WeightChange::Set(5)));
    down(
        &t,
        at("192.0.2.2:0", misc("exit 7", false)),
        Duration::from_secs(2),
    );
    // It runs unprivileged: `id -u` is not 0.
    down(
        &t,
        at("192.0.2.2:0", misc("test \"$(id -u)\" = 0", false)),
        Duration::from_secs(2),
    );
    let (o, took) = down(
        &t,
        at("192.0.2.2:0", misc("sleep 10", false)),
        Duration::from_millis(500),
    );
    assert!(took >= Duration::from_millis(450), "{o:?}");
}

#[test]
fn file_check_values_weights_and_dynamic() {
    let t = topo();
    let path = t.lab.dir().join("flag");
    let file = |weight: i32, reverse: bool, dynamic: bool| {
        ProbeKind::File(FileProbe {
            path: path.clone(),
            weight,
            reverse,
            dynamic,
        })
    };
    std::fs::write(&path, "0\n").expect("write");
    up(&t, at("192.0.2.2:0", file(0, false, false)));
    std::fs::write(&path, "3\n").expect("write");
    down(
        &t,
        at("192.0.2.2:0", file(0, false, false)),
        Duration::from_secs(1),
    );
    let o = up(&t, at("192.0.2.2:0", file(2, false, true)));
    assert_eq!(o.weight, Some(lbd::health::state::WeightChange::Add(6)));
    std::fs::write(&path, "200\n").expect("write");
    down(
        &t,
        at("192.0.2.2:0", file(-2, false, false)),
        Duration::from_secs(1),
    );
    up(&t, at("192.0.2.2:0", file(-2, true, false)));
}

/// Reads what is in the FIFO so far (non-blocking).
fn fifo_lines(fifo: &mut std::fs::File, seen: &mut String) -> String {
    let mut buf = [0u8; 4096];
    while let Ok(n) = fifo.read(&mut buf) {
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    seen.clone()
}

#[test]
fn lbd_keeps_pools_right_quorum_sorry_server_inhibit_alpha_and_shared_probes() {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut t = topo();
    let dir = t.lab.dir().to_owned();
    // Notify scripts run unprivileged: they write to a world-writable directory.
    let notes = dir.join("notes");
    std::fs::create_dir_all(&notes).expect("notes dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&notes, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let log = notes.join("log");
    let note = |word: &str| format!("\"/bin/sh -c 'echo {word} >> {}'\"", log.display());
    let mut a = TcpServer::start(&t.host, "192.0.2.2:80");
    let mut b = TcpServer::start(&t.host, "192.0.2.3:80");
    let _c = TcpServer::start(&t.host, "192.0.2.4:80");
    let shared = TcpServer::start(&t.host, "192.0.2.5:80");
    let check = "TCP_CHECK {\n connect_timeout 0.2\n retry 0\n }";
    let config = format!(
        r#"
global_defs {{
  lvs_notify_fifo {fifo}
}}
virtual_server 203.0.113.1 80 {{
  delay_loop 0.2
  quorum 2
  hysteresis 0
  quorum_down {quorum_down}
  sorry_server 192.0.2.9 80
  real_server 192.0.2.2 80 {{
    notify_down {a_down}
    {check}
  }}
  real_server 192.0.2.3 80 {{
    {check}
  }}
  real_server 192.0.2.5 80 {{
    {check}
  }}
}}
virtual_server 203.0.113.2 80 {{
  delay_loop 0.2
  alpha
  real_server 192.0.2.4 80 {{
    {check}
  }}
  real_server 192.0.2.5 80 {{
    {check}
  }}
  real_server 192.0.2.6 80 {{
    inhibit_on_failure
    {check}
  }}
}}
"#,
        fifo = dir.join("lvs.fifo").display(),
        quorum_down = note("quorum-down"),
        a_down = note("a-down"),
    );
    let conf = dir.join("keepalived.conf");
    std::fs::write(&conf, config).expect("config");
    let socket = dir.join("lbd.sock");
    let mut lbd = t.host.command(lb_tests::workspace_bin("lbd"));
    lbd.arg("run")
        .arg("-f")
        .arg(&conf)
        .args(["--dataplane", "none", "--control-socket"])
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    t.lab.spawn("lbd", lbd);
    lb_tests::lab::wait_for_path(&dir.join("lvs.fifo"), Duration::from_secs(10));
    let mut fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(dir.join("lvs.fifo"))
        .expect("open FIFO");
    let mut seen = String::new();
    let vs1 = "[203.0.113.1]:tcp:80";
    let vs2 = "[203.0.113.2]:tcp:80";
    let status = || lb_tests::lbctl_status(&socket);
    // The alpha pool starts down and comes up on its first checks; 192.0.2.6 has no server:
    // inhibited, it stays at weight 0.
    wait_until("the alpha pool up", Duration::from_secs(10), || {
        desired(&status(), vs2)
            == [
                ("192.0.2.4:80".to_owned(), 1),
                ("192.0.2.5:80".to_owned(), 1),
                ("192.0.2.6:80".to_owned(), 0),
            ]
    });
    wait_until("the alpha UP lines", Duration::from_secs(5), || {
        fifo_lines(&mut fifo, &mut seen).contains(&format!("RS [192.0.2.4]:tcp:80 {vs2} UP\n"))
    });
    assert!(
        !seen.contains(&format!("RS [192.0.2.2]:tcp:80 {vs1} UP")),
        "non-alpha servers start up, with no UP line: {seen}"
    );
    assert_eq!(
        desired(&status(), vs1).len(),
        3,
        "{:?}",
        desired(&status(), vs1)
    );
    // One probe per distinct checker: 192.0.2.5's check is shared by both virtual servers.
    let s = status();
    assert_eq!(s["reconciler"]["probes"], 5, "{}", s["reconciler"]);
    let before = shared.accepted();
    std::thread::sleep(Duration::from_secs(2));
    let per_second = (shared.accepted() - before) as f64 / 2.0;
    assert!(
        (3.0..=7.5).contains(&per_second),
        "the shared server is probed once per delay_loop (5/s), not once per virtual server: {per_second}/s"
    );
    // A real server dies: it leaves, its notify_down runs, the FIFO says so.
    a.kill();
    wait_until("a leaves the pool", Duration::from_secs(5), || {
        !desired(&status(), vs1)
            .iter()
            .any(|(addr, _)| addr == "192.0.2.2:80")
    });
    wait_until("the RS DOWN line", Duration::from_secs(5), || {
        fifo_lines(&mut fifo, &mut seen).contains(&format!("RS [192.0.2.2]:tcp:80 {vs1} DOWN\n"))
    });
    wait_until("notify_down ran", Duration::from_secs(5), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("a-down"))
    });
    // Another dies: live weight 1 < quorum 2, the sorry server takes over alone.
    b.kill();
    wait_until("the sorry server alone", Duration::from_secs(5), || {
        desired(&status(), vs1) == [("192.0.2.9:80".to_owned(), 1)]
    });
    wait_until("VS DOWN and quorum_down", Duration::from_secs(5), || {
        fifo_lines(&mut fifo, &mut seen).contains(&format!("VS {vs1} DOWN\n"))
            && std::fs::read_to_string(&log).is_ok_and(|l| l.contains("quorum-down"))
    });
    let s = status();
    let vs = &s["virtual_servers"][0];
    assert_eq!(vs["quorum_up"], false);
    assert_eq!(vs["real_servers"][1]["alive"], false);
    assert!(
        vs["real_servers"][1]["checkers"][0]["last_detail"]
            .as_str()
            .is_some_and(|d| d.contains("refused")),
        "{vs}"
    );
    // It comes back: quorum again, the sorry server goes.
    b = TcpServer::start(&t.host, "192.0.2.3:80");
    wait_until("quorum regained", Duration::from_secs(5), || {
        desired(&status(), vs1)
            == [
                ("192.0.2.3:80".to_owned(), 1),
                ("192.0.2.5:80".to_owned(), 1),
            ]
    });
    wait_until("VS UP", Duration::from_secs(5), || {
        fifo_lines(&mut fifo, &mut seen).contains(&format!("VS {vs1} UP\n"))
    });
    drop((b, shared));
}

#[test]
fn source_options_bind_address_port_interface_and_mark() {
    let t = topo();
    let addr: SocketAddr = "192.0.2.2:90".parse().expect("address");
    let listener = t
        .host
        .within(move || TcpListener::bind(addr).expect("bind"));
    let (peers_tx, peers) = std::sync::mpsc::channel();
    // accept() gives the peer's address even when the probe has already reset the
    // connection (it closes with SO_LINGER 0), which peer_addr() on the socket would not.
    std::thread::spawn(move || {
        while let Ok((_, peer)) = listener.accept() {
            peers_tx.send(peer).ok();
        }
    });
    let mut probe = at("192.0.2.2:90", ProbeKind::Tcp);
    probe.target.bind_addr = Some("192.0.2.9".parse().expect("ip"));
    probe.target.bind_port = Some(40_001);
    probe.target.bind_if = Some("lo".to_owned());
    up(&t, probe);
    let peer = peers
        .recv_timeout(Duration::from_secs(2))
        .expect("a connection");
    assert_eq!(
        peer,
        "192.0.2.9:40001".parse().expect("peer"),
        "bindto and bind_port"
    );
    // fwmark: marked packets follow a rule to a table that prohibits the blackholed host, so
    // a marked probe fails at once where an unmarked one waits out its timeout.
    t.host.ip(&["rule", "add", "fwmark", "7", "table", "100"]);
    t.host
        .ip(&["route", "add", "prohibit", BLACKHOLE, "table", "100"]);
    let mut marked = at(&format!("{BLACKHOLE}:80"), ProbeKind::Tcp);
    marked.target.fwmark = Some(7);
    let (o, took) = down(&t, marked.clone(), Duration::from_secs(3));
    assert!(took < Duration::from_secs(1), "{o:?} after {took:?}");
    marked.target.fwmark = Some(8);
    let (o, took) = down(&t, marked, Duration::from_millis(500));
    assert!(took >= Duration::from_millis(450), "{o:?} after {took:?}");
}
