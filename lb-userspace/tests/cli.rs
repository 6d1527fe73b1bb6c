//! The command-line contract of `lbd` and `lbctl`, run as the user running the tests: no
//! privileges needed (data plane `none`, or an XDP request that falls back before the kernel).
#![expect(
    unused_crate_dependencies,
    reason = "integration tests see the package's dependencies; cargo cannot scope them per target"
)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output},
    time::{Duration, Instant},
};

const LBD: &str = env!("CARGO_BIN_EXE_lbd");
const LBCTL: &str = env!("CARGO_BIN_EXE_lbctl");

/// A temporary directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("lbd-cli-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("writing scratch file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// A running lbd, killed on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .expect("running the binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[expect(
    clippy::disallowed_methods,
    reason = "these tests wait on real processes, in real time"
)]
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `lbd run --config CONFIG --control-socket SOCKET EXTRA...`.
fn lbd_run(config: &Path, socket: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(LBD);
    cmd.arg("run")
        .arg("--config")
        .arg(config)
        .arg("--control-socket")
        .arg(socket)
        .args(extra);
    cmd
}

fn start(config: &Path, socket: &Path, extra: &[&str]) -> Daemon {
    let child = lbd_run(config, socket, extra)
        .spawn()
        .expect("starting lbd");
    let mut daemon = Daemon(child);
    wait_for("lbd's control socket", || {
        assert!(matches!(daemon.0.try_wait(), Ok(None)), "lbd exited early");
        socket.exists()
    });
    daemon
}

