//! keepalived.conf syntax into the [`Spec`] tree.
//!
//! Two layers: [`lex`] turns text into words and braces with positions (comments `#` and `!`,
//! double-quoted strings with keepalived's escapes, braces anywhere on a line), and [`statements`]
//! groups them into `keyword args... [{ block }]` statements, one per line, a block's `{` allowed
//! on the next line. [`parse_lines`] then reads the blocks lbd implements.
//!
//! Keywords fall in three sets: those lbd implements (read into the tree), those keepalived knows
//! but lbd does not implement yet (an error naming the keyword, or with
//! [`Unimplemented::Warn`] a warning and the statement skipped), and everything else (an error:
//! unknown keyword). Nothing is ignored silently.
//!
//! `include`, `@id` conditional lines, `$NAME` parameters and `~SEQ`/`~LST` generators are
//! expanded before lexing, by [`super::preprocess`] ([`parse_lines`] takes its output).

use super::{
    ConfigError, Pos, Unimplemented,
    spec::{
        At, NotifySpec, ScriptSpec, Spec, Statement, SyncGroupSpec, TrackFileSpec, TrackSpec,
        VrrpInstanceSpec, VrrpScriptSpec,
    },
};

/// A lexical token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// A word or a quoted string (quotes removed, escapes applied).
    Word(String),
    /// `{`
    Open,
    /// `}`
    Close,
    /// End of a line.
    Newline,
}

/// Splits `text` into tokens with their positions.
pub fn lex(file: &str, text: &str) -> Result<Vec<At<Token>>, ConfigError> {
    let mut tokens = Vec::new();
    lex_into(file, text, &mut tokens, |pos| pos)?;
    Ok(tokens)
}

/// [`lex`], appending to `tokens` with each position passed through `place` (no vector per
/// line: a reload lexes hundreds of thousands of lines).
fn lex_into(
    file: &str,
    text: &str,
    tokens: &mut Vec<At<Token>>,
    place: impl Fn(Pos) -> Pos,
) -> Result<(), ConfigError> {
    let mut chars = text.char_indices().peekable();
    let (mut line, mut line_start) = (1u32, 0usize);
    // Taken where a token starts only: counting the characters before each one is most of
    // what lexing costs otherwise.
    let pos_at = |line: u32, line_start: usize, i: usize| {
        let before = &text[line_start..i];
        let chars = if before.is_ascii() {
            before.len()
        } else {
            before.chars().count()
        };
        Pos {
            file: 0,
            line,
            col: u32::try_from(chars + 1).unwrap_or(u32::MAX),
        }
    };
    while let Some(&(i, c)) = chars.peek() {
        let pos = || place(pos_at(line, line_start, i));
        match c {
            '\n' => {
                chars.next();
                tokens.push(At::new(Token::Newline, pos()));
                line += 1;
                line_start = i + 1;
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' | '!' => {
                while chars.peek().is_some_and(|&(_, c)| c != '\n') {
                    chars.next();
                }
            }
            '{' => {
                chars.next();
                tokens.push(At::new(Token::Open, pos()));
            }
            '}' => {
                chars.next();
                tokens.push(At::new(Token::Close, pos()));
            }
            '"' => {
                let pos = pos();
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        None | Some((_, '\n')) => {
                            return Err(ConfigError {
                                file: file.to_owned(),
                                pos,
                                message: "unterminated quoted string".to_owned(),
                            });
                        }
                        Some((_, '"')) => break,
                        Some((_, '\\')) => word.push(unescape(&mut chars)),
                        Some((_, c)) => word.push(c),
                    }
                }
                tokens.push(At::new(Token::Word(word), pos));
            }
            _ => {
                let mut end = text.len();
                while let Some(&(j, c)) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '{' | '}' | '"' | '#' | '!') {
                        end = j;
                        break;
                    }
                    chars.next();
                }
                tokens.push(At::new(Token::Word(text[i..end].to_owned()), pos()));
            }
        }
    }
    Ok(())
}

/// keepalived's escapes in quoted strings: `\n`, `\t`, `\r`, `\\`, `\"`, `\xXX`, `\nnn` (octal),
/// `\cC` (control character); any other character stands for itself.
fn unescape(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>) -> char {
    let Some((_, c)) = chars.next() else {
        return '\\';
    };
    // Up to `max` more digits in `radix`, accumulated onto `value`.
    let mut take_digits = |radix: u32, max: usize, mut value: u32| {
        for _ in 0..max {
            match chars.peek().and_then(|&(_, d)| d.to_digit(radix)) {
                Some(d) => {
                    value = value * radix + d;
                    chars.next();
                }
                None => break,
            }
        }
        char::from_u32(value).unwrap_or('\u{fffd}')
    };
    match c {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'x' => take_digits(16, 2, 0),
        '0'..='7' => take_digits(8, 2, c.to_digit(8).unwrap_or(0)),
        'c' => chars.next().map_or('\\', |(_, c)| {
            char::from_u32(u32::from(c) & 0x1f).unwrap_or(c)
        }),
        other => other,
    }
}

/// Groups tokens into statements; the words move into them.
pub fn statements(file: &str, tokens: Vec<At<Token>>) -> Result<Vec<Statement>, ConfigError> {
    block(file, &mut tokens.into_iter().peekable(), None)
}

type Tokens = std::iter::Peekable<std::vec::IntoIter<At<Token>>>;

