//! keepalived's signal dumps, in keepalived's forms, for the tooling that reads them: pure.
//!
//! - [`stats_text`]: what keepalived writes to `/tmp/keepalived.stats` on SIGUSR2, one block
//!   per VRRP instance (form checked against keepalived 2.2.7's own file).
//! - [`json`]: what it writes to `/tmp/keepalived.json` on its JSON signal (SIGRTMIN+2): an
//!   array with one `{"data": {...}, "stats": {...}}` object per instance, with keepalived's
//!   key names. `data` carries the keys lbd has a value for (it keeps no wall-clock time of
//!   the last transition and no SMTP alerts, so `last_transition` and `smtp_alert` are left
//!   out rather than made up).
//! - [`data_text`] and [`check_data_text`]: what keepalived's VRRP and checker processes
//!   write on SIGUSR1 (`/tmp/keepalived.data` and `/tmp/keepalived_check.data`): the global
//!   definitions, then the VRRP topology, or the LVS topology with every virtual and real
//!   server, in keepalived's line forms. The lines are those lbd has values for; keepalived's
//!   internals (socket pool, file descriptors, its own process tunables) are left out.

use std::fmt::Write as _;

use crate::{
    control::{Status, VrrpStatus},
    model::{Forwarding, Model, ServiceKey, VrrpInstance},
};

/// keepalived's name of a forwarding method in its dumps.
fn forwarding(f: Forwarding) -> &'static str {
    match f {
        Forwarding::Nat => "NAT",
        Forwarding::Dr => "DR",
        Forwarding::Tun(_) => "TUN",
    }
}

/// keepalived's `------< Global definitions >------` section, for what lbd has.
fn globals(out: &mut String, model: &Model) {
    let garp = model
        .vrrp_instances
        .first()
        .map(|i| i.garp)
        .unwrap_or_default();
    let router_id = model.router_id.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default()
    });
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "------< Global definitions >------\n Router ID = {router_id}\n LVS flush = {}\n \
         VRRP IPv4 mcast group = 224.0.0.18\n VRRP IPv6 mcast group = ff02::12\n \
         Gratuitous ARP delay = {}\n Gratuitous ARP repeat = {}\n Gratuitous ARP refresh timer = {}\n \
         Num adverts before down = 3\n Script security enabled\n umask = 0177\n",
        model.ipvs.flush_at_start,
        garp.delay.as_secs(),
        garp.repeat,
        garp.refresh.map_or(0, |r| r.as_secs()),
    );
}

