//! [`validate`]: the unvalidated tree to a [`Model`], with every error.

use std::net::IpAddr;

use super::{
    ConfigError, Pos, Unimplemented,
    spec::{At, DataplaneSpec, NotifySpec, ScriptSpec, Spec, TrackSpec, VrrpInstanceSpec},
};
use crate::{
    model::{
        Dataplane, Garp, Model, Notify, Script, ScriptUser, SyncGroup, Track, TrackFile,
        VirtualAddress, Vmac, VrrpGlobals, VrrpInstance, VrrpScript, XdpAttach, XdpSettings,
    },
    vrrp::wire::{V3Ipv4Checksum, Version},
};

/// Collects errors against one file.
struct Errors<'a> {
    file: &'a str,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn push(&mut self, pos: Pos, message: impl Into<String>) {
        self.list.push(ConfigError {
            file: self.file.to_owned(),
            pos,
            message: message.into(),
        });
    }
}

/// Validates `spec`, read from `file`, into a [`Model`]; returns every error found.
pub fn validate(
    file: &str,
    spec: &Spec,
    unimplemented: Unimplemented,
    warnings: &mut Vec<ConfigError>,
    read_blocks: &mut Vec<Option<std::sync::Arc<crate::model::VirtualServer>>>,
) -> Result<Model, Vec<ConfigError>> {
    let mut errors = Errors {
        file,
        list: Vec::new(),
    };
    let dataplane = dataplane(spec.dataplane.as_ref(), &mut errors);
    let mut lvs = super::lvs::Reader::new(
        file,
        unimplemented,
        spec.track_files.iter().filter_map(|t| {
            let path = t.file.as_ref()?;
            Some((t.name.value.clone(), std::path::PathBuf::from(&path.value)))
        }),
    );
    let virtual_servers = lvs.read(&spec.lvs, &spec.lvs_blocks, read_blocks);
    let ipvs = lvs.globals(&spec.lvs);
    // The sync daemon follows a VRRP instance: it must exist.
    if let Some(d) = &ipvs.sync_daemon
        && !spec
            .vrrp_instances
            .iter()
            .any(|i| i.name.value == d.instance)
    {
        let pos = spec
            .lvs
            .iter()
            .find(|s| s.keyword.value == "lvs_sync_daemon")
            .and_then(|s| s.args.get(1))
            .map_or(Pos::default(), |a| a.pos);
        errors.push(
            pos,
            format!(
                "lvs_sync_daemon follows vrrp_instance {:?}, which is not defined",
                d.instance
            ),
        );
    }
    errors.list.append(&mut lvs.errors);
    warnings.append(&mut lvs.warnings);
    let default_version = match spec.vrrp_version.as_ref() {
        None => Version::V2,
        Some(At { value: 2, .. }) => Version::V2,
        Some(At { value: 3, .. }) => Version::V3,
        Some(At { value, pos }) => {
            errors.push(*pos, format!("vrrp_version must be 2 or 3, not {value}"));
            Version::V2
        }
    };
    let garp_default = garp(
        Garp::default(),
        spec.garp_master_delay.as_ref(),
        spec.garp_master_repeat.as_ref(),
        spec.garp_master_refresh.as_ref(),
        &mut errors,
    );
    let mut vrrp_instances: Vec<VrrpInstance> = Vec::new();
    // Indexes: 65,024 instances (keepalived's ~SEQ example) must not be compared pairwise.
    let mut names: foldhash::HashSet<String> = foldhash::HashSet::default();
    let mut routers: foldhash::HashMap<(String, u8, Option<bool>), String> =
        foldhash::HashMap::default();
    for written in &spec.vrrp_instances {
        let Some(instance) = vrrp_instance(written, default_version, garp_default, &mut errors)
        else {
            continue;
        };
        let family = instance.addresses.first().map(|a| a.addr.is_ipv4());
        let router = (instance.interface.clone(), instance.vrid, family);
        if names.contains(&instance.name) {
            errors.push(
                written.name.pos,
                format!("duplicate vrrp_instance {}", instance.name),
            );
        } else if let Some(other) = routers.get(&router) {
            let message = format!(
                "vrrp_instance {} uses VRID {} on {} like {}: one virtual router per VRID, interface and family",
                instance.name, instance.vrid, instance.interface, other
            );
            errors.push(written.pos, message);
        } else {
            names.insert(instance.name.clone());
            routers.insert(router, instance.name.clone());
            vrrp_instances.push(instance);
        }
    }
    let vrrp = vrrp_globals(spec, &vrrp_instances, &mut errors);
    let router_id = spec.router_id.as_ref().map(|r| r.value.clone());
    match (dataplane, errors.list.is_empty()) {
        (Some(dataplane), true) => Ok(Model {
            dataplane,
            virtual_servers,
            vrrp_instances,
            router_id,
            vrrp,
            ipvs,
            lvs_notify_fifo: spec
                .lvs_notify_fifo
                .as_ref()
                .map(|f| f.value.clone().into()),
        }),
        _ => Err(errors.list),
    }
}

