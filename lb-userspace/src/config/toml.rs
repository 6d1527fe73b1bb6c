//! lbd's TOML format: serde DTOs (unknown fields rejected) into the [`Spec`] tree.
//!
//! ```toml
//! [dataplane]
//! mode = "xdp"              # none | ipvs (default) | xdp | xdp+ipvs
//! xdp_interface = "eth0"
//! xdp_attach = "auto"       # auto (default) | native | generic
//! xdp_ring_size = 65537     # Maglev table slots per VIP, a prime (default 65537)
//! xdp_max_vips = 512        # VIPs the XDP maps hold (default 512)
//! xdp_mtu = 1500            # largest encapsulated packet (default 1500)
//! xdp_encap_source = "198.51.100.0/24"   # outer IPv4 sources of IPIP (default: the interface's)
//! xdp_encap_source6 = "2001:db8::/96"    # outer IPv6 sources of IP6IP6
//! xdp_pin_dir = "/sys/fs/bpf/lbd/eth0"   # a bpffs directory (default: per netns and interface)
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
//! lvs_notify_fifo = "/run/lbd/lvs.fifo"  # VS and RS lines, as keepalived writes them
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
    ConfigError, LineIndex, Pos,
    spec::{
        At, DataplaneSpec, NotifySpec, ScriptSpec, Spec, Statement, SyncGroupSpec, TrackFileSpec,
        TrackSpec, VrrpInstanceSpec, VrrpScriptSpec,
    },
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDto {
    dataplane: Option<Spanned<DataplaneDto>>,
    // The LVS tables are read by `lvs_statements`, with their positions.
    #[serde(rename = "virtual_server")]
    _virtual_server: Option<serde::de::IgnoredAny>,
    #[serde(rename = "virtual_server_group")]
    _virtual_server_group: Option<serde::de::IgnoredAny>,
    #[serde(rename = "SSL", alias = "ssl")]
    _ssl: Option<serde::de::IgnoredAny>,
    #[serde(rename = "lvs_timeouts")]
    _lvs_timeouts: Option<serde::de::IgnoredAny>,
    #[serde(rename = "lvs_flush")]
    _lvs_flush: Option<serde::de::IgnoredAny>,
    #[serde(rename = "lvs_flush_on_stop")]
    _lvs_flush_on_stop: Option<serde::de::IgnoredAny>,
    #[serde(rename = "lvs_sync_daemon")]
    _lvs_sync_daemon: Option<serde::de::IgnoredAny>,
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
    lvs_notify_fifo: Option<Spanned<String>>,
    script_user: Option<Spanned<String>>,
    script_group: Option<Spanned<String>>,
    garp_master_delay: Option<Spanned<f64>>,
    garp_master_repeat: Option<Spanned<i64>>,
    garp_master_refresh: Option<Spanned<f64>>,
    vrrp_rt_priority: Option<Spanned<i64>>,
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
    xdp_ring_size: Option<Spanned<i64>>,
    xdp_max_vips: Option<Spanned<i64>>,
    xdp_mtu: Option<Spanned<i64>>,
    xdp_encap_source: Option<Spanned<String>>,
    xdp_encap_source6: Option<Spanned<String>>,
    xdp_pin_dir: Option<Spanned<String>>,
}

