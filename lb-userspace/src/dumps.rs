//! keepalived's signal dumps, in keepalived's forms, for the tooling that reads them: pure.
//!
//! - [`stats_text`]: what keepalived writes to `/tmp/keepalived.stats` on SIGUSR2, one block
//!   per VRRP instance (form checked against keepalived 2.2.7's own file).
//! - [`json`]: what it writes to `/tmp/keepalived.json` on its JSON signal (SIGRTMIN+2): an
//!   array with one `{"data": {...}, "stats": {...}}` object per instance, with keepalived's
//!   key names. `data` carries the keys lbd has a value for (it keeps no wall-clock time of
//!   the last transition and no SMTP alerts, so `last_transition` and `smtp_alert` are left
//!   out rather than made up).

use std::fmt::Write as _;

use crate::{control::VrrpStatus, model::VrrpInstance};

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