fn status_json(socket: &Path) -> serde_json::Value {
    let out = run(
        LBCTL,
        &[
            "--control-socket",
            socket.to_str().expect("utf-8"),
            "status",
            "--json",
        ],
    );
    assert!(out.status.success(), "lbctl: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

const VALID: &str = r#"
[dataplane]
mode = "none"

[[virtual_server]]
address = "203.0.113.10"
port = 80
scheduler = "rr"
real_server = [ { address = "192.0.2.2", port = 80, weight = 2 } ]
"#;

#[test]
fn check_config_accepts_a_valid_file() {
    let dir = Scratch::new("valid");
    let out = run(
        LBD,
        &[
            "check-config",
            dir.file("lbd.toml", VALID).to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn check_config_prints_every_error_with_its_position() {
    let dir = Scratch::new("invalid");
    let path = dir.file(
        "bad.toml",
        "[[virtual_server]]\naddress = \"not-an-ip\"\nport = -1\n",
    );
    let out = run(LBD, &["check-config", path.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let p = path.display();
    assert_eq!(
        text(&out.stderr),
        format!(
            "{p}:2:11: \"not-an-ip\" is not an IP address\n\
             {p}:3:8: port \"-1\" is not 0-65535\n{p}: 2 errors\n"
        )
    );
}

#[test]
fn a_keepalived_conf_is_read_as_keepalived_syntax() {
    let dir = Scratch::new("keepalived");
    let conf = "global_defs {\n  router_id d1\n}\nvrrp_track_process chk {\n  process haproxy\n}\nvirtual_server 203.0.113.10 80 {\n  lb_algo rr\n  lb_kind DR\n  real_server 192.0.2.2 80 { weight 1 }\n}\n";
    let path = dir.file("keepalived.conf", conf);
    let path = path.to_str().expect("utf-8");
    let strict = run(LBD, &["check-config", path]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(
        text(&strict.stderr).contains(":4:1: keepalived keyword \"vrrp_track_process\""),
        "{}",
        text(&strict.stderr)
    );
    let lenient = run(LBD, &["check-config", "--allow-unimplemented", path]);
    assert!(lenient.status.success(), "{}", text(&lenient.stderr));
    assert!(
        text(&lenient.stderr).starts_with(&format!("warning: {path}:4:1:")),
        "{}",
        text(&lenient.stderr)
    );
    let as_toml = run(LBD, &["check-config", "--format", "toml", path]);
    assert_eq!(
        as_toml.status.code(),
        Some(1),
        "forced TOML cannot read keepalived syntax"
    );
}

#[test]
fn check_config_of_a_missing_file_fails_and_says_so() {
    let out = run(LBD, &["check-config", "/nonexistent/lbd.toml"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("reading /nonexistent/lbd.toml"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn lbd_runs_answers_lbctl_and_stops_cleanly_on_sigterm() {
    let dir = Scratch::new("run");
    let config = dir.file("lbd.toml", VALID);
    let socket = dir.0.join("sub/lbd.sock");
    let pid_file = dir.0.join("lbd.pid");
    let mut daemon = start(
        &config,
        &socket,
        &["--pid-file", pid_file.to_str().expect("utf-8")],
    );
    let pid = daemon.0.id();
    assert_eq!(
        std::fs::read_to_string(&pid_file).expect("pid file").trim(),
        pid.to_string()
    );
    let mode = std::fs::metadata(&socket)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(
        mode.expect("socket metadata"),
        0o600,
        "the control socket is for its owner only"
    );

    let status = status_json(&socket);
    assert_eq!(status["pid"], pid);
    assert_eq!(status["dataplane"]["mode"], "none");
    assert_eq!(status["dataplane"]["xdp"], serde_json::Value::Null);
    assert_eq!(status["virtual_servers"][0]["vip"], "203.0.113.10:80");
    assert_eq!(status["virtual_servers"][0]["scheduler"], "rr");
    assert_eq!(status["virtual_servers"][0]["real_servers"][0]["weight"], 2);

    let table = run(
        LBCTL,
        &[
            "--control-socket",
            socket.to_str().expect("utf-8"),
            "status",
        ],
    );
    let table = text(&table.stdout);
    assert!(table.contains("data plane: none"), "{table}");
    assert!(table.contains("[203.0.113.10]:tcp:80"), "{table}");
    assert!(table.contains("-> 192.0.2.2:80"), "{table}");

    // A second lbd on the same socket refuses to start.
    let second = lbd_run(&config, &socket, &[]).output().expect("second lbd");
    assert!(!second.status.success());
    assert!(
        text(&second.stderr).contains("another lbd is already listening"),
        "{}",
        text(&second.stderr)
    );

    assert!(run("kill", &["-TERM", &pid.to_string()]).status.success());
    let mut exit = None;
    wait_for("lbd to exit after SIGTERM", || {
        exit = daemon.0.try_wait().expect("try_wait");
        exit.is_some()
    });
    assert!(exit.expect("exit status").success());
    assert!(!socket.exists(), "socket removed");
    assert!(!pid_file.exists(), "pid file removed");
}

#[test]
fn a_bad_file_never_starts_the_daemon() {
    let dir = Scratch::new("bad-run");
    let config = dir.file("lbd.toml", "[dataplane]\nmode = \"turbo\"\n");
    let socket = dir.0.join("lbd.sock");
    let out = lbd_run(&config, &socket, &[]).output().expect("lbd");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(":2:8: dataplane mode must be none, ipvs, xdp or xdp+ipvs"),
        "{}",
        text(&out.stderr)
    );
    assert!(!socket.exists());
}

#[test]
fn without_its_bpf_object_lbd_runs_ipvs_only_and_says_why() {
    let dir = Scratch::new("fallback");
    let config = dir.file(
        "lbd.toml",
        "[[virtual_server]]\naddress = \"203.0.113.10\"\nport = 80\n",
    );
    let socket = dir.0.join("lbd.sock");
    let _daemon = start(
        &config,
        &socket,
        &[
            "--dataplane",
            "xdp",
            "--xdp-interface",
            "lo",
            "--bpf-object",
            "/nonexistent/lb-ebpf.o",
        ],
    );
    let status = status_json(&socket);
    assert_eq!(status["dataplane"]["configured_mode"], "xdp");
    assert_eq!(status["dataplane"]["mode"], "ipvs", "{status}");
    let error = status["dataplane"]["xdp_error"]
        .as_str()
        .expect("xdp_error");
    assert!(error.contains("/nonexistent/lb-ebpf.o"), "{error}");
    assert!(
        status["dataplane"]["ipvs"].is_object(),
        "IPVS is probed in the fallback: {status}"
    );
}

#[test]
fn lbctl_says_when_no_lbd_is_listening() {
    let out = run(
        LBCTL,
        &["--control-socket", "/nonexistent/lbd.sock", "status"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is lbd running"),
        "{}",
        text(&out.stderr)
    );
}

/// The systemd unit (`lb-userspace/dist/lbd.service`) passes `systemd-analyze verify` with
/// this build's lbd as its binary, and its hardening rates at most "OK" (exposure < 5).
#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dist/lbd.service"))
        .expect("the unit file");
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
    let scratch = Scratch::new("unit");
    let path = scratch.file("lbd.service", &unit.replace("/usr/local/sbin/lbd", LBD));
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&path)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for lbd.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(exposure < 5.0, "exposure {exposure}:\n{text}");
}

/// systemd's notification protocol: READY=1 once lbd answers, WATCHDOG=1 at half the watchdog
/// interval, STOPPING=1 on SIGTERM, on the socket systemd names in `$NOTIFY_SOCKET`.
#[test]
fn lbd_tells_systemd_it_is_ready_alive_and_stopping() {
    let scratch = Scratch::new("notify");
    let config = scratch.file("lbd.toml", "[dataplane]\nmode = \"none\"\n");
    let socket = scratch.0.join("lbd.sock");
    let notify_path = scratch.0.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // systemd names the watchdog's process: a shell that execs lbd keeps its pid.
    let child = Command::new("sh")
        .arg("-c")
        .arg(r#"WATCHDOG_PID=$$ exec "$0" run --config "$1" --control-socket "$2""#)
        .arg(LBD)
        .arg(&config)
        .arg(&socket)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "200000")
        .spawn()
        .expect("starting lbd");
    let daemon = Daemon(child);
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    let mut recv = |messages: &mut Vec<String>| {
        let n = notify.recv(&mut buf).expect("a notification within 10 s");
        messages.push(text(&buf[..n]));
    };
    recv(&mut messages);
    assert!(messages[0].lines().any(|l| l == "READY=1"), "{messages:?}");
    assert!(socket.exists(), "ready means the control socket answers");
    // Keep-alives at half of 200 ms.
    for _ in 0..3 {
        recv(&mut messages);
    }
    assert!(
        messages[1..].iter().all(|m| m.trim() == "WATCHDOG=1"),
        "{messages:?}"
    );
    let pid = daemon.0.id().to_string();
    assert!(run("kill", &["-TERM", &pid]).status.success());
    let stopping = loop {
        recv(&mut messages);
        let last = messages.last().expect("a message");
        if last.trim() != "WATCHDOG=1" {
            break last.clone();
        }
    };
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
}

/// `lbctl watch` prints each state change (here a real server going down), `stats` the
/// counters, `vrrp` the instances, and `check-config` is lbd's own check.
#[test]
fn lbctl_watches_changes_and_prints_stats_vrrp_and_config_checks() {
    let dir = Scratch::new("watch");
    let server = std::net::TcpListener::bind("127.0.0.1:0").expect("a real server");
    let port = server.local_addr().expect("address").port();
    let config = dir.file(
        "lbd.toml",
        &format!(
            r#"
[dataplane]
mode = "none"

[[virtual_server]]
address = "203.0.113.10"
port = 80
delay_loop = 0.1
real_server = [ {{ address = "127.0.0.1", port = {port}, TCP_CHECK = {{ connect_timeout = 0.2, retry = 0 }} }} ]
"#
        ),
    );
    let socket = dir.0.join("lbd.sock");
    let _daemon = start(&config, &socket, &[]);
    let socket_arg = socket.to_str().expect("utf-8");
    wait_for("a first probe", || {
        status_json(&socket)["virtual_servers"][0]["real_servers"][0]["checkers"][0]["probes"]
            .as_u64()
            .is_some_and(|n| n > 0)
    });
    let watch = Command::new(LBCTL)
        .args([
            "--control-socket",
            socket_arg,
            "watch",
            "--interval",
            "0.1",
            "--count",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("lbctl watch");
    // Let watch take its first look, then take the real server down.
    std::thread::sleep(Duration::from_millis(500));
    drop(server);
    let out = watch
        .wait_with_output()
        .expect("lbctl watch ends after one change");
    let lines = text(&out.stdout);
    assert!(out.status.success(), "{lines}");
    assert!(
        lines.lines().any(
            |l| l.contains("real server [203.0.113.10]:tcp:80 127.0.0.1")
                && l.contains("UP weight 1 -> DOWN weight 1")
        ),
        "{lines}"
    );

    let stats = run(LBCTL, &["--control-socket", socket_arg, "stats"]);
    assert!(stats.status.success());
    assert!(
        text(&stats.stdout).contains("check [203.0.113.10]:tcp:80 127.0.0.1"),
        "{}",
        text(&stats.stdout)
    );
    let vrrp = run(LBCTL, &["--control-socket", socket_arg, "vrrp"]);
    assert_eq!(text(&vrrp.stdout), "no VRRP instance\n");
    let missing = run(LBCTL, &["--control-socket", socket_arg, "vrrp", "VI_9"]);
    assert!(!missing.status.success(), "an unknown instance is an error");

    let good = run(LBCTL, &["check-config", config.to_str().expect("utf-8")]);
    assert!(good.status.success(), "{}", text(&good.stderr));
    let bad = dir.file("bad.toml", "[dataplane]\nmode = \"warp\"\n");
    let bad = run(LBCTL, &["check-config", bad.to_str().expect("utf-8")]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("bad.toml:2:8"),
        "{}",
        text(&bad.stderr)
    );
}

/// A request over plain HTTP/1.0 to `port` on localhost: (status code, body).
fn http(port: u16, request: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("lbd's HTTP");
    conn.write_all(request.as_bytes()).expect("request");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (code, body.to_owned())
}

fn post(port: u16, path: &str, body: &str) -> (u16, String) {
    http(
        port,
        &format!(
            "POST {path} HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// The HTTP API (`lbd run --http`): status, metrics, drain and undrain, and an OpenAPI
/// document whose every reference resolves and which names every path served.
#[test]
fn the_http_api_serves_status_metrics_drain_and_its_openapi() {
    let dir = Scratch::new("http");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = dir.file("lbd.toml", VALID);
    let socket = dir.0.join("lbd.sock");
    let _daemon = start(&config, &socket, &["--http", &format!("127.0.0.1:{port}")]);

    let (code, body) = http(port, "GET /status HTTP/1.0\r\n\r\n");
    assert_eq!(code, 200);
    let status: lbd::control::Status = serde_json::from_str(&body).expect("a Status");
    assert_eq!(status.virtual_servers.len(), 1);
    let (code, metrics) = http(port, "GET /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(code, 200);
    assert!(metrics.contains("lbd_build_info{version="), "{metrics}");

    let (code, body) = post(port, "/drain", r#"{"real_server": "192.0.2.2:80"}"#);
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"real_servers":["[192.0.2.2]:tcp:80"]}"#)
    );
    assert!(status_json(&socket)["virtual_servers"][0]["real_servers"][0]["drained"] == true);
    let (code, _) = post(port, "/undrain", r#"{"real_server": "192.0.2.2"}"#);
    assert_eq!(code, 200);
    assert!(status_json(&socket)["virtual_servers"][0]["real_servers"][0]["drained"] == false);
    assert_eq!(
        post(port, "/drain", r#"{"real_server": "192.0.2.9"}"#).0,
        404
    );
    assert_eq!(post(port, "/drain", "not json").0, 400);
    assert_eq!(http(port, "DELETE /status HTTP/1.0\r\n\r\n").0, 405);
    assert_eq!(http(port, "GET /nothing HTTP/1.0\r\n\r\n").0, 404);

    // A virtual server out of service leaves the desired table (IPVS, XDP), and comes back.
    let name = "[203.0.113.10]:tcp:80";
    let (code, body) = post(
        port,
        "/disable",
        &format!(r#"{{"virtual_server": "{name}"}}"#),
    );
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"message":"[203.0.113.10]:tcp:80 out of service"}"#)
    );
    let status = status_json(&socket);
    assert_eq!(status["virtual_servers"][0]["disabled"], true);
    assert_eq!(
        status["desired_services"].as_array().map(Vec::len),
        Some(0),
        "{status}"
    );
    let lbctl = run(
        LBCTL,
        &[
            "--control-socket",
            socket.to_str().expect("utf-8"),
            "enable",
            name,
        ],
    );
    assert_eq!(text(&lbctl.stdout), format!("{name} in service\n"));
    assert_eq!(
        status_json(&socket)["desired_services"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        post(port, "/disable", r#"{"virtual_server": "nothing"}"#).0,
        404
    );

    let (code, body) = http(port, "GET /openapi.json HTTP/1.0\r\n\r\n");
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(doc["openapi"], "3.0.3");
    for path in [
        "/status",
        "/metrics",
        "/drain",
        "/undrain",
        "/disable",
        "/enable",
        "/openapi.json",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} described");
    }
    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if k == "$ref" {
                        out.push(v.as_str().unwrap_or_default().to_owned());
                    }
                    refs(v, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 10, "{all:?}");
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .expect("a component reference");
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} resolves"
        );
    }
    // The served document is the one `lbd openapi` prints.
    let printed = run(LBD, &["openapi"]);
    let printed: serde_json::Value = serde_json::from_slice(&printed.stdout).expect("JSON");
    assert_eq!(printed, doc);
}
