//! keepalived's LVS blocks (`virtual_server`, `virtual_server_group`, `SSL` and every checker)
//! from the statement tree into the model, with keepalived's defaults and inheritance.
//!
//! Both front-ends produce the same tree for these blocks (keepalived.conf directly; TOML by
//! mapping tables to blocks, see [`super::toml`]), so there is one reader and one set of
//! keywords. Timing inherits virtual server → real server → checker, as in keepalived's
//! `validate_check_config`; every keyword is checked and every error reported.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use super::{
    ConfigError, Pos, Unimplemented,
    spec::{At, LvsBlock, Statement},
    validate::split_command,
};
use crate::model::{
    BodyRegex, Checker, Family, FileProbe, Forwarding, HttpProbe, HttpVersion, IpvsGlobals,
    IpvsTimeouts, MiscProbe, OnStop, Persistence, Probe, ProbeKind, Protocol, RealServer,
    Scheduler, Script, ScriptUser, ServiceKey, SorryServer, SyncDaemon, Target, Timing, TlsProbe,
    Tunnel, TunnelChecksum, TunnelKind, UdpProbe, UrlCheck, VirtualServer, Weight,
};

/// keepalived keywords of these blocks that lbd does not implement.
const UNIMPLEMENTED: &[&str] = &["smtp_alert", "snmp_name", "BFD_CHECK", "password"];

/// Timing settings as written at one level; `None` inherits.
#[derive(Clone, Copy, Debug, Default)]
struct TimingSpec {
    delay_loop: Option<Duration>,
    connect_timeout: Option<Duration>,
    retry: Option<u32>,
    delay_before_retry: Option<Duration>,
    warmup: Option<Duration>,
    alpha: Option<bool>,
    inhibit: Option<bool>,
}

impl TimingSpec {
    fn under(self, parent: TimingSpec) -> TimingSpec {
        TimingSpec {
            delay_loop: self.delay_loop.or(parent.delay_loop),
            connect_timeout: self.connect_timeout.or(parent.connect_timeout),
            retry: self.retry.or(parent.retry),
            delay_before_retry: self.delay_before_retry.or(parent.delay_before_retry),
            warmup: self.warmup.or(parent.warmup),
            alpha: self.alpha.or(parent.alpha),
            inhibit: self.inhibit.or(parent.inhibit),
        }
    }
}

/// Reads the LVS statements of one file.
pub(super) struct Reader<'a> {
    file: &'a str,
    unimplemented: Unimplemented,
    track_files: HashMap<String, PathBuf>,
    /// Members of each `virtual_server_group`.
    groups: HashMap<String, Vec<ServiceMember>>,
    tls: TlsProbe,
    pub(super) errors: Vec<ConfigError>,
    pub(super) warnings: Vec<ConfigError>,
}

/// A member of a virtual_server_group: addresses with a port, or a firewall mark.
#[derive(Clone, Debug)]
enum ServiceMember {
    Addrs(Vec<SocketAddr>),
    Fwmark(u32),
}

