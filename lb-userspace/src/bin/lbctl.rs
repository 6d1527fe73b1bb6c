//! `lbctl`: talks to a running lbd over its control socket.
#![expect(
    unused_crate_dependencies,
    reason = "the library's dependencies are the package's; cargo cannot scope them per target"
)]

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::bail;
use clap::{Parser, Subcommand};
use lbd::control::{self, DEFAULT_SOCKET, Request, Response, Status};

#[derive(Parser)]
#[command(name = "lbctl", version, about = "Control and inspect a running lbd")]
struct Cli {
    /// lbd's control socket.
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    control_socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The state of the data plane and of every virtual server.
    Status {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The Prometheus / OpenMetrics exposition, as `/metrics` serves it.
    Metrics,
    /// Drain a real server: weight 0 (no new connections), established connections kept.
    Drain {
        /// `ADDRESS:PORT`, or `ADDRESS` for every port.
        real_server: String,
        /// Only in this virtual server (its name as `lbctl status` shows it).
        #[arg(long)]
        virtual_server: Option<String>,
    },
    /// Undo `drain`.
    Undrain {
        /// `ADDRESS:PORT`, or `ADDRESS` for every port.
        real_server: String,
        /// Only in this virtual server.
        #[arg(long)]
        virtual_server: Option<String>,
    },
    /// Take a virtual server out of service: its services leave IPVS and XDP (its checks keep
    /// running).
    Disable {
        /// Its name, as `lbctl status` shows it.
        virtual_server: String,
    },
    /// Put a virtual server back in service.
    Enable {
        /// Its name, as `lbctl status` shows it.
        virtual_server: String,
    },
    /// Every VRRP instance in detail (or the one named).
    Vrrp {
        /// Only this instance.
        instance: Option<String>,
    },
    /// The counters: VRRP, checks, XDP, IPVS and the reconciler.
    Stats,
    /// A live view of state changes (VRRP states, real servers, quorum), one line each.
    Watch {
        /// How often to look, in seconds.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Stop after this many changes (default: run until interrupted).
        #[arg(long)]
        count: Option<usize>,
    },
    /// Re-read lbd's configuration and apply only what changed (as SIGHUP). An invalid file
    /// changes nothing and the errors are printed.
    Reload {
        /// Only print what would change.
        #[arg(long)]
        dry_run: bool,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration file, as `lbd check-config` (which it runs).
    CheckConfig {
        /// Arguments for `lbd check-config`: the file, and its options.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
}

fn print_reload(report: &control::ReloadReport) {
    let lines = report.plan.lines();
    if lines.is_empty() {
        println!("no change");
    }
    for line in &lines {
        println!("{line}");
    }
    if !report.applied {
        return;
    }
    if let Some(h) = &report.health {
        println!(
            "checks: {} kept, {} started, {} stopped; {} real servers kept their health",
            h.probes_kept, h.probes_started, h.probes_stopped, h.reals_kept
        );
    }
    println!(
        "VRRP: {} kept, {} changed in place, {} added, {} removed",
        report.vrrp_kept, report.vrrp_changed, report.vrrp_added, report.vrrp_removed
    );
    for restarted in &report.vrrp_restarted {
        println!("VRRP driver restarted: {restarted}");
    }
    println!(
        "data plane: {} operations; applied in {:.1} ms",
        report.dataplane_operations,
        report.took_us as f64 / 1000.0
    );
}

fn status(socket: &std::path::Path) -> anyhow::Result<Status> {
    match control::call(socket, &Request::Status, Duration::from_secs(5))? {
        Response::Status(status) => Ok(*status),
        Response::Error { message } => bail!("lbd: {message}"),
        other => bail!("lbd answered a status request with {other:?}"),
    }
}

fn print_vrrp(s: &Status, only: Option<&str>) -> anyhow::Result<()> {
    let instances: Vec<_> = s
        .vrrp
        .iter()
        .filter(|v| only.is_none_or(|n| n == v.name))
        .collect();
    if instances.is_empty() {
        match only {
            Some(name) => bail!("no VRRP instance {name}"),
            None => println!("no VRRP instance"),
        }
    }
    for v in instances {
        println!(
            "{}  {} on {}  VRID {}  VRRPv{}",
            v.name, v.state, v.interface, v.vrid, v.version
        );
        println!(
            "  priority {}  advert interval {} ms",
            v.priority,
            u32::from(v.advert_int_cs) * 10
        );
        if let Some(active) = &v.active_router {
            println!("  active router {active}");
        }
        println!("  virtual addresses {}", v.addresses.join(" "));
        if let Some(vmac) = &v.vmac {
            println!("  VMAC {vmac}");
        }
        match &v.kernel {
            Some(k) => println!(
                "  kernel record: {} adverts, latest {} from {} priority {}; {} takeovers on the kernel's timer",
                k.adverts,
                k.last_us_ago.map_or("-".to_owned(), |us| format!(
                    "{:.1} ms ago",
                    us as f64 / 1000.0
                )),
                k.sender.as_deref().unwrap_or("-"),
                k.priority.map_or("-".to_owned(), |p| p.to_string()),
                v.kernel_takeovers
            ),
            None => println!("  kernel record: none (user space only)"),
        }
        println!(
            "  became master {}  released master {}  adverts received {}  sent {}  priority-0 received {}  sent {}  errors {}",
            v.became_active,
            v.counters.released_master,
            v.adverts_received,
            v.adverts_sent,
            v.priority_zero_received,
            v.priority_zero_sent,
            v.errors
        );
    }
    Ok(())
}

fn print_stats(s: &Status) {
    for v in &s.vrrp {
        println!(
            "vrrp {:<16} rx {:>10} tx {:>10} errors {:>6} became master {:>4} released {:>4}",
            v.name,
            v.adverts_received,
            v.adverts_sent,
            v.errors,
            v.became_active,
            v.counters.released_master
        );
    }
    for vs in &s.virtual_servers {
        for rs in &vs.real_servers {
            let (probes, failures) = rs
                .checkers
                .iter()
                .fold((0, 0), |(p, f), c| (p + c.probes, f + c.failures));
            let xdp = rs.xdp_packets.map_or(String::new(), |p| {
                format!(" xdp packets {p} bytes {}", rs.xdp_bytes.unwrap_or(0))
            });
            println!(
                "check {} {:<22} probes {:>8} failures {:>6}{xdp}",
                vs.name, rs.address, probes, failures
            );
        }
        if let (Some(p), Some(b)) = (vs.xdp_packets, vs.xdp_bytes) {
            println!("xdp vip {} packets {p} bytes {b}", vs.name);
        }
    }
    if let Some(x) = &s.dataplane.xdp {
        println!("xdp {}", nonzero(&x.counters));
    }
    for svc in &s.ipvs_services {
        println!(
            "ipvs {} conns {} packets in {} out {} bytes in {} out {}",
            svc.service,
            svc.stats.conns,
            svc.stats.inpkts,
            svc.stats.outpkts,
            svc.stats.inbytes,
            svc.stats.outbytes
        );
        for d in &svc.real_servers {
            println!(
                "ipvs {} -> {} active {} inactive {} conns {} packets in {}",
                svc.service,
                d.address,
                d.active_conns,
                d.inactive_conns,
                d.stats.conns,
                d.stats.inpkts
            );
        }
    }
    if let Some(r) = &s.reconciler {
        println!(
            "reconciler {} passes {} operations {} errors {}",
            r.backend, r.passes, r.applied, r.errors
        );
    }
}

/// What `watch` compares: every state a person wants to see change.
fn watched(s: &Status) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    for v in &s.vrrp {
        m.insert(format!("vrrp {}", v.name), v.state.clone());
    }
    for vs in &s.virtual_servers {
        if let Some(q) = vs.quorum_up {
            m.insert(
                format!("virtual server {}", vs.name),
                if q { "quorum up" } else { "quorum down" }.to_owned(),
            );
        }
        for rs in &vs.real_servers {
            let state = match (rs.alive, rs.drained) {
                (Some(true), true) => "UP (drained)",
                (Some(true), false) => "UP",
                (Some(false), _) => "DOWN",
                (None, _) => "-",
            };
            m.insert(
                format!("real server {} {}", vs.name, rs.address),
                format!("{state} weight {}", rs.weight),
            );
        }
    }
    m.insert("data plane".to_owned(), s.dataplane.mode.clone());
    m
}

fn watch(socket: &std::path::Path, interval: f64, count: Option<usize>) -> anyhow::Result<()> {
    let every = Duration::from_secs_f64(interval.max(0.05));
    let mut before = watched(&status(socket)?);
    for (what, state) in &before {
        println!("{} {what}: {state}", stamp());
    }
    let mut changes = 0;
    loop {
        std::thread::sleep(every);
        let now = watched(&status(socket)?);
        for (what, state) in &now {
            if before.get(what) != Some(state) {
                println!(
                    "{} {what}: {} -> {state}",
                    stamp(),
                    before.get(what).map_or("-", String::as_str)
                );
                changes += 1;
            }
        }
        for what in before.keys().filter(|k| !now.contains_key(*k)) {
            println!("{} {what}: gone", stamp());
            changes += 1;
        }
        if count.is_some_and(|c| changes >= c) {
            return Ok(());
        }
        before = now;
    }
}

/// Wall-clock time of day, UTC, for watch lines.
#[expect(
    clippy::disallowed_methods,
    reason = "lbctl is an edge: a person reads when each change was seen"
)]
fn stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let day = secs % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day / 3_600_000,
        day / 60_000 % 60,
        day / 1000 % 60,
        day % 1000
    )
}

