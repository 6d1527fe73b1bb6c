//! `cargo xtask bench xdp`: the XDP program per packet through BPF_PROG_TEST_RUN against a
//! floor program (swap MACs, XDP_TX), and the cost of writing Maglev tables.
//!
//! Per packet: the kernel times each BPF_PROG_TEST_RUN call; a path that grows the frame
//! (encapsulation) cannot be repeated inside one call (the kernel runs the repetitions on the
//! same buffer, so the second would see the outer header), so every path is timed the same
//! way, one repetition per call, `--calls` calls a round, median of `--rounds` rounds, for
//! lbd's program and for the floor alike. Paths that leave the frame's length alone are also
//! timed with `--repeat` repetitions in one call (no per-call timer overhead).
//!
//! `--only WORD` times only the paths whose name holds WORD (to profile one).
//!
//! Map updates: one real server leaving a 100-real-server VIP (Maglev table computed, changed
//! slots written through the memory-mapped table), and full tables for 512 VIPs.
//!
//! Forwarding (`--pps-secs S`, 0 to skip; `--pps-rounds R`; `--xdp-attach generic|native`):
//! trafgen in a namespace sends 64-byte UDP frames of many flows from both cores through a
//! director namespace to three real servers; packets per second reaching them with the
//! kernel's plain forwarding, nftables DNAT and lbd's XDP program, in interleaved rounds, with
//! the CPU shares (`--pps-only forwarding,dnat,xdp` to run some). Generic XDP by default: on
//! a veth fed by a packet socket, native XDP copies every frame as generic XDP does and adds
//! the veth's NAPI hand-offs (measured: 0.64 Mpps against generic's 0.70-0.74).

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    process::ExitCode,
    time::{Duration, Instant},
};

use lb_common::{RealInfo, VIP_F_ENCAP, VipInfo};
use lb_tests::packet::{ETH_P_IP, ETH_P_IPV6, TCP_ACK, TCP_SYN, ethernet, ipv4, ipv6, tcp, udp};
use lbd::{
    dataplane::{
        maglev::{self, Endpoint},
        xdp::{Capacity, XdpDataplane, XdpMaps, vip_key},
    },
    model::Protocol,
    reconcile::xdp::settings,
};

use super::{arg, arg_str, median};

const VIP4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const CLIENT4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// Frames "arrive" on loopback, and the real servers are reached through it: XDP_TX.
const INGRESS: u32 = 1;
const REALS: u32 = 100;

fn real(i: u32) -> (std::net::IpAddr, RealInfo) {
    let v4 = Ipv4Addr::new(198, 51, 100, 0).to_bits() + i;
    let addr = Ipv4Addr::from_bits(v4);
    let info = RealInfo {
        addr: addr.to_ipv6_mapped().octets(),
        mac: [0x02, 0, 0, 0, (i >> 8) as u8, i as u8],
        src_mac: [0x02, 0, 0, 0, 0, 0xee],
        ifindex: INGRESS,
        family: 4,
        _pad: [0; 3],
    };
    (addr.into(), info)
}

fn endpoints(count: u32) -> Vec<Endpoint> {
    (1..=count)
        .map(|id| Endpoint {
            id,
            weight: 1,
            hash: maglev::endpoint_hash(real(id).0),
        })
        .collect()
}