fn block(
    file: &str,
    tokens: &mut Tokens,
    opened_at: Option<Pos>,
) -> Result<Vec<Statement>, ConfigError> {
    let error = |pos, message: &str| ConfigError {
        file: file.to_owned(),
        pos,
        message: message.to_owned(),
    };
    let mut list: Vec<Statement> = Vec::new();
    // Whether the last statement may still take a block opened on a later line.
    let mut may_open = false;
    while let Some(token) = tokens.next() {
        match token.value {
            Token::Newline => {}
            Token::Close => {
                return match opened_at {
                    Some(_) => Ok(list),
                    None => Err(error(token.pos, "'}' without a matching '{'")),
                };
            }
            Token::Open => {
                let Some(last) = list.last_mut().filter(|s| may_open && s.block.is_none()) else {
                    return Err(error(token.pos, "'{' without a keyword before it"));
                };
                last.block = Some(block(file, tokens, Some(token.pos))?);
                may_open = false;
                continue;
            }
            Token::Word(word) => {
                let keyword = At::new(word, token.pos);
                let mut args = Vec::new();
                while let Some(At {
                    value: Token::Word(_),
                    ..
                }) = tokens.peek()
                {
                    if let Some(At {
                        value: Token::Word(w),
                        pos,
                    }) = tokens.next()
                    {
                        args.push(At::new(w, pos));
                    }
                }
                list.push(Statement {
                    keyword,
                    args,
                    block: None,
                });
            }
        }
        may_open = true;
    }
    match opened_at {
        Some(pos) => Err(error(pos, "'{' is never closed")),
        None => Ok(list),
    }
}

/// Keywords keepalived knows that lbd does not implement yet, at any level.
const KNOWN_UNIMPLEMENTED: &[&str] = &[
    // parser directives (plain `include` is the preprocessor's)
    "includer",
    "includem",
    "includew",
    "includeb",
    "includea",
    "include_check",
    // top-level blocks
    "linkbeat_interfaces",
    "interface_up_down_delays",
    "track_group",
    "static_ipaddress",
    "static_routes",
    "static_rules",
    "vrrp_track_process",
    "bfd_instance",
    "garp_group",
    "virtual_server_group",
    "SSL",
    "net_namespace",
    // virtual_server
    "flag-1",
    "flag-2",
    "flag-3",
    "sh-port",
    "sh-fallback",
    "mh-port",
    "mh-fallback",
    "ops",
    "persistence_engine",
    "persistence_timeout",
    "persistence_granularity",
    "ha_suspend",
    "virtualhost",
    "snmp_name",
    "alpha",
    "omega",
    "quorum",
    "hysteresis",
    "quorum_up",
    "quorum_down",
    "ip_family",
    "sorry_server",
    "sorry_server_inhibit",
    "sorry_server_lvs_method",
    "connect_timeout",
    "retry",
    "nb_get_retry",
    "delay_before_retry",
    "warmup",
    "delay_loop",
    "inhibit_on_failure",
    "smtp_alert",
    // real_server
    "notify_up",
    "notify_down",
    "uthreshold",
    "lthreshold",
    // checkers and their options
    "TCP_CHECK",
    "HTTP_GET",
    "SSL_GET",
    "SMTP_CHECK",
    "DNS_CHECK",
    "MISC_CHECK",
    "UDP_CHECK",
    "PING_CHECK",
    "FILE_CHECK",
    "BFD_CHECK",
    "connect_ip",
    "connect_port",
    "bindto",
    "bind_if",
    "bind_port",
    "fwmark",
    "log_all_failures",
    "url",
    "path",
    "digest",
    "status_code",
    "http_protocol",
    "fast_recovery",
    "enable_sni",
    "sni_name",
    "tls_compliant",
    "helo_name",
    "type",
    "name",
    "misc_path",
    "misc_timeout",
    "misc_dynamic",
    "user",
    "payload",
    "require_reply",
    "min_reply_length",
    "max_reply_length",
    "dynamic",
    "regex",
    // global_defs keywords lbd does not implement yet
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_connect_timeout",
    "smtp_helo_name",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
    "net_namespace_ipvs",
    "namespace_with_ipsets",
    "instance",
    "use_pid_dir",
    "enable_script_security",
    "set_supplementary_groups",
    "startup_script",
    "startup_script_timeout",
    "shutdown_script",
    "shutdown_script_timeout",
    "vrrp_mcast_group4",
    "vrrp_mcast_group6",
    "vrrp_garp_lower_prio_delay",
    "vrrp_garp_lower_prio_repeat",
    "vrrp_garp_master_refresh_repeat",
    "vrrp_garp_interval",
    "vrrp_gna_interval",
    "vrrp_min_garp",
    "vrrp_garp_extra_if",
    "vrrp_down_timer_adverts",
    "vrrp_lower_prio_no_advert",
    "vrrp_higher_prio_send_advert",
    "vrrp_skip_check_adv_addr",
    "vrrp_check_unicast_src",
    "vrrp_strict",
    "vrrp_startup_delay",
    "vrrp_delay_after_boot",
    "vrrp_iptables",
    "vrrp_ipsets",
    "nftables",
    "nftables_priority",
    "nftables_ifindex",
    "nftables_counters",
    "vmac_prefix",
    "vmac_addr_prefix",
    "log_unknown_vrids",
    "vrrp_priority",
    "checker_priority",
    "bfd_priority",
    "checker_rt_priority",
    "bfd_rt_priority",
    "vrrp_rlimit_rttime",
    "checker_rlimit_rttime",
    "bfd_rlimit_rttime",
    "vrrp_no_swap",
    "checker_no_swap",
    "bfd_no_swap",
    "vrrp_cpu_affinity",
    "checker_cpu_affinity",
    "bfd_cpu_affinity",
    "max_auto_priority",
    "min_auto_priority_delay",
    "nftables_ipvs",
    "notify_fifo_script",
    "vrrp_notify_fifo_script",
    "lvs_notify_fifo_script",
    "fifo_write_vrrp_states_on_reload",
    "vrrp_notify_priority_changes",
    "rs_init_notifies",
    "reload_check_config",
    "reload_time_file",
    "reload_repeat",
    "reload_file",
    "config_save_dir",
    "tmp_config_directory",
    "state_file_location",
    "stats_file_location",
    "json_file_location",
    "json_version",
    "enable_snmp_vrrp",
    "enable_snmp_checker",
    "enable_snmp_rfc",
    "enable_snmp_rfcv2",
    "enable_snmp_rfcv3",
    "enable_traps",
    "snmp_socket",
    "enable_dbus",
    "dbus_service_name",
    "dynamic_interfaces",
    "default_interface",
    "child_wait_time",
    "random_seed",
    "umask",
    // vrrp_instance keywords lbd does not implement yet
    "vrf",
    "use_vmac_addr",
    "use_ipvlan",
    "native_ipv6",
    "dont_track_primary",
    "track_process",
    "track_bfd",
    "mcast_src_ip",
    "mcast_dst_ip",
    "track_src_ip",
    "check_unicast_src",
    "unicast_fault_no_peer",
    "unicast_ttl",
    "old_unicast_checksum",
    "garp_lower_prio_delay",
    "garp_lower_prio_repeat",
    "garp_master_refresh_repeat",
    "garp_interval",
    "gna_interval",
    "garp_extra_if",
    "down_timer_adverts",
    "timer_expired_backup",
    "lower_prio_no_advert",
    "higher_prio_send_advert",
    "auth_hmac",
    "virtual_ipaddress_excluded",
    "no_virtual_ipaddress",
    "promote_secondaries",
    "virtual_routes",
    "virtual_rules",
    "no_accept",
    "skip_check_adv_addr",
    "strict_mode",
    "notify_deleted",
    "notify_master_rx_lower_pri",
    "kernel_rx_buf_size",
    "linkbeat_use_polling",
    "debug",
    "sync_group_tracking_weight",
    "global_tracking",
];

