//! Configuration: text in, a validated [`Model`] (or every error) out.
//!
//! Two front-ends read text into the same unvalidated [`spec`] tree, where every value keeps the
//! line and column it came from: [`toml`] (lbd's own format) and [`keepalived`] (keepalived.conf
//! syntax, so an existing file runs as is). [`validate`] then turns the tree into a [`Model`],
//! reporting **every** error, each as `file:line:col: message`.
//!
//! This layer never reads files or the clock: it receives strings (the daemon and `check-config`
//! read the file and pass its text in). A bad file never reaches the daemon.

pub mod import;
pub mod keepalived;
mod lvs;
pub mod preprocess;
pub mod spec;
pub mod toml;
mod validate;

use std::fmt;

use std::sync::Arc;

use crate::model::{Model, VirtualServer};

pub use validate::validate;

/// A position in a configuration file, 1-based.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// Which file (keepalived's `include`): an index into the files read, the root 0.
    pub file: u32,
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub col: u32,
}

impl Pos {
    /// The position of byte `offset` in `text`.
    pub fn of_offset(text: &str, offset: usize) -> Self {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        Self {
            file: 0,
            line: saturate(line),
            col: saturate(col),
        }
    }
}

/// Where each line of a text starts: positions of many offsets without scanning the text
/// from its start for each (a 30,000-real-server TOML file has hundreds of thousands).
#[derive(Debug)]
pub struct LineIndex<'t> {
    text: &'t str,
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    /// The index of `text`'s lines.
    pub fn new(text: &'t str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, starts }
    }

    /// The position of byte `offset`, as [`Pos::of_offset`] gives it.
    pub fn pos(&self, offset: usize) -> Pos {
        let offset = offset.min(self.text.len());
        // The last line starting at or before the offset.
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let col = self.text[start..offset].chars().count() + 1;
        Pos {
            file: 0,
            line: saturate(line),
            col: saturate(col),
        }
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One configuration error, printed as `file:line:col: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// File the error is in, as the user named it.
    pub file: String,
    /// Where in the file.
    pub pos: Pos,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pos.line == 0 {
            write!(f, "{}: {} (command line)", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.pos.line, self.pos.col, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Which syntax a configuration file is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// lbd's TOML format.
    Toml,
    /// keepalived.conf syntax.
    Keepalived,
}

impl Format {
    /// TOML when the file name ends in `.toml`, keepalived's syntax otherwise.
    pub fn from_path(path: &str) -> Self {
        if path.ends_with(".toml") {
            Format::Toml
        } else {
            Format::Keepalived
        }
    }
}

/// How to treat keywords keepalived knows but lbd does not implement yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unimplemented {
    /// An error that names the keyword (the default).
    #[default]
    Reject,
    /// A warning, and the keyword (with its block) is skipped.
    Warn,
}

/// The result of loading: the model and the warnings, or every error.
#[derive(Debug)]
pub struct Loaded {
    /// The validated model.
    pub model: Model,
    /// Things accepted with a warning (each `file:line:col: message`).
    pub warnings: Vec<ConfigError>,
}

/// Data-plane choices from the command line; they win over the file's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--dataplane`.
    pub dataplane: Option<String>,
    /// `--xdp-interface`.
    pub xdp_interface: Option<String>,
}

/// Sources for a file that has no includes to read: [`load`]'s.
#[derive(Debug)]
pub(crate) struct NoFiles;

impl preprocess::Sources for NoFiles {
    fn read(&self, path: &std::path::Path) -> std::io::Result<String> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("{} not read: no file access here", path.display()),
        ))
    }

    fn glob(&self, _: &str) -> Vec<std::path::PathBuf> {
        Vec::new()
    }

    fn env(&self, _: &str) -> Option<String> {
        None
    }

    fn random(&self, min: u32, _: u32) -> u32 {
        min
    }
}

/// Parses and validates `text`, read from the file named `file` (no includes, config id "").
pub fn load(
    file: &str,
    text: &str,
    format: Format,
    unimplemented: Unimplemented,
    overrides: &Overrides,
) -> Result<Loaded, Vec<ConfigError>> {
    load_with(file, text, format, unimplemented, overrides, "", &NoFiles)
}

/// A keepalived.conf's tree, for `lbd import-keepalived`: the spec and its warnings, or every
/// error of parsing it (validation is [`load_with`]'s).
pub fn keepalived_spec(
    file: &str,
    text: &str,
    unimplemented: Unimplemented,
    config_id: &str,
    sources: &dyn preprocess::Sources,
) -> Result<(spec::Spec, Vec<ConfigError>), Vec<ConfigError>> {
    let pre = preprocess::preprocess(file, text, config_id, sources)?;
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    let spec = keepalived::parse_lines(&pre, unimplemented, &mut warnings, &mut errors)?;
    if errors.is_empty() {
        Ok((spec, warnings))
    } else {
        Err(errors)
    }
}

