//! lbd's TOML format: serde DTOs (unknown fields rejected) into the [`Spec`] tree.
//!
//! ```toml
//! [dataplane]
//! mode = "xdp"              # none | ipvs (default) | xdp | xdp+ipvs
//! xdp_interface = "eth0"
//! xdp_attach = "auto"       # auto (default) | native | generic
//!
//! [[virtual_server]]
//! address = "203.0.113.10"
//! port = 80
//! protocol = "tcp"          # tcp (default) | udp | sctp
//! scheduler = "wrr"         # any IPVS scheduler; wlc by default, as keepalived
//! forwarding = "nat"        # nat (default) | dr | tun
//! real_server = [ { address = "192.0.2.2", port = 80, weight = 1 } ]
//!
//! # VRRP: keepalived's names and defaults
//! notify_fifo = "/run/lbd/vrrp.fifo"  # keepalived's vrrp_notify_fifo
//! script_user = "nobody"              # and script_group
//!
//! [[vrrp_script]]
//! name = "chk_web"
//! script = "/usr/local/bin/check web"  # or { command = "...", user = "u", group = "g" }
//! interval = 1
//! weight = -20
//! fall = 2
//! rise = 2
//!
//! [[vrrp_instance]]
//! name = "VI_1"
//! interface = "eth0"
//! virtual_router_id = 51
//! priority = 150
//! version = 3
//! advert_int = 0.05
//! virtual_ipaddress = ["203.0.113.10/24"]
//! notify_master = "/usr/local/bin/notify master"
//! track_script = [ { name = "chk_web" } ]
//! track_interface = [ { name = "eth1", weight = -10 } ]
//!
//! [[sync_group]]
//! name = "G1"
//! group = ["VI_1", "VI_2"]
//! ```

use serde::Deserialize;
use toml::Spanned;