/// keepalived's `keepalived.data` (its VRRP process's SIGUSR1 dump).
pub fn data_text(model: &Model, instances: &[VrrpStatus]) -> String {
    let mut out = String::new();
    globals(&mut out, model);
    out.push_str("------< VRRP Topology >------\n");
    for v in instances {
        let Some(spec) = model.vrrp_instances.iter().find(|s| s.name == v.name) else {
            continue;
        };
        let _ = write!(
            out,
            " VRRP Instance = {}\n   VRRP Version = {}\n   State = {}\n   Wantstate = {}\n",
            v.name, v.version, v.state, v.state
        );
        if let Some(active) = v.active_router.as_deref().filter(|_| v.state == "BACKUP") {
            // "ADDRESS priority N", as status shows it.
            let mut words = active.split_whitespace();
            if let Some(addr) = words.next() {
                let _ = writeln!(out, "   Master router = {addr}");
            }
            if let Some(priority) = words.nth(1) {
                let _ = writeln!(out, "   Master priority = {priority}");
            }
        }
        let _ = writeln!(out, "   Interface = {}", v.interface);
        if let Some(src) = spec.unicast_src {
            let _ = writeln!(out, "   Using src_ip = {src}");
        }
        if spec.unicast_peers.is_empty() {
            let group = if spec.addresses.first().is_some_and(|a| a.addr.is_ipv6()) {
                "ff02::12"
            } else {
                "224.0.0.18"
            };
            let _ = writeln!(out, "   Multicast address {group}");
        } else {
            out.push_str("   Unicast Peer :\n");
            for peer in &spec.unicast_peers {
                let _ = writeln!(out, "     {peer}");
            }
        }
        let interval = if v.version == 3 {
            format!("{} milli-sec", u32::from(spec.advert_int_cs) * 10)
        } else {
            format!("{} sec", spec.advert_int_cs / 100)
        };
        let _ = write!(
            out,
            "   Gratuitous ARP delay = {}\n   Gratuitous ARP repeat = {}\n   Gratuitous ARP refresh = {}\n   \
             Down timer adverts = 3\n   Virtual Router ID = {}\n   Priority = {}\n   Effective priority = {}\n   \
             Advert interval = {interval}\n   Preempt = {}\n",
            spec.garp.delay.as_secs(),
            spec.garp.repeat,
            spec.garp.refresh.map_or(0, |r| r.as_secs()),
            spec.vrid,
            spec.priority,
            v.priority,
            if spec.preempt { "enabled" } else { "disabled" },
        );
        if !spec.preempt_delay.is_zero() {
            let _ = writeln!(
                out,
                "   Preempt delay = {} secs",
                spec.preempt_delay.as_secs()
            );
        }
        let _ = writeln!(out, "   Virtual IP ({}):", spec.addresses.len());
        for a in &spec.addresses {
            let dev = a
                .dev
                .clone()
                .unwrap_or_else(|| v.vmac.clone().unwrap_or_else(|| spec.interface.clone()));
            let set = if v.state == "MASTER" { " set" } else { "" };
            let _ = writeln!(
                out,
                "     {}/{} dev {dev} scope global{set}",
                a.addr, a.prefix
            );
        }
        let _ = writeln!(
            out,
            "   Using smtp notification = no\n   Notify priority changes = {}",
            spec.notify_priority_changes
        );
    }
    out
}