/// The XDP settings beyond interface and attach mode, each checked.
fn xdp_settings(
    spec: &DataplaneSpec,
    interface: &str,
    attach: XdpAttach,
    errors: &mut Errors<'_>,
) -> XdpSettings {
    let mut x = XdpSettings::new(interface, attach);
    if let Some(At { value, pos }) = &spec.xdp_ring_size {
        match u32::try_from(*value) {
            Ok(n) if crate::dataplane::maglev::is_prime(n) && (2..=1_000_003).contains(&n) => {
                x.ring_size = n;
            }
            _ => errors.push(
                *pos,
                format!("xdp_ring_size {value} must be a prime up to 1000003 (default 65537)"),
            ),
        }
    }
    if let Some(At { value, pos }) = &spec.xdp_max_vips {
        match u32::try_from(*value) {
            Ok(n) if (1..=lb_common::MAX_VIPS).contains(&n) => x.max_vips = n,
            _ => errors.push(
                *pos,
                format!(
                    "xdp_max_vips {value} is out of range 1-{}",
                    lb_common::MAX_VIPS
                ),
            ),
        }
    }
    if let Some(At { value, pos }) = &spec.xdp_mtu {
        match u32::try_from(*value) {
            Ok(n) if (1280..=65_535).contains(&n) => x.mtu = n,
            _ => errors.push(*pos, format!("xdp_mtu {value} is out of range 1280-65535")),
        }
    }
    if let Some(At { value, pos }) = &spec.xdp_encap_source {
        match parse_prefix(value) {
            Some((IpAddr::V4(a), len)) if len <= 32 => x.encap_source_v4 = Some((a, len)),
            _ => errors.push(
                *pos,
                format!("xdp_encap_source {value:?} is not an IPv4 prefix (address/length)"),
            ),
        }
    }
    if let Some(At { value, pos }) = &spec.xdp_pin_dir {
        if value.starts_with('/') {
            x.pin_dir = Some(value.into());
        } else {
            errors.push(
                *pos,
                format!("xdp_pin_dir {value:?} is not an absolute path"),
            );
        }
    }
    if let Some(At { value, pos }) = &spec.xdp_encap_source6 {
        match parse_prefix(value) {
            Some((IpAddr::V6(a), len)) if len <= 128 => {
                x.encap_source_v6 = Some((a, len));
            }
            _ => errors.push(
                *pos,
                format!("xdp_encap_source6 {value:?} is not an IPv6 prefix (address/length)"),
            ),
        }
    }
    x
}

/// `address/length`, or a bare address (a full-length prefix).
fn parse_prefix(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a.parse().ok()?, l.parse().ok()?),
        None => {
            let a: IpAddr = text.parse().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    Some((addr, len))
}