impl<'a> Reader<'a> {
    /// A reader for `file`, which defines the tracked files `track_files` (name, path).
    pub(super) fn new(
        file: &'a str,
        unimplemented: Unimplemented,
        track_files: impl IntoIterator<Item = (String, PathBuf)>,
    ) -> Self {
        Self {
            file,
            unimplemented,
            track_files: track_files.into_iter().collect(),
            groups: HashMap::new(),
            tls: TlsProbe::default(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Reads the top-level LVS statements, in order (groups and `SSL` first, as keepalived
    /// allows them anywhere in the file). A placeholder stands for `blocks[i]`: already read,
    /// or read here; `read_blocks[i]` gets what it read to, where that took no warning.
    pub(super) fn read(
        &mut self,
        statements: &[Statement],
        blocks: &[LvsBlock],
        read_blocks: &mut Vec<Option<Arc<VirtualServer>>>,
    ) -> Vec<Arc<VirtualServer>> {
        for s in statements {
            match s.keyword.value.as_str() {
                "virtual_server_group" => self.group(s),
                "SSL" => self.ssl(s),
                _ => {}
            }
        }
        read_blocks.clear();
        read_blocks.resize(blocks.len(), None);
        let mut servers = Vec::new();
        let mut seen: HashMap<ServiceKey, Pos> = HashMap::new();
        for s in statements
            .iter()
            .filter(|s| s.keyword.value == "virtual_server")
        {
            let block = s
                .placeholder_index()
                .and_then(|i| Some((i, blocks.get(i)?)));
            let vs = match block {
                Some((i, LvsBlock::Read(vs))) => {
                    read_blocks[i] = Some(vs.clone());
                    Some(vs.clone())
                }
                Some((i, LvsBlock::Parse(s))) => {
                    let warnings = self.warnings.len();
                    let vs = self.virtual_server(s).map(Arc::new);
                    if self.warnings.len() == warnings {
                        read_blocks[i].clone_from(&vs);
                    }
                    vs
                }
                None => self.virtual_server(s).map(Arc::new),
            };
            let Some(vs) = vs else {
                continue;
            };
            let mut duplicate = false;
            for key in &vs.services {
                if let Some(first) = seen.insert(*key, s.keyword.pos) {
                    self.error(
                        s.keyword.pos,
                        format!(
                            "virtual service {key} is already defined at line {}",
                            first.line
                        ),
                    );
                    duplicate = true;
                }
            }
            if !duplicate {
                servers.push(vs);
            }
        }
        servers
    }

    /// Reads the global IPVS keywords (`lvs_timeouts`, `lvs_flush`, `lvs_flush_on_stop`).
    pub(super) fn globals(&mut self, statements: &[Statement]) -> IpvsGlobals {
        let mut globals = IpvsGlobals::default();
        for s in statements {
            match s.keyword.value.as_str() {
                "lvs_flush" => globals.flush_at_start = self.flag(s).unwrap_or(false),
                "lvs_flush_on_stop" => {
                    let usage = "lvs_flush_on_stop takes VS or nothing";
                    globals.on_stop = match s.args.as_slice() {
                        [] => OnStop::FlushAll,
                        [a] => match a.value.to_ascii_uppercase().as_str() {
                            "VS" | "FALSE" | "NO" | "OFF" => OnStop::Release,
                            "ALL" | "TRUE" | "YES" | "ON" => OnStop::FlushAll,
                            _ => {
                                self.error(a.pos, usage.into());
                                OnStop::Release
                            }
                        },
                        _ => {
                            self.error(s.keyword.pos, usage.into());
                            OnStop::Release
                        }
                    }
                }
                "lvs_timeouts" => globals.timeouts = self.timeouts(s),
                "lvs_sync_daemon" => globals.sync_daemon = self.sync_daemon(s),
                _ => {}
            }
        }
        globals
    }

    /// `lvs_sync_daemon IFACE INSTANCE [id N] [maxlen N] [port N] [ttl N] [group IP]`; in TOML
    /// an array of the same words.
    fn sync_daemon(&mut self, s: &Statement) -> Option<SyncDaemon> {
        let usage = "usage: lvs_sync_daemon IFACE VRRP_INSTANCE [id N] [maxlen N] [port N] [ttl N] [group IP]";
        let (Some(interface), Some(instance)) = (s.args.first(), s.args.get(1)) else {
            self.error(s.keyword.pos, usage.into());
            return None;
        };
        let mut d = SyncDaemon {
            interface: interface.value.clone(),
            instance: instance.value.clone(),
            sync_id: 0,
            maxlen: None,
            port: None,
            ttl: None,
            group: None,
        };
        for pair in s.args[2..].chunks(2) {
            let [name, value] = pair else {
                self.error(pair[0].pos, usage.into());
                return None;
            };
            let number = |max: u32| value.value.parse::<u32>().ok().filter(|&n| n <= max);
            let ok = match name.value.as_str() {
                "id" => number(255).map(|n| d.sync_id = n).is_some(),
                "maxlen" => number(65_507).map(|n| d.maxlen = Some(n as u16)).is_some(),
                "port" => number(65_535).map(|n| d.port = Some(n as u16)).is_some(),
                "ttl" => number(255).map(|n| d.ttl = Some(n as u8)).is_some(),
                "group" => value.value.parse().map(|ip| d.group = Some(ip)).is_ok(),
                _ => {
                    self.error(name.pos, usage.into());
                    return None;
                }
            };
            if !ok {
                let message = format!("bad {} {:?}", name.value, value.value);
                self.error(value.pos, message);
                return None;
            }
        }
        Some(d)
    }

    /// `lvs_timeouts tcp N tcpfin N udp N` (any of them), or the same as a block.
    fn timeouts(&mut self, s: &Statement) -> Option<IpvsTimeouts> {
        let mut words: Vec<At<String>> = s.args.clone();
        for k in s.block.iter().flatten() {
            words.push(k.keyword.clone());
            words.extend(k.args.iter().cloned());
        }
        let mut t = IpvsTimeouts::default();
        for pair in words.chunks(2) {
            let [name, value] = pair else {
                self.error(
                    pair[0].pos,
                    "lvs_timeouts takes tcp N tcpfin N udp N".into(),
                );
                return None;
            };
            let Ok(n) = value.value.parse::<u32>() else {
                let message = format!("{:?} is not a number of seconds", value.value);
                self.error(value.pos, message);
                return None;
            };
            match name.value.as_str() {
                "tcp" => t.tcp = n,
                "tcpfin" => t.tcpfin = n,
                "udp" => t.udp = n,
                other => {
                    let message = format!("lvs_timeouts has tcp, tcpfin and udp, not {other:?}");
                    self.error(name.pos, message);
                    return None;
                }
            }
        }
        Some(t)
    }

    fn error(&mut self, pos: Pos, message: String) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            pos,
            message,
        });
    }

    fn other(&mut self, s: &Statement, context: &str) {
        let known = UNIMPLEMENTED.contains(&s.keyword.value.as_str());
        let (problem, warning) = super::keepalived::keyword_problem(
            self.file,
            &s.keyword,
            context,
            known,
            self.unimplemented,
        );
        if warning {
            self.warnings.push(problem);
        } else {
            self.errors.push(problem);
        }
    }

    /// The single argument of `s`.
    fn one<'s>(&mut self, s: &'s Statement) -> Option<&'s At<String>> {
        if s.block.is_some() {
            self.error(
                s.keyword.pos,
                format!("{} does not take a block", s.keyword.value),
            );
        }
        if s.args.len() == 1 {
            return s.args.first();
        }
        self.error(
            s.keyword.pos,
            format!(
                "{} takes one argument, got {}",
                s.keyword.value,
                s.args.len()
            ),
        );
        None
    }

    fn unsigned(&mut self, s: &Statement, max: u64) -> Option<u64> {
        let at = self.one(s)?;
        match at.value.parse::<u64>() {
            Ok(n) if n <= max => Some(n),
            _ => {
                let message = format!(
                    "{} must be a whole number 0-{max}, not {:?}",
                    s.keyword.value, at.value
                );
                self.error(at.pos, message);
                None
            }
        }
    }

    fn seconds(&mut self, s: &Statement) -> Option<Duration> {
        let at = self.one(s)?;
        match at.value.parse::<f64>() {
            Ok(n) if n.is_finite() && (0.0..=1e6).contains(&n) => Some(Duration::from_secs_f64(n)),
            _ => {
                let message = format!(
                    "{} must be seconds 0-1000000, not {:?}",
                    s.keyword.value, at.value
                );
                self.error(at.pos, message);
                None
            }
        }
    }

    /// keepalived's optional boolean: none means true.
    fn flag(&mut self, s: &Statement) -> Option<bool> {
        match s.args.as_slice() {
            [] => Some(true),
            [a] => match a.value.to_ascii_lowercase().as_str() {
                "true" | "on" | "yes" => Some(true),
                "false" | "off" | "no" => Some(false),
                _ => {
                    let message =
                        format!("{} takes true or false, not {:?}", s.keyword.value, a.value);
                    self.error(a.pos, message);
                    None
                }
            },
            _ => {
                let message = format!("{} takes at most one argument", s.keyword.value);
                self.error(s.keyword.pos, message);
                None
            }
        }
    }

    fn ip(&mut self, at: &At<String>) -> Option<IpAddr> {
        let parsed = at.value.parse::<IpAddr>();
        if parsed.is_err() {
            self.error(at.pos, format!("{:?} is not an IP address", at.value));
        }
        parsed.ok()
    }

    fn port(&mut self, at: &At<String>) -> Option<u16> {
        let parsed = at.value.parse::<u16>();
        if parsed.is_err() {
            self.error(at.pos, format!("port {:?} is not 0-65535", at.value));
        }
        parsed.ok()
    }

    fn script(&mut self, s: &Statement) -> Option<Script> {
        let at = self.one(s)?;
        match split_command(&at.value) {
            Ok(argv) => Some(Script { argv, user: None }),
            Err(why) => {
                let message = format!("command {:?}: {why}", at.value);
                self.error(at.pos, message);
                None
            }
        }
    }

    /// A timing keyword shared by virtual servers, real servers and checkers.
    fn timing(&mut self, s: &Statement, timing: &mut TimingSpec) -> bool {
        match s.keyword.value.as_str() {
            "delay_loop" => timing.delay_loop = self.seconds(s),
            "connect_timeout" => timing.connect_timeout = self.seconds(s),
            "retry" | "nb_get_retry" => {
                timing.retry = self.unsigned(s, u64::from(u32::MAX)).map(|n| n as u32);
            }
            "delay_before_retry" => timing.delay_before_retry = self.seconds(s),
            "warmup" => timing.warmup = self.seconds(s),
            "alpha" => timing.alpha = self.flag(s),
            "inhibit_on_failure" => timing.inhibit = self.flag(s),
            _ => return false,
        }
        true
    }

    fn group(&mut self, s: &Statement) {
        let Some(name) = self.one_name(s, "virtual_server_group NAME { ... }") else {
            return;
        };
        let mut members = Vec::new();
        for m in s.block.iter().flatten() {
            if m.keyword.value == "fwmark" {
                if let Some(mark) = self.unsigned(m, u64::from(u32::MAX)) {
                    members.push(ServiceMember::Fwmark(mark as u32));
                }
                continue;
            }
            let port = match m.args.as_slice() {
                [] => Some(0),
                [p] => self.port(p),
                _ => {
                    self.error(
                        m.keyword.pos,
                        "a group member is ADDRESS[-LAST] [PORT]".into(),
                    );
                    None
                }
            };
            if let (Some(addrs), Some(port)) = (self.address_range(&m.keyword), port) {
                members.push(ServiceMember::Addrs(
                    addrs
                        .into_iter()
                        .map(|ip| SocketAddr::new(ip, port))
                        .collect(),
                ));
            }
        }
        if self.groups.insert(name.value.clone(), members).is_some() {
            self.error(
                name.pos,
                format!("virtual_server_group {:?} is defined twice", name.value),
            );
        }
    }

    fn one_name(&mut self, s: &Statement, usage: &str) -> Option<At<String>> {
        match (s.args.as_slice(), &s.block) {
            ([name], Some(_)) => Some(name.clone()),
            _ => {
                self.error(s.keyword.pos, format!("usage: {usage}"));
                None
            }
        }
    }

    /// `192.0.2.1`, `192.0.2.1-10` (the last byte ranges) or `2001:db8::1-ff` (the last group).
    fn address_range(&mut self, at: &At<String>) -> Option<Vec<IpAddr>> {
        let (first, last) = match at.value.rsplit_once('-') {
            Some((first, last)) => (first, Some(last)),
            None => (at.value.as_str(), None),
        };
        let ip = self.ip(&At::new(first.to_owned(), at.pos))?;
        let Some(last) = last else {
            return Some(vec![ip]);
        };
        let list = match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                last.parse::<u8>().ok().filter(|&l| l >= o[3]).map(|l| {
                    (o[3]..=l)
                        .map(|b| IpAddr::from([o[0], o[1], o[2], b]))
                        .collect()
                })
            }
            IpAddr::V6(v6) => {
                let mut s = v6.segments();
                u16::from_str_radix(last, 16)
                    .ok()
                    .filter(|&l| l >= s[7] && l - s[7] < 4096)
                    .map(|l| {
                        (s[7]..=l)
                            .map(|g| {
                                s[7] = g;
                                IpAddr::from(s)
                            })
                            .collect()
                    })
            }
        };
        if list.is_none() {
            self.error(at.pos, format!("bad address range {:?}", at.value));
        }
        list
    }

    fn ssl(&mut self, s: &Statement) {
        for k in s.block.iter().flatten() {
            let path = |r: &mut Self| r.one(k).map(|a| PathBuf::from(&a.value));
            match k.keyword.value.as_str() {
                "ca" => self.tls.ca = path(self),
                "certificate" => self.tls.certificate = path(self),
                "key" => self.tls.key = path(self),
                _ => self.other(k, "SSL"),
            }
        }
    }

    fn virtual_server(&mut self, s: &Statement) -> Option<VirtualServer> {
        let pos = s.keyword.pos;
        let Some(block) = &s.block else {
            self.error(pos, "virtual_server needs a { ... } block".into());
            return None;
        };
        let before = self.errors.len();
        // The services, and the protocol once the block is read.
        enum Head {
            Addr(SocketAddr),
            Fwmark(u32),
            Group(String),
        }
        let head = match s.args.as_slice() {
            [kw, mark] if kw.value == "fwmark" => self
                .unsigned(&Statement::bare(mark.clone()), u64::from(u32::MAX))
                .map(|m| Head::Fwmark(m as u32)),
            [kw, name] if kw.value == "group" => Some(Head::Group(name.value.clone())),
            [addr, port] => match (self.ip(addr), self.port(port)) {
                (Some(ip), Some(port)) => Some(Head::Addr(SocketAddr::new(ip, port))),
                _ => None,
            },
            _ => {
                self.error(
                    pos,
                    "usage: virtual_server IP PORT | fwmark N | group NAME { ... }".into(),
                );
                None
            }
        };
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut vs = VirtualServer::new(unspecified, Protocol::Tcp);
        let mut timing = TimingSpec::default();
        let mut family: Option<Family> = None;
        let mut virtualhost: Option<String> = None;
        let mut persistence_timeout: Option<u32> = None;
        let mut granularity: Option<At<String>> = None;
        let mut engine: Option<String> = None;
        let mut sorry: Option<(SocketAddr, Pos)> = None;
        let mut sorry_method: Option<Forwarding> = None;
        let mut sorry_inhibit = false;
        let mut reals = Vec::new();
        for k in block {
            if self.timing(k, &mut timing) {
                continue;
            }
            match k.keyword.value.as_str() {
                "lb_algo" | "lvs_sched" => {
                    if let Some(name) = self.one(k) {
                        vs.scheduler = Scheduler::new(&name.value).unwrap_or_else(|| {
                            let known = Scheduler::KNOWN.join(", ");
                            self.error(
                                name.pos,
                                format!("unknown scheduler {:?} (IPVS has {known})", name.value),
                            );
                            Scheduler::default()
                        });
                    }
                }
                "lb_kind" | "lvs_method" => {
                    if let Some(f) = self.forwarding(k) {
                        vs.forwarding = f;
                    }
                }
                "protocol" => {
                    if let Some(p) = self.one(k) {
                        match p.value.to_ascii_lowercase().as_str() {
                            "tcp" => vs.protocol = Protocol::Tcp,
                            "udp" => vs.protocol = Protocol::Udp,
                            "sctp" => vs.protocol = Protocol::Sctp,
                            _ => self.error(
                                p.pos,
                                format!("protocol must be TCP, UDP or SCTP, not {:?}", p.value),
                            ),
                        }
                    }
                }
                "flag-1" | "sh-fallback" | "mh-fallback" => vs.scheduler_flags.flag1 = true,
                "flag-2" | "sh-port" | "mh-port" => vs.scheduler_flags.flag2 = true,
                "flag-3" => vs.scheduler_flags.flag3 = true,
                "ops" => vs.one_packet = self.flag(k).unwrap_or(false),
                "persistence_timeout" => {
                    persistence_timeout = self.unsigned(k, u64::from(u32::MAX)).map(|n| n as u32);
                }
                "persistence_granularity" => granularity = self.one(k).cloned(),
                "persistence_engine" => engine = self.one(k).map(|a| a.value.clone()),
                "quorum" => {
                    if let Some(q) = self.unsigned(k, u64::from(u32::MAX)) {
                        vs.quorum = q as u32;
                    }
                }
                "hysteresis" => {
                    if let Some(h) = self.unsigned(k, u64::from(u32::MAX)) {
                        vs.hysteresis = h as u32;
                    }
                }
                "quorum_up" => vs.quorum_up = self.script(k),
                "quorum_down" => vs.quorum_down = self.script(k),
                "ha_suspend" => vs.ha_suspend = self.flag(k).unwrap_or(false),
                "omega" => vs.omega = self.flag(k).unwrap_or(false),
                "virtualhost" => virtualhost = self.one(k).map(|a| a.value.clone()),
                "ip_family" => {
                    family = self.one(k).and_then(|a| match a.value.as_str() {
                        "inet" => Some(Family::V4),
                        "inet6" => Some(Family::V6),
                        _ => {
                            self.error(a.pos, "ip_family is inet or inet6".into());
                            None
                        }
                    });
                }
                "sorry_server" => {
                    if let [ip, port] = k.args.as_slice() {
                        if let (Some(ip), Some(port)) = (self.ip(ip), self.port(port)) {
                            sorry = Some((SocketAddr::new(ip, port), k.keyword.pos));
                        }
                    } else {
                        self.error(k.keyword.pos, "usage: sorry_server IP PORT".into());
                    }
                }
                "sorry_server_inhibit" => sorry_inhibit = self.flag(k).unwrap_or(false),
                "sorry_server_lvs_method" => sorry_method = self.forwarding(k),
                "real_server" => reals.push(k),
                _ => self.other(k, "virtual_server"),
            }
        }
        // Services, now that the protocol and family are known.
        let protocol = vs.protocol;
        let services = head.and_then(|head| match head {
            Head::Addr(addr) => Some(vec![ServiceKey::Addr { addr, protocol }]),
            Head::Fwmark(mark) => Some(vec![ServiceKey::Fwmark {
                mark,
                family: family.unwrap_or(Family::V4),
            }]),
            Head::Group(name) => {
                let Some(members) = self.groups.get(&name).cloned() else {
                    self.error(pos, format!("no virtual_server_group named {name:?}"));
                    return None;
                };
                Some(
                    members
                        .into_iter()
                        .flat_map(|m| match m {
                            ServiceMember::Addrs(list) => list
                                .into_iter()
                                .map(|addr| ServiceKey::Addr { addr, protocol })
                                .collect::<Vec<_>>(),
                            ServiceMember::Fwmark(mark) => vec![ServiceKey::Fwmark {
                                mark,
                                family: family.unwrap_or(Family::V4),
                            }],
                        })
                        .collect(),
                )
            }
        });
        let known = services.is_some_and(|list| {
            if list.is_empty() {
                self.error(pos, "the virtual_server_group has no members".into());
                return false;
            }
            vs.services = list;
            true
        });
        vs.name = match s.args.as_slice() {
            [kw, name] if kw.value == "group" => {
                let port = vs.services.first().map_or(0, |k| match k {
                    ServiceKey::Addr { addr, .. } => addr.port(),
                    ServiceKey::Fwmark { .. } => 0,
                });
                format!("[{}]:{port}", name.value)
            }
            _ => vs.services[0].to_string(),
        };
        // Unknown when the head is invalid: no family errors on top of that one.
        let vs_family = known.then(|| vs.services[0].family());
        if persistence_timeout.is_some() || granularity.is_some() || engine.is_some() {
            let granularity = granularity.and_then(|g| self.netmask(&g, vs_family));
            vs.persistence = Some(Persistence {
                timeout: persistence_timeout.unwrap_or(360),
                granularity,
                engine,
            });
        }
        if let Some((addr, at)) = sorry {
            if vs_family.is_some_and(|f| f != Family::of(addr.ip())) {
                self.error(
                    at,
                    "the sorry server is not of the VIP's address family".into(),
                );
            }
            vs.sorry_server = Some(SorryServer {
                addr,
                forwarding: sorry_method.unwrap_or(vs.forwarding),
                inhibit: sorry_inhibit,
            });
        }
        let defaults = TimingSpec {
            delay_loop: Some(timing.delay_loop.unwrap_or(Duration::from_secs(60))),
            connect_timeout: Some(timing.connect_timeout.unwrap_or(Duration::from_secs(5))),
            ..timing
        };
        for r in reals {
            if let Some(rs) = self.real_server(r, &vs, defaults, virtualhost.as_deref()) {
                if vs_family.is_some_and(|f| f != Family::of(rs.addr.ip())) {
                    self.error(
                        r.args.first().map_or(r.keyword.pos, |a| a.pos),
                        format!("real server {} is not of the VIP's address family", rs.addr),
                    );
                } else if vs.real_servers.iter().any(|x| x.addr == rs.addr) {
                    self.error(r.keyword.pos, format!("duplicate real server {}", rs.addr));
                } else {
                    vs.real_servers.push(rs);
                }
            }
        }
        vs.real_servers.shrink_to_fit();
        (self.errors.len() == before).then_some(vs)
    }

    fn netmask(&mut self, at: &At<String>, family: Option<Family>) -> Option<u8> {
        // keepalived writes an IPv4 netmask (255.255.255.0) or an IPv6 prefix length.
        let prefix = match (at.value.parse::<std::net::Ipv4Addr>(), family) {
            (Ok(mask), Some(Family::V4) | None) => {
                let bits = u32::from(mask);
                (bits.leading_ones() + bits.trailing_zeros() == 32)
                    .then(|| bits.leading_ones() as u8)
            }
            _ => at.value.parse::<u8>().ok().filter(|&p| p <= 128),
        };
        if prefix.is_none() {
            self.error(
                at.pos,
                format!("persistence_granularity {:?} is not a netmask", at.value),
            );
        }
        prefix
    }

    fn forwarding(&mut self, s: &Statement) -> Option<Forwarding> {
        let Some((method, options)) = s.args.split_first() else {
            self.error(
                s.keyword.pos,
                format!("{} needs NAT, DR or TUN", s.keyword.value),
            );
            return None;
        };
        let forwarding = match method.value.to_ascii_uppercase().as_str() {
            "NAT" => Forwarding::Nat,
            "DR" => Forwarding::Dr,
            "TUN" => {
                let mut tunnel = Tunnel::default();
                let mut words = options.iter();
                while let Some(w) = words.next() {
                    match w.value.as_str() {
                        "type" => match words.next().map(|t| t.value.as_str()) {
                            Some("ipip") => tunnel.kind = TunnelKind::Ipip,
                            Some("gre") => tunnel.kind = TunnelKind::Gre,
                            Some("gue") => {
                                let port = match (words.next(), words.next()) {
                                    (Some(p), Some(n)) if p.value == "port" => self.port(n),
                                    _ => {
                                        self.error(w.pos, "usage: type gue port N".into());
                                        None
                                    }
                                };
                                tunnel.kind = TunnelKind::Gue(port?);
                            }
                            _ => {
                                self.error(w.pos, "tunnel type is ipip, gue or gre".into());
                                return None;
                            }
                        },
                        "nocsum" => tunnel.checksum = TunnelChecksum::None,
                        "csum" => tunnel.checksum = TunnelChecksum::Csum,
                        "remcsum" => tunnel.checksum = TunnelChecksum::Remcsum,
                        other => {
                            self.error(w.pos, format!("unknown TUN option {other:?}"));
                            return None;
                        }
                    }
                }
                return Some(Forwarding::Tun(tunnel));
            }
            _ => {
                self.error(
                    method.pos,
                    format!(
                        "{} must be NAT, DR or TUN, not {:?}",
                        s.keyword.value, method.value
                    ),
                );
                return None;
            }
        };
        if let Some(extra) = options.first() {
            self.error(extra.pos, format!("{} takes no options", method.value));
        }
        Some(forwarding)
    }

    fn real_server(
        &mut self,
        s: &Statement,
        vs: &VirtualServer,
        vs_timing: TimingSpec,
        vs_virtualhost: Option<&str>,
    ) -> Option<RealServer> {
        let (ip, port) = match s.args.as_slice() {
            [ip] => (self.ip(ip), Some(0)),
            [ip, port] => (self.ip(ip), self.port(port)),
            _ => {
                self.error(s.keyword.pos, "usage: real_server IP [PORT] { ... }".into());
                return None;
            }
        };
        let mut rs = RealServer::new(SocketAddr::new(ip?, port?));
        rs.forwarding = vs.forwarding;
        let mut timing = TimingSpec::default();
        let mut virtualhost = vs_virtualhost.map(str::to_owned);
        let mut checkers = Vec::new();
        for k in s.block.iter().flatten() {
            if self.timing(k, &mut timing) {
                continue;
            }
            match k.keyword.value.as_str() {
                "weight" => {
                    if let Some(w) = self.unsigned(k, 65535) {
                        rs.weight = Weight::new(w as i64).unwrap_or_default();
                    }
                }
                "lb_kind" | "lvs_method" => {
                    if let Some(f) = self.forwarding(k) {
                        rs.forwarding = f;
                    }
                }
                "uthreshold" => {
                    rs.upper_threshold = self.unsigned(k, 65535).unwrap_or(0) as u32;
                }
                "lthreshold" => {
                    rs.lower_threshold = self.unsigned(k, 65535).unwrap_or(0) as u32;
                }
                "notify_up" => rs.notify_up = self.script(k),
                "notify_down" => rs.notify_down = self.script(k),
                "virtualhost" => virtualhost = self.one(k).map(|a| a.value.clone()),
                "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "SMTP_CHECK" | "DNS_CHECK" | "UDP_CHECK"
                | "PING_CHECK" | "MISC_CHECK" | "FILE_CHECK" => checkers.push(k),
                _ => self.other(k, "real_server"),
            }
        }
        let timing = timing.under(vs_timing);
        rs.inhibit_on_failure = timing.inhibit.unwrap_or(false);
        for c in checkers {
            for c in expand_hosts(c) {
                let checker = self.checker(&c, &rs, timing, virtualhost.as_deref());
                rs.checkers.push(checker);
            }
        }
        // The model lives as long as lbd: no spare capacity (10,000 real servers' worth of
        // it is megabytes).
        rs.checkers.shrink_to_fit();
        Some(rs)
    }

    fn checker(
        &mut self,
        s: &Statement,
        rs: &RealServer,
        rs_timing: TimingSpec,
        virtualhost: Option<&str>,
    ) -> Checker {
        let kind_name = s.keyword.value.as_str();
        if !s.args.is_empty() {
            self.error(s.keyword.pos, format!("{kind_name} takes no arguments"));
        }
        let mut timing = TimingSpec::default();
        let mut connect_ip = None;
        let mut connect_port = None;
        let mut target = Target {
            addr: rs.addr,
            bind_addr: None,
            bind_port: None,
            bind_if: None,
            fwmark: None,
        };
        let mut rise = 1;
        let mut fall: Option<At<u32>> = None;
        let mut log_all_failures = false;
        let mut fast_recovery = false;
        let mut kind = match kind_name {
            "TCP_CHECK" => ProbeKind::Tcp,
            "HTTP_GET" | "SSL_GET" => ProbeKind::Http(HttpProbe {
                tls: (kind_name == "SSL_GET").then(|| self.tls.clone()),
                version: HttpVersion::default(),
                urls: Vec::new(),
                virtualhost: virtualhost.map(str::to_owned),
            }),
            "SMTP_CHECK" => ProbeKind::Smtp { helo_name: None },
            "DNS_CHECK" => ProbeKind::Dns {
                record_type: "SOA".to_owned(),
                name: ".".to_owned(),
            },
            "UDP_CHECK" => ProbeKind::Udp(UdpProbe {
                payload: vec![0],
                require_reply: None,
                min_reply_length: 0,
                max_reply_length: 255,
            }),
            "PING_CHECK" => ProbeKind::Ping,
            "MISC_CHECK" => ProbeKind::Misc(MiscProbe {
                script: Script {
                    argv: Vec::new(),
                    user: None,
                },
                dynamic: false,
            }),
            _ => ProbeKind::File(FileProbe {
                path: PathBuf::new(),
                weight: 0,
                reverse: false,
                dynamic: false,
            }),
        };
        let mut misc_timeout = None;
        let mut sni_enabled = false;
        let mut sni_name = None;
        for k in s.block.iter().flatten() {
            if self.timing(k, &mut timing) {
                continue;
            }
            let handled = match k.keyword.value.as_str() {
                "connect_ip" => {
                    connect_ip = self.one(k).cloned().and_then(|a| self.ip(&a));
                    true
                }
                "connect_port" => {
                    connect_port = self.one(k).cloned().and_then(|a| self.port(&a));
                    true
                }
                "bindto" => {
                    target.bind_addr = self.one(k).cloned().and_then(|a| self.ip(&a));
                    true
                }
                "bind_port" => {
                    target.bind_port = self.one(k).cloned().and_then(|a| self.port(&a));
                    true
                }
                "bind_if" => {
                    target.bind_if = self.one(k).map(|a| a.value.clone());
                    true
                }
                "fwmark" => {
                    target.fwmark = self.unsigned(k, u64::from(u32::MAX)).map(|m| m as u32);
                    true
                }
                "rise" => {
                    rise = self.unsigned(k, 1000).unwrap_or(1).max(1) as u32;
                    true
                }
                "fall" => {
                    let n = self.unsigned(k, 1000).unwrap_or(1).max(1) as u32;
                    fall = Some(At::new(n, k.keyword.pos));
                    true
                }
                "log_all_failures" => {
                    log_all_failures = self.flag(k).unwrap_or(false);
                    true
                }
                _ => false,
            };
            if handled {
                continue;
            }
            match (&mut kind, k.keyword.value.as_str()) {
                (ProbeKind::Http(h), "url") => {
                    if let Some(url) = self.url(k) {
                        h.urls.push(url);
                    }
                }
                (ProbeKind::Http(h), "http_protocol") => {
                    if let Some(v) = self.one(k).cloned() {
                        h.version = match v.value.as_str() {
                            "1.0" => HttpVersion::Http10,
                            "1.0C" | "1.0c" => HttpVersion::Http10Close,
                            "1.1" => HttpVersion::Http11,
                            _ => {
                                self.error(v.pos, "http_protocol is 1.0, 1.0C or 1.1".into());
                                HttpVersion::Http10
                            }
                        };
                    }
                }
                (ProbeKind::Http(h), "virtualhost") => {
                    h.virtualhost = self.one(k).map(|a| a.value.clone());
                }
                (ProbeKind::Http(_), "fast_recovery") => {
                    fast_recovery = self.flag(k).unwrap_or(false);
                }
                (ProbeKind::Http(h), "enable_sni") if h.tls.is_some() => {
                    sni_enabled = self.flag(k).unwrap_or(false);
                }
                (ProbeKind::Http(h), "sni_name") if h.tls.is_some() => {
                    sni_name = self.one(k).map(|a| a.value.clone());
                }
                // rustls always ends a session with close_notify: keepalived's
                // `tls_compliant` is what lbd does anyway.
                (ProbeKind::Http(h), "tls_compliant") if h.tls.is_some() => {
                    self.flag(k);
                }
                (ProbeKind::Smtp { helo_name }, "helo_name") => {
                    *helo_name = self.one(k).map(|a| a.value.clone());
                }
                (ProbeKind::Dns { record_type, .. }, "type") => {
                    if let Some(t) = self.one(k).cloned() {
                        let upper = t.value.to_ascii_uppercase();
                        if ["A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA"]
                            .contains(&upper.as_str())
                        {
                            *record_type = upper;
                        } else {
                            self.error(
                                t.pos,
                                format!(
                                    "DNS type must be A, NS, CNAME, SOA, MX, TXT or AAAA, not {:?}",
                                    t.value
                                ),
                            );
                        }
                    }
                }
                (ProbeKind::Dns { name, .. }, "name") => {
                    if let Some(n) = self.one(k) {
                        *name = n.value.clone();
                    }
                }
                (ProbeKind::Udp(u), "payload") => {
                    if let Some(p) = self.one(k).cloned() {
                        match hex_bytes(&p.value) {
                            Some(bytes) => u.payload = bytes,
                            None => self.error(p.pos, "payload must be hex digits".into()),
                        }
                    }
                }
                (ProbeKind::Udp(u), "require_reply") => match k.args.as_slice() {
                    [] => u.require_reply = Some(Vec::new()),
                    [p] => match hex_pattern(&p.value) {
                        Some(pattern) => u.require_reply = Some(pattern),
                        None => self.error(p.pos, "require_reply must be hex digits or X".into()),
                    },
                    _ => self.error(k.keyword.pos, "usage: require_reply [HEX]".into()),
                },
                (ProbeKind::Udp(u), "min_reply_length") => {
                    u.min_reply_length = self.unsigned(k, 65535).unwrap_or(0) as usize;
                }
                (ProbeKind::Udp(u), "max_reply_length") => {
                    u.max_reply_length = self.unsigned(k, 65535).unwrap_or(255) as usize;
                }
                (ProbeKind::Misc(m), "misc_path") => {
                    if let Some(script) = self.script(k) {
                        m.script.argv = script.argv;
                    }
                }
                (ProbeKind::Misc(_), "misc_timeout") => misc_timeout = self.seconds(k),
                (ProbeKind::Misc(m), "misc_dynamic") => m.dynamic = self.flag(k).unwrap_or(false),
                (ProbeKind::Misc(m), "user") => match k.args.as_slice() {
                    [user] => {
                        m.script.user = Some(ScriptUser {
                            user: user.value.clone(),
                            group: None,
                        });
                    }
                    [user, group] => {
                        m.script.user = Some(ScriptUser {
                            user: user.value.clone(),
                            group: Some(group.value.clone()),
                        });
                    }
                    _ => self.error(k.keyword.pos, "usage: user USER [GROUP]".into()),
                },
                (ProbeKind::File(f), "track_file" | "file") => {
                    if let Some(name) = self.one(k).cloned() {
                        match self.track_files.get(&name.value) {
                            Some(path) => f.path = path.clone(),
                            None => self
                                .error(name.pos, format!("no track_file named {:?}", name.value)),
                        }
                    }
                }
                (ProbeKind::File(f), "weight") => match k.args.as_slice() {
                    [w, rest @ ..] if rest.len() <= 1 => {
                        match w.value.parse::<i32>() {
                            Ok(n) if (-254..=254).contains(&n) => f.weight = n,
                            _ => self.error(w.pos, "weight must be -254 to 254".into()),
                        }
                        match rest.first().map(|r| r.value.as_str()) {
                            None | Some("noreverse") => f.reverse = false,
                            Some("reverse") => f.reverse = true,
                            Some(_) => self.error(rest[0].pos, "expected reverse".into()),
                        }
                    }
                    _ => self.error(k.keyword.pos, "usage: weight W [reverse]".into()),
                },
                (ProbeKind::File(f), "dynamic") => f.dynamic = self.flag(k).unwrap_or(false),
                _ => self.other(k, kind_name),
            }
        }
        // Checker-specific defaults (keepalived's default_retry / default_delay_before_retry).
        let timing = timing.under(rs_timing);
        let delay_loop = timing.delay_loop.unwrap_or(Duration::from_secs(60));
        let default_retry = if matches!(kind, ProbeKind::Dns { .. }) {
            3
        } else {
            1
        };
        let default_delay_before_retry = match kind {
            ProbeKind::Http(_) => Duration::from_secs(3),
            ProbeKind::Dns { .. } => delay_loop,
            _ => Duration::from_secs(1),
        };
        let mut retry = timing.retry.unwrap_or(default_retry);
        if let Some(fall) = fall {
            if timing.retry.is_some() {
                self.error(fall.pos, "give fall or retry, not both".into());
            }
            retry = fall.value - 1;
        }
        if let (Some(ip), true) = (connect_ip, connect_port.is_none()) {
            target.addr = SocketAddr::new(ip, rs.addr.port());
        }
        if let Some(ip) = connect_ip {
            target.addr.set_ip(ip);
        }
        if let Some(port) = connect_port {
            target.addr.set_port(port);
        }
        if let Some(bind) = target.bind_addr
            && Family::of(bind) != Family::of(target.addr.ip())
        {
            self.error(
                s.keyword.pos,
                "bindto is not of the target's address family".into(),
            );
        }
        match &mut kind {
            ProbeKind::Http(h) => {
                if h.urls.is_empty() {
                    self.error(s.keyword.pos, format!("{kind_name} needs at least one url"));
                }
                if let Some(tls) = &mut h.tls {
                    tls.sni = match (sni_enabled, sni_name) {
                        (_, Some(name)) => Some(name),
                        (true, None) => Some(
                            h.virtualhost
                                .clone()
                                .unwrap_or_else(|| target.addr.ip().to_string()),
                        ),
                        (false, None) => None,
                    };
                }
            }
            ProbeKind::Misc(m) if m.script.argv.is_empty() => {
                self.error(s.keyword.pos, "MISC_CHECK needs misc_path".into());
            }
            ProbeKind::File(f) if f.path.as_os_str().is_empty() => {
                self.error(s.keyword.pos, "FILE_CHECK needs track_file".into());
            }
            _ => {}
        }
        let needs_port = matches!(
            kind,
            ProbeKind::Tcp | ProbeKind::Http(_) | ProbeKind::Smtp { .. } | ProbeKind::Udp(_)
        );
        if needs_port && target.addr.port() == 0 {
            self.error(
                s.keyword.pos,
                format!("{kind_name} needs a port (connect_port)"),
            );
        }
        let timeout = match kind {
            ProbeKind::Misc(_) => misc_timeout.unwrap_or(delay_loop),
            _ => timing.connect_timeout.unwrap_or(Duration::from_secs(5)),
        };
        Checker {
            probe: Probe { target, kind },
            timing: Timing {
                delay_loop,
                timeout,
                retry,
                delay_before_retry: timing
                    .delay_before_retry
                    .unwrap_or(default_delay_before_retry),
                warmup: timing.warmup.unwrap_or(delay_loop),
                fast_recovery,
            },
            alpha: timing.alpha.unwrap_or(false),
            rise,
            log_all_failures,
        }
    }

    fn url(&mut self, s: &Statement) -> Option<UrlCheck> {
        let mut url = UrlCheck {
            path: String::new(),
            digest: None,
            status: Vec::new(),
            virtualhost: None,
            regex: None,
        };
        let mut regex = BodyRegex {
            pattern: String::new(),
            no_match: false,
            caseless: false,
            min_offset: 0,
            max_offset: None,
        };
        let mut has_regex = false;
        for k in s.block.iter().flatten() {
            match k.keyword.value.as_str() {
                "path" => url.path = self.one(k).map(|a| a.value.clone()).unwrap_or_default(),
                "digest" => {
                    if let Some(d) = self.one(k).cloned() {
                        match hex_bytes(&d.value).and_then(|b| <[u8; 16]>::try_from(b).ok()) {
                            Some(digest) => url.digest = Some(digest),
                            None => self.error(d.pos, "digest must be 32 hex digits (MD5)".into()),
                        }
                    }
                }
                "status_code" => {
                    if k.args.is_empty() {
                        self.error(k.keyword.pos, "status_code needs codes or ranges".into());
                    }
                    for a in &k.args {
                        match status_range(&a.value) {
                            Some(r) => url.status.push(r),
                            None => self.error(a.pos, format!("bad status code {:?}", a.value)),
                        }
                    }
                }
                "virtualhost" => url.virtualhost = self.one(k).map(|a| a.value.clone()),
                "regex" => {
                    if let Some(p) = self.one(k).cloned() {
                        if let Err(e) = regex::bytes::Regex::new(&p.value) {
                            self.error(p.pos, format!("bad regex: {e}"));
                        }
                        regex.pattern = p.value;
                        has_regex = true;
                    }
                }
                "regex_no_match" => regex.no_match = self.flag(k).unwrap_or(false),
                "regex_options" => {
                    for o in &k.args {
                        match o.value.as_str() {
                            "caseless" => regex.caseless = true,
                            other => self.error(
                                o.pos,
                                format!(
                                    "regex option {other:?} is not implemented by lbd (caseless is)"
                                ),
                            ),
                        }
                    }
                }
                // PCRE's JIT stack size: Rust's regex engine has no such stack.
                "regex_stack" => {
                    self.unsigned(k, u64::from(u32::MAX));
                }
                "regex_min_offset" => {
                    regex.min_offset = self.unsigned(k, u64::from(u32::MAX)).unwrap_or(0) as usize;
                }
                "regex_max_offset" => {
                    regex.max_offset = self.unsigned(k, u64::from(u32::MAX)).map(|n| n as usize);
                }
                _ => self.other(k, "url"),
            }
        }
        if url.path.is_empty() {
            self.error(s.keyword.pos, "url needs a path".into());
            return None;
        }
        if url.status.is_empty() {
            url.status.push(200..=299);
        }
        if has_regex {
            url.regex = Some(regex);
        }
        Some(url)
    }
}