/// What to say of a keyword a block does not read: `known` (keepalived has it, lbd does not
/// implement it) is an error, or with [`Unimplemented::Warn`] a warning (the second value);
/// anything else is an unknown keyword, always an error.
pub(super) fn keyword_problem(
    file: &str,
    keyword: &At<String>,
    context: &str,
    known: bool,
    unimplemented: Unimplemented,
) -> (ConfigError, bool) {
    let at = |message: String| ConfigError {
        file: file.to_owned(),
        pos: keyword.pos,
        message,
    };
    if !known {
        let message = format!("unknown keyword {:?} in {context}", keyword.value);
        return (at(message), false);
    }
    let message = format!(
        "keepalived keyword {:?} ({context}) is not implemented by lbd",
        keyword.value
    );
    match unimplemented {
        Unimplemented::Reject => (
            at(format!(
                "{message}; pass --allow-unimplemented to skip it with a warning"
            )),
            false,
        ),
        Unimplemented::Warn => (at(format!("{message}; skipped")), true),
    }
}

fn is_known_unimplemented(keyword: &str) -> bool {
    KNOWN_UNIMPLEMENTED.contains(&keyword)
}

/// Reads the statements lbd implements.
struct Reader<'a> {
    file: &'a str,
    unimplemented: Unimplemented,
    errors: Vec<ConfigError>,
    warnings: &'a mut Vec<ConfigError>,
}