fn dataplane(spec: Option<&DataplaneSpec>, errors: &mut Errors<'_>) -> Option<Dataplane> {
    let Some(spec) = spec else {
        // No [dataplane] table: keepalived's model, IPVS only.
        return Some(Dataplane::Ipvs);
    };
    let mode = spec.mode.as_ref().map_or("ipvs", |m| m.value.as_str());
    let attach = match spec.xdp_attach.as_ref() {
        None => XdpAttach::Auto,
        Some(At { value, pos }) => match value.as_str() {
            "auto" => XdpAttach::Auto,
            "native" => XdpAttach::Native,
            "generic" => XdpAttach::Generic,
            other => {
                errors.push(
                    *pos,
                    format!("xdp_attach must be auto, native or generic, not {other:?}"),
                );
                XdpAttach::Auto
            }
        },
    };
    let xdp = |errors: &mut Errors<'_>| match &spec.xdp_interface {
        Some(At { value, pos }) if value.is_empty() || value.len() > 15 || value.contains('/') => {
            errors.push(*pos, format!("{value:?} is not an interface name"));
            None
        }
        Some(iface) => Some(xdp_settings(spec, &iface.value, attach, errors)),
        None => {
            let pos = spec.mode.as_ref().map_or(spec.pos, |m| m.pos);
            errors.push(pos, format!("dataplane mode {mode:?} needs xdp_interface"));
            None
        }
    };
    match mode {
        "none" | "ipvs" => {
            if let Some(iface) = &spec.xdp_interface {
                errors.push(
                    iface.pos,
                    format!("xdp_interface is only used in the xdp modes, not {mode:?}"),
                );
            }
            Some(if mode == "none" {
                Dataplane::None
            } else {
                Dataplane::Ipvs
            })
        }
        "xdp" => xdp(errors).map(Dataplane::Xdp),
        "xdp+ipvs" => xdp(errors).map(Dataplane::XdpIpvs),
        other => {
            let pos = spec.mode.as_ref().map_or(spec.pos, |m| m.pos);
            errors.push(
                pos,
                format!("dataplane mode must be none, ipvs, xdp or xdp+ipvs, not {other:?}"),
            );
            None
        }
    }
}

/// Seconds as written to whole centiseconds, if they are a whole number of them.
fn centiseconds(seconds: f64) -> Option<u64> {
    let cs = (seconds * 100.0).round();
    ((seconds * 100.0 - cs).abs() < 1e-6 && (0.0..=1e9).contains(&cs)).then_some(cs as u64)
}

/// Splits a command line as a shell would split words: whitespace separates, single quotes
/// keep everything, double quotes keep all but `\"` and `\\`, a backslash outside quotes
/// escapes the next character.
pub(super) fn split_command(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".to_owned()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated double quote".to_owned()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".to_owned()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().ok_or("a trailing backslash")?);
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err("an empty command".to_owned());
    }
    Ok(words)
}

fn script(spec: &ScriptSpec, errors: &mut Errors<'_>) -> Option<Script> {
    match split_command(&spec.command.value) {
        Ok(argv) => Some(Script {
            argv,
            user: spec.user.as_ref().map(|u| ScriptUser {
                user: u.value.clone(),
                group: spec.group.as_ref().map(|g| g.value.clone()),
            }),
        }),
        Err(why) => {
            errors.push(
                spec.command.pos,
                format!("command {:?}: {why}", spec.command.value),
            );
            None
        }
    }
}

fn notify(spec: &NotifySpec, errors: &mut Errors<'_>) -> Notify {
    let mut one = |s: &Option<ScriptSpec>| s.as_ref().and_then(|s| script(s, errors));
    Notify {
        master: one(&spec.master),
        backup: one(&spec.backup),
        fault: one(&spec.fault),
        stop: one(&spec.stop),
        any: one(&spec.any),
    }
}

/// keepalived's range for tracking weights.
const WEIGHT_RANGE: std::ops::RangeInclusive<i64> = -253..=253;

fn weight(w: Option<&At<i64>>, errors: &mut Errors<'_>) -> Option<i32> {
    let w = w?;
    if WEIGHT_RANGE.contains(&w.value) {
        i32::try_from(w.value).ok()
    } else {
        errors.push(
            w.pos,
            format!("weight {} is out of range -253 to 253", w.value),
        );
        None
    }
}

fn tracks(list: &[TrackSpec], errors: &mut Errors<'_>) -> Vec<Track> {
    list.iter()
        .map(|t| Track {
            name: t.name.value.clone(),
            weight: weight(t.weight.as_ref(), errors),
            reverse: t.reverse.as_ref().is_some_and(|r| r.value),
        })
        .collect()
}