impl Statement {
    /// A statement that is only a word (to reuse argument readers on one word).
    fn bare(word: At<String>) -> Statement {
        Statement {
            keyword: At::new("fwmark".to_owned(), word.pos),
            args: vec![word],
            block: None,
        }
    }
}

/// keepalived 1.x's `SMTP_CHECK { host { connect_ip ... } host { ... } }`, which keepalived
/// 2.x still reads: one checker per `host` block, each with the checker's other settings and
/// the block's own.
fn expand_hosts(checker: &Statement) -> Vec<Statement> {
    let block = checker.block.clone().unwrap_or_default();
    let (hosts, common): (Vec<Statement>, Vec<Statement>) = block
        .into_iter()
        .partition(|s| s.keyword.value == "host" && checker.keyword.value == "SMTP_CHECK");
    if hosts.is_empty() {
        return vec![checker.clone()];
    }
    hosts
        .into_iter()
        .map(|host| {
            let mut block = common.clone();
            block.extend(host.block.unwrap_or_default());
            Statement {
                keyword: checker.keyword.clone(),
                args: checker.args.clone(),
                block: Some(block),
            }
        })
        .collect()
}

/// `100-199` or `200`.
fn status_range(text: &str) -> Option<std::ops::RangeInclusive<u16>> {
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let (a, b) = (a.parse::<u16>().ok()?, b.parse::<u16>().ok()?);
    ((100..=599).contains(&a) && (a..=599).contains(&b)).then_some(a..=b)
}