/// keepalived's `keepalived_check.data` (its checker process's SIGUSR1 dump).
pub fn check_data_text(model: &Model, status: &Status) -> String {
    let mut out = String::new();
    globals(&mut out, model);
    if model.virtual_servers.is_empty() {
        return out;
    }
    out.push_str("------< LVS Topology >------\n");
    match status
        .dataplane
        .ipvs
        .as_ref()
        .and_then(|i| i.version.as_deref())
    {
        Some(version) => {
            let _ = writeln!(out, " System is compiled with LVS v{version}");
        }
        None => {
            let _ = writeln!(out, " No IPVS: data plane {}", status.dataplane.mode);
        }
    }
    for (vs, live) in model.virtual_servers.iter().zip(&status.virtual_servers) {
        out.push_str(" ------< Virtual server >------\n");
        match vs.services.first() {
            Some(ServiceKey::Fwmark { mark, .. }) => {
                let _ = writeln!(out, " VS FWMARK = {mark}");
            }
            Some(ServiceKey::Addr { addr, .. }) if vs.services.len() == 1 => {
                let _ = writeln!(out, " VS VIP = {}, VPORT = {}", addr.ip(), addr.port());
            }
            _ => {
                let _ = writeln!(out, " VS GROUP = {}", vs.name);
            }
        }
        let family = match vs.services.first() {
            Some(ServiceKey::Addr { addr, .. }) if addr.is_ipv6() => "inet6",
            _ => "inet",
        };
        // keepalived's virtual server keeps the timing its real servers' checkers inherit.
        let timing = vs
            .real_servers
            .iter()
            .flat_map(|r| r.checkers.first())
            .map(|c| c.timing)
            .next();
        let seconds = |d: std::time::Duration| format!("{:.6}", d.as_secs_f64());
        let _ = writeln!(out, "   Address family = {family}");
        if let Some(t) = timing {
            let _ = write!(
                out,
                "   connection timeout = {}\n   delay_loop = {}\n",
                seconds(t.timeout),
                seconds(t.delay_loop)
            );
        }
        let _ = write!(
            out,
            "   lvs_sched = {}\n   One packet scheduling = {}abled\n",
            vs.scheduler.name(),
            if vs.one_packet { "en" } else { "dis" }
        );
        if let Some(p) = &vs.persistence {
            let _ = writeln!(out, "   persistence timeout = {}", p.timeout);
        }
        let alpha = vs
            .real_servers
            .iter()
            .flat_map(|r| &r.checkers)
            .any(|c| c.alpha);
        let _ = write!(
            out,
            "   protocol = {}\n   alpha is {}\n   omega is {}\n   quorum = {}, hysteresis = {}\n",
            vs.protocol.name().to_uppercase(),
            if alpha { "ON" } else { "OFF" },
            if vs.omega { "ON" } else { "OFF" },
            vs.quorum,
            vs.hysteresis
        );
        if vs.ha_suspend {
            out.push_str("   Using HA suspend\n");
        }
        let _ = writeln!(
            out,
            "   Using smtp notification = no\n   default forwarding method = {}",
            forwarding(vs.forwarding)
        );
        if let Some(sorry) = &vs.sorry_server {
            let _ = write!(
                out,
                "   sorry server = {}\n     forwarding method = {}\n     Inhibit on failure is {}\n",
                crate::health::real_name(vs, sorry.addr),
                forwarding(sorry.forwarding),
                if sorry.inhibit { "ON" } else { "OFF" }
            );
        }
        let up = u8::from(live.quorum_up.unwrap_or(true));
        let _ = writeln!(out, "   alive = {up}\n   quorum_state_up = {up}");
        for (rs, now) in vs.real_servers.iter().zip(&live.real_servers) {
            let alive = now.alive.unwrap_or(true);
            let failed = now.checkers.iter().filter(|c| !c.up).count();
            let _ = write!(
                out,
                "   ------< Real server >------\n   RIP = {}, RPORT = {}, WEIGHT = {} EFF WEIGHT = {}\n   \
                 forwarding method = {}\n   Alpha is {}\n",
                rs.addr.ip(),
                rs.addr.port(),
                rs.weight.get(),
                now.weight,
                forwarding(rs.forwarding),
                if rs.checkers.iter().any(|c| c.alpha) {
                    "ON"
                } else {
                    "OFF"
                },
            );
            if let Some(c) = rs.checkers.first() {
                let _ = writeln!(out, "   connection timeout = {}", seconds(c.timing.timeout));
            }
            let _ = writeln!(
                out,
                "   connection limit range = {} -> {}",
                rs.lower_threshold, rs.upper_threshold
            );
            if let Some(c) = rs.checkers.first() {
                let _ = write!(
                    out,
                    "   Delay loop = {}\n   Retry count = {}\n   Retry delay = {}\n   Warmup = {}\n",
                    seconds(c.timing.delay_loop),
                    c.timing.retry,
                    seconds(c.timing.delay_before_retry),
                    seconds(c.timing.warmup)
                );
            }
            let _ = write!(
                out,
                "   Inhibit on failure is {}\n   Using smtp notification = no\n   initial weight = {}\n   \
                 effective weight = {}\n   alive = {}\n   num failed checkers = {failed}\n",
                if rs.inhibit_on_failure { "ON" } else { "OFF" },
                rs.weight.get(),
                now.weight,
                u8::from(alive),
            );
        }
    }
    out
}

/// keepalived's `/tmp/keepalived.stats`.
pub fn stats_text(instances: &[VrrpStatus]) -> String {
    let mut out = String::new();
    for v in instances {
        let c = &v.counters;
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            "VRRP Instance: {}\n  Advertisements:\n    Received: {}\n    Sent: {}\n  Became master: {}\n  Released master: {}\n  Packet Errors:\n    Length: {}\n    TTL: {}\n    Invalid Type: {}\n    Advertisement Interval: {}\n    Address List: {}\n  Authentication Errors:\n    Invalid Type: {}\n    Type Mismatch: {}\n    Failure: {}\n  Priority Zero:\n    Received: {}\n    Sent: {}\n",
            v.name,
            v.adverts_received,
            v.adverts_sent,
            v.became_active,
            c.released_master,
            c.length_errors,
            c.ttl_errors,
            c.invalid_type_errors,
            c.advert_interval_errors,
            c.address_list_errors,
            c.invalid_auth_type,
            c.auth_type_mismatch,
            c.auth_failures,
            v.priority_zero_received,
            v.priority_zero_sent,
        );
    }
    out
}