fn garp(
    default: Garp,
    delay: Option<&At<f64>>,
    repeat: Option<&At<i64>>,
    refresh: Option<&At<f64>>,
    errors: &mut Errors<'_>,
) -> Garp {
    let mut garp = default;
    let seconds = |at: &At<f64>, what: &str, errors: &mut Errors<'_>| {
        if (0.0..=86_400.0).contains(&at.value) {
            Some(std::time::Duration::from_secs_f64(at.value))
        } else {
            errors.push(
                at.pos,
                format!("{what} {} is out of range 0-86400 s", at.value),
            );
            None
        }
    };
    if let Some(d) = delay.and_then(|d| seconds(d, "garp_master_delay", errors)) {
        garp.delay = d;
    }
    if let Some(r) = refresh.and_then(|r| seconds(r, "garp_master_refresh", errors)) {
        garp.refresh = (!r.is_zero()).then_some(r);
    }
    if let Some(r) = repeat {
        match u32::try_from(r.value) {
            Ok(n) if (1..=255).contains(&n) => garp.repeat = n,
            _ => errors.push(
                r.pos,
                format!("garp_master_repeat {} is out of range 1-255", r.value),
            ),
        }
    }
    garp
}

fn positive_seconds(
    at: &At<f64>,
    what: &str,
    errors: &mut Errors<'_>,
) -> Option<std::time::Duration> {
    if at.value > 0.0 && at.value <= 86_400.0 {
        Some(std::time::Duration::from_secs_f64(at.value))
    } else {
        errors.push(
            at.pos,
            format!("{what} {} must be above 0 and at most 86400 s", at.value),
        );
        None
    }
}

fn count(at: Option<&At<i64>>, what: &str, errors: &mut Errors<'_>) -> u32 {
    match at {
        None => 1,
        Some(a) => match u32::try_from(a.value) {
            Ok(n) if n >= 1 => n,
            _ => {
                errors.push(a.pos, format!("{what} must be at least 1, not {}", a.value));
                1
            }
        },
    }
}

/// `vrrp_script`s, `vrrp_track_file`s, sync groups and the notification settings, with every
/// reference from `instances` checked.
fn vrrp_globals(spec: &Spec, instances: &[VrrpInstance], errors: &mut Errors<'_>) -> VrrpGlobals {
    let mut scripts: Vec<VrrpScript> = Vec::new();
    for vs in &spec.vrrp_scripts {
        let name = vs.name.value.clone();
        if scripts.iter().any(|s| s.name == name) {
            errors.push(vs.name.pos, format!("duplicate vrrp_script {name}"));
            continue;
        }
        let Some(command) = vs.script.as_ref() else {
            errors.push(vs.pos, format!("vrrp_script {name} needs a script"));
            continue;
        };
        let Some(command) = script(command, errors) else {
            continue;
        };
        let interval = vs
            .interval
            .as_ref()
            .and_then(|i| positive_seconds(i, "interval", errors))
            .unwrap_or(std::time::Duration::from_secs(1));
        let timeout = vs
            .timeout
            .as_ref()
            .and_then(|t| positive_seconds(t, "timeout", errors))
            .unwrap_or(interval);
        scripts.push(VrrpScript {
            name,
            script: command,
            interval,
            timeout,
            weight: weight(vs.weight.as_ref(), errors).unwrap_or(0),
            reverse: vs.reverse.as_ref().is_some_and(|r| r.value),
            rise: count(vs.rise.as_ref(), "rise", errors),
            fall: count(vs.fall.as_ref(), "fall", errors),
            init_fail: vs.init_fail.as_ref().is_some_and(|f| f.value),
        });
    }
    let mut track_files: Vec<TrackFile> = Vec::new();
    let mut file_names: foldhash::HashSet<String> = foldhash::HashSet::default();
    for tf in &spec.track_files {
        let name = tf.name.value.clone();
        if !file_names.insert(name.clone()) {
            errors.push(tf.name.pos, format!("duplicate vrrp_track_file {name}"));
            continue;
        }
        let Some(file) = tf.file.as_ref() else {
            errors.push(tf.pos, format!("vrrp_track_file {name} needs a file"));
            continue;
        };
        track_files.push(TrackFile {
            name,
            path: file.value.clone().into(),
            weight: weight(tf.weight.as_ref(), errors).unwrap_or(1),
            reverse: tf.reverse.as_ref().is_some_and(|r| r.value),
        });
    }
    for written in &spec.vrrp_instances {
        let instance = &written.name.value;
        for t in &written.track_script {
            if !scripts.iter().any(|s| s.name == t.name.value) {
                errors.push(
                    t.name.pos,
                    format!("no vrrp_script {} for {instance}", t.name.value),
                );
            }
        }
        for t in &written.track_file {
            if !file_names.contains(&t.name.value) {
                errors.push(
                    t.name.pos,
                    format!("no vrrp_track_file {} for {instance}", t.name.value),
                );
            }
        }
    }
    let mut sync_groups: Vec<SyncGroup> = Vec::new();
    let instance_names: foldhash::HashSet<&str> =
        instances.iter().map(|i| i.name.as_str()).collect();
    for sg in &spec.sync_groups {
        let mut members = Vec::new();
        for m in &sg.group {
            if !instance_names.contains(m.value.as_str()) {
                errors.push(
                    m.pos,
                    format!(
                        "vrrp_sync_group {}: no vrrp_instance {}",
                        sg.name.value, m.value
                    ),
                );
            } else if sync_groups.iter().any(|g| g.members.contains(&m.value))
                || members.contains(&m.value)
            {
                errors.push(
                    m.pos,
                    format!("vrrp_instance {} is in more than one sync group", m.value),
                );
            } else {
                members.push(m.value.clone());
            }
        }
        sync_groups.push(SyncGroup {
            name: sg.name.value.clone(),
            members,
            notify: notify(&sg.notify, errors),
        });
    }
    VrrpGlobals {
        scripts,
        track_files,
        sync_groups,
        notify_fifo: spec.notify_fifo.as_ref().map(|f| f.value.clone().into()),
        script_user: spec.script_user.as_ref().map(|(u, g)| ScriptUser {
            user: u.value.clone(),
            group: g.as_ref().map(|g| g.value.clone()),
        }),
        rt_priority: spec.vrrp_rt_priority.as_ref().and_then(|p| {
            let priority = u8::try_from(p.value).ok().filter(|p| (1..=99).contains(p));
            if priority.is_none() {
                errors.push(
                    p.pos,
                    format!("vrrp_rt_priority {} is not in 1-99", p.value),
                );
            }
            priority
        }),
    }
}