/// 512 VIPs (Katran's capacity) of 100 real servers each; the benchmarked ones among them.
fn fill(maps: &mut XdpMaps) {
    maps.set_settings(&settings(
        1500,
        Some((Ipv4Addr::new(198, 51, 100, 0), 24)),
        None,
    ))
    .expect("settings");
    for id in 1..=REALS {
        maps.set_real(id, &real(id).1).expect("real server");
    }
    let v6real = RealInfo {
        addr: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x101).octets(),
        family: 6,
        ..real(REALS + 1).1
    };
    maps.set_real(REALS + 1, &v6real).expect("IPv6 real server");
    let table = maglev::table(&endpoints(REALS), maps.capacity().ring_size);
    let mut vips = vec![
        (vip_key(VIP4.into(), 80, Protocol::Tcp), 0),
        (vip_key(VIP4.into(), 53, Protocol::Udp), VIP_F_ENCAP),
    ];
    vips.extend((0..509u16).map(|i| {
        (
            vip_key(
                Ipv4Addr::new(198, 51, 100, (i % 250) as u8).into(),
                1000 + i,
                Protocol::Udp,
            ),
            0,
        )
    }));
    for (index, (key, flags)) in vips.iter().enumerate() {
        let index = index as u32;
        maps.set_vip(
            key,
            VipInfo {
                index,
                flags: *flags,
            },
        )
        .expect("VIP");
        maglev::write_delta(maps.ring_mut(index), &table);
    }
    let v6 = 511;
    maps.set_vip(
        &vip_key(VIP6.into(), 443, Protocol::Tcp),
        VipInfo {
            index: v6,
            flags: VIP_F_ENCAP,
        },
    )
    .expect("IPv6 VIP");
    maps.ring_mut(v6).fill(REALS + 1);
}

/// Mean kernel ns per packet over `calls` calls of one repetition each, call `i` on
/// `frame(first + i)` (the kernel times the program alone, not the frame's making).
fn per_call(
    xdp: &XdpDataplane,
    prog: &'static str,
    frame: &dyn Fn(u32) -> Vec<u8>,
    first: u32,
    calls: u32,
) -> f64 {
    let total: Duration = (first..first + calls)
        .map(|i| {
            xdp.test_run(prog, &frame(i), INGRESS, 1)
                .expect("BPF_PROG_TEST_RUN")
                .duration
        })
        .sum();
    total.as_nanos() as f64 / f64::from(calls)
}

/// The frame of each call of a path.
type Frames = Box<dyn Fn(u32) -> Vec<u8>>;

/// A client port and address for flow `i`: every call of a new-flow path is a new 5-tuple.
fn client_port(i: u32) -> (u16, u32) {
    ((1024 + i % 64_000) as u16, i / 64_000)
}

