//! `cargo xtask bench config`: parsing at keepalived.conf's largest scale, and reloads.
//!
//! - Parse and validate the 65,024-instance configuration that the `~SEQ` example of
//!   keepalived.conf(5) generates (`~SEQ(IF,0,7) ~SEQ(NUM,0,31) ~SEQ(ID,1,254) $VI4`):
//!   `lbd check-config` against `keepalived -t` (its configuration test) on the same file, in
//!   the same run, wall time of each process.
//! - Reload a 300 x 100 real-server configuration (30,000 distinct TCP_CHECKs, served by
//!   wildcard listeners in a second namespace) with 10 VRRP instances, in which one real
//!   server's weight changed: lbd's report of the reload (from the request until the data
//!   plane has it), `lbctl reload` as a process, VRRP transitions, checker restarts and
//!   data-plane operations. The baseline is a reload of the unchanged file, in the same run.
//!   The data plane is `none`: the reconciler's recording backend counts the operations (the
//!   host kernel has no IPVS; `bench ipvs` times IPVS itself in the VM).
//!
//! Goals: the 65,024-instance file within 1 s; a one-line reload applied within 50 ms with no
//! VRRP transition, no checker restart, and data-plane operations for that real server only.

use std::{
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use lb_tests::lab::{Lab, wait_for_path, wait_until};

use crate::{arg, arg_str, median};

/// The `~SEQ` example of keepalived.conf(5), word for word but for the file's directory.
fn seq_example(dir: &std::path::Path) -> String {
    format!(
        r#"$VI4= \
    track_file offset_instance_4.${{IF}}.${{NUM}}.${{ID}} {{ \
        file "{dir}/679/track_files/4.${{IF}}.${{NUM}}.${{ID}}" \
        weight -100 \
    }} \
    vrrp_instance vrrp4.${{IF}}.${{NUM}}.${{ID}} {{ \
        interface bond${{IF}}.${{NUM}} \
        use_vmac vrrp4.${{IF}}.${{NUM}}.${{ID}} \
        virtual_router_id ${{ID}} \
        priority 130 \
        virtual_ipaddress {{ \
            10.${{IF}}.${{NUM}}.${{ID}}/24 \
        }} \
        track_file {{ \
            offset_instance_4.${{IF}}.${{NUM}}.${{ID}} \
        }} \
    }}

~SEQ(IF,0,7) ~SEQ(NUM,0,31) ~SEQ(ID,1,254) $VI4
"#,
        dir = dir.display()
    )
}

/// Wall time of `cmd` in seconds, and whether it succeeded.
fn timed(cmd: &mut Command) -> (f64, bool) {
    let started = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("starting the command");
    (started.elapsed().as_secs_f64(), status.success())
}

fn parse(rounds: u32) {
    let lab = Lab::new();
    let path = lab.dir().join("seq.conf");
    std::fs::write(&path, seq_example(lab.dir())).expect("writing the ~SEQ example");
    // The instance count, from lbd's own reading of the file.
    let out = Command::new(lb_tests::workspace_bin("lbd"))
        .arg("import-keepalived")
        .arg(&path)
        .output()
        .expect("lbd import-keepalived");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let instances = String::from_utf8_lossy(&out.stdout)
        .matches("[[vrrp_instance]]")
        .count();
    let lbd: Vec<f64> = (0..rounds)
        .map(|_| {
            let (secs, ok) = timed(
                Command::new(lb_tests::workspace_bin("lbd"))
                    .arg("check-config")
                    .arg(&path),
            );
            assert!(ok, "lbd check-config refused the ~SEQ example");
            secs
        })
        .collect();
    // keepalived parses it in one process too: one round, as it takes minutes at this size
    // (221 s when this was written).
    let keepalived: Vec<(f64, bool)> = (0..1)
        .map(|_| {
            timed(
                Command::new("timeout")
                    .arg(KEEPALIVED_TIMEOUT_SECS.to_string())
                    .args(["keepalived", "-t", "-l", "-f"])
                    .arg(&path),
            )
        })
        .collect();
    let lbd_median = median(lbd.clone());
    let ka_median = median(keepalived.iter().map(|(s, _)| *s).collect());
    // `timeout` stops it at 300 s: then its figure is a lower bound.
    let timed_out = ka_median >= KEEPALIVED_TIMEOUT_SECS - 0.5;
    println!("\n## Parse and validate the ~SEQ example ({instances} VRRP instances)\n");
    println!("| parser | median s | rounds | exit |");
    println!("| --- | --- | --- | --- |");
    println!("| lbd check-config | {lbd_median:.3} | {} | 0 |", lbd.len());
    println!(
        "| keepalived -t (2.2.7) | {}{ka_median:.3} | {} | {} |",
        if timed_out { "> " } else { "" },
        keepalived.len(),
        if timed_out {
            "stopped by the timeout"
        } else if keepalived.iter().all(|(_, ok)| *ok) {
            "0"
        } else {
            "non-zero (its own validation: missing interfaces)"
        }
    );
    println!(
        "\nlbd / keepalived: {}{:.4}. Goal: within 1 s: {} ({lbd_median:.3} s).",
        if timed_out { "< " } else { "" },
        lbd_median / ka_median,
        if lbd_median <= 1.0 { "met" } else { "MISSED" }
    );
}

/// How long `keepalived -t` may take on the ~SEQ example (221 s when this was written).
const KEEPALIVED_TIMEOUT_SECS: f64 = 300.0;

const SERVICES: u16 = 300;
const REALS: u8 = 100;
const INSTANCES: u8 = 10;

/// 300 virtual servers of 100 real servers each (distinct address and port: 30,000 probes),
/// and 10 VRRP instances; `weight` is the weight of real server 50 of virtual server 150, and
/// with `extra` that virtual server has a 101st real server.
fn reload_conf(weight: u32, extra: bool) -> String {
    let mut conf = String::new();
    for vrid in 1..=INSTANCES {
        conf.push_str(&format!(
            "vrrp_instance VI_{vrid} {{\n  interface d0\n  virtual_router_id {vrid}\n  priority 150\n  \
             advert_int 1\n  virtual_ipaddress {{\n    192.0.2.{}/24\n  }}\n}}\n",
            200 + u16::from(vrid)
        ));
    }
    for vs in 0..SERVICES {
        conf.push_str(&format!(
            "virtual_server 192.0.2.100 {} {{\n  lb_algo rr\n  lb_kind DR\n  protocol TCP\n",
            1000 + vs
        ));
        let last = if extra && vs == 150 { REALS + 1 } else { REALS };
        for real in 1..=last {
            let w = if vs == 150 && real == 50 { weight } else { 1 };
            conf.push_str(&format!(
                "  real_server 198.51.100.{real} {} {{\n    weight {w}\n    TCP_CHECK {{\n      connect_timeout 1\n      retry 0\n    }}\n  }}\n",
                10_000 + vs
            ));
        }
        conf.push_str("}\n");
    }
    conf
}

/// One `lbctl reload --json`: its report and the process's wall time.
fn reload_once(socket: &std::path::Path) -> (serde_json::Value, f64) {
    let started = Instant::now();
    let out = Command::new(lb_tests::workspace_bin("lbctl"))
        .arg("--control-socket")
        .arg(socket)
        .args(["reload", "--json"])
        .output()
        .expect("lbctl reload");
    let wall = started.elapsed().as_secs_f64() * 1000.0;
    assert!(
        out.status.success(),
        "lbctl reload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        serde_json::from_slice(&out.stdout).expect("reload report"),
        wall,
    )
}

fn transitions(socket: &std::path::Path) -> u64 {
    lb_tests::lbctl_status(socket)["vrrp"]
        .as_array()
        .expect("vrrp")
        .iter()
        .map(|v| v["became_active"].as_u64().unwrap_or(0))
        .sum()
}

fn reloads(rounds: u32) {
    // Wildcard listeners, one per port: every real server answers its TCP_CHECK.
    let crate::checks::Load { mut lab, director } = crate::checks::load_lab_with(SERVICES, 0);
    let dir = lab.dir().to_owned();
    let path = dir.join("lbd.conf");
    std::fs::write(&path, reload_conf(1, false)).expect("config");
    let socket = dir.join("lbd.sock");
    let mut cmd = director.command(lb_tests::workspace_bin("lbd"));
    cmd.arg("run")
        .arg("-f")
        .arg(&path)
        .args(["--dataplane", "none", "--control-socket"])
        .arg(&socket)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let pid = lab.spawn_group("lbd", cmd);
    wait_for_path(&socket, Duration::from_secs(60));
    wait_until("every instance master", Duration::from_secs(30), || {
        let s = lb_tests::lbctl_status(&socket);
        s["vrrp"].as_array().is_some_and(|v| {
            v.len() == usize::from(INSTANCES) && v.iter().all(|i| i["state"] == "MASTER")
        })
    });
    let probes = lb_tests::lbctl_status(&socket)["reconciler"]["probes"].clone();
    let transitions_before = transitions(&socket);
    let mut same = Vec::new();
    let mut changed = Vec::new();
    let mut added = Vec::new();
    let mut removed = Vec::new();
    let mut worst_ops = 0;
    let mut worst_restarts = 0;
    let mut worst_vrrp = 0;
    for round in 0..rounds {
        // The baseline: the unchanged file.
        let (report, wall) = reload_once(&socket);
        same.push((report["took_us"].as_f64().unwrap_or(0.0) / 1000.0, wall));
        // One line: real server 50 of virtual server 150 changes weight.
        let weight = 2 + round % 2;
        std::fs::write(&path, reload_conf(weight, false)).expect("config");
        let (report, wall) = reload_once(&socket);
        changed.push((report["took_us"].as_f64().unwrap_or(0.0) / 1000.0, wall));
        let restarts = report["health"]["probes_started"]
            .as_u64()
            .unwrap_or(u64::MAX)
            + report["health"]["probes_stopped"]
                .as_u64()
                .unwrap_or(u64::MAX);
        worst_restarts = worst_restarts.max(restarts);
        worst_ops = worst_ops.max(report["dataplane_operations"].as_u64().unwrap_or(u64::MAX));
        let vrrp = ["vrrp_changed", "vrrp_added", "vrrp_removed"]
            .iter()
            .map(|k| report[*k].as_u64().unwrap_or(u64::MAX))
            .sum::<u64>()
            + report["vrrp_restarted"]
                .as_array()
                .map_or(0, |a| a.len() as u64);
        worst_vrrp = worst_vrrp.max(vrrp);
        assert_eq!(
            report["plan"]["real_servers"]["changed"],
            serde_json::json!(["[192.0.2.100]:tcp:1150 / 198.51.100.50:10150"]),
            "{report}"
        );
        // A real server added, then removed: new probe numbers (no goal; reported).
        for (extra, list) in [(true, &mut added), (false, &mut removed)] {
            std::fs::write(&path, reload_conf(weight, extra)).expect("config");
            let (report, wall) = reload_once(&socket);
            list.push((report["took_us"].as_f64().unwrap_or(0.0) / 1000.0, wall));
        }
    }
    let transitions_after = transitions(&socket);
    lab.stop(pid, "TERM");
    let med = |v: &[(f64, f64)], i: usize| {
        median(v.iter().map(|p| if i == 0 { p.0 } else { p.1 }).collect())
    };
    let max = |v: &[(f64, f64)]| v.iter().map(|p| p.0).fold(0.0, f64::max);
    println!(
        "\n## Reload of 300 x 100 real servers (probes: {probes}), 10 VRRP instances, {rounds} rounds\n"
    );
    println!("| reload | applied, median ms | applied, max ms | lbctl reload process, median ms |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| unchanged file (baseline) | {:.1} | {:.1} | {:.1} |",
        med(&same, 0),
        max(&same),
        med(&same, 1)
    );
    for (name, list) in [
        ("one real server's weight", &changed),
        ("a real server added (no goal)", &added),
        ("that real server removed (no goal)", &removed),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            med(list, 0),
            max(list),
            med(list, 1)
        );
    }
    println!(
        "\none line / unchanged: {:.2}. Per one-line reload, at worst: {worst_ops} data-plane operations, \
         {worst_restarts} checker restarts, {worst_vrrp} VRRP instances touched; VRRP transitions over the \
         whole run: {}.",
        med(&changed, 0) / med(&same, 0),
        transitions_after - transitions_before
    );
    let met = med(&changed, 0) <= 50.0
        && worst_ops == 1
        && worst_restarts == 0
        && worst_vrrp == 0
        && transitions_after == transitions_before;
    println!(
        "Goal: within 50 ms, no transition, no checker restart, one operation: {}",
        if met { "met" } else { "MISSED" }
    );
}

pub(crate) fn bench_config(args: &[String]) -> ExitCode {
    lb_tests::require_root();
    let rounds = arg(args, "--rounds", 10);
    let only: Vec<&str> = arg_str(args, "--only")
        .unwrap_or("parse,reload")
        .split(',')
        .collect();
    if only.contains(&"parse") {
        parse(rounds);
    }
    if only.contains(&"reload") {
        reloads(rounds);
    }
    ExitCode::SUCCESS
}