/// keepalived's state numbers: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT.
fn state_number(state: &str) -> u8 {
    match state {
        "BACKUP" => 1,
        "MASTER" => 2,
        "FAULT" => 3,
        _ => 0,
    }
}

/// keepalived's `/tmp/keepalived.json`; `specs` are the instances' configurations.
pub fn json(instances: &[VrrpStatus], specs: &[VrrpInstance]) -> String {
    let array: Vec<serde_json::Value> = instances
        .iter()
        .map(|v| {
            let spec = specs.iter().find(|s| s.name == v.name);
            let c = &v.counters;
            let state = state_number(&v.state);
            let mut data = serde_json::json!({
                "iname": v.name,
                "vmac_ifname": v.vmac.clone().unwrap_or_default(),
                "ifp_ifname": v.interface,
                "vrid": v.vrid,
                "base_priority": v.priority,
                "effective_priority": v.priority,
                "vipset": state == 2,
                "adver_int": f64::from(v.advert_int_cs) / 100.0,
                "master_adver_int": f64::from(v.advert_int_cs) / 100.0,
                "state": state,
                "wantstate": state,
                "version": v.version,
                "master_priority": v.kernel.as_ref().and_then(|k| k.priority).filter(|_| state == 1).unwrap_or(0),
            });
            if let (Some(spec), Some(map)) = (spec, data.as_object_mut()) {

                let vips: Vec<String> = spec
                    .addresses
                    .iter()
                    .map(|a| {
                        let dev = a.dev.clone().unwrap_or_else(|| spec.interface.clone());
                        let set = if state == 2 { " set" } else { "" };
                        format!("{}/{} dev {dev} scope global{set}", a.addr, a.prefix)
                    })
                    .collect();
                let extra = serde_json::json!({
                    "garp_delay": spec.garp.delay.as_secs(),
                    "garp_refresh": spec.garp.refresh.map_or(0, |d| d.as_secs()),
                    "garp_rep": spec.garp.repeat,
                    "nopreempt": !spec.preempt,
                    "preempt_delay": spec.preempt_delay.as_secs(),
                    "vips": vips,
                    "auth_type": u8::from(spec.auth_pass.is_some()),
                });
                if let Some(extra) = extra.as_object() {
                    map.extend(extra.clone());
                }
                // keepalived lists a notify script only when there is one.
                for (key, script) in [
                    ("script_backup", &spec.notify.backup),
                    ("script_master", &spec.notify.master),
                    ("script_fault", &spec.notify.fault),
                    ("script_stop", &spec.notify.stop),
                    ("script", &spec.notify.any),
                ] {
                    if let Some(script) = script {
                        map.insert(key.to_owned(), script.argv.join(" ").into());
                    }
                }
            }
            serde_json::json!({
                "data": data,
                "stats": {
                    "advert_rcvd": v.adverts_received,
                    "advert_sent": v.adverts_sent,
                    "become_master": v.became_active,
                    "release_master": c.released_master,
                    "packet_len_err": c.length_errors,
                    "advert_interval_err": c.advert_interval_errors,
                    "ip_ttl_err": c.ttl_errors,
                    "invalid_type_rcvd": c.invalid_type_errors,
                    "addr_list_err": c.address_list_errors,
                    "invalid_authtype": c.invalid_auth_type,
                    "authtype_mismatch": c.auth_type_mismatch,
                    "auth_failure": c.auth_failures,
                    "pri_zero_rcvd": v.priority_zero_received,
                    "pri_zero_sent": v.priority_zero_sent,
                }
            })
        })
        .collect();
    serde_json::Value::Array(array).to_string()
}