impl Reader<'_> {
    fn error(&mut self, pos: Pos, message: String) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            pos,
            message,
        });
    }

    /// A keyword outside what lbd reads in this block: unimplemented (error or warning) or unknown.
    fn other(&mut self, statement: &Statement, context: &str) {
        let known = is_known_unimplemented(&statement.keyword.value);
        let (problem, warning) = keyword_problem(
            self.file,
            &statement.keyword,
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

    fn args(&mut self, statement: &Statement, count: usize) -> Option<Vec<At<String>>> {
        if statement.args.len() == count {
            return Some(statement.args.clone());
        }
        let message = format!(
            "{} takes {count} argument{}, got {}",
            statement.keyword.value,
            if count == 1 { "" } else { "s" },
            statement.args.len()
        );
        self.error(statement.keyword.pos, message);
        None
    }

    fn no_block(&mut self, statement: &Statement) {
        if statement.block.is_some() {
            let message = format!("{} does not take a block", statement.keyword.value);
            self.error(statement.keyword.pos, message);
        }
    }

    fn number(&mut self, at: &At<String>) -> Option<At<i64>> {
        match at.value.parse::<i64>() {
            Ok(n) => Some(At::new(n, at.pos)),
            Err(_) => {
                self.error(at.pos, format!("{:?} is not a number", at.value));
                None
            }
        }
    }
}

impl Reader<'_> {
    /// The one argument of `s`, if it has exactly one and no block.
    fn one(&mut self, s: &Statement) -> Option<At<String>> {
        self.no_block(s);
        self.args(s, 1).map(|mut a| a.remove(0))
    }

    fn float(&mut self, at: &At<String>) -> Option<At<f64>> {
        match at.value.parse::<f64>() {
            Ok(n) if n.is_finite() => Some(At::new(n, at.pos)),
            _ => {
                self.error(at.pos, format!("{:?} is not a number", at.value));
                None
            }
        }
    }

    /// keepalived's optional boolean argument: none means true; `true/on/yes` or
    /// `false/off/no` otherwise.
    fn flag(&mut self, s: &Statement) -> Option<At<bool>> {
        self.no_block(s);
        match s.args.as_slice() {
            [] => Some(At::new(true, s.keyword.pos)),
            [a] => match a.value.to_ascii_lowercase().as_str() {
                "true" | "on" | "yes" => Some(At::new(true, a.pos)),
                "false" | "off" | "no" => Some(At::new(false, a.pos)),
                _ => {
                    self.error(
                        a.pos,
                        format!("{} takes true or false, not {:?}", s.keyword.value, a.value),
                    );
                    None
                }
            },
            _ => {
                self.error(
                    s.keyword.pos,
                    format!("{} takes at most one argument", s.keyword.value),
                );
                None
            }
        }
    }

    fn global_defs(&mut self, statement: &Statement, spec: &mut Spec) {
        let Some(block) = &statement.block else {
            self.error(
                statement.keyword.pos,
                "global_defs needs a { ... } block".to_owned(),
            );
            return;
        };
        for s in block {
            match s.keyword.value.as_str() {
                "router_id" => spec.router_id = self.one(s),
                "vrrp_version" => spec.vrrp_version = self.one(s).and_then(|a| self.number(&a)),
                "vrrp_notify_fifo" => spec.notify_fifo = self.one(s),
                // Read by the LVS reader with the virtual servers.
                "lvs_timeouts" | "lvs_flush" | "lvs_flush_on_stop" | "lvs_sync_daemon" => {
                    spec.lvs.push(s.clone());
                }
                "lvs_notify_fifo" => spec.lvs_notify_fifo = self.one(s),
                // keepalived's notify_fifo gets both the VRRP and the LVS lines.
                "notify_fifo" => {
                    spec.notify_fifo = self.one(s);
                    spec.lvs_notify_fifo.clone_from(&spec.notify_fifo);
                }
                "script_user" => {
                    self.no_block(s);
                    match s.args.as_slice() {
                        [user] => spec.script_user = Some((user.clone(), None)),
                        [user, group] => {
                            spec.script_user = Some((user.clone(), Some(group.clone())));
                        }
                        _ => self.error(s.keyword.pos, "script_user takes USER [GROUP]".to_owned()),
                    }
                }
                "vrrp_garp_master_delay" => {
                    spec.garp_master_delay = self.one(s).and_then(|a| self.float(&a));
                }
                "vrrp_garp_master_repeat" => {
                    spec.garp_master_repeat = self.one(s).and_then(|a| self.number(&a));
                }
                "vrrp_garp_master_refresh" => {
                    spec.garp_master_refresh = self.one(s).and_then(|a| self.float(&a));
                }
                "vrrp_rt_priority" => {
                    spec.vrrp_rt_priority = self.one(s).and_then(|a| self.number(&a));
                }
                _ => self.other(s, "global_defs"),
            }
        }
    }

    fn vrrp_instance(&mut self, statement: &Statement) -> Option<VrrpInstanceSpec> {
        let name = self.args(statement, 1)?.remove(0);
        let Some(block) = &statement.block else {
            self.error(
                statement.keyword.pos,
                "vrrp_instance needs a { ... } block".to_owned(),
            );
            return None;
        };
        let mut vi = VrrpInstanceSpec {
            pos: statement.keyword.pos,
            name,
            ..VrrpInstanceSpec::default()
        };
        for s in block {
            match s.keyword.value.as_str() {
                "interface" => vi.interface = self.one(s),
                "lvs_sync_daemon_interface" => {
                    vi.lvs_sync_daemon_interface = self.one(s);
                    self.warnings.push(ConfigError {
                        file: self.file.to_owned(),
                        pos: s.keyword.pos,
                        message: "lvs_sync_daemon_interface is deprecated (as in keepalived): read as global_defs { lvs_sync_daemon IFACE INSTANCE }".to_owned(),
                    });
                }
                "state" => vi.state = self.one(s),
                "virtual_router_id" => {
                    vi.virtual_router_id = self.one(s).and_then(|a| self.number(&a))
                }
                "priority" => vi.priority = self.one(s).and_then(|a| self.number(&a)),
                "advert_int" => vi.advert_int = self.one(s).and_then(|a| self.float(&a)),
                "version" => vi.version = self.one(s).and_then(|a| self.number(&a)),
                "preempt" => vi.preempt = self.flag(s),
                "nopreempt" => vi.preempt = self.flag(s).map(|f| At::new(!f.value, f.pos)),
                "preempt_delay" => vi.preempt_delay = self.one(s).and_then(|a| self.float(&a)),
                "unicast_src_ip" => vi.unicast_src_ip = self.one(s),
                "v3_checksum_as_v2" => vi.v3_checksum_as_v2 = self.flag(s),
                "virtual_ipaddress" => {
                    // The entry as one text, `ADDRESS[/PREFIX] [OPTION VALUE]...`: the same as
                    // the TOML form; validation reads the options.
                    for entry in s.block.iter().flatten() {
                        let mut text = entry.keyword.value.clone();
                        for arg in &entry.args {
                            text.push(' ');
                            text.push_str(&arg.value);
                        }
                        vi.virtual_ipaddress.push(At::new(text, entry.keyword.pos));
                    }
                }
                "unicast_peer" => {
                    for entry in s.block.iter().flatten() {
                        if let Some(option) = entry.args.first() {
                            let message = format!(
                                "unicast_peer option {:?} is not implemented by lbd",
                                option.value
                            );
                            self.error(option.pos, message);
                        }
                        vi.unicast_peer.push(entry.keyword.clone());
                    }
                }
                "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify" => {
                    self.notify(s, &mut vi.notify);
                }
                "notify_priority_changes" => vi.notify_priority_changes = self.flag(s),
                "use_vmac" => {
                    self.no_block(s);
                    match s.args.as_slice() {
                        [] => vi.use_vmac = Some(At::new(String::new(), s.keyword.pos)),
                        [name] => vi.use_vmac = Some(name.clone()),
                        [_, extra, ..] => self.error(
                            extra.pos,
                            "use_vmac takes an optional interface name; its other options are not implemented by lbd".to_owned(),
                        ),
                    }
                }
                "vmac_xmit_base" => vi.vmac_xmit_base = self.flag(s),
                // RFC 5798's Accept_Mode on: the master accepts traffic to the VIPs. That is what
                // lbd always does (and keepalived's default without vrrp_strict); `no_accept`
                // stays unimplemented.
                "accept" => {
                    self.flag(s);
                }
                "track_interface" => vi.track_interface = self.track_list(s),
                "track_script" => vi.track_script = self.track_list(s),
                "track_file" => vi.track_file = self.track_list(s),
                "garp_master_delay" => {
                    vi.garp_master_delay = self.one(s).and_then(|a| self.float(&a));
                }
                "garp_master_repeat" => {
                    vi.garp_master_repeat = self.one(s).and_then(|a| self.number(&a));
                }
                "garp_master_refresh" => {
                    vi.garp_master_refresh = self.one(s).and_then(|a| self.float(&a));
                }
                "authentication" => {
                    for a in s.block.iter().flatten() {
                        match a.keyword.value.as_str() {
                            "auth_type" => vi.auth_type = self.one(a),
                            "auth_pass" => vi.auth_pass = self.one(a),
                            _ => self.other(a, "authentication"),
                        }
                    }
                }
                _ => self.other(s, "vrrp_instance"),
            }
        }
        Some(vi)
    }
}