/// [`load`] with keepalived's config id (`@id` lines, `${_INSTANCE}`) and the sources of
/// `include`d files, the environment and randomness.
pub fn load_with(
    file: &str,
    text: &str,
    format: Format,
    unimplemented: Unimplemented,
    overrides: &Overrides,
    config_id: &str,
    sources: &dyn preprocess::Sources,
) -> Result<Loaded, Vec<ConfigError>> {
    let mut files = vec![file.to_owned()];
    let mut warnings = Vec::new();
    // Errors of statements the parser could skip; validation still runs, so one pass reports
    // every error.
    let mut errors = Vec::new();
    let spec = match format {
        Format::Toml => toml::parse(file, text)?,
        Format::Keepalived => {
            let pre = preprocess::preprocess(file, text, config_id, sources)?;
            files.clone_from(&pre.files);
            keepalived::parse_lines(&pre, unimplemented, &mut warnings, &mut errors)
                .map_err(|e| name_file(e, &files))?
        }
    };
    let parsed = Parsed {
        spec,
        files,
        warnings,
        errors,
    };
    parsed.validate(file, unimplemented, overrides, &mut Vec::new())
}

/// What one load leaves for the next (a reload), so that a virtual server the reload leaves
/// unchanged is the same allocation in both models, which tells the layers after the
/// configuration (the reload plan, the health checks) that it did not change:
/// - every virtual server, by name: a new one equal to the old is replaced by the old;
/// - for a keepalived.conf, the text of each `virtual_server` block and what it read to: while
///   everything outside the blocks is unchanged, a block of the same text is not parsed
///   again. A block with a warning is not kept.
#[derive(Debug, Default)]
pub struct ParseCache {
    /// A hash of what the blocks are read in: the lines outside them, the files, the settings.
    context: u64,
    blocks: foldhash::HashMap<String, Arc<VirtualServer>>,
    servers: foldhash::HashMap<String, Arc<VirtualServer>>,
}

/// [`load_with`], parsing again only the `virtual_server` blocks that changed since the last
/// load through `cache` (none: a whole parse, as [`load_with`]). The result is the same as
/// [`load_with`]'s; errors are always those of a whole parse, and leave the cache as it was.
#[expect(
    clippy::too_many_arguments,
    reason = "load_with's arguments and the cache"
)]
pub fn load_cached(
    file: &str,
    text: &str,
    format: Format,
    unimplemented: Unimplemented,
    overrides: &Overrides,
    config_id: &str,
    sources: &dyn preprocess::Sources,
    cache: Option<&mut ParseCache>,
) -> Result<Loaded, Vec<ConfigError>> {
    let whole = || {
        load_with(
            file,
            text,
            format,
            unimplemented,
            overrides,
            config_id,
            sources,
        )
    };
    let Some(cache) = cache else {
        return whole();
    };
    let parsed = match format {
        Format::Keepalived => {
            let pre = preprocess::preprocess(file, text, config_id, sources)?;
            cache.parse_keepalived(file, pre, unimplemented, overrides)
        }
        Format::Toml => None,
    };
    let (mut loaded, blocks) = match parsed {
        Some(parsed) => parsed,
        None => (whole()?, None),
    };
    // Unchanged virtual servers: the old allocations.
    for vs in &mut loaded.model.virtual_servers {
        if let Some(old) = cache.servers.get(&vs.name)
            && old == vs
        {
            vs.clone_from(old);
        }
    }
    cache.servers = loaded
        .model
        .virtual_servers
        .iter()
        .map(|vs| (vs.name.clone(), vs.clone()))
        .collect();
    if let Some((context, texts, read)) = blocks {
        cache.context = context;
        cache.blocks = texts
            .into_iter()
            .zip(read)
            .filter_map(|(text, vs)| Some((text, cache.servers.get(&vs?.name)?.clone())))
            .collect();
    }
    Ok(loaded)
}

/// The context hash, blocks' texts and what they read to, of a cached keepalived.conf parse.
type Blocks = (u64, Vec<String>, Vec<Option<Arc<VirtualServer>>>);

impl ParseCache {
    /// A keepalived.conf parsed again only where its `virtual_server` blocks changed; `None`
    /// when the plain parse must read it (it cannot be split, or it has errors).
    fn parse_keepalived(
        &self,
        file: &str,
        pre: preprocess::Preprocessed,
        unimplemented: Unimplemented,
        overrides: &Overrides,
    ) -> Option<(Loaded, Option<Blocks>)> {
        let mut blocks = keepalived::top_level(&pre.lines)?;
        blocks.retain(|b| b.virtual_server);
        // Everything a virtual_server block's reading may depend on, outside the blocks.
        let context = {
            use std::hash::{Hash as _, Hasher as _};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (file, &pre.files, unimplemented == Unimplemented::Warn).hash(&mut h);
            let mut next = 0;
            for block in &blocks {
                for line in &pre.lines[next..block.lines.start] {
                    line.text.hash(&mut h);
                }
                next = block.lines.end;
            }
            for line in &pre.lines[next..] {
                line.text.hash(&mut h);
            }
            h.finish()
        };
        let same_context = context == self.context;
        let known = |text: &str| {
            same_context
                .then(|| self.blocks.get(text).cloned())
                .flatten()
        };
        let mut warnings = Vec::new();
        let mut errors = Vec::new();
        let (spec, texts) = keepalived::parse_lines_cached(
            &pre,
            &blocks,
            unimplemented,
            &mut warnings,
            &mut errors,
            &known,
        )?
        .ok()?;
        let parsed = Parsed {
            spec,
            files: pre.files,
            warnings,
            errors,
        };
        let mut read = Vec::new();
        let loaded = parsed
            .validate(file, unimplemented, overrides, &mut read)
            .ok()?;
        Some((loaded, Some((context, texts, read))))
    }
}

