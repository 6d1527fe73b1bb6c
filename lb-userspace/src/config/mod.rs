//! Configuration: text in, a validated [`Model`] (or every error) out.
//!
//! Two front-ends read text into the same unvalidated [`spec`] tree, where every value keeps the
//! line and column it came from: [`toml`] (lbd's own format) and [`keepalived`] (keepalived.conf
//! syntax, so an existing file runs as is). [`validate`] then turns the tree into a [`Model`],
//! reporting **every** error, each as `file:line:col: message`.
//!
//! This layer never reads files or the clock: it receives strings (the daemon and `check-config`
//! read the file and pass its text in). A bad file never reaches the daemon.

pub mod keepalived;
pub mod spec;
pub mod toml;
mod validate;

use std::fmt;

use crate::model::Model;

pub use validate::validate;

/// A position in a configuration file, 1-based.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
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

/// Parses and validates `text`, read from the file named `file`.
pub fn load(
    file: &str,
    text: &str,
    format: Format,
    unimplemented: Unimplemented,
    overrides: &Overrides,
) -> Result<Loaded, Vec<ConfigError>> {
    let mut warnings = Vec::new();
    let mut spec = match format {
        Format::Toml => toml::parse(file, text)?,
        Format::Keepalived => keepalived::parse(file, text, unimplemented, &mut warnings)?,
    };
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
    let model = validate(file, &spec)?;
    Ok(Loaded { model, warnings })
}
