//! `lbd import-keepalived`: a keepalived.conf's tree as lbd's TOML, which loads to the same
//! model. Pure: a [`Spec`] in, TOML text out.
//!
//! The VRRP parts map to lbd's typed TOML keys (keepalived's names); the LVS statements map
//! back the way [`super::toml`] reads them: a statement's arguments become a scalar or an array,
//! its block a table, repeated blocks an array of tables, and a server's address and port (or
//! `fwmark`, `group`) its `address`/`port` keys.

use toml::{Table, Value};

use super::spec::{At, NotifySpec, ScriptSpec, Spec, Statement, TrackSpec};

fn string(s: &At<String>) -> Value {
    Value::String(s.value.clone())
}

/// A keepalived word as TOML: an integer written canonically as a number, the rest as
/// strings (`0102`, a hex payload, stays a string).
fn word(w: &At<String>) -> Value {
    match w.value.parse::<i64>() {
        Ok(n) if n.to_string() == w.value => Value::Integer(n),
        _ => Value::String(w.value.clone()),
    }
}

fn script(s: &ScriptSpec) -> Value {
    if s.user.is_none() && s.group.is_none() {
        return string(&s.command);
    }
    let mut t = Table::new();
    t.insert("command".into(), string(&s.command));
    if let Some(u) = &s.user {
        t.insert("user".into(), string(u));
    }
    if let Some(g) = &s.group {
        t.insert("group".into(), string(g));
    }
    Value::Table(t)
}

fn notify(t: &mut Table, n: &NotifySpec) {
    for (key, s) in [
        ("notify_master", &n.master),
        ("notify_backup", &n.backup),
        ("notify_fault", &n.fault),
        ("notify_stop", &n.stop),
        ("notify", &n.any),
    ] {
        if let Some(s) = s {
            t.insert(key.into(), script(s));
        }
    }
}

fn tracks(list: &[TrackSpec]) -> Value {
    Value::Array(
        list.iter()
            .map(|tr| {
                let mut t = Table::new();
                t.insert("name".into(), string(&tr.name));
                if let Some(w) = &tr.weight {
                    t.insert("weight".into(), Value::Integer(w.value));
                }
                if let Some(r) = &tr.reverse {
                    t.insert("reverse".into(), Value::Boolean(r.value));
                }
                Value::Table(t)
            })
            .collect(),
    )
}

fn put<T>(t: &mut Table, key: &str, v: Option<&At<T>>, f: impl Fn(&T) -> Value) {
    if let Some(v) = v {
        t.insert(key.into(), f(&v.value));
    }
}

/// Which argument keys a block's statement takes (see [`super::toml`]).
fn arg_keys(keyword: &str, args: &[At<String>]) -> Vec<&'static str> {
    match (keyword, args.first().map(|a| a.value.as_str())) {
        ("virtual_server", Some("fwmark")) => vec!["", "fwmark"],
        ("virtual_server", Some("group")) => vec!["", "group"],
        ("virtual_server" | "real_server", _) => vec!["address", "port"],
        ("virtual_server_group", _) => vec!["name"],
        _ => Vec::new(),
    }
}