impl Reader<'_> {
    /// `KEYWORD COMMAND [USER [GROUP]]`: COMMAND is one word or a quoted command line.
    fn script(&mut self, s: &Statement) -> Option<ScriptSpec> {
        self.no_block(s);
        match s.args.as_slice() {
            [command, rest @ ..] if rest.len() <= 2 => Some(ScriptSpec {
                command: command.clone(),
                user: rest.first().cloned(),
                group: rest.get(1).cloned(),
            }),
            _ => {
                let message = format!(
                    "{} takes a command (quoted when it has arguments) and optionally USER [GROUP]",
                    s.keyword.value
                );
                self.error(s.keyword.pos, message);
                None
            }
        }
    }

    fn notify(&mut self, s: &Statement, notify: &mut NotifySpec) {
        let script = self.script(s);
        match s.keyword.value.as_str() {
            "notify_master" => notify.master = script,
            "notify_backup" => notify.backup = script,
            "notify_fault" => notify.fault = script,
            "notify_stop" => notify.stop = script,
            _ => notify.any = script,
        }
    }

    /// `weight W [reverse|noreverse]` after a name, as in track_* entries and vrrp_script.
    fn weight(&mut self, args: &[At<String>]) -> (Option<At<i64>>, Option<At<bool>>) {
        match args {
            [] => (None, None),
            [w, n] if w.value == "weight" => (self.number(n), None),
            [w, n, r]
                if w.value == "weight" && (r.value == "reverse" || r.value == "noreverse") =>
            {
                (self.number(n), Some(At::new(r.value == "reverse", r.pos)))
            }
            [first, ..] => {
                self.error(
                    first.pos,
                    "expected weight W [reverse|noreverse]".to_owned(),
                );
                (None, None)
            }
        }
    }

    /// A `weight W [reverse|noreverse]` statement (vrrp_script, vrrp_track_file).
    fn weight_statement(&mut self, s: &Statement) -> (Option<At<i64>>, Option<At<bool>>) {
        self.no_block(s);
        let mut args = vec![s.keyword.clone()];
        args.extend(s.args.iter().cloned());
        self.weight(&args)
    }

    /// The entries of a `track_interface|script|file { NAME [weight W [reverse]] ... }` block.
    fn track_list(&mut self, s: &Statement) -> Vec<TrackSpec> {
        let Some(block) = &s.block else {
            self.error(
                s.keyword.pos,
                format!("{} needs a {{ ... }} block", s.keyword.value),
            );
            return Vec::new();
        };
        block
            .iter()
            .map(|entry| {
                let (weight, reverse) = self.weight(&entry.args);
                TrackSpec {
                    name: entry.keyword.clone(),
                    weight,
                    reverse,
                }
            })
            .collect()
    }

    fn vrrp_script(&mut self, statement: &Statement) -> Option<VrrpScriptSpec> {
        let name = self.args(statement, 1)?.remove(0);
        let mut vs = VrrpScriptSpec {
            pos: statement.keyword.pos,
            name,
            ..VrrpScriptSpec::default()
        };
        for s in statement.block.iter().flatten() {
            match s.keyword.value.as_str() {
                "script" => vs.script = self.script(s),
                "interval" => vs.interval = self.one(s).and_then(|a| self.float(&a)),
                "timeout" => vs.timeout = self.one(s).and_then(|a| self.float(&a)),
                "weight" => (vs.weight, vs.reverse) = self.weight_statement(s),
                "rise" => vs.rise = self.one(s).and_then(|a| self.number(&a)),
                "fall" => vs.fall = self.one(s).and_then(|a| self.number(&a)),
                "init_fail" => vs.init_fail = self.flag(s),
                "user" => {
                    let user = s.args.first().cloned();
                    let group = s.args.get(1).cloned();
                    match vs.script.as_mut() {
                        Some(script) => (script.user, script.group) = (user, group),
                        None => self.error(s.keyword.pos, "user must follow script".to_owned()),
                    }
                }
                _ => self.other(s, "vrrp_script"),
            }
        }
        Some(vs)
    }

    fn track_file(&mut self, statement: &Statement) -> Option<TrackFileSpec> {
        let name = self.args(statement, 1)?.remove(0);
        let mut tf = TrackFileSpec {
            pos: statement.keyword.pos,
            name,
            ..TrackFileSpec::default()
        };
        for s in statement.block.iter().flatten() {
            match s.keyword.value.as_str() {
                "file" => tf.file = self.one(s),
                "weight" => (tf.weight, tf.reverse) = self.weight_statement(s),
                _ => self.other(s, "vrrp_track_file"),
            }
        }
        Some(tf)
    }

    fn sync_group(&mut self, statement: &Statement) -> Option<SyncGroupSpec> {
        let name = self.args(statement, 1)?.remove(0);
        let mut sg = SyncGroupSpec {
            pos: statement.keyword.pos,
            name,
            ..SyncGroupSpec::default()
        };
        for s in statement.block.iter().flatten() {
            match s.keyword.value.as_str() {
                "group" => {
                    for member in s.block.iter().flatten() {
                        sg.group.push(member.keyword.clone());
                        sg.group.extend(member.args.iter().cloned());
                    }
                }
                "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify" => {
                    self.notify(s, &mut sg.notify);
                }
                _ => self.other(s, "vrrp_sync_group"),
            }
        }
        Some(sg)
    }
}