use super::{
    ConfigError, Pos,
    spec::{
        At, DataplaneSpec, NotifySpec, RealServerSpec, ScriptSpec, Spec, SyncGroupSpec,
        TrackFileSpec, TrackSpec, VirtualServerSpec, VrrpInstanceSpec, VrrpScriptSpec,
    },
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDto {
    dataplane: Option<Spanned<DataplaneDto>>,
    #[serde(default)]
    virtual_server: Vec<Spanned<VirtualServerDto>>,
    #[serde(default)]
    vrrp_instance: Vec<Spanned<VrrpInstanceDto>>,
    router_id: Option<Spanned<String>>,
    #[serde(default)]
    vrrp_script: Vec<Spanned<VrrpScriptDto>>,
    #[serde(default)]
    track_file: Vec<Spanned<TrackFileDto>>,
    #[serde(default)]
    sync_group: Vec<Spanned<SyncGroupDto>>,
    notify_fifo: Option<Spanned<String>>,
    script_user: Option<Spanned<String>>,
    script_group: Option<Spanned<String>>,
    garp_master_delay: Option<Spanned<f64>>,
    garp_master_repeat: Option<Spanned<i64>>,
    garp_master_refresh: Option<Spanned<f64>>,
}

/// A command: its line, or a table with the user and group to run it as. (Untagged enums
/// cannot hold `Spanned` values: the position is the whole value's, see [`ScriptField`].)
#[derive(Deserialize)]
#[serde(untagged)]
enum ScriptDto {
    Line(String),
    Full {
        command: String,
        user: Option<String>,
        group: Option<String>,
    },
}

/// A command field with its position.
type ScriptField = Spanned<ScriptDto>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrackDto {
    name: Spanned<String>,
    weight: Option<Spanned<i64>>,
    reverse: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VrrpScriptDto {
    name: Spanned<String>,
    script: Option<ScriptField>,
    interval: Option<Spanned<f64>>,
    timeout: Option<Spanned<f64>>,
    weight: Option<Spanned<i64>>,
    reverse: Option<Spanned<bool>>,
    rise: Option<Spanned<i64>>,
    fall: Option<Spanned<i64>>,
    init_fail: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrackFileDto {
    name: Spanned<String>,
    file: Option<Spanned<String>>,
    weight: Option<Spanned<i64>>,
    reverse: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncGroupDto {
    name: Spanned<String>,
    #[serde(default)]
    group: Vec<Spanned<String>>,
    notify_master: Option<ScriptField>,
    notify_backup: Option<ScriptField>,
    notify_fault: Option<ScriptField>,
    notify_stop: Option<ScriptField>,
    notify: Option<ScriptField>,
}

/// keepalived's vrrp_instance keywords, with the same names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VrrpInstanceDto {
    name: Spanned<String>,
    interface: Option<Spanned<String>>,
    state: Option<Spanned<String>>,
    virtual_router_id: Option<Spanned<i64>>,
    priority: Option<Spanned<i64>>,
    advert_int: Option<Spanned<f64>>,
    version: Option<Spanned<i64>>,
    preempt: Option<Spanned<bool>>,
    preempt_delay: Option<Spanned<f64>>,
    #[serde(default)]
    virtual_ipaddress: Vec<Spanned<String>>,
    auth_type: Option<Spanned<String>>,
    auth_pass: Option<Spanned<String>>,
    unicast_src_ip: Option<Spanned<String>>,
    #[serde(default)]
    unicast_peer: Vec<Spanned<String>>,
    v3_checksum_as_v2: Option<Spanned<bool>>,
    notify_master: Option<ScriptField>,
    notify_backup: Option<ScriptField>,
    notify_fault: Option<ScriptField>,
    notify_stop: Option<ScriptField>,
    notify: Option<ScriptField>,
    notify_priority_changes: Option<Spanned<bool>>,
    #[serde(default)]
    track_interface: Vec<TrackDto>,
    #[serde(default)]
    track_script: Vec<TrackDto>,
    #[serde(default)]
    track_file: Vec<TrackDto>,
    garp_master_delay: Option<Spanned<f64>>,
    garp_master_repeat: Option<Spanned<i64>>,
    garp_master_refresh: Option<Spanned<f64>>,
    /// `true` for the default name, or the interface name.
    use_vmac: Option<Spanned<VmacDto>>,
    vmac_xmit_base: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum VmacDto {
    On(bool),
    Named(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataplaneDto {
    mode: Option<Spanned<String>>,
    xdp_interface: Option<Spanned<String>>,
    xdp_attach: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VirtualServerDto {
    address: Spanned<String>,
    port: Spanned<i64>,
    protocol: Option<Spanned<String>>,
    scheduler: Option<Spanned<String>>,
    forwarding: Option<Spanned<String>>,
    #[serde(default)]
    real_server: Vec<Spanned<RealServerDto>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RealServerDto {
    address: Spanned<String>,
    port: Spanned<i64>,
    weight: Option<Spanned<i64>>,
}

/// Parses lbd's TOML format.
pub fn parse(file: &str, text: &str) -> Result<Spec, Vec<ConfigError>> {
    let dto: FileDto = ::toml::from_str(text).map_err(|e| {
        let pos = e
            .span()
            .map_or(Pos { line: 1, col: 1 }, |s| Pos::of_offset(text, s.start));
        vec![ConfigError {
            file: file.to_owned(),
            pos,
            message: e.message().trim_end().to_owned(),
        }]
    })?;
    let at =
        |s: &Spanned<String>| At::new(s.get_ref().clone(), Pos::of_offset(text, s.span().start));
    let at_int = |s: &Spanned<i64>| At::new(*s.get_ref(), Pos::of_offset(text, s.span().start));
    let float = |s: &Spanned<f64>| At::new(*s.get_ref(), Pos::of_offset(text, s.span().start));
    let flag = |s: &Spanned<bool>| At::new(*s.get_ref(), Pos::of_offset(text, s.span().start));
    let script = |d: &ScriptField| {
        let pos = Pos::of_offset(text, d.span().start);
        let at = |s: &String| At::new(s.clone(), pos);
        match d.get_ref() {
            ScriptDto::Line(line) => ScriptSpec {
                command: at(line),
                user: None,
                group: None,
            },
            ScriptDto::Full {
                command,
                user,
                group,
            } => ScriptSpec {
                command: at(command),
                user: user.as_ref().map(at),
                group: group.as_ref().map(at),
            },
        }
    };
    let track = |d: &TrackDto| TrackSpec {
        name: at(&d.name),
        weight: d.weight.as_ref().map(at_int),
        reverse: d.reverse.as_ref().map(flag),
    };
    let notify = |master: &Option<ScriptField>,
                  backup: &Option<ScriptField>,
                  fault: &Option<ScriptField>,
                  stop: &Option<ScriptField>,
                  any: &Option<ScriptField>| NotifySpec {
        master: master.as_ref().map(script),
        backup: backup.as_ref().map(script),
        fault: fault.as_ref().map(script),
        stop: stop.as_ref().map(script),
        any: any.as_ref().map(script),
    };
    let dataplane = dto.dataplane.map(|d| {
        let pos = Pos::of_offset(text, d.span().start);
        let d = d.into_inner();
        DataplaneSpec {
            pos,
            mode: d.mode.as_ref().map(at),
            xdp_interface: d.xdp_interface.as_ref().map(at),
            xdp_attach: d.xdp_attach.as_ref().map(at),
        }
    });
    let virtual_servers = dto
        .virtual_server
        .into_iter()
        .map(|vs| {
            let pos = Pos::of_offset(text, vs.span().start);
            let vs = vs.into_inner();
            VirtualServerSpec {
                pos,
                address: at(&vs.address),
                port: at_int(&vs.port),
                protocol: vs.protocol.as_ref().map(at),
                scheduler: vs.scheduler.as_ref().map(at),
                forwarding: vs.forwarding.as_ref().map(at),
                real_servers: vs
                    .real_server
                    .into_iter()
                    .map(|rs| {
                        let pos = Pos::of_offset(text, rs.span().start);
                        let rs = rs.into_inner();
                        RealServerSpec {
                            pos,
                            address: at(&rs.address),
                            port: at_int(&rs.port),
                            weight: rs.weight.as_ref().map(at_int),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    let vrrp_instances = dto
        .vrrp_instance
        .into_iter()
        .map(|vi| {
            let pos = Pos::of_offset(text, vi.span().start);
            let vi = vi.into_inner();
            VrrpInstanceSpec {
                pos,
                name: at(&vi.name),
                interface: vi.interface.as_ref().map(at),
                state: vi.state.as_ref().map(at),
                virtual_router_id: vi.virtual_router_id.as_ref().map(at_int),
                priority: vi.priority.as_ref().map(at_int),
                advert_int: vi.advert_int.as_ref().map(float),
                version: vi.version.as_ref().map(at_int),
                preempt: vi.preempt.as_ref().map(flag),
                preempt_delay: vi.preempt_delay.as_ref().map(float),
                virtual_ipaddress: vi.virtual_ipaddress.iter().map(at).collect(),
                auth_type: vi.auth_type.as_ref().map(at),
                auth_pass: vi.auth_pass.as_ref().map(at),
                unicast_src_ip: vi.unicast_src_ip.as_ref().map(at),
                unicast_peer: vi.unicast_peer.iter().map(at).collect(),
                v3_checksum_as_v2: vi.v3_checksum_as_v2.as_ref().map(flag),
                notify: notify(
                    &vi.notify_master,
                    &vi.notify_backup,
                    &vi.notify_fault,
                    &vi.notify_stop,
                    &vi.notify,
                ),
                notify_priority_changes: vi.notify_priority_changes.as_ref().map(flag),
                track_interface: vi.track_interface.iter().map(track).collect(),
                track_script: vi.track_script.iter().map(track).collect(),
                track_file: vi.track_file.iter().map(track).collect(),
                garp_master_delay: vi.garp_master_delay.as_ref().map(float),
                garp_master_repeat: vi.garp_master_repeat.as_ref().map(at_int),
                garp_master_refresh: vi.garp_master_refresh.as_ref().map(float),
                use_vmac: vi.use_vmac.as_ref().and_then(|v| {
                    let pos = Pos::of_offset(text, v.span().start);
                    match v.get_ref() {
                        VmacDto::On(true) => Some(At::new(String::new(), pos)),
                        VmacDto::On(false) => None,
                        VmacDto::Named(name) => Some(At::new(name.clone(), pos)),
                    }
                }),
                vmac_xmit_base: vi.vmac_xmit_base.as_ref().map(flag),
            }
        })
        .collect();
    let vrrp_scripts = dto
        .vrrp_script
        .iter()
        .map(|vs| {
            let pos = Pos::of_offset(text, vs.span().start);
            let vs = vs.get_ref();
            VrrpScriptSpec {
                pos,
                name: at(&vs.name),
                script: vs.script.as_ref().map(script),
                interval: vs.interval.as_ref().map(float),
                timeout: vs.timeout.as_ref().map(float),
                weight: vs.weight.as_ref().map(at_int),
                reverse: vs.reverse.as_ref().map(flag),
                rise: vs.rise.as_ref().map(at_int),
                fall: vs.fall.as_ref().map(at_int),
                init_fail: vs.init_fail.as_ref().map(flag),
            }
        })
        .collect();
    let track_files = dto
        .track_file
        .iter()
        .map(|tf| {
            let pos = Pos::of_offset(text, tf.span().start);
            let tf = tf.get_ref();
            TrackFileSpec {
                pos,
                name: at(&tf.name),
                file: tf.file.as_ref().map(at),
                weight: tf.weight.as_ref().map(at_int),
                reverse: tf.reverse.as_ref().map(flag),
            }
        })
        .collect();
    let sync_groups = dto
        .sync_group
        .iter()
        .map(|sg| {
            let pos = Pos::of_offset(text, sg.span().start);
            let sg = sg.get_ref();
            SyncGroupSpec {
                pos,
                name: at(&sg.name),
                group: sg.group.iter().map(at).collect(),
                notify: notify(
                    &sg.notify_master,
                    &sg.notify_backup,
                    &sg.notify_fault,
                    &sg.notify_stop,
                    &sg.notify,
                ),
            }
        })
        .collect();
    Ok(Spec {
        dataplane,
        virtual_servers,
        vrrp_instances,
        vrrp_version: None,
        router_id: dto.router_id.as_ref().map(at),
        vrrp_scripts,
        track_files,
        sync_groups,
        notify_fifo: dto.notify_fifo.as_ref().map(at),
        script_user: dto
            .script_user
            .as_ref()
            .map(|u| (at(u), dto.script_group.as_ref().map(at))),
        garp_master_delay: dto.garp_master_delay.as_ref().map(float),
        garp_master_repeat: dto.garp_master_repeat.as_ref().map(at_int),
        garp_master_refresh: dto.garp_master_refresh.as_ref().map(float),
    })
}