/// A block statement as a table.
fn block_table(s: &Statement) -> Table {
    let mut t = Table::new();
    for (key, arg) in arg_keys(&s.keyword.value, &s.args).iter().zip(&s.args) {
        if !key.is_empty() {
            t.insert((*key).into(), word(arg));
        }
    }
    let block = s.block.as_deref().unwrap_or_default();
    if s.keyword.value == "virtual_server_group" {
        let members = block
            .iter()
            .map(|m| {
                let mut words = vec![m.keyword.value.clone()];
                words.extend(m.args.iter().map(|a| a.value.clone()));
                Value::String(words.join(" "))
            })
            .collect();
        t.insert("members".into(), Value::Array(members));
        return t;
    }
    for inner in block {
        let key = inner.keyword.value.clone();
        let value = if inner.block.is_some() {
            Value::Table(block_table(inner))
        } else {
            match inner.args.as_slice() {
                [] => Value::Boolean(true),
                [one] => word(one),
                many => Value::Array(many.iter().map(word).collect()),
            }
        };
        match (t.get_mut(&key), value) {
            // A repeated block: an array of tables.
            (Some(Value::Array(list)), v @ Value::Table(_)) => list.push(v),
            (Some(existing @ Value::Table(_)), v @ Value::Table(_)) => {
                let first = existing.clone();
                *existing = Value::Array(vec![first, v]);
            }
            (_, v) => {
                // real_server and url are always lists, like the TOML front-end's examples.
                let v = match v {
                    Value::Table(tab) if key == "real_server" || key == "url" => {
                        Value::Array(vec![Value::Table(tab)])
                    }
                    other => other,
                };
                t.insert(key, v);
            }
        }
    }
    t
}