pub(crate) fn bench_xdp(args: &[String]) -> ExitCode {
    lb_tests::require_root();
    let calls = arg(args, "--calls", 200_000);
    let repeat = arg(args, "--repeat", 1_000_000);
    let rounds = arg(args, "--rounds", 5);
    let mut xdp = XdpDataplane::load(lb_tests::bpf_object(), Capacity::default())
        .expect("loading the XDP program");
    let mut maps = xdp.take_maps().expect("maps");
    fill(&mut maps);
    let syn = |i: u32| {
        let (port, host) = client_port(i);
        let client = Ipv4Addr::from_bits(CLIENT4.to_bits() + host);
        ethernet(
            ETH_P_IP,
            None,
            &ipv4(6, client, VIP4, &[], 0, &tcp(port, 80, TCP_SYN)),
        )
    };
    let ack = ethernet(
        ETH_P_IP,
        None,
        &ipv4(6, CLIENT4, VIP4, &[], 0, &tcp(40000, 80, TCP_ACK)),
    );
    let query = ethernet(
        ETH_P_IP,
        None,
        &ipv4(17, CLIENT4, VIP4, &[], 0, &udp(40001, 53, &[0; 18])),
    );
    let syn6 = |i: u32| {
        let (port, host) = client_port(i);
        let client = Ipv6Addr::from_bits(CLIENT6.to_bits() + u128::from(host));
        ethernet(
            ETH_P_IPV6,
            None,
            &ipv6(6, client, VIP6, &tcp(port, 443, TCP_SYN)),
        )
    };
    let ack6 = ethernet(
        ETH_P_IPV6,
        None,
        &ipv6(6, CLIENT6, VIP6, &tcp(40000, 443, TCP_ACK)),
    );
    let other = ethernet(
        ETH_P_IP,
        None,
        &ipv4(6, CLIENT4, CLIENT4, &[], 0, &tcp(40000, 22, TCP_SYN)),
    );
    // Seed the connection table for the established paths.
    for f in [&ack, &query, &ack6] {
        xdp.test_run(lb_common::PROG_XDP, f, INGRESS, 1)
            .expect("seed");
    }
    // New flows: a new 5-tuple each call (each a connection-table insert; the table fills
    // and evicts over the rounds, as a busy director's does). Repeated in one call, the same
    // SYN is a retransmission.
    let same = |frame: &Vec<u8>| {
        let frame = frame.clone();
        Box::new(move |_: u32| frame.clone()) as Frames
    };
    let paths: [(&str, Frames, bool); 6] = [
        ("new TCP flow (SYN) to a DR VIP", Box::new(syn), true),
        ("established TCP flow to a DR VIP", same(&ack), true),
        ("established UDP flow, IPIP", same(&query), false),
        ("new IPv6 TCP flow, IP6IP6", Box::new(syn6), false),
        ("established IPv6 TCP flow, IP6IP6", same(&ack6), false),
        ("TCP, not a VIP (two lookups, pass)", same(&other), true),
    ];
    println!(
        "BPF_PROG_TEST_RUN, kernel ns/packet, median of {rounds} rounds; floor = swap MACs + XDP_TX"
    );
    println!("512 VIPs x 65,537-slot Maglev tables, 100 real servers");
    println!(
        "{:<38} {:>9} {:>9} {:>6} | {:>9} {:>9} {:>6}",
        "path", "lb_xdp", "floor", "ratio", "lb_xdp", "floor", "ratio"
    );
    println!(
        "{:<38} {:>26} | {:>26}",
        "",
        format!("1 repetition x {calls} calls"),
        format!("{repeat} repetitions in 1 call")
    );
    let mut worst: f64 = 0.0;
    // `--only WORD`: the paths whose name holds WORD (to profile one path).
    let only = arg_str(args, "--only");
    for (name, frame, repeatable) in paths {
        if only.is_some_and(|word| !name.contains(word)) {
            continue;
        }
        let (mut ours, mut floor, mut ours_r, mut floor_r) = (vec![], vec![], vec![], vec![]);
        for round in 0..rounds {
            let first = round * calls;
            ours.push(per_call(&xdp, lb_common::PROG_XDP, &frame, first, calls));
            floor.push(per_call(
                &xdp,
                lb_common::PROG_XDP_FLOOR,
                &frame,
                first,
                calls,
            ));
            if repeatable {
                let frame = frame(0);
                let run = |p| {
                    xdp.test_run(p, &frame, INGRESS, repeat)
                        .expect("BPF_PROG_TEST_RUN")
                        .duration
                        .as_nanos() as f64
                };
                ours_r.push(run(lb_common::PROG_XDP));
                floor_r.push(run(lb_common::PROG_XDP_FLOOR));
            }
        }
        let (ours, floor) = (median(ours), median(floor));
        worst = worst.max(ours / floor);
        let repeated = if repeatable {
            let (o, f) = (median(ours_r), median(floor_r));
            format!("{o:>9.1} {f:>9.1} {:>6.2}", o / f)
        } else {
            format!("{:>26}", "(grows the frame)")
        };
        println!(
            "{name:<38} {ours:>9.1} {floor:>9.1} {:>6.2} | {repeated}",
            ours / floor
        );
    }
    println!("worst ratio, per call: {worst:.2} (goal: every VIP path within 2 x the floor)");
    println!(
        "(new flows: a new 5-tuple each call; repeated in one call, the same SYN again: a retransmission)"
    );

    // Map updates.
    let ring_size = maps.capacity().ring_size;
    let all = endpoints(REALS);
    let mut compute = Vec::new();
    let mut write = Vec::new();
    let mut changed = 0;
    for round in 0..rounds.max(3) {
        // Alternately one real server leaves and comes back.
        let set = if round % 2 == 0 { &all[1..] } else { &all[..] };
        let t = Instant::now();
        let table = maglev::table(set, ring_size);
        compute.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        changed = maglev::write_delta(maps.ring_mut(0), &table);
        write.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (compute, write) = (median(compute), median(write));
    // The alternative to the memory mapping: one bpf_map_update_elem an element (two slots)
    // that changed.
    let mut by_syscall = maps
        .rings_by_syscall()
        .expect("a second handle on the tables");
    let before = maglev::table(&all, ring_size);
    let after = maglev::table(&all[1..], ring_size);
    // VIP 0's table starts at element 0; element e holds slots 2e and 2e + 1.
    let pair = |table: &[u32], element: usize| {
        let slot = |s: usize| u64::from(table.get(s).copied().unwrap_or(0));
        slot(2 * element) | slot(2 * element + 1) << 32
    };
    let elements = after.len().div_ceil(2);
    let changed_elements: Vec<(u32, u64)> = (0..elements)
        .filter(|&e| pair(&before, e) != pair(&after, e))
        .map(|e| (e as u32, pair(&after, e)))
        .collect();
    let changed_slots = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    let mut syscall_delta = Vec::new();
    for _ in 0..rounds.max(3) {
        let t = Instant::now();
        for &(element, value) in &changed_elements {
            by_syscall
                .set(element, value, 0)
                .expect("bpf_map_update_elem");
        }
        syscall_delta.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let syscall_delta = median(syscall_delta);
    let t = Instant::now();
    for element in 0..elements {
        by_syscall
            .set(element as u32, pair(&after, element), 0)
            .expect("bpf_map_update_elem");
    }
    let syscall_full = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    maps.ring_mut(0).fill(0);
    maglev::write_delta(maps.ring_mut(0), &after);
    let mmap_full = t.elapsed().as_secs_f64() * 1e3;
    println!();
    println!("writing a table: memory mapping against bpf_map_update_elem per element (two slots)");
    println!(
        "  {changed_slots} changed slots ({} elements): mmap {write:.3} ms, system calls {syscall_delta:.3} ms; a full table of 65,537: mmap {mmap_full:.3} ms, system calls {syscall_full:.1} ms",
        changed_elements.len()
    );
    println!("one real server of 100 leaves a VIP (65,537 slots), median:");
    println!(
        "  Maglev table {compute:.3} ms + changed slots written {write:.3} ms = {:.3} ms ({changed} slots changed, {:.1} % ~ 1/N) (goal <= 1 ms)",
        compute + write,
        changed as f64 * 100.0 / f64::from(ring_size)
    );
    let t = Instant::now();
    let tables: Vec<Vec<u32>> = (0..512u32)
        .map(|vip| {
            // Each VIP its own set: 100 of the first 101 real servers.
            let set: Vec<Endpoint> = endpoints(REALS + 1)
                .into_iter()
                .filter(|e| e.id != 1 + vip % (REALS + 1))
                .collect();
            maglev::table(&set, ring_size)
        })
        .collect();
    let compute = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for (vip, table) in tables.iter().enumerate() {
        maglev::write_delta(maps.ring_mut(vip as u32), table);
    }
    let write = t.elapsed().as_secs_f64();
    println!(
        "512 full tables (100 real servers each): computed {:.0} ms, written {:.0} ms, total {:.0} ms (goal <= 1 s)",
        compute * 1e3,
        write * 1e3,
        (compute + write) * 1e3
    );
    drop(maps);
    drop(xdp);
    let secs = arg(args, "--pps-secs", 5);
    if secs > 0 {
        let attach = arg_str(args, "--xdp-attach").unwrap_or("generic");
        // `--pps-only MODE[,MODE]`: forwarding, dnat and/or xdp alone (to profile one).
        let modes = arg_str(args, "--pps-only").unwrap_or("forwarding,dnat,xdp");
        bench_forwarding(u64::from(secs), arg(args, "--pps-rounds", 3), attach, modes);
    }
    ExitCode::SUCCESS
}

/// The forwarding lab: `gen` (trafgen) -- `director` -- `servers` (three real servers'
/// addresses on one veth). Each mode is the same traffic to the same three real servers.
struct ForwardingLab {
    lab: lb_tests::lab::Lab,
    gen_ns: lb_tests::lab::Netns,
    director: lb_tests::lab::Netns,
    servers: lb_tests::lab::Netns,
    _health: lb_tests::lab::NamedServer,
}

const REAL_ADDRS: [&str; 3] = ["192.0.2.11", "192.0.2.12", "192.0.2.13"];

fn forwarding_lab() -> ForwardingLab {
    use lb_tests::lab::{Lab, sysctl};
    let mut lab = Lab::new();
    let gen_ns = lab.netns("gen");
    let director = lab.netns("director");
    let servers = lab.netns("servers");
    // A queue per core, as the director's NIC would have.
    let queues = std::thread::available_parallelism().map_or(1, usize::from);
    lab.veth_queues(&gen_ns, "g0", &director, "d0", queues);
    lab.veth_queues(&director, "d1", &servers, "s0", queues);
    gen_ns.ip(&["addr", "add", "198.51.100.2/24", "dev", "g0"]);
    director.ip(&["addr", "add", "198.51.100.1/24", "dev", "d0"]);
    director.ip(&["addr", "add", "192.0.2.1/24", "dev", "d1"]);
    for a in REAL_ADDRS {
        servers.ip(&["addr", "add", &format!("{a}/24"), "dev", "s0"]);
    }
    servers.ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.1"]);
    sysctl(&director, "net.ipv4.ip_forward", "1");
    // Native XDP_REDIRECT into d1 needs NAPI on its peer: GRO on s0 gives it.
    let gro = servers.run("ethtool", &["-K", "s0", "gro", "on"]);
    assert!(gro.status.success(), "ethtool -K s0 gro on");
    // The receivers count at s0 and drop at once, the same way in every mode.
    for rule in [
        "add table inet sink",
        "add chain inet sink pre { type filter hook prerouting priority -300; }",
        "add rule inet sink pre udp dport 9 drop",
    ] {
        let out = servers.run("nft", &rule.split(' ').collect::<Vec<_>>());
        assert!(
            out.status.success(),
            "nft {rule}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Health checks of lbd's real servers (TCP 80 on each address).
    let health = lb_tests::lab::NamedServer::start(&servers, "0.0.0.0:80", "rs");
    // Neighbours resolved before any traffic.
    for a in REAL_ADDRS {
        director.run("ping", &["-c", "1", "-W", "1", a]);
    }
    gen_ns.run("ping", &["-c", "1", "-W", "1", "198.51.100.1"]);
    ForwardingLab {
        lab,
        gen_ns,
        director,
        servers,
        _health: health,
    }
}

fn mac_of(ns: &lb_tests::lab::Netns, dev: &str) -> String {
    let out = ns.run("cat", &[&format!("/sys/class/net/{dev}/address")]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn rx_packets(ns: &lb_tests::lab::Netns) -> u64 {
    let out = ns.run("cat", &["/sys/class/net/s0/statistics/rx_packets"]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// A trafgen configuration: 64-byte UDP frames to port 9 from random source ports (many
/// flows); to the VIP, or to the three real servers in turn (`to_reals`).
fn trafgen_config(dst_mac: &str, src_mac: &str, to_reals: bool) -> String {
    let mac = |m: &str| {
        m.split(':')
            .map(|b| format!("0x{b}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let dst = if to_reals {
        "192, 0, 2, dinc(11, 13, 1)".to_owned()
    } else {
        "203, 0, 113, 10".to_owned()
    };
    format!(
        "{{\n  {}, {},\n  c16(0x0800),\n  0x45, 0x00, c16(46), c16(0), c16(0), 64, 17, csumip(14, 33),\n  198, 51, 100, 2, {dst},\n  drnd(2), c16(9), c16(26), c16(0),\n  fill(0x41, 18),\n}}\n",
        mac(dst_mac),
        mac(src_mac)
    )
}

/// CPU time (user + system) of `pid` and its children in clock ticks (trafgen sends from a
/// forked worker), and the machine's busy and softirq ticks.
fn cpu_ticks(pid: u32) -> (u64, u64, u64) {
    // Fields after the command: state, ppid, ... utime (12th), stime (13th).
    let stat_of = |path: std::path::PathBuf| -> Option<(u32, u64)> {
        let s = std::fs::read_to_string(path).ok()?;
        let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
        let ppid = fields.get(2)?.parse().ok()?;
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some((ppid, ticks))
    };
    let mut proc_ticks = stat_of(format!("/proc/{pid}/stat").into()).map_or(0, |(_, t)| t);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some((ppid, ticks)) = stat_of(entry.path().join("stat"))
            && ppid == pid
        {
            proc_ticks += ticks;
        }
    }
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq ...
    let busy = cpu.iter().sum::<u64>() - cpu.get(3).unwrap_or(&0) - cpu.get(4).unwrap_or(&0);
    (proc_ticks, busy, *cpu.get(6).unwrap_or(&0))
}

/// One forwarding run: packets per second reaching the real servers and CPU shares (% of one
/// core) of the generator (with what the kernel does in its context), of softirq work, and of
/// the whole machine.
#[derive(Clone, Copy, Debug)]
struct Run {
    pps: f64,
    sender: f64,
    softirq: f64,
    busy: f64,
}

/// Runs trafgen for `secs`.
fn measure(t: &mut ForwardingLab, config: &str, secs: u64) -> Run {
    let path = t.lab.dir().join("trafgen.cfg");
    std::fs::write(&path, config).expect("trafgen config");
    // trafgen sends from every core (one worker each): the sender shares the two cores with
    // the director and the receivers, whose work runs in the sending context on a veth.
    let mut cmd = t.gen_ns.command("trafgen");
    cmd.args(["--dev", "g0", "-q", "--conf"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(t.lab.dir().join("trafgen.log")).expect("trafgen log"));
    let pid = t.lab.spawn_group("trafgen", cmd);
    // Warm up (conntrack, the connection table, caches), then count.
    std::thread::sleep(Duration::from_secs(1));
    let rx0 = rx_packets(&t.servers);
    let (p0, b0, s0) = cpu_ticks(pid);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let rx1 = rx_packets(&t.servers);
    let (p1, b1, s1) = cpu_ticks(pid);
    let elapsed = start.elapsed().as_secs_f64();
    t.lab.stop(pid, "KILL");
    if rx1 == rx0 {
        eprintln!(
            "no packet reached the real servers; trafgen said: {}",
            std::fs::read_to_string(t.lab.dir().join("trafgen.log")).unwrap_or_default()
        );
    }
    // Clock ticks are 1/100 s (USER_HZ).
    let share = |ticks: u64| ticks as f64 / elapsed;
    Run {
        pps: (rx1 - rx0) as f64 / elapsed,
        sender: share(p1 - p0),
        softirq: share(s1 - s0),
        busy: share(b1 - b0),
    }
}

/// Packets per second through the director: kernel forwarding, nftables DNAT, and lbd's XDP
/// program (direct routing, attached in mode `attach`), `rounds` interleaved rounds of `secs`
/// seconds each; `modes` names the ones to run.
pub(crate) fn bench_forwarding(secs: u64, rounds: u32, attach: &str, modes: &str) {
    let runs = |mode: &str| modes.split(',').any(|m| m == mode);
    let mut t = forwarding_lab();
    let g0 = mac_of(&t.gen_ns, "g0");
    let d0 = mac_of(&t.director, "d0");
    let to_vip = trafgen_config(&d0, &g0, false);
    let to_reals = trafgen_config(&d0, &g0, true);
    let nft = |t: &ForwardingLab, rules: &[&str]| {
        for rule in rules {
            let out = t.director.run("nft", &rule.split(' ').collect::<Vec<_>>());
            assert!(
                out.status.success(),
                "nft {rule}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let config = t.lab.dir().join("lbd.toml");
    let reals = REAL_ADDRS
        .iter()
        .map(|a| format!("{{ address = \"{a}\", port = 9, TCP_CHECK = {{ connect_port = 80 }} }}"))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        &config,
        lb_tests::xdp_toml(
            "d0",
            attach,
            "",
            &format!(
                "[[virtual_server]]\naddress = \"203.0.113.10\"\nport = 9\nprotocol = \"udp\"\nforwarding = \"dr\"\nreal_server = [ {reals} ]\n"
            ),
        ),
    )
    .expect("lbd config");
    let socket = t.lab.dir().join("lbd.sock");
    let mut results: [Vec<Run>; 3] = Default::default();
    for _ in 0..rounds {
        // Kernel forwarding to the real servers' addresses.
        if runs("forwarding") {
            results[0].push(measure(&mut t, &to_reals, secs));
        }
        if runs("dnat") {
            // nftables DNAT of the VIP to the three real servers.
            nft(
                &t,
                &[
                    "add table ip lb",
                    "add chain ip lb pre { type nat hook prerouting priority dstnat; }",
                    "add rule ip lb pre ip daddr 203.0.113.10 udp dport 9 dnat to jhash ip saddr . udp sport mod 3 map { 0 : 192.0.2.11, 1 : 192.0.2.12, 2 : 192.0.2.13 }",
                ],
            );
            results[1].push(measure(&mut t, &to_vip, secs));
            nft(&t, &["delete table ip lb"]);
        }
        if !runs("xdp") {
            continue;
        }
        // lbd's XDP director.
        let mut lbd = t.director.command(lb_tests::workspace_bin("lbd"));
        lbd.args(["run", "--config"])
            .arg(&config)
            .arg("--control-socket")
            .arg(&socket)
            .stderr(std::process::Stdio::null());
        let pid = t.lab.spawn("lbd", lbd);
        lb_tests::lab::wait_for_path(&socket, Duration::from_secs(20));
        lb_tests::lab::wait_until("the VIP in XDP", Duration::from_secs(20), || {
            lb_tests::lbctl_status(&socket)["virtual_servers"][0]["xdp_packets"].is_u64()
        });
        let mode = lb_tests::lbctl_status(&socket)["dataplane"]["xdp"]["attach_mode"].clone();
        assert_eq!(mode, attach);
        results[2].push(measure(&mut t, &to_vip, secs));
        let status = lb_tests::lbctl_status(&socket);
        let counter = |name: &str| {
            status["dataplane"]["xdp"]["counters"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c[0] == name))
                .and_then(|c| c[1].as_u64())
                .unwrap_or(0)
        };
        println!(
            "  XDP run: {} forwarded, {} flows started, {} found in the connection table, {} passed",
            counter("forwarded_dr"),
            counter("flow_new"),
            counter("flow_hit"),
            counter("seen") - counter("forwarded_dr"),
        );
        t.lab.stop(pid, "TERM");
    }
    println!();
    println!(
        "forwarding through the director, 64-byte UDP, many flows, trafgen on both cores; median of {rounds} rounds of {secs} s"
    );
    println!(
        "{:<34} {:>10} {:>8} | {:>9} {:>9} {:>9}",
        "mode", "Mpps", "ratio", "trafgen%", "softirq%", "busy%/200"
    );
    let medians: Vec<Option<f64>> = results
        .iter()
        .map(|runs| (!runs.is_empty()).then(|| median(runs.iter().map(|r| r.pps).collect())))
        .collect();
    let xdp_name = format!("lbd XDP ({attach}, DR)");
    for (i, name) in [
        "kernel forwarding (baseline)",
        "nftables DNAT",
        xdp_name.as_str(),
    ]
    .iter()
    .enumerate()
    {
        let Some(pps) = medians[i] else {
            println!("{name:<34} {:>10}", "(not run)");
            continue;
        };
        let cpu = |f: fn(&Run) -> f64| median(results[i].iter().map(f).collect());
        let ratio = medians[1].map_or(f64::NAN, |dnat| pps / dnat);
        println!(
            "{name:<34} {:>10.3} {ratio:>8.2} | {:>9.0} {:>9.0} {:>9.0}",
            pps / 1e6,
            cpu(|r| r.sender),
            cpu(|r| r.softirq),
            cpu(|r| r.busy),
        );
    }
    if let [Some(forwarding), Some(dnat), Some(xdp)] = medians[..] {
        println!(
            "(ratio against nftables DNAT; goals: XDP >= 1.5 x DNAT ({:.2}) and >= kernel forwarding ({:.2}))",
            xdp / dnat,
            xdp / forwarding
        );
    }
}