/// Lexes preprocessed lines, keeping each token's file and line.
pub fn lex_lines(pre: &super::preprocess::Preprocessed) -> Result<Vec<At<Token>>, ConfigError> {
    let mut tokens = Vec::new();
    for line in &pre.lines {
        lex_line(&pre.files, line, &mut tokens)?;
    }
    Ok(tokens)
}

/// Lexes one preprocessed line onto `tokens`, its newline included.
fn lex_line(
    files: &[String],
    line: &super::preprocess::Line,
    tokens: &mut Vec<At<Token>>,
) -> Result<(), ConfigError> {
    let name = files.get(line.file as usize).map_or("", String::as_str);
    let place = |mut pos: Pos| {
        pos.file = line.file;
        pos.line = line.line;
        pos
    };
    lex_into(name, &line.text, tokens, place).map_err(|mut e| {
        e.pos = place(e.pos);
        e
    })?;
    tokens.push(At::new(Token::Newline, place(Pos::default())));
    Ok(())
}

/// Parses keepalived.conf lines already preprocessed (includes, conditionals, parameters,
/// generators). Lexical and brace errors are fatal (`Err`); errors in single statements go to
/// `errors` and the statement is left out, so validation can still report the rest. Warnings
/// (skipped unimplemented keywords) go to `warnings`.
pub fn parse_lines(
    pre: &super::preprocess::Preprocessed,
    unimplemented: Unimplemented,
    warnings: &mut Vec<ConfigError>,
    errors: &mut Vec<ConfigError>,
) -> Result<Spec, Vec<ConfigError>> {
    let file = pre.files[0].as_str();
    let tokens = lex_lines(pre).map_err(|e| vec![e])?;
    let statements = statements(file, tokens).map_err(|e| vec![e])?;
    Ok(read_statements(
        file,
        statements,
        unimplemented,
        warnings,
        errors,
    ))
}

/// A top-level statement's lines, as [`top_level`] finds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopLevel {
    /// Its lines in [`super::preprocess::Preprocessed::lines`], with the blank and comment
    /// lines after it.
    pub lines: std::ops::Range<usize>,
    /// It is one `virtual_server` with its block, alone on its lines.
    pub virtual_server: bool,
}