/// The TOML equivalent of a keepalived.conf tree.
pub fn to_toml(spec: &Spec) -> String {
    let mut root = Table::new();
    put(&mut root, "router_id", spec.router_id.as_ref(), |v| {
        Value::String(v.clone())
    });
    put(&mut root, "notify_fifo", spec.notify_fifo.as_ref(), |v| {
        Value::String(v.clone())
    });
    put(
        &mut root,
        "lvs_notify_fifo",
        spec.lvs_notify_fifo.as_ref(),
        |v| Value::String(v.clone()),
    );
    if let Some((user, group)) = &spec.script_user {
        root.insert("script_user".into(), string(user));
        if let Some(g) = group {
            root.insert("script_group".into(), string(g));
        }
    }
    put(
        &mut root,
        "garp_master_delay",
        spec.garp_master_delay.as_ref(),
        |v| Value::Float(*v),
    );
    put(
        &mut root,
        "garp_master_repeat",
        spec.garp_master_repeat.as_ref(),
        |v| Value::Integer(*v),
    );
    put(
        &mut root,
        "garp_master_refresh",
        spec.garp_master_refresh.as_ref(),
        |v| Value::Float(*v),
    );
    put(
        &mut root,
        "vrrp_rt_priority",
        spec.vrrp_rt_priority.as_ref(),
        |v| Value::Integer(*v),
    );
    let mut scripts = Vec::new();
    for s in &spec.vrrp_scripts {
        let mut t = Table::new();
        t.insert("name".into(), string(&s.name));
        if let Some(c) = &s.script {
            t.insert("script".into(), script(c));
        }
        put(&mut t, "interval", s.interval.as_ref(), |v| {
            Value::Float(*v)
        });
        put(&mut t, "timeout", s.timeout.as_ref(), |v| Value::Float(*v));
        put(&mut t, "weight", s.weight.as_ref(), |v| Value::Integer(*v));
        put(&mut t, "reverse", s.reverse.as_ref(), |v| {
            Value::Boolean(*v)
        });
        put(&mut t, "rise", s.rise.as_ref(), |v| Value::Integer(*v));
        put(&mut t, "fall", s.fall.as_ref(), |v| Value::Integer(*v));
        put(&mut t, "init_fail", s.init_fail.as_ref(), |v| {
            Value::Boolean(*v)
        });
        scripts.push(Value::Table(t));
    }
    let mut files = Vec::new();
    for f in &spec.track_files {
        let mut t = Table::new();
        t.insert("name".into(), string(&f.name));
        put(&mut t, "file", f.file.as_ref(), |v| {
            Value::String(v.clone())
        });
        put(&mut t, "weight", f.weight.as_ref(), |v| Value::Integer(*v));
        put(&mut t, "reverse", f.reverse.as_ref(), |v| {
            Value::Boolean(*v)
        });
        files.push(Value::Table(t));
    }
    let mut groups = Vec::new();
    for g in &spec.sync_groups {
        let mut t = Table::new();
        t.insert("name".into(), string(&g.name));
        t.insert(
            "group".into(),
            Value::Array(g.group.iter().map(string).collect()),
        );
        notify(&mut t, &g.notify);
        groups.push(Value::Table(t));
    }
    let mut instances = Vec::new();
    for vi in &spec.vrrp_instances {
        let mut t = Table::new();
        t.insert("name".into(), string(&vi.name));
        let s = |v: &String| Value::String(v.clone());
        put(&mut t, "interface", vi.interface.as_ref(), s);
        put(&mut t, "state", vi.state.as_ref(), s);
        put(
            &mut t,
            "virtual_router_id",
            vi.virtual_router_id.as_ref(),
            |v| Value::Integer(*v),
        );
        put(&mut t, "priority", vi.priority.as_ref(), |v| {
            Value::Integer(*v)
        });
        put(&mut t, "advert_int", vi.advert_int.as_ref(), |v| {
            Value::Float(*v)
        });
        // keepalived's global vrrp_version is each instance's version in lbd's TOML.
        put(
            &mut t,
            "version",
            vi.version.as_ref().or(spec.vrrp_version.as_ref()),
            |v| Value::Integer(*v),
        );
        put(&mut t, "preempt", vi.preempt.as_ref(), |v| {
            Value::Boolean(*v)
        });
        put(&mut t, "preempt_delay", vi.preempt_delay.as_ref(), |v| {
            Value::Float(*v)
        });
        if !vi.virtual_ipaddress.is_empty() {
            let vips = vi.virtual_ipaddress.iter().map(string).collect();
            t.insert("virtual_ipaddress".into(), Value::Array(vips));
        }
        put(&mut t, "auth_type", vi.auth_type.as_ref(), s);
        put(&mut t, "auth_pass", vi.auth_pass.as_ref(), s);
        put(&mut t, "unicast_src_ip", vi.unicast_src_ip.as_ref(), s);
        if !vi.unicast_peer.is_empty() {
            let peers = vi.unicast_peer.iter().map(string).collect();
            t.insert("unicast_peer".into(), Value::Array(peers));
        }
        put(
            &mut t,
            "v3_checksum_as_v2",
            vi.v3_checksum_as_v2.as_ref(),
            |v| Value::Boolean(*v),
        );
        notify(&mut t, &vi.notify);
        put(
            &mut t,
            "notify_priority_changes",
            vi.notify_priority_changes.as_ref(),
            |v| Value::Boolean(*v),
        );
        for (key, list) in [
            ("track_interface", &vi.track_interface),
            ("track_script", &vi.track_script),
            ("track_file", &vi.track_file),
        ] {
            if !list.is_empty() {
                t.insert(key.into(), tracks(list));
            }
        }
        put(
            &mut t,
            "garp_master_delay",
            vi.garp_master_delay.as_ref(),
            |v| Value::Float(*v),
        );
        put(
            &mut t,
            "garp_master_repeat",
            vi.garp_master_repeat.as_ref(),
            |v| Value::Integer(*v),
        );
        put(
            &mut t,
            "garp_master_refresh",
            vi.garp_master_refresh.as_ref(),
            |v| Value::Float(*v),
        );
        put(&mut t, "use_vmac", vi.use_vmac.as_ref(), |v| {
            if v.is_empty() {
                Value::Boolean(true)
            } else {
                Value::String(v.clone())
            }
        });
        put(&mut t, "vmac_xmit_base", vi.vmac_xmit_base.as_ref(), |v| {
            Value::Boolean(*v)
        });
        instances.push(Value::Table(t));
    }
    // LVS: groups and the SSL block first (the reader takes them from anywhere), then the
    // virtual servers in order, and the global IPVS keywords.
    let mut lvs: Vec<(String, Value)> = Vec::new();
    for s in &spec.lvs {
        let key = s.keyword.value.as_str();
        let value = match key {
            "virtual_server" | "virtual_server_group" | "SSL" => Value::Table(block_table(s)),
            _ => match s.args.as_slice() {
                [] => Value::Boolean(true),
                [one] => word(one),
                many => Value::Array(many.iter().map(word).collect()),
            },
        };
        lvs.push((key.to_owned(), value));
    }
    for (key, value) in lvs {
        match key.as_str() {
            "virtual_server" | "virtual_server_group" => {
                let entry = root.entry(key).or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = entry {
                    list.push(value);
                }
            }
            _ => {
                root.insert(key, value);
            }
        }
    }
    for (key, list) in [
        ("vrrp_script", scripts),
        ("track_file", files),
        ("sync_group", groups),
        ("vrrp_instance", instances),
    ] {
        if !list.is_empty() {
            root.insert(key.into(), Value::Array(list));
        }
    }
    write(root)
}