/// keepalived's `virtual_ipaddress` options after the address: `dev`, `label`, `scope`, `brd`
/// and `-nodad` (IPv6 VIPs are always added without duplicate address detection: the address
/// belongs to the virtual router, and DAD would hold it tentative, or fail it, during the very
/// takeover it serves).
fn vip_options(
    addr: IpAddr,
    mut words: std::str::SplitWhitespace<'_>,
    pos: Pos,
    errors: &mut Errors<'_>,
) -> Option<VirtualAddress> {
    let mut vip = VirtualAddress::new(addr, 0);
    let before = errors.list.len();
    while let Some(option) = words.next() {
        if matches!(option, "-nodad" | "nodad") {
            continue;
        }
        let Some(value) = words.next() else {
            errors.push(
                pos,
                format!("virtual_ipaddress option {option} needs a value"),
            );
            break;
        };
        match option {
            "dev" => vip.dev = Some(value.to_owned()),
            "label" if addr.is_ipv4() => vip.label = Some(value.to_owned()),
            "scope" => {
                vip.scope = match value {
                    "global" => Some(0),
                    "site" => Some(200),
                    "link" => Some(253),
                    "host" => Some(254),
                    "nowhere" => Some(255),
                    n => n.parse().ok().or_else(|| {
                        errors.push(pos, format!("scope {n:?} is not global, site, link, host or 0-255"));
                        None
                    }),
                }
            }
            "brd" if addr.is_ipv4() => match value.parse() {
                Ok(b) => vip.broadcast = Some(b),
                Err(_) => errors.push(pos, format!("brd {value:?} is not an IPv4 address")),
            },
            "label" | "brd" => errors.push(pos, format!("{option} is for IPv4 addresses only")),
            other => errors.push(
                pos,
                format!(
                    "virtual_ipaddress option {other:?} is not implemented by lbd (dev, label, scope, brd and -nodad are)"
                ),
            ),
        }
    }
    (errors.list.len() == before).then_some(vip)
}