/// Whitespace as the lexer sees it, in ASCII.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Splits preprocessed lines into top-level statements by reading their braces as the lexer
/// and [`statements`] do (quotes, escapes, comments, a block opened on a later line), without
/// making tokens. `None` where they would find an error (they then say which), and for text
/// outside quotes and comments that is not ASCII (whose whitespace only the lexer knows).
pub fn top_level(lines: &[super::preprocess::Line]) -> Option<Vec<TopLevel>> {
    let mut found: Vec<TopLevel> = Vec::new();
    let mut depth = 0u32;
    // The current statement's block was opened and closed.
    let mut closed = false;
    for (i, line) in lines.iter().enumerate() {
        if let Some(current) = found.last_mut() {
            current.lines.end = i + 1;
        }
        let bytes = line.text.as_bytes();
        let mut at = 0;
        let mut first_on_line = true;
        while let Some(&b) = bytes.get(at) {
            let word = match b {
                b'#' | b'!' => break,
                b if is_space(b) => {
                    at += 1;
                    continue;
                }
                b'{' => {
                    if depth == 0 {
                        let current = found.last_mut()?;
                        // A second block: the parser's error to report.
                        current.virtual_server &= !closed;
                    }
                    depth += 1;
                    at += 1;
                    None
                }
                b'}' => {
                    depth = depth.checked_sub(1)?;
                    closed |= depth == 0;
                    at += 1;
                    None
                }
                b'"' => {
                    at += 1;
                    loop {
                        match bytes.get(at)? {
                            b'"' => break,
                            b'\\' => at += 2,
                            _ => at += 1,
                        }
                    }
                    at += 1;
                    Some(None)
                }
                _ => {
                    let start = at;
                    while let Some(&c) = bytes.get(at) {
                        if is_space(c) || matches!(c, b'{' | b'}' | b'"' | b'#' | b'!') {
                            break;
                        }
                        if !c.is_ascii() {
                            return None;
                        }
                        at += 1;
                    }
                    Some(Some(&bytes[start..at]))
                }
            };
            if let Some(word) = word
                && depth == 0
            {
                if first_on_line {
                    // A keyword: a new statement, and the end of the one before.
                    if let Some(before) = found.last_mut() {
                        before.lines.end = i;
                    }
                    found.push(TopLevel {
                        lines: i..i + 1,
                        virtual_server: word == Some(b"virtual_server".as_slice()),
                    });
                    closed = false;
                } else if closed && let Some(current) = found.last_mut() {
                    // Another statement after the block, on the same line.
                    current.virtual_server = false;
                }
            }
            first_on_line = false;
        }
    }
    if depth != 0 {
        return None;
    }
    // A virtual_server whose block never came is the parser's to report.
    if !closed && let Some(last) = found.last_mut() {
        last.virtual_server = false;
    }
    Some(found)
}

/// What [`parse_lines_cached`] read: the tree, and the `virtual_server` blocks' texts.
pub type CachedParse = (Spec, Vec<String>);

/// [`parse_lines`], with the `virtual_server` blocks among `blocks` (from [`top_level`], in
/// order) set apart in [`Spec::lvs_blocks`]: `known(text)` gives what a block of that text
/// read to in the last load, and is not parsed again; the others are parsed alone. Returns
/// the blocks' texts, in order, for the next load. `None` when the split and the parser
/// disagree (the plain parse then reads the file).
pub fn parse_lines_cached(
    pre: &super::preprocess::Preprocessed,
    blocks: &[TopLevel],
    unimplemented: Unimplemented,
    warnings: &mut Vec<ConfigError>,
    errors: &mut Vec<ConfigError>,
    known: &dyn Fn(&str) -> Option<std::sync::Arc<crate::model::VirtualServer>>,
) -> Option<Result<CachedParse, Vec<ConfigError>>> {
    use super::spec::LvsBlock;
    let file = pre.files[0].as_str();
    let blocks: Vec<&TopLevel> = blocks.iter().filter(|b| b.virtual_server).collect();
    let mut texts = Vec::with_capacity(blocks.len());
    let mut lvs_blocks = Vec::with_capacity(blocks.len());
    let mut tokens = Vec::new();
    let mut next_line = 0;
    let run = |tokens: &mut Vec<At<Token>>, lines: std::ops::Range<usize>| {
        pre.lines[lines]
            .iter()
            .try_for_each(|line| lex_line(&pre.files, line, tokens))
    };
    for (index, block) in blocks.iter().enumerate() {
        if let Err(e) = run(&mut tokens, next_line..block.lines.start) {
            return Some(Err(vec![e]));
        }
        next_line = block.lines.end;
        let lines = &pre.lines[block.lines.clone()];
        let mut text = String::with_capacity(lines.iter().map(|l| l.text.len() + 1).sum());
        for line in lines {
            text.push_str(&line.text);
            text.push('\n');
        }
        let parsed = match known(&text) {
            Some(vs) => LvsBlock::Read(vs),
            None => {
                let mut own = Vec::new();
                if let Err(e) = run(&mut own, block.lines.clone()) {
                    return Some(Err(vec![e]));
                }
                match statements(file, own).map_err(|e| vec![e]) {
                    Ok(mut list) if list.len() == 1 => LvsBlock::Parse(list.remove(0)),
                    // The split and the parser disagree: let the plain parse read it.
                    Ok(_) => return None,
                    Err(e) => return Some(Err(e)),
                }
            }
        };
        let placeholder = Statement::placeholder(index);
        tokens.push(At::new(
            Token::Word(placeholder.keyword.value),
            placeholder.keyword.pos,
        ));
        tokens.push(At::new(Token::Newline, placeholder.keyword.pos));
        texts.push(text);
        lvs_blocks.push(parsed);
    }
    if let Err(e) = run(&mut tokens, next_line..pre.lines.len()) {
        return Some(Err(vec![e]));
    }
    let statements = match statements(file, tokens) {
        Ok(s) => s,
        Err(e) => return Some(Err(vec![e])),
    };
    let mut spec = read_statements(file, statements, unimplemented, warnings, errors);
    spec.lvs_blocks = lvs_blocks;
    Some(Ok((spec, texts)))
}