/// `root` as TOML. Each table of an array of tables is written on its own (`[[key]]` headers
/// repeated append to the array): the serializer copies the whole array per element, which
/// took seconds for keepalived's 65,024-instance example.
fn write(root: Table) -> String {
    let (arrays, plain): (Table, Table) = root.into_iter().partition(|(_, v)| {
            matches!(v, Value::Array(list) if !list.is_empty() && list.iter().all(Value::is_table))
        });
    let to_string =
        |t: &Table| toml::to_string(t).unwrap_or_else(|e| format!("# could not write TOML: {e}\n"));
    let mut out = to_string(&plain);
    for (key, list) in arrays {
        let Value::Array(list) = list else {
            continue;
        };
        for item in list {
            let mut one = Table::new();
            one.insert(key.clone(), Value::Array(vec![item]));
            if !out.is_empty() && !out.ends_with("\n\n") {
                out.push('\n');
            }
            out.push_str(&to_string(&one));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Format, Overrides, Unimplemented, keepalived_spec, load};

    fn round_trip(text: &str) {
        let direct = load(
            "k.conf",
            text,
            Format::Keepalived,
            Unimplemented::Reject,
            &Overrides::default(),
        )
        .expect("valid keepalived.conf")
        .model;
        let (spec, _) = keepalived_spec(
            "k.conf",
            text,
            Unimplemented::Reject,
            "",
            &crate::config::NoFiles,
        )
        .expect("parses");
        let toml = to_toml(&spec);
        let imported = load(
            "k.toml",
            &toml,
            Format::Toml,
            Unimplemented::Reject,
            &Overrides::default(),
        )
        .unwrap_or_else(|e| panic!("{toml}\n{e:?}"))
        .model;
        assert_eq!(imported, direct, "{toml}");
    }

    #[test]
    fn every_checker_survives_the_import() {
        round_trip(crate::config::lvs::tests::KEEPALIVED);
    }

    #[test]
    fn vrrp_survives_the_import() {
        round_trip(
            "global_defs {\n  router_id d1\n  vrrp_version 3\n  vrrp_notify_fifo /run/lbd/vrrp.fifo\n  script_user nobody nogroup\n  lvs_timeouts tcp 900 udp 30\n  lvs_sync_daemon eth0 VI_1 id 3\n}\nvrrp_script chk {\n  script \"/bin/check web\"\n  interval 2\n  weight -20\n  fall 2\n}\nvrrp_track_file flag {\n  file /run/flag\n  weight 5 reverse\n}\nvrrp_sync_group G {\n  group {\n    VI_1\n  }\n  notify_master /bin/m\n}\nvrrp_instance VI_1 {\n  interface eth0\n  state MASTER\n  virtual_router_id 51\n  priority 150\n  advert_int 0.5\n  nopreempt\n  virtual_ipaddress {\n    203.0.113.10/24 dev eth0 label eth0:1\n    203.0.113.11/24\n  }\n  track_script {\n    chk weight -30\n  }\n  track_file {\n    flag\n  }\n  track_interface {\n    eth1 weight 10\n  }\n  use_vmac\n  notify \"/bin/n x\"\n}\n",
        );
    }
}