/// The model of a valid keepalived.conf, for other modules' tests.
#[cfg(test)]
pub(crate) fn test_model(text: &str) -> Model {
    load(
        "test.conf",
        text,
        Format::Keepalived,
        Unimplemented::Reject,
        &Overrides::default(),
    )
    .unwrap_or_else(|e| panic!("invalid test configuration: {e:?}"))
    .model
}

/// A parsed configuration on its way to validation.
struct Parsed {
    spec: spec::Spec,
    /// The files read, for the errors' names.
    files: Vec<String>,
    warnings: Vec<ConfigError>,
    errors: Vec<ConfigError>,
}

/// An error in an included file names that file.
fn name_file(mut list: Vec<ConfigError>, files: &[String]) -> Vec<ConfigError> {
    for e in &mut list {
        if let Some(name) = files.get(e.pos.file as usize) {
            e.file.clone_from(name);
        }
    }
    list
}

impl Parsed {
    /// The command line's choices applied, then [`validate`]; `read_blocks` as there.
    fn validate(
        self,
        file: &str,
        unimplemented: Unimplemented,
        overrides: &Overrides,
        read_blocks: &mut Vec<Option<Arc<VirtualServer>>>,
    ) -> Result<Loaded, Vec<ConfigError>> {
        let Self {
            mut spec,
            files,
            mut warnings,
            mut errors,
        } = self;
        if overrides.dataplane.is_some() || overrides.xdp_interface.is_some() {
            // Command-line values have no position in the file: line 0 prints as "file: message".
            let cli = |v: &Option<String>| v.clone().map(|v| spec::At::new(v, Pos::default()));
            let dataplane = spec
                .dataplane
                .get_or_insert_with(spec::DataplaneSpec::default);
            if overrides.dataplane.is_some() {
                dataplane.mode = cli(&overrides.dataplane);
            }
            if overrides.xdp_interface.is_some() {
                dataplane.xdp_interface = cli(&overrides.xdp_interface);
            }
        }
        let result = validate(file, &spec, unimplemented, &mut warnings, read_blocks);
        warnings.sort_by_key(|w| w.pos);
        let warnings = name_file(warnings, &files);
        match result {
            Ok(model) if errors.is_empty() => Ok(Loaded { model, warnings }),
            Ok(_) => Err(name_file(errors, &files)),
            Err(more) => {
                errors.extend(more);
                // In file order, whichever layer found them.
                errors.sort_by_key(|e| e.pos);
                Err(name_file(errors, &files))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Dataplane, Forwarding, Protocol, XdpAttach, XdpSettings};

    fn load_toml(text: &str) -> Result<Loaded, Vec<ConfigError>> {
        load(
            "lbd.toml",
            text,
            Format::Toml,
            Unimplemented::Reject,
            &Overrides::default(),
        )
    }

    fn load_keepalived(
        text: &str,
        unimplemented: Unimplemented,
    ) -> Result<Loaded, Vec<ConfigError>> {
        load(
            "keepalived.conf",
            text,
            Format::Keepalived,
            unimplemented,
            &Overrides::default(),
        )
    }

    fn messages(errors: &[ConfigError]) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    const TOML: &str = r#"
[dataplane]
mode = "xdp+ipvs"
xdp_interface = "eth0"
xdp_attach = "generic"

[[virtual_server]]
address = "203.0.113.10"
port = 80
scheduler = "wrr"
forwarding = "dr"
real_server = [
  { address = "192.0.2.2", port = 80, weight = 3 },
  { address = "192.0.2.3", port = 80 },
]

[[virtual_server]]
address = "2001:db8::10"
port = 53
protocol = "udp"
"#;

    const KEEPALIVED: &str = r#"
! keepalived.conf as users write it
virtual_server 203.0.113.10 80 {
    lb_algo wrr          # legacy spelling of lvs_sched
    lb_kind DR
    protocol TCP
    real_server 192.0.2.2 80 {
        weight 3
    }
    real_server 192.0.2.3 80
    {
    }
}
virtual_server 2001:db8::10 53 { protocol "UDP" }
"#;

    #[test]
    fn toml_and_keepalived_give_the_same_virtual_servers() {
        let toml = load_toml(TOML).expect("valid TOML").model;
        let keepalived = load_keepalived(KEEPALIVED, Unimplemented::Reject)
            .expect("valid keepalived.conf")
            .model;
        assert_eq!(toml.virtual_servers, keepalived.virtual_servers);
        let vs = &toml.virtual_servers[0];
        assert_eq!(
            (vs.name.as_str(), vs.protocol, vs.scheduler.name()),
            ("[203.0.113.10]:tcp:80", Protocol::Tcp, "wrr")
        );
        assert_eq!(vs.forwarding, Forwarding::Dr);
        assert_eq!(
            vs.real_servers
                .iter()
                .map(|r| r.weight.get())
                .collect::<Vec<_>>(),
            [3, 1]
        );
        // keepalived's defaults where the file is silent.
        let v6 = &toml.virtual_servers[1];
        assert_eq!(
            (v6.scheduler.name(), v6.forwarding, v6.protocol),
            ("wlc", Forwarding::Nat, Protocol::Udp)
        );
        assert_eq!(
            toml.dataplane,
            Dataplane::XdpIpvs(XdpSettings::new("eth0", XdpAttach::Generic))
        );
        assert_eq!(
            keepalived.dataplane,
            Dataplane::Ipvs,
            "a keepalived.conf means IPVS unless told otherwise"
        );
    }

    #[test]
    fn every_toml_validation_error_is_reported_with_its_position() {
        let text = r#"[dataplane]
mode = "xdp"

[[virtual_server]]
address = "203.0.113.300"
port = 70000
protocol = "icmp"
scheduler = "fastest"
real_server = [ { address = "2001:db8::1", port = 80, weight = 70000 } ]
"#;
        let errors = messages(&load_toml(text).expect_err("invalid"));
        assert_eq!(
            errors,
            [
                "lbd.toml:2:8: dataplane mode \"xdp\" needs xdp_interface",
                "lbd.toml:5:11: \"203.0.113.300\" is not an IP address",
                "lbd.toml:6:8: port \"70000\" is not 0-65535",
                "lbd.toml:7:12: protocol must be TCP, UDP or SCTP, not \"icmp\"",
                "lbd.toml:8:13: unknown scheduler \"fastest\" (IPVS has rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos)",
                "lbd.toml:9:64: weight must be a whole number 0-65535, not \"70000\"",
            ]
        );
    }

    #[test]
    fn unknown_toml_fields_are_rejected_at_their_position() {
        let errors = messages(
            &load_toml("[[virtual_server]]\naddress = \"203.0.113.1\"\nport = 1\nweigth = 2\n")
                .expect_err("typo"),
        );
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("lbd.toml:4:1: unknown keyword \"weigth\" in virtual_server"),
            "{errors:?}"
        );
    }

    #[test]
    fn toml_syntax_errors_have_a_position() {
        let errors = messages(&load_toml("[dataplane\nmode = 1\n").expect_err("syntax"));
        assert!(errors[0].starts_with("lbd.toml:1:"), "{errors:?}");
    }

    #[test]
    fn duplicates_and_family_mismatches_are_errors() {
        let text = r#"
[[virtual_server]]
address = "203.0.113.10"
port = 80
real_server = [ { address = "192.0.2.2", port = 80 }, { address = "192.0.2.2", port = 80 }, { address = "2001:db8::2", port = 80 } ]

[[virtual_server]]
address = "203.0.113.10"
port = 80
"#;
        let errors = messages(&load_toml(text).expect_err("invalid"));
        assert_eq!(
            errors,
            [
                "lbd.toml:5:55: duplicate real server 192.0.2.2:80",
                "lbd.toml:5:105: real server [2001:db8::2]:80 is not of the VIP's address family",
            ],
            "the first virtual server is invalid, so the second is no duplicate of a valid one"
        );
        let text = "[[virtual_server]]\naddress = \"203.0.113.10\"\nport = 80\n[[virtual_server]]\naddress = \"203.0.113.10\"\nport = 80\n";
        assert_eq!(
            messages(&load_toml(text).expect_err("dup")),
            ["lbd.toml:4:1: virtual service [203.0.113.10]:tcp:80 is already defined at line 1"]
        );
    }

    #[test]
    fn keepalived_keywords_lbd_does_not_implement_are_named_or_skipped_with_a_warning() {
        let text = "global_defs {\n  router_id d1\n  notification_email_from lbd@example.org\n}\nvirtual_server 203.0.113.10 80 {\n  smtp_alert\n  real_server 192.0.2.2 80 {\n    BFD_CHECK {\n      name b1\n    }\n  }\n}\n";
        let errors =
            messages(&load_keepalived(text, Unimplemented::Reject).expect_err("unimplemented"));
        assert_eq!(
            errors,
            [
                "keepalived.conf:3:3: keepalived keyword \"notification_email_from\" (global_defs) is not implemented by lbd; pass --allow-unimplemented to skip it with a warning",
                "keepalived.conf:6:3: keepalived keyword \"smtp_alert\" (virtual_server) is not implemented by lbd; pass --allow-unimplemented to skip it with a warning",
                "keepalived.conf:8:5: keepalived keyword \"BFD_CHECK\" (real_server) is not implemented by lbd; pass --allow-unimplemented to skip it with a warning",
            ]
        );
        let loaded = load_keepalived(text, Unimplemented::Warn).expect("accepted with warnings");
        assert_eq!(loaded.warnings.len(), 3);
        assert_eq!(loaded.model.virtual_servers[0].real_servers.len(), 1);
        assert_eq!(loaded.model.router_id.as_deref(), Some("d1"));
    }

    #[test]
    fn unknown_keepalived_keywords_are_errors_even_when_unimplemented_ones_are_allowed() {
        let text = "virtual_server 203.0.113.10 80 {\n  lb_algoo rr\n}\nfrobnicate\n";
        let errors = messages(&load_keepalived(text, Unimplemented::Warn).expect_err("unknown"));
        assert_eq!(
            errors,
            [
                "keepalived.conf:2:3: unknown keyword \"lb_algoo\" in virtual_server",
                "keepalived.conf:4:1: unknown keyword \"frobnicate\" in the top level",
            ]
        );
    }

    #[test]
    fn keepalived_structure_errors_have_positions() {
        let cases = [
            (
                "virtual_server 203.0.113.10 80 {\n  protocol TCP\n",
                "keepalived.conf:1:32: '{' is never closed",
            ),
            ("}\n", "keepalived.conf:1:1: '}' without a matching '{'"),
            (
                "{\n}\n",
                "keepalived.conf:1:1: '{' without a keyword before it",
            ),
            (
                "virtual_server 203.0.113.10 80 {\n  protocol \"TCP\n}\n",
                "keepalived.conf:2:12: unterminated quoted string",
            ),
            (
                "virtual_server 203.0.113.10 {\n}\n",
                "keepalived.conf:1:1: usage: virtual_server IP PORT | fwmark N | group NAME { ... }",
            ),
            (
                "virtual_server 203.0.113.10 http {\n}\n",
                "keepalived.conf:1:29: port \"http\" is not 0-65535",
            ),
            (
                "virtual_server group NOPE {\n}\n",
                "keepalived.conf:1:1: no virtual_server_group named \"NOPE\"",
            ),
            (
                "virtual_server 203.0.113.10 80 {\n lb_kind TUN type gue\n}\n",
                "keepalived.conf:2:14: usage: type gue port N",
            ),
        ];
        for (text, expected) in cases {
            let errors = messages(&load_keepalived(text, Unimplemented::Reject).expect_err(text));
            assert_eq!(errors, [expected], "for {text:?}");
        }
    }

    #[test]
    fn command_line_overrides_win_and_report_without_a_position() {
        let overrides = Overrides {
            dataplane: Some("xdp".into()),
            xdp_interface: None,
        };
        let errors = load(
            "k.conf",
            "",
            Format::Keepalived,
            Unimplemented::Reject,
            &overrides,
        )
        .expect_err("no iface");
        assert_eq!(
            messages(&errors),
            ["k.conf: dataplane mode \"xdp\" needs xdp_interface (command line)"]
        );
        let overrides = Overrides {
            dataplane: Some("xdp".into()),
            xdp_interface: Some("veth1".into()),
        };
        let model = load(
            "k.conf",
            "",
            Format::Keepalived,
            Unimplemented::Reject,
            &overrides,
        )
        .expect("valid")
        .model;
        assert_eq!(
            model.dataplane.xdp().map(|x| x.interface.as_str()),
            Some("veth1")
        );
    }

    #[test]
    fn notify_tracking_scripts_files_and_sync_groups_read_the_same_from_both_formats() {
        let keepalived = r#"
global_defs {
    vrrp_notify_fifo /run/lbd/vrrp.fifo
    script_user lbd-script lbd-group
    vrrp_garp_master_delay 2
    vrrp_garp_master_refresh 60
    vrrp_rt_priority 10
}
vrrp_script chk_web {
    script "/usr/local/bin/check 'web server' 80"
    interval 2
    timeout 1
    weight -20 reverse
    rise 3
    fall 2
}
vrrp_track_file tf {
    file /run/tf
    weight 5
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        192.0.2.100
    }
    notify_master "/bin/notify.sh master"
    notify_stop /bin/stop.sh operator
    notify /bin/any.sh
    notify_priority_changes
    garp_master_repeat 3
    track_interface {
        eth1
        eth2 weight -10
    }
    track_script {
        chk_web
    }
    track_file {
        tf weight 2
    }
}
vrrp_instance VI_2 {
    interface eth1
    virtual_router_id 52
    virtual_ipaddress {
        198.51.100.1
    }
}
vrrp_sync_group G1 {
    group {
        VI_1
        VI_2
    }
    notify_master "/bin/group.sh up"
}
"#;
        let toml = r#"
notify_fifo = "/run/lbd/vrrp.fifo"
script_user = "lbd-script"
script_group = "lbd-group"
garp_master_delay = 2
garp_master_refresh = 60
vrrp_rt_priority = 10

[[vrrp_script]]
name = "chk_web"
script = "/usr/local/bin/check 'web server' 80"
interval = 2
timeout = 1
weight = -20
reverse = true
rise = 3
fall = 2

[[track_file]]
name = "tf"
file = "/run/tf"
weight = 5

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
virtual_ipaddress = ["192.0.2.100"]
notify_master = "/bin/notify.sh master"
notify_stop = { command = "/bin/stop.sh", user = "operator" }
notify = "/bin/any.sh"
notify_priority_changes = true
garp_master_repeat = 3
track_interface = [ { name = "eth1" }, { name = "eth2", weight = -10 } ]
track_script = [ { name = "chk_web" } ]
track_file = [ { name = "tf", weight = 2 } ]

[[vrrp_instance]]
name = "VI_2"
interface = "eth1"
virtual_router_id = 52
virtual_ipaddress = ["198.51.100.1"]

[[sync_group]]
name = "G1"
group = ["VI_1", "VI_2"]
notify_master = "/bin/group.sh up"
"#;
        let a = load_keepalived(keepalived, Unimplemented::Reject)
            .expect("keepalived.conf")
            .model;
        let b = load_toml(toml).expect("toml").model;
        assert_eq!(a.vrrp_instances, b.vrrp_instances);
        assert_eq!(a.vrrp, b.vrrp);
        let script = &a.vrrp.scripts[0];
        assert_eq!(
            script.script.argv,
            ["/usr/local/bin/check", "web server", "80"]
        );
        assert_eq!(
            (script.weight, script.reverse, script.rise, script.fall),
            (-20, true, 3, 2)
        );
        assert_eq!(script.timeout, std::time::Duration::from_secs(1));
        let vi = &a.vrrp_instances[0];
        assert_eq!(
            vi.notify
                .stop
                .as_ref()
                .and_then(|s| s.user.as_ref())
                .map(|u| u.user.as_str()),
            Some("operator")
        );
        assert_eq!(
            vi.notify.master.as_ref().map(|s| s.argv.clone()),
            Some(vec!["/bin/notify.sh".to_owned(), "master".to_owned()])
        );
        assert_eq!(vi.track_interfaces[1].weight, Some(-10));
        assert_eq!(
            (
                vi.garp.repeat,
                vi.garp.delay.as_secs(),
                vi.garp.refresh.map(|r| r.as_secs())
            ),
            (3, 2, Some(60)),
            "instance repeat, global delay and refresh"
        );
        assert_eq!(a.vrrp.sync_groups[0].members, ["VI_1", "VI_2"]);
        assert_eq!(a.vrrp.rt_priority, Some(10));
        let out_of_range = keepalived.replace("vrrp_rt_priority 10", "vrrp_rt_priority 100");
        let errors = load_keepalived(&out_of_range, Unimplemented::Reject).expect_err("invalid");
        assert_eq!(
            messages(&errors),
            ["keepalived.conf:7:22: vrrp_rt_priority 100 is not in 1-99"]
        );
    }