/// Parses lbd's TOML format.
pub fn parse(file: &str, text: &str) -> Result<Spec, Vec<ConfigError>> {
    let lines = LineIndex::new(text);
    let dto: FileDto = ::toml::from_str(text).map_err(|e| {
        let pos = e.span().map_or(
            Pos {
                line: 1,
                col: 1,
                file: 0,
            },
            |s| lines.pos(s.start),
        );
        vec![ConfigError {
            file: file.to_owned(),
            pos,
            message: e.message().trim_end().to_owned(),
        }]
    })?;
    let at = |s: &Spanned<String>| At::new(s.get_ref().clone(), lines.pos(s.span().start));
    let at_int = |s: &Spanned<i64>| At::new(*s.get_ref(), lines.pos(s.span().start));
    let float = |s: &Spanned<f64>| At::new(*s.get_ref(), lines.pos(s.span().start));
    let flag = |s: &Spanned<bool>| At::new(*s.get_ref(), lines.pos(s.span().start));
    let script = |d: &ScriptField| {
        let pos = lines.pos(d.span().start);
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
        let pos = lines.pos(d.span().start);
        let d = d.into_inner();
        DataplaneSpec {
            pos,
            mode: d.mode.as_ref().map(at),
            xdp_interface: d.xdp_interface.as_ref().map(at),
            xdp_attach: d.xdp_attach.as_ref().map(at),
            xdp_ring_size: d.xdp_ring_size.as_ref().map(at_int),
            xdp_max_vips: d.xdp_max_vips.as_ref().map(at_int),
            xdp_mtu: d.xdp_mtu.as_ref().map(at_int),
            xdp_encap_source: d.xdp_encap_source.as_ref().map(at),
            xdp_encap_source6: d.xdp_encap_source6.as_ref().map(at),
            xdp_pin_dir: d.xdp_pin_dir.as_ref().map(at),
        }
    });
    let vrrp_instances = dto
        .vrrp_instance
        .into_iter()
        .map(|vi| {
            let pos = lines.pos(vi.span().start);
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
                    let pos = lines.pos(v.span().start);
                    match v.get_ref() {
                        VmacDto::On(true) => Some(At::new(String::new(), pos)),
                        VmacDto::On(false) => None,
                        VmacDto::Named(name) => Some(At::new(name.clone(), pos)),
                    }
                }),
                vmac_xmit_base: vi.vmac_xmit_base.as_ref().map(flag),
                lvs_sync_daemon_interface: None,
            }
        })
        .collect();
    let vrrp_scripts = dto
        .vrrp_script
        .iter()
        .map(|vs| {
            let pos = lines.pos(vs.span().start);
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
            let pos = lines.pos(tf.span().start);
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
            let pos = lines.pos(sg.span().start);
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
        lvs: lvs_statements(file, text)?,
        vrrp_instances,
        vrrp_version: None,
        router_id: dto.router_id.as_ref().map(at),
        vrrp_scripts,
        track_files,
        sync_groups,
        notify_fifo: dto.notify_fifo.as_ref().map(at),
        lvs_notify_fifo: dto.lvs_notify_fifo.as_ref().map(at),
        script_user: dto
            .script_user
            .as_ref()
            .map(|u| (at(u), dto.script_group.as_ref().map(at))),
        garp_master_delay: dto.garp_master_delay.as_ref().map(float),
        garp_master_repeat: dto.garp_master_repeat.as_ref().map(at_int),
        garp_master_refresh: dto.garp_master_refresh.as_ref().map(float),
        vrrp_rt_priority: dto.vrrp_rt_priority.as_ref().map(at_int),
        lvs_blocks: Vec::new(),
    })
}

/// The checker blocks, whose TOML keys may also be written in lower case.
const CHECKERS: [&str; 10] = [
    "TCP_CHECK",
    "HTTP_GET",
    "SSL_GET",
    "SMTP_CHECK",
    "DNS_CHECK",
    "UDP_CHECK",
    "PING_CHECK",
    "MISC_CHECK",
    "FILE_CHECK",
    "BFD_CHECK",
];