fn hex_value(c: char) -> Option<u8> {
    c.to_digit(16).map(|d| d as u8)
}

/// Hex digits (an even number) to bytes.
pub(crate) fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.chars().map(hex_value).collect::<Option<_>>()?;
    (digits.len().is_multiple_of(2) && !digits.is_empty())
        .then(|| digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect())
}

/// Hex digits where `X` matches any nibble: (high, low) nibble pairs.
fn hex_pattern(text: &str) -> Option<Vec<(Option<u8>, Option<u8>)>> {
    let nibbles: Vec<Option<u8>> = text
        .chars()
        .map(|c| match c {
            'x' | 'X' => Some(None),
            c => hex_value(c).map(Some),
        })
        .collect::<Option<_>>()?;
    (nibbles.len().is_multiple_of(2) && !nibbles.is_empty())
        .then(|| nibbles.chunks(2).map(|p| (p[0], p[1])).collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{Format, Overrides, load};

    fn load_as(format: Format, text: &str) -> crate::model::Model {
        let name = if format == Format::Toml {
            "lbd.toml"
        } else {
            "keepalived.conf"
        };
        match load(
            name,
            text,
            format,
            Unimplemented::Reject,
            &Overrides::default(),
        ) {
            Ok(l) => l.model,
            Err(e) => panic!(
                "{}",
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }

    /// Every checker and most virtual-server keywords, in keepalived.conf syntax.
    pub(crate) const KEEPALIVED: &str = r#"
global_defs {
  lvs_notify_fifo /run/lbd/lvs.fifo
}
vrrp_track_file flag {
  file /run/lbd/flag
}
SSL {
  ca /etc/lbd/ca.pem
}
virtual_server_group WEB {
  203.0.113.1-3 80
  fwmark 7
}
virtual_server group WEB {
  delay_loop 2
  lb_algo mh
  mh-port
  lb_kind TUN type gue port 6080 remcsum
  persistence_timeout 600
  persistence_granularity 255.255.255.0
  quorum 2
  hysteresis 1
  quorum_up "/bin/quorum up"
  sorry_server 192.0.2.99 80
  sorry_server_inhibit
  alpha
  ha_suspend
  real_server 192.0.2.2 80 {
    weight 3
    inhibit_on_failure
    notify_down "/bin/rs down"
    HTTP_GET {
      url {
        path /health
        digest 9e107d9d372bb6826bd81d3542a419d6
        status_code 200-299 301
        regex "OK"
        regex_options caseless
      }
      http_protocol 1.1
      connect_timeout 2
      fast_recovery
    }
    SSL_GET {
      url { path / }
      enable_sni
      virtualhost www.example.org
    }
    MISC_CHECK {
      misc_path "/bin/check 192.0.2.2"
      misc_dynamic
      user nobody
    }
  }
  real_server 192.0.2.3 80 {
    delay_loop 5
    TCP_CHECK {
      connect_port 8080
      bindto 192.0.2.1
      fwmark 9
      rise 2
      fall 3
    }
    SMTP_CHECK { helo_name lbd.example.org }
    DNS_CHECK {
      type A
      name www.example.org
    }
    UDP_CHECK {
      payload 0102
      require_reply 0X02
      max_reply_length 64
    }
    PING_CHECK { }
    FILE_CHECK {
      track_file flag
      weight -2 reverse
      dynamic
    }
  }
}
"#;

    const TOML: &str = r#"
lvs_notify_fifo = "/run/lbd/lvs.fifo"

[[track_file]]
name = "flag"
file = "/run/lbd/flag"

[SSL]
ca = "/etc/lbd/ca.pem"

[[virtual_server_group]]
name = "WEB"
members = ["203.0.113.1-3 80", "fwmark 7"]

[[virtual_server]]
group = "WEB"
delay_loop = 2
scheduler = "mh"
mh-port = true
forwarding = ["TUN", "type", "gue", "port", 6080, "remcsum"]
persistence_timeout = 600
persistence_granularity = "255.255.255.0"
quorum = 2
hysteresis = 1
quorum_up = "/bin/quorum up"
sorry_server = ["192.0.2.99", 80]
sorry_server_inhibit = true
alpha = true
ha_suspend = true

[[virtual_server.real_server]]
address = "192.0.2.2"
port = 80
weight = 3
inhibit_on_failure = true
notify_down = "/bin/rs down"
http_get = { url = [{ path = "/health", digest = "9e107d9d372bb6826bd81d3542a419d6", status_code = ["200-299", 301], regex = "OK", regex_options = "caseless" }], http_protocol = "1.1", connect_timeout = 2, fast_recovery = true }
ssl_get = { url = [{ path = "/" }], enable_sni = true, virtualhost = "www.example.org" }
misc_check = { misc_path = "/bin/check 192.0.2.2", misc_dynamic = true, user = "nobody" }

[[virtual_server.real_server]]
address = "192.0.2.3"
port = 80
delay_loop = 5
TCP_CHECK = { connect_port = 8080, bindto = "192.0.2.1", fwmark = 9, rise = 2, fall = 3 }
SMTP_CHECK = { helo_name = "lbd.example.org" }
DNS_CHECK = { type = "A", name = "www.example.org" }
UDP_CHECK = { payload = "0102", require_reply = "0X02", max_reply_length = 64 }
PING_CHECK = {}
FILE_CHECK = { track_file = "flag", weight = [-2, "reverse"], dynamic = true }
"#;

    #[test]
    fn every_checker_reads_the_same_from_keepalived_conf_and_toml() {
        let ka = load_as(Format::Keepalived, KEEPALIVED);
        let toml = load_as(Format::Toml, TOML);
        assert_eq!(ka.virtual_servers, toml.virtual_servers);
        assert_eq!(ka.lvs_notify_fifo, toml.lvs_notify_fifo);
        let vs = &ka.virtual_servers[0];
        assert_eq!(vs.name, "[WEB]:80");
        assert_eq!(vs.services.len(), 4, "three addresses and a mark");
        assert_eq!(
            vs.persistence,
            Some(Persistence {
                timeout: 600,
                granularity: Some(24),
                engine: None
            })
        );
        assert!(vs.scheduler_flags.flag2);
        assert_eq!(
            vs.forwarding,
            Forwarding::Tun(Tunnel {
                kind: TunnelKind::Gue(6080),
                checksum: TunnelChecksum::Remcsum
            })
        );
        let [web, other] = vs.real_servers.as_slice() else {
            panic!("two reals")
        };
        assert_eq!(web.checkers.len(), 3);
        assert_eq!(other.checkers.len(), 6);
        // Inheritance: virtual server → real server → checker, then each checker's defaults.
        let http = &web.checkers[0];
        assert!(http.alpha, "alpha from the virtual server");
        assert_eq!(http.timing.delay_loop, Duration::from_secs(2));
        assert_eq!(http.timing.timeout, Duration::from_secs(2));
        assert_eq!(
            http.timing.delay_before_retry,
            Duration::from_secs(3),
            "HTTP's default"
        );
        assert!(http.timing.fast_recovery);
        let ssl = &web.checkers[1];
        let ProbeKind::Http(h) = &ssl.probe.kind else {
            panic!("SSL_GET")
        };
        let tls = h.tls.as_ref().expect("tls");
        assert_eq!(tls.sni.as_deref(), Some("www.example.org"));
        assert_eq!(
            tls.ca.as_deref(),
            Some(std::path::Path::new("/etc/lbd/ca.pem"))
        );
        let misc = &web.checkers[2];
        assert_eq!(
            misc.timing.timeout,
            Duration::from_secs(2),
            "misc_timeout defaults to delay_loop"
        );
        let tcp = &other.checkers[0];
        assert_eq!(
            tcp.timing.delay_loop,
            Duration::from_secs(5),
            "the real server's own"
        );
        assert_eq!(tcp.probe.target.addr, "192.0.2.3:8080".parse().unwrap());
        assert_eq!(
            (tcp.rise, tcp.timing.retry),
            (2, 2),
            "fall 3 is two retries"
        );
        assert_eq!(tcp.timing.warmup, Duration::from_secs(5));
        let dns = &other.checkers[2];
        assert_eq!(dns.timing.retry, 3, "DNS's default");
        assert_eq!(dns.timing.delay_before_retry, dns.timing.delay_loop);
        let ProbeKind::File(f) = &other.checkers[5].probe.kind else {
            panic!("FILE_CHECK")
        };
        assert_eq!((f.weight, f.reverse, f.dynamic), (-2, true, true));
        assert_eq!(f.path, std::path::Path::new("/run/lbd/flag"));
    }

    #[test]
    fn global_ipvs_settings_read_the_same_from_both_formats() {
        let ka = load_as(
            Format::Keepalived,
            "global_defs {\n  lvs_flush\n  lvs_flush_on_stop\n  lvs_timeouts tcp 900 tcpfin 120 udp 300\n}\n",
        );
        let toml = load_as(
            Format::Toml,
            "lvs_flush = true\nlvs_flush_on_stop = \"ALL\"\nlvs_timeouts = { tcp = 900, tcpfin = 120, udp = 300 }\n",
        );
        assert_eq!(ka.ipvs, toml.ipvs);
        assert_eq!(
            ka.ipvs,
            IpvsGlobals {
                timeouts: Some(IpvsTimeouts {
                    tcp: 900,
                    tcpfin: 120,
                    udp: 300
                }),
                flush_at_start: true,
                on_stop: OnStop::FlushAll,
                sync_daemon: None,
            }
        );
        let sync = load_as(
            Format::Keepalived,
            "global_defs {\n  lvs_sync_daemon eth0 VI_1 id 7 maxlen 1400 port 8848 ttl 2 group 224.0.0.81\n}\nvrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 1\n}\n",
        );
        let toml_sync = load_as(
            Format::Toml,
            "lvs_sync_daemon = [\"eth0\", \"VI_1\", \"id\", 7, \"maxlen\", 1400, \"port\", 8848, \"ttl\", 2, \"group\", \"224.0.0.81\"]\n[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 1\n",
        );
        assert_eq!(sync.ipvs.sync_daemon, toml_sync.ipvs.sync_daemon);
        assert_eq!(
            sync.ipvs.sync_daemon,
            Some(SyncDaemon {
                interface: "eth0".into(),
                instance: "VI_1".into(),
                sync_id: 7,
                maxlen: Some(1400),
                port: Some(8848),
                ttl: Some(2),
                group: Some("224.0.0.81".parse().unwrap()),
            })
        );
        let errors = load(
            "keepalived.conf",
            "global_defs {\n  lvs_sync_daemon eth0 VI_9\n}\n",
            Format::Keepalived,
            Unimplemented::Reject,
            &Overrides::default(),
        )
        .expect_err("no such instance");
        assert_eq!(
            errors[0].to_string(),
            "keepalived.conf:2:24: lvs_sync_daemon follows vrrp_instance \"VI_9\", which is not defined"
        );
        let vs_only = load_as(
            Format::Keepalived,
            "global_defs {\n  lvs_flush_on_stop VS\n}\n",
        );
        assert_eq!(vs_only.ipvs.on_stop, OnStop::Release);
        assert_eq!(load_as(Format::Toml, "").ipvs, IpvsGlobals::default());
    }

    #[test]
    fn checker_errors_are_reported_with_positions() {
        let text = "virtual_server 203.0.113.1 80 {\n  real_server 192.0.2.2 80 {\n    HTTP_GET {\n      url { digest zz }\n      nb_sock_pool 3\n    }\n    FILE_CHECK { track_file nope }\n    UDP_CHECK { payload 1 }\n  }\n}\n";
        let errors: Vec<String> = load(
            "keepalived.conf",
            text,
            Format::Keepalived,
            Unimplemented::Reject,
            &Overrides::default(),
        )
        .expect_err("invalid")
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            errors,
            [
                "keepalived.conf:3:5: HTTP_GET needs at least one url",
                "keepalived.conf:4:7: url needs a path",
                "keepalived.conf:4:20: digest must be 32 hex digits (MD5)",
                "keepalived.conf:5:7: unknown keyword \"nb_sock_pool\" in HTTP_GET",
                "keepalived.conf:7:5: FILE_CHECK needs track_file",
                "keepalived.conf:7:29: no track_file named \"nope\"",
                "keepalived.conf:8:25: payload must be hex digits",
            ]
        );
    }

    #[test]
    fn hex_helpers_read_keepalived_notation() {
        assert_eq!(hex_bytes("00ff10"), Some(vec![0, 0xff, 0x10]));
        assert_eq!(hex_bytes("0"), None);
        assert_eq!(hex_bytes("zz"), None);
        assert_eq!(hex_pattern("1X"), Some(vec![(Some(1), None)]));
        assert_eq!(status_range("200-299"), Some(200..=299));
        assert_eq!(status_range("301"), Some(301..=301));
        assert_eq!(status_range("299-200"), None);
        assert_eq!(status_range("99"), None);
    }
}