/// The counters that are not zero, as `name=value` words.
fn nonzero(counters: &[(String, u64)]) -> String {
    counters
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_status(s: &Status) {
    let dp = &s.dataplane;
    println!(
        "lbd {}  pid {}  up {}s  config {}",
        s.version, s.pid, s.uptime_secs, s.config
    );
    let mut line = format!("data plane: {}", dp.mode);
    if dp.mode != dp.configured_mode {
        line.push_str(&format!(" (configured {}, fell back)", dp.configured_mode));
    }
    if let Some(x) = &dp.xdp {
        line.push_str(&format!(", XDP {} on {}", x.attach_mode, x.interface));
    }
    line.push_str(&format!(", BPF object {}", dp.bpf_object));
    println!("{line}");
    if let Some(e) = &dp.xdp_error {
        println!("XDP error: {e}");
    }
    if let Some(ipvs) = &dp.ipvs {
        println!("IPVS: {}", ipvs.detail);
    }
    if let Some(x) = &dp.xdp {
        let counters = nonzero(&x.counters);
        let counters = if counters.is_empty() {
            "none yet"
        } else {
            counters.as_str()
        };
        println!("XDP counters: {counters}");
    }
    if !s.vrrp.is_empty() {
        println!();
        println!(
            "{:<16} {:<10} {:>4} {:>2} {:<7} {:>4} {:>7} {:<28} {:>9} {:>9} {:>6}",
            "VRRP INSTANCE",
            "INTERFACE",
            "VRID",
            "V",
            "STATE",
            "PRIO",
            "INT(cs)",
            "ADDRESSES",
            "RECEIVED",
            "SENT",
            "ERRORS"
        );
        for v in &s.vrrp {
            println!(
                "{:<16} {:<10} {:>4} {:>2} {:<7} {:>4} {:>7} {:<28} {:>9} {:>9} {:>6}",
                v.name,
                v.interface,
                v.vrid,
                v.version,
                v.state,
                v.priority,
                v.advert_int_cs,
                v.addresses.join(","),
                v.adverts_received,
                v.adverts_sent,
                v.errors
            );
            if let Some(active) = &v.active_router {
                println!("  active router: {active}");
            }
        }
    }
    println!();
    println!(
        "{:<28} {:<5} {:<6} {:<4} {:>5} {:>12} {:>14}",
        "VIRTUAL SERVER", "PROTO", "SCHED", "FWD", "REALS", "XDP PACKETS", "XDP BYTES"
    );
    for vs in &s.virtual_servers {
        let num = |n: Option<u64>| n.map_or("-".to_owned(), |n| n.to_string());
        println!(
            "{:<28} {:<5} {:<6} {:<4} {:>5} {:>12} {:>14}",
            vs.name,
            vs.protocol,
            vs.scheduler,
            vs.forwarding,
            vs.real_servers.len(),
            num(vs.xdp_packets),
            num(vs.xdp_bytes)
        );
        if vs.quorum_up == Some(false) {
            println!("  (quorum lost)");
        }
        for rs in &vs.real_servers {
            let health = match rs.alive {
                Some(true) => "UP",
                Some(false) => "DOWN",
                None => "-",
            };
            let forwarded = match (rs.xdp_packets, rs.xdp_bytes) {
                (Some(p), Some(b)) => format!("  XDP {p} packets, {b} bytes"),
                _ => String::new(),
            };
            let drained = if rs.drained { "  DRAINED" } else { "" };
            println!(
                "  -> {:<24} {:<4} weight {}{drained}{forwarded}",
                rs.address, health, rs.weight
            );
            for c in &rs.checkers {
                let latency = c
                    .last_latency_us
                    .map_or("-".to_owned(), |us| format!("{:.1} ms", us as f64 / 1000.0));
                println!(
                    "       {:<10} {:<4} {:>9}  {}",
                    c.kind,
                    if c.up { "up" } else { "down" },
                    latency,
                    c.last_detail
                );
            }
        }
    }
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let draining = matches!(cli.command, Command::Drain { .. });
    let disabling = matches!(cli.command, Command::Disable { .. });
    match cli.command {
        Command::Vrrp { instance } => {
            print_vrrp(&status(&cli.control_socket)?, instance.as_deref())?
        }
        Command::Stats => print_stats(&status(&cli.control_socket)?),
        Command::Disable { virtual_server } | Command::Enable { virtual_server } => {
            let request = if disabling {
                Request::Disable { virtual_server }
            } else {
                Request::Enable { virtual_server }
            };
            match control::call(&cli.control_socket, &request, Duration::from_secs(5))? {
                Response::Done { message } => println!("{message}"),
                Response::Error { message } => bail!("lbd: {message}"),
                other => bail!("lbd answered with {other:?}"),
            }
        }
        Command::Watch { interval, count } => watch(&cli.control_socket, interval, count)?,
        Command::Reload { dry_run, json } => {
            let request = Request::Reload {
                dry_run,
                config: None,
            };
            // A reload waits for the data plane; a big one takes seconds.
            match control::call(&cli.control_socket, &request, Duration::from_secs(60))? {
                Response::Reloaded(report) if json => {
                    println!("{}", serde_json::to_string_pretty(&report)?)
                }
                Response::Reloaded(report) => print_reload(&report),
                Response::Error { message } => bail!("lbd: {message}"),
                other => bail!("lbd answered with {other:?}"),
            }
        }
        Command::CheckConfig { args } => {
            // lbd's own check, from the lbd next to lbctl, else from PATH.
            let lbd = std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("lbd")))
                .filter(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from("lbd"));
            let status = std::process::Command::new(&lbd)
                .arg("check-config")
                .args(&args)
                .status()
                .map_err(|e| anyhow::anyhow!("running {}: {e}", lbd.display()))?;
            return Ok(if status.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Status { json } => {
            match control::call(
                &cli.control_socket,
                &Request::Status,
                Duration::from_secs(5),
            )? {
                Response::Status(status) if json => {
                    println!("{}", serde_json::to_string_pretty(&status)?)
                }
                Response::Status(status) => print_status(&status),
                Response::Error { message } => bail!("lbd: {message}"),
                other => bail!("lbd answered a status request with {other:?}"),
            }
        }
        Command::Drain {
            real_server,
            virtual_server,
        }
        | Command::Undrain {
            real_server,
            virtual_server,
        } => {
            let request = if draining {
                Request::Drain {
                    real_server,
                    virtual_server,
                }
            } else {
                Request::Undrain {
                    real_server,
                    virtual_server,
                }
            };
            match control::call(&cli.control_socket, &request, Duration::from_secs(5))? {
                Response::Drained { real_servers } => {
                    let word = if draining { "drained" } else { "undrained" };
                    for rs in real_servers {
                        println!("{word} {rs}");
                    }
                }
                Response::Error { message } => bail!("lbd: {message}"),
                other => bail!("lbd answered a drain request with {other:?}"),
            }
        }
        Command::Metrics => {
            match control::call(
                &cli.control_socket,
                &Request::Metrics,
                Duration::from_secs(5),
            )? {
                Response::Metrics { text } => print!("{text}"),
                Response::Error { message } => bail!("lbd: {message}"),
                other => bail!("lbd answered a metrics request with {other:?}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