/// Maps the LVS tables (`virtual_server`, `virtual_server_group`, `SSL`) to the statements
/// keepalived.conf would have, so one reader validates both formats:
///
/// - a key with a scalar is a statement with one argument, an array of scalars gives several
///   (`status_code = [200, "300-399"]`, `sorry_server = ["192.0.2.9", 80]`);
/// - a table is a block, an array of tables one block each (`real_server`, `url`, checkers);
/// - `address` and `port` (or `fwmark`, `group`) of a virtual or real server are its arguments;
///   `scheduler` and `forwarding` are `lvs_sched` and `lvs_method`;
/// - a group is `{ name = "G", members = ["192.0.2.1-10 80", "fwmark 5"] }`.
fn lvs_statements(file: &str, text: &str) -> Result<Vec<Statement>, Vec<ConfigError>> {
    use ::toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).map_err(|e| {
        let pos = e
            .span()
            .map_or(Pos::default(), |s| Pos::of_offset(text, s.start));
        vec![ConfigError {
            file: file.to_owned(),
            pos,
            message: e.message().trim_end().to_owned(),
        }]
    })?;
    let mut errors = Vec::new();
    let mut out = Vec::new();
    let ctx = Ctx {
        file,
        lines: LineIndex::new(text),
    };
    let mut entries: Vec<_> = root.get_ref().iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    for (key, value) in entries {
        let keyword = match key.get_ref().as_ref() {
            "virtual_server" => "virtual_server",
            "virtual_server_group" => "virtual_server_group",
            "SSL" | "ssl" => "SSL",
            // keepalived's global_defs keywords of IPVS, with their names.
            name @ ("lvs_timeouts" | "lvs_flush" | "lvs_flush_on_stop" | "lvs_sync_daemon") => {
                let pos = ctx.pos(key.span().start);
                match value.get_ref() {
                    DeValue::Table(_) => out.extend(ctx.block_statement(name, value, &mut errors)),
                    DeValue::Array(list) => out.push(Statement {
                        keyword: At::new(name.to_owned(), pos),
                        args: list
                            .iter()
                            .filter_map(|x| ctx.word(x, &mut errors))
                            .collect(),
                        block: None,
                    }),
                    _ => out.push(Statement {
                        keyword: At::new(name.to_owned(), pos),
                        args: ctx.word(value, &mut errors).into_iter().collect(),
                        block: None,
                    }),
                }
                continue;
            }
            _ => continue,
        };
        let tables: Vec<_> = match value.get_ref() {
            DeValue::Array(list) => list.iter().collect(),
            DeValue::Table(_) => vec![value],
            _ => {
                errors.push(ctx.error(value.span().start, format!("{keyword} must be a table")));
                continue;
            }
        };
        for t in tables {
            match ctx.block_statement(keyword, t, &mut errors) {
                Some(s) => out.push(s),
                None => continue,
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

struct Ctx<'a> {
    file: &'a str,
    lines: LineIndex<'a>,
}

type DeSpanned<'i> = Spanned<::toml::de::DeValue<'i>>;

impl Ctx<'_> {
    fn pos(&self, offset: usize) -> Pos {
        self.lines.pos(offset)
    }

    fn error(&self, offset: usize, message: String) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            pos: self.pos(offset),
            message,
        }
    }

    /// A scalar as the word keepalived.conf would have.
    fn word(&self, value: &DeSpanned<'_>, errors: &mut Vec<ConfigError>) -> Option<At<String>> {
        use ::toml::de::DeValue;
        let pos = self.pos(value.span().start);
        let word = match value.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(i) => {
                let digits = i.as_str().replace('_', "");
                match i64::from_str_radix(
                    digits
                        .trim_start_matches("0x")
                        .trim_start_matches("0o")
                        .trim_start_matches("0b"),
                    i.radix(),
                ) {
                    Ok(n) => n.to_string(),
                    Err(_) => digits,
                }
            }
            DeValue::Float(f) => f.as_str().replace('_', ""),
            DeValue::Boolean(b) => b.to_string(),
            _ => {
                errors.push(self.error(
                    value.span().start,
                    format!(
                        "expected a string, number or boolean, not {}",
                        value.get_ref().type_str()
                    ),
                ));
                return None;
            }
        };
        Some(At::new(word, pos))
    }

    /// A table as a statement `keyword [args] { block }`.
    fn block_statement(
        &self,
        keyword: &str,
        value: &DeSpanned<'_>,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Statement> {
        use ::toml::de::DeValue;
        let start = value.span().start;
        let DeValue::Table(table) = value.get_ref() else {
            errors.push(self.error(start, format!("{keyword} must be a table")));
            return None;
        };
        let keyword_at = At::new(keyword.to_owned(), self.pos(start));
        let get = |name: &str| {
            table
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == name)
                .map(|(_, v)| v)
        };
        // Which keys are the statement's arguments.
        let arg_keys: &[&str] = match keyword {
            "virtual_server" if get("fwmark").is_some() => &["fwmark"],
            "virtual_server" if get("group").is_some() => &["group"],
            "virtual_server" | "real_server" => &["address", "port"],
            "virtual_server_group" => &["name"],
            _ => &[],
        };
        let mut args = Vec::new();
        for name in arg_keys {
            match get(name) {
                Some(v) => {
                    if matches!(*name, "fwmark" | "group") {
                        args.push(At::new((*name).to_owned(), self.pos(v.span().start)));
                    }
                    args.extend(self.word(v, errors));
                }
                None if *name == "port" && keyword == "real_server" => {}
                None => errors.push(self.error(start, format!("{keyword} needs {name}"))),
            }
        }
        let mut block = Vec::new();
        // In the order written: the table's map is sorted by key.
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        for (k, v) in entries {
            let name = k.get_ref().as_ref();
            if arg_keys.contains(&name) {
                continue;
            }
            let key_pos = self.pos(k.span().start);
            if keyword == "virtual_server_group" && name == "members" {
                let DeValue::Array(list) = v.get_ref() else {
                    errors.push(
                        self.error(v.span().start, "members must be a list of strings".into()),
                    );
                    continue;
                };
                for m in list.iter() {
                    let Some(word) = self.word(m, errors) else {
                        continue;
                    };
                    let mut words = word
                        .value
                        .split_whitespace()
                        .map(|w| At::new(w.to_owned(), word.pos));
                    if let Some(first) = words.next() {
                        block.push(Statement {
                            keyword: first,
                            args: words.collect(),
                            block: None,
                        });
                    }
                }
                continue;
            }
            let keyword = match name {
                "scheduler" if keyword == "virtual_server" => "lvs_sched".to_owned(),
                "forwarding" if keyword == "virtual_server" || keyword == "real_server" => {
                    "lvs_method".to_owned()
                }
                other => CHECKERS
                    .iter()
                    .find(|c| c.eq_ignore_ascii_case(other))
                    .map_or_else(|| other.to_owned(), |c| (*c).to_owned()),
            };
            match v.get_ref() {
                DeValue::Table(_) => block.extend(self.block_statement(&keyword, v, errors)),
                DeValue::Array(list) if list.iter().any(|x| x.get_ref().is_table()) => {
                    for item in list.iter() {
                        block.extend(self.block_statement(&keyword, item, errors));
                    }
                }
                DeValue::Array(list) => block.push(Statement {
                    keyword: At::new(keyword, key_pos),
                    args: list.iter().filter_map(|x| self.word(x, errors)).collect(),
                    block: None,
                }),
                _ => block.push(Statement {
                    keyword: At::new(keyword, key_pos),
                    args: self.word(v, errors).into_iter().collect(),
                    block: None,
                }),
            }
        }
        Some(Statement {
            keyword: keyword_at,
            args,
            block: Some(block),
        })
    }
}
