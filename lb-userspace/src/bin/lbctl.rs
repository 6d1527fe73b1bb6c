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
        let counters: Vec<String> = x
            .counters
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name}={n}"))
            .collect();
        println!(
            "XDP counters: {}",
            if counters.is_empty() {
                "none yet".to_owned()
            } else {
                counters.join(" ")
            }
        );
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
    match cli.command {
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