    #[test]
    fn virtual_ipaddress_options_read_the_same_from_both_formats() {
        let keepalived = r#"
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        192.0.2.100/24 dev eth1 label eth1:vip scope link brd 192.0.2.255
        192.0.2.101
    }
}
vrrp_instance VI_6 {
    interface eth0
    version 3
    virtual_router_id 51
    virtual_ipaddress {
        2001:db8::100/64 -nodad
    }
}
"#;
        let toml = r#"
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
virtual_ipaddress = ["192.0.2.100/24 dev eth1 label eth1:vip scope link brd 192.0.2.255", "192.0.2.101"]

[[vrrp_instance]]
name = "VI_6"
interface = "eth0"
version = 3
virtual_router_id = 51
virtual_ipaddress = ["2001:db8::100/64 -nodad"]
"#;
        let a = load_keepalived(keepalived, Unimplemented::Reject)
            .expect("keepalived.conf")
            .model;
        let b = load_toml(toml).expect("toml").model;
        assert_eq!(a.vrrp_instances, b.vrrp_instances);
        let vip = &a.vrrp_instances[0].addresses[0];
        assert_eq!(
            (
                vip.prefix,
                vip.dev.as_deref(),
                vip.label.as_deref(),
                vip.scope,
                vip.broadcast
            ),
            (
                24,
                Some("eth1"),
                Some("eth1:vip"),
                Some(253),
                Some("192.0.2.255".parse().expect("ip"))
            )
        );
        assert_eq!(a.vrrp_instances[1].addresses[0].prefix, 64);
        let bad = r#"
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        192.0.2.100 peer 192.0.2.1
        192.0.2.101 dev
    }
}
vrrp_instance VI_6 {
    interface eth0
    version 3
    virtual_router_id 52
    virtual_ipaddress {
        2001:db8::100/64 label x
    }
}
"#;
        let errors: Vec<String> = load_keepalived(bad, Unimplemented::Reject)
            .expect_err("invalid")
            .iter()
            .map(ToString::to_string)
            .collect();
        for expected in [
            "virtual_ipaddress option \"peer\" is not implemented",
            "option dev needs a value",
            "label is for IPv4 addresses only",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{expected:?} missing from {errors:#?}"
            );
        }
    }

    #[test]
    fn tracking_references_and_script_commands_are_checked() {
        let keepalived = r#"
vrrp_script chk {
    script "/bin/check 'unterminated"
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        192.0.2.100
    }
    track_script {
        nope
    }
    track_interface {
        eth1 weight 300
    }
}
vrrp_sync_group G {
    group {
        VI_1
        VI_9
    }
}
"#;
        let errors = load_keepalived(keepalived, Unimplemented::Reject)
            .expect_err("invalid")
            .into_iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>();
        for expected in [
            "unterminated single quote",
            "no vrrp_script nope for VI_1",
            "weight 300 is out of range -253 to 253",
            "vrrp_sync_group G: no vrrp_instance VI_9",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{expected:?} missing from {errors:#?}"
            );
        }
    }

    #[test]
    fn a_vrrp_instance_reads_the_same_from_toml_and_keepalived_conf() {
        let keepalived = r#"
global_defs {
    router_id director-1
    vrrp_version 3
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 0.05
    nopreempt
    virtual_ipaddress {
        192.0.2.100/24
        192.0.2.101
    }
    unicast_src_ip 192.0.2.11
    unicast_peer {
        192.0.2.12
    }
}
"#;
        let toml = r#"
router_id = "director-1"
[[vrrp_instance]]
name = "VI_1"
state = "MASTER"
interface = "eth0"
virtual_router_id = 51
priority = 150
advert_int = 0.05
version = 3
preempt = false
virtual_ipaddress = ["192.0.2.100/24", "192.0.2.101"]
unicast_src_ip = "192.0.2.11"
unicast_peer = ["192.0.2.12"]
"#;
        let a = load_keepalived(keepalived, Unimplemented::Reject)
            .expect("keepalived.conf")
            .model;
        let b = load_toml(toml).expect("toml").model;
        assert_eq!(a.vrrp_instances, b.vrrp_instances);
        assert_eq!(a.router_id, b.router_id);
        let vi = &a.vrrp_instances[0];
        assert_eq!(
            (
                vi.vrid,
                vi.priority,
                vi.advert_int_cs,
                vi.start_active,
                vi.preempt
            ),
            (51, 150, 5, true, false)
        );
        assert_eq!(vi.version, crate::vrrp::wire::Version::V3);
        assert_eq!(
            vi.addresses.iter().map(|a| a.prefix).collect::<Vec<_>>(),
            [24, 32]
        );
    }

    #[test]
    fn keepalived_defaults_apply_to_a_bare_vrrp_instance() {
        let text = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 7\n authentication {\n  auth_type PASS\n  auth_pass secret12\n }\n}\n";
        let vi = load_keepalived(text, Unimplemented::Reject)
            .expect("valid")
            .model
            .vrrp_instances
            .remove(0);
        assert_eq!(vi.version, crate::vrrp::wire::Version::V2);
        assert_eq!(
            (vi.priority, vi.advert_int_cs, vi.start_active, vi.preempt),
            (100, 100, false, true)
        );
        assert_eq!(vi.auth_pass.as_deref(), Some("secret12"));
    }

    #[test]
    fn vrrp_instance_errors_have_positions() {
        let text = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 0\n priority 256\n advert_int 1.5\n state LEADER\n virtual_ipaddress {\n  2001:db8::1\n  192.0.2.1/33\n }\n}\nvrrp_instance VI_2 {\n virtual_router_id 9\n strict_mode\n}\n";
        let errors = messages(&load_keepalived(text, Unimplemented::Reject).expect_err("invalid"));
        assert_eq!(
            errors,
            [
                "keepalived.conf:3:20: virtual_router_id 0 is out of range 1-255",
                "keepalived.conf:4:11: priority 256 is out of range 1-255",
                "keepalived.conf:5:13: advert_int 1.5 for VRRPv2 must be whole seconds, 1 to 255",
                "keepalived.conf:6:8: state must be MASTER or BACKUP, not \"LEADER\"",
                "keepalived.conf:8:3: VRRPv2 is IPv4 only: use version 3 for IPv6 addresses",
                "keepalived.conf:9:3: prefix of \"192.0.2.1/33\" is out of range 0-32",
                "keepalived.conf:12:1: vrrp_instance VI_2 needs an interface",
                "keepalived.conf:14:2: keepalived keyword \"strict_mode\" (vrrp_instance) is not implemented by lbd; pass --allow-unimplemented to skip it with a warning",
            ]
        );
    }

    #[test]
    fn format_follows_the_file_name() {
        assert_eq!(Format::from_path("/etc/lbd/lbd.toml"), Format::Toml);
        assert_eq!(
            Format::from_path("/etc/keepalived/keepalived.conf"),
            Format::Keepalived
        );
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        assert_eq!(
            Pos::of_offset("é = 1\nab", 8),
            Pos {
                line: 2,
                col: 2,
                file: 0
            }
        );
        assert_eq!(
            Pos::of_offset("é = 1", 2),
            Pos {
                line: 1,
                col: 2,
                file: 0
            }
        );
        // The index gives the same for every offset, line ends and past the end included.
        for text in ["é = 1\nab", "\n\nx = 1\n", "", "a\n\u{1f600}b\nc"] {
            let lines = LineIndex::new(text);
            for offset in
                (0..=text.len() + 1).filter(|&o| o > text.len() || text.is_char_boundary(o))
            {
                assert_eq!(
                    lines.pos(offset),
                    Pos::of_offset(text, offset),
                    "{text:?} at {offset}"
                );
            }
        }
    }

    /// A director's file: a VRRP instance, a group, and three virtual servers; `weight` is
    /// the second one's real server's, `group_port` the group's port.
    fn director(weight: u32, group_port: u16) -> String {
        format!(
            r#"vrrp_instance VI_1 {{
  interface eth0
  virtual_router_id 1
  virtual_ipaddress {{
    192.0.2.1/24
  }}
}}
virtual_server_group G {{
  192.0.2.9 {group_port}
}}
virtual_server 192.0.2.1 80 {{
  real_server 198.51.100.1 80 {{
    TCP_CHECK {{
      connect_timeout 1
    }}
  }}
}}
# the second
virtual_server 192.0.2.1 443
{{
  real_server 198.51.100.1 443 {{ weight {weight} }}
}}
virtual_server group G {{
  real_server 198.51.100.2 80 {{
    HTTP_GET {{
      url {{
        path "/{{x}}"
        status_code 200
      }}
    }}
  }}
}}
"#
        )
    }

    fn cached(text: &str, cache: &mut ParseCache) -> Result<Loaded, Vec<ConfigError>> {
        load_cached(
            "lbd.conf",
            text,
            Format::Keepalived,
            Unimplemented::Reject,
            &Overrides::default(),
            "",
            &NoFiles,
            Some(cache),
        )
    }

    fn whole(text: &str) -> Result<Loaded, Vec<ConfigError>> {
        load(
            "lbd.conf",
            text,
            Format::Keepalived,
            Unimplemented::Reject,
            &Overrides::default(),
        )
    }

    /// Which virtual servers of `now` are the very allocations of `before`'s.
    fn shared(before: &Model, now: &Model) -> Vec<bool> {
        now.virtual_servers
            .iter()
            .zip(&before.virtual_servers)
            .map(|(n, b)| Arc::ptr_eq(n, b))
            .collect()
    }

    #[test]
    fn a_cached_load_reads_only_the_changed_virtual_servers() {
        let mut cache = ParseCache::default();
        let first = cached(&director(1, 80), &mut cache).expect("valid").model;
        assert_eq!(first, whole(&director(1, 80)).expect("valid").model);
        // One weight: the other two are the same allocations, and the model a whole parse's.
        let second = cached(&director(2, 80), &mut cache).expect("valid").model;
        assert_eq!(second, whole(&director(2, 80)).expect("valid").model);
        assert_eq!(shared(&first, &second), [true, false, true]);
        assert_eq!(second.virtual_servers[1].real_servers[0].weight.get(), 2);
        // The same file again: everything shared.
        let third = cached(&director(2, 80), &mut cache).expect("valid").model;
        assert_eq!(shared(&second, &third), [true, true, true]);
        // The group changes outside the blocks: every block is read again, and the two that
        // read to what they were are the old allocations still.
        let fourth = cached(&director(2, 8080), &mut cache).expect("valid").model;
        assert_eq!(fourth, whole(&director(2, 8080)).expect("valid").model);
        assert_eq!(shared(&third, &fourth), [true, true, false]);
        assert_ne!(fourth.virtual_servers[2], third.virtual_servers[2]);
    }

    #[test]
    fn a_toml_reload_keeps_the_unchanged_virtual_servers() {
        let toml = |weight| {
            let (spec, _) = keepalived_spec(
                "lbd.conf",
                &director(weight, 80),
                Unimplemented::Reject,
                "",
                &NoFiles,
            )
            .expect("parses");
            import::to_toml(&spec)
        };
        let load = |text: &str, cache: &mut ParseCache| {
            load_cached(
                "lbd.toml",
                text,
                Format::Toml,
                Unimplemented::Reject,
                &Overrides::default(),
                "",
                &NoFiles,
                Some(cache),
            )
            .expect("valid")
            .model
        };
        let mut cache = ParseCache::default();
        let first = load(&toml(1), &mut cache);
        let second = load(&toml(2), &mut cache);
        assert_eq!(shared(&first, &second), [true, false, true]);
        assert_eq!(second, load_toml(&toml(2)).expect("valid").model);
    }

    #[test]
    fn a_cached_load_reports_a_whole_parse_s_errors_and_keeps_the_last_good_one() {
        let mut cache = ParseCache::default();
        let good = cached(&director(1, 80), &mut cache).expect("valid").model;
        for bad in [
            // In a block: a weight out of range.
            director(70_000, 80),
            // A duplicate of a cached block's service.
            format!(
                "{}virtual_server 192.0.2.1 80 {{\n  real_server 198.51.100.3 80\n}}\n",
                director(1, 80)
            ),
            // Braces that do not close.
            format!("{}virtual_server 192.0.2.1 81 {{\n", director(1, 80)),
        ] {
            let errors = |r: Result<Loaded, Vec<ConfigError>>| -> Vec<String> {
                r.expect_err("invalid")
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            };
            assert_eq!(errors(cached(&bad, &mut cache)), errors(whole(&bad)));
        }
        let again = cached(&director(1, 80), &mut cache).expect("valid").model;
        assert_eq!(shared(&good, &again), [true, true, true]);
    }
}