/// The tree of top-level statements, read into a [`Spec`].
fn read_statements(
    file: &str,
    statements: Vec<Statement>,
    unimplemented: Unimplemented,
    warnings: &mut Vec<ConfigError>,
    errors: &mut Vec<ConfigError>,
) -> Spec {
    let mut reader = Reader {
        file,
        unimplemented,
        errors: Vec::new(),
        warnings,
    };
    let mut spec = Spec::default();
    for statement in statements {
        let s = &statement;
        match s.keyword.value.as_str() {
            // Read by the LVS reader, shared with the TOML front-end; moved, not copied.
            "virtual_server" | "virtual_server_group" | "SSL" => spec.lvs.push(statement),
            "global_defs" => reader.global_defs(s, &mut spec),
            "vrrp_instance" => {
                if let Some(vi) = reader.vrrp_instance(s) {
                    if let Some(iface) = &vi.lvs_sync_daemon_interface {
                        spec.lvs.push(Statement {
                            keyword: At::new("lvs_sync_daemon".to_owned(), iface.pos),
                            args: vec![iface.clone(), vi.name.clone()],
                            block: None,
                        });
                    }
                    spec.vrrp_instances.push(vi);
                }
            }
            "vrrp_script" => {
                if let Some(vs) = reader.vrrp_script(s) {
                    spec.vrrp_scripts.push(vs);
                }
            }
            "vrrp_track_file" | "track_file" => {
                if let Some(tf) = reader.track_file(s) {
                    spec.track_files.push(tf);
                }
            }
            "vrrp_sync_group" => {
                if let Some(sg) = reader.sync_group(s) {
                    spec.sync_groups.push(sg);
                }
            }
            _ => reader.other(s, "the top level"),
        }
    }
    errors.append(&mut reader.errors);
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<Token> {
        lex("t", text)
            .expect("lexes")
            .into_iter()
            .map(|t| t.value)
            .collect()
    }

    fn w(s: &str) -> Token {
        Token::Word(s.to_owned())
    }

    #[test]
    fn comments_quotes_and_glued_braces() {
        assert_eq!(
            words("a b{c}# comment\n! also a comment\n\"q w\" x!y"),
            [
                w("a"),
                w("b"),
                Token::Open,
                w("c"),
                Token::Close,
                Token::Newline,
                Token::Newline,
                w("q w"),
                w("x")
            ]
        );
    }

    #[test]
    fn escapes_in_quoted_strings() {
        assert_eq!(words(r#""a\"b\\c\x41\101\cA\n""#), [w("a\"b\\cAA\u{1}\n")]);
    }

    #[test]
    fn statements_take_blocks_on_the_same_or_the_next_line() {
        let tokens = lex("t", "a 1 {\n b 2\n}\nc\n{\n d\n}\ne").expect("lexes");
        let list = statements("t", tokens).expect("parses");
        let names: Vec<(&str, usize, Option<usize>)> = list
            .iter()
            .map(|s| {
                (
                    s.keyword.value.as_str(),
                    s.args.len(),
                    s.block.as_ref().map(Vec::len),
                )
            })
            .collect();
        assert_eq!(
            names,
            [("a", 1, Some(1)), ("c", 0, Some(1)), ("e", 0, None)]
        );
        assert_eq!(
            list[1].block.as_ref().map(|b| b[0].keyword.pos),
            Some(Pos {
                line: 6,
                col: 2,
                file: 0
            })
        );
    }

    #[test]
    fn top_level_statements_are_split_as_the_parser_reads_them() {
        let text = "# head\n\
            virtual_server 192.0.2.1 80\n\
            {\n\
            \x20 real_server 198.51.100.1 80 { weight \"}{\" }\n\
            }\n\
            ! between\n\
            \n\
            virtual_server 192.0.2.1 81 { } global_defs { }\n\
            virtual_server_group G {\n\
            }\n\
            \"virtual_server\" 192.0.2.1 82 { }\n\
            virtual_server 192.0.2.1 83 {\n\
            } # done\n";
        let pre = super::super::preprocess::preprocess("t", text, "", &super::super::NoFiles)
            .expect("preprocesses");
        let found = top_level(&pre.lines).expect("splits");
        let got: Vec<(std::ops::Range<usize>, bool)> = found
            .into_iter()
            .map(|t| (t.lines, t.virtual_server))
            .collect();
        assert_eq!(
            got,
            [
                (1..7, true),
                (7..8, false),
                (8..10, false),
                (10..11, false),
                (11..13, true),
            ]
        );
        // What the lexer or the parser would refuse is not split.
        for bad in ["a {\n", "}\n", "a \"b\n", "{ a }\n", "a é {\n}\n"] {
            let pre = super::super::preprocess::preprocess("t", bad, "", &super::super::NoFiles)
                .expect("preprocesses");
            assert_eq!(top_level(&pre.lines), None, "{bad:?}");
        }
    }
}