fn vrrp_instance(
    spec: &VrrpInstanceSpec,
    default_version: Version,
    garp_default: Garp,
    errors: &mut Errors<'_>,
) -> Option<VrrpInstance> {
    let before = errors.list.len();
    let name = spec.name.value.clone();
    if name.is_empty() {
        errors.push(spec.pos, "vrrp_instance needs a name");
    }
    let interface = match &spec.interface {
        Some(i) if !i.value.is_empty() && i.value.len() <= 15 && !i.value.contains('/') => {
            i.value.clone()
        }
        Some(i) => {
            errors.push(i.pos, format!("{:?} is not an interface name", i.value));
            String::new()
        }
        None => {
            errors.push(spec.pos, format!("vrrp_instance {name} needs an interface"));
            String::new()
        }
    };
    let version = match spec.version.as_ref() {
        None => default_version,
        Some(At { value: 2, .. }) => Version::V2,
        Some(At { value: 3, .. }) => Version::V3,
        Some(At { value, pos }) => {
            errors.push(*pos, format!("version must be 2 or 3, not {value}"));
            default_version
        }
    };
    let vrid = match spec.virtual_router_id.as_ref() {
        Some(At { value, pos }) => u8::try_from(*value).ok().filter(|v| *v >= 1).or_else(|| {
            errors.push(
                *pos,
                format!("virtual_router_id {value} is out of range 1-255"),
            );
            None
        }),
        None => {
            errors.push(
                spec.pos,
                format!("vrrp_instance {name} needs a virtual_router_id"),
            );
            None
        }
    };
    let priority = match spec.priority.as_ref() {
        None => Some(100),
        Some(At { value, pos }) => u8::try_from(*value).ok().filter(|v| *v >= 1).or_else(|| {
            errors.push(*pos, format!("priority {value} is out of range 1-255"));
            None
        }),
    };
    let start_active = match spec.state.as_ref() {
        None => false,
        Some(At { value, pos }) => match value.to_ascii_uppercase().as_str() {
            "MASTER" => true,
            "BACKUP" => false,
            _ => {
                errors.push(
                    *pos,
                    format!("state must be MASTER or BACKUP, not {value:?}"),
                );
                false
            }
        },
    };
    let advert_int_cs = match spec.advert_int.as_ref() {
        None => Some(100),
        Some(At { value, pos }) => {
            let cs = centiseconds(*value);
            match (version, cs) {
                (Version::V2, Some(cs)) if cs % 100 == 0 && (100..=25_500).contains(&cs) => {
                    u16::try_from(cs).ok()
                }
                (Version::V3, Some(cs)) if (1..=4095).contains(&cs) => u16::try_from(cs).ok(),
                (Version::V2, _) => {
                    errors.push(
                        *pos,
                        format!("advert_int {value} for VRRPv2 must be whole seconds, 1 to 255"),
                    );
                    None
                }
                (Version::V3, _) => {
                    errors.push(
                        *pos,
                        format!(
                            "advert_int {value} for VRRPv3 must be 0.01 to 40.95 s in hundredths"
                        ),
                    );
                    None
                }
            }
        }
    };
    let preempt_delay = match spec.preempt_delay.as_ref() {
        None => Some(std::time::Duration::ZERO),
        Some(At { value, pos }) => {
            if (0.0..=1000.0).contains(value) {
                Some(std::time::Duration::from_secs_f64(*value))
            } else {
                errors.push(
                    *pos,
                    format!("preempt_delay {value} is out of range 0-1000 s"),
                );
                None
            }
        }
    };
    let mut addresses = Vec::new();
    for entry in &spec.virtual_ipaddress {
        let mut words = entry.value.split_whitespace();
        let first = words.next().unwrap_or_default();
        let (addr_text, prefix_text) = match first.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (first, None),
        };
        let Ok(addr) = addr_text.parse::<IpAddr>() else {
            errors.push(
                entry.pos,
                format!("virtual address {first:?} is not ADDRESS[/PREFIX]"),
            );
            continue;
        };
        let Some(options) = vip_options(addr, words, entry.pos, errors) else {
            continue;
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text.map(str::parse::<u8>) {
            None => max,
            Some(Ok(p)) if p <= max => p,
            Some(_) => {
                errors.push(
                    entry.pos,
                    format!("prefix of {:?} is out of range 0-{max}", entry.value),
                );
                continue;
            }
        };
        if addresses
            .first()
            .is_some_and(|a: &VirtualAddress| !same_family(a.addr, addr))
        {
            errors.push(
                entry.pos,
                "the virtual addresses of one instance must be of one family".to_owned(),
            );
            continue;
        }
        if version == Version::V2 && addr.is_ipv6() {
            errors.push(
                entry.pos,
                "VRRPv2 is IPv4 only: use version 3 for IPv6 addresses".to_owned(),
            );
            continue;
        }
        addresses.push(VirtualAddress { prefix, ..options });
    }
    let auth_pass = match (spec.auth_type.as_ref(), spec.auth_pass.as_ref()) {
        (None, None) => None,
        (Some(t), pass) if t.value.eq_ignore_ascii_case("PASS") => match pass {
            Some(p) if version == Version::V2 => Some(p.value.clone()),
            Some(p) => {
                errors.push(
                    p.pos,
                    "authentication is VRRPv2 only (RFC 5798 removed it)".to_owned(),
                );
                None
            }
            None => {
                errors.push(t.pos, "auth_type PASS needs auth_pass".to_owned());
                None
            }
        },
        (Some(t), _) => {
            errors.push(
                t.pos,
                format!("auth_type {} is not implemented by lbd (PASS is)", t.value),
            );
            None
        }
        (None, Some(p)) => {
            errors.push(p.pos, "auth_pass needs auth_type PASS".to_owned());
            None
        }
    };
    let family_ok = |ip: IpAddr| addresses.first().is_none_or(|a| same_family(a.addr, ip));
    let unicast_src = spec
        .unicast_src_ip
        .as_ref()
        .and_then(|s| match s.value.parse::<IpAddr>() {
            Ok(ip) if family_ok(ip) => Some(ip),
            _ => {
                errors.push(
                    s.pos,
                    format!(
                        "unicast_src_ip {:?} is not an address of the instance's family",
                        s.value
                    ),
                );
                None
            }
        });
    let mut unicast_peers = Vec::new();
    for peer in &spec.unicast_peer {
        match peer.value.parse::<IpAddr>() {
            Ok(ip) if family_ok(ip) => unicast_peers.push(ip),
            _ => errors.push(
                peer.pos,
                format!(
                    "unicast_peer {:?} is not an address of the instance's family",
                    peer.value
                ),
            ),
        }
    }
    let v3_ipv4_checksum = match spec.v3_checksum_as_v2.as_ref() {
        Some(At { value: true, .. }) => V3Ipv4Checksum::MessageOnly,
        _ => V3Ipv4Checksum::PseudoHeader,
    };
    let vmac = spec.use_vmac.as_ref().and_then(|v| {
        let v6 = addresses.first().is_some_and(|a| a.addr.is_ipv6());
        let name = if v.value.is_empty() {
            format!(
                "{}.{}",
                if v6 { "vrrp6" } else { "vrrp" },
                vrid.unwrap_or(0)
            )
        } else {
            v.value.clone()
        };
        if name.len() > 15 || name.contains('/') || name.contains(char::is_whitespace) {
            errors.push(v.pos, format!("{name:?} is not an interface name"));
            return None;
        }
        Some(Vmac {
            name,
            xmit_base: spec.vmac_xmit_base.as_ref().is_some_and(|x| x.value),
        })
    });
    if errors.list.len() != before {
        return None;
    }
    Some(VrrpInstance {
        name,
        interface,
        version,
        vrid: vrid?,
        priority: priority?,
        advert_int_cs: advert_int_cs?,
        start_active,
        preempt: spec.preempt.as_ref().is_none_or(|p| p.value),
        preempt_delay: preempt_delay?,
        addresses,
        auth_pass,
        unicast_src,
        unicast_peers,
        v3_ipv4_checksum,
        notify: notify(&spec.notify, errors),
        notify_priority_changes: spec
            .notify_priority_changes
            .as_ref()
            .is_some_and(|n| n.value),
        track_interfaces: tracks(&spec.track_interface, errors),
        track_scripts: tracks(&spec.track_script, errors),
        track_files: tracks(&spec.track_file, errors),
        vmac,
        garp: garp(
            garp_default,
            spec.garp_master_delay.as_ref(),
            spec.garp_master_repeat.as_ref(),
            spec.garp_master_refresh.as_ref(),
            errors,
        ),
    })
}

/// Whether two addresses are of the same family.
fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}
