//! keepalived.conf's line-level features, before lexing: `include` with globs, conditional
//! lines (`@id`, `@^id` against the config id), parameters (`$NAME=value`, multi-line with a
//! trailing `\`, `${NAME}` and `$NAME` substitution, recursive, at use time), the predefined
//! `${_PWD}`, `${_INSTANCE}`, `${_RANDOM [MIN [MAX]]}`, `${_HASH}`, `${_BANG}`, `${_ENV NAME}`,
//! and the generators `~SEQ(var, start, step, end)`, `~SEQx(...)` and `~LST(var, v1, ...)` /
//! `~LST({a, b}, {1, 2}, ...)`, as keepalived.conf(5) describes them.
//!
//! Pure: files, globs, the environment and randomness come through [`Sources`]; every line out
//! keeps the file and line it came from, so errors point into the file the user wrote.

use std::path::{Path, PathBuf};

use super::{ConfigError, Pos};

/// What preprocessing needs from outside.
pub trait Sources {
    /// A file's text.
    fn read(&self, path: &Path) -> std::io::Result<String>;
    /// The files matching a glob pattern, sorted.
    fn glob(&self, pattern: &str) -> Vec<PathBuf>;
    /// An environment variable.
    fn env(&self, name: &str) -> Option<String>;
    /// A random number in `min..=max`.
    fn random(&self, min: u32, max: u32) -> u32;
}

/// A line after preprocessing, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Index into [`Preprocessed::files`].
    pub file: u32,
    /// Line number in that file, from 1.
    pub line: u32,
    /// Its text.
    pub text: String,
}

/// The lines of a configuration with its includes and generators expanded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preprocessed {
    /// The files read, the root first.
    pub files: Vec<String>,
    /// The lines, in order.
    pub lines: Vec<Line>,
}

/// Deeper than this, a substitution or include is taken to be a loop.
const MAX_DEPTH: usize = 32;

/// A configuration that expands to more lines than this is refused (keepalived's 65,024-
/// instance example is about 1.1 million).
pub const MAX_LINES: usize = 10_000_000;

struct State<'a> {
    config_id: &'a str,
    sources: &'a dyn Sources,
    params: foldhash::HashMap<String, String>,
    out: Preprocessed,
    errors: Vec<ConfigError>,
}

/// Expands `text`, the contents of `root`, for config id `config_id`.
pub fn preprocess(
    root: &str,
    text: &str,
    config_id: &str,
    sources: &dyn Sources,
) -> Result<Preprocessed, Vec<ConfigError>> {
    let mut state = State {
        config_id,
        sources,
        params: foldhash::HashMap::default(),
        out: Preprocessed::default(),
        errors: Vec::new(),
    };
    state.file(root, text, 0);
    if state.errors.is_empty() {
        Ok(state.out)
    } else {
        Err(state.errors)
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl State<'_> {
    fn error(&mut self, file: u32, line: u32, message: String) {
        self.errors.push(ConfigError {
            file: self.out.files[file as usize].clone(),
            pos: Pos { line, col: 1, file },
            message,
        });
    }

    fn file(&mut self, name: &str, text: &str, depth: usize) {
        let file = self.out.files.len() as u32;
        self.out.files.push(name.to_owned());
        let pwd = Path::new(name)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| ".".to_owned(), |p| p.display().to_string());
        let saved_pwd = self.params.insert("_PWD".to_owned(), pwd);
        let mut lines = text.lines().enumerate();
        while let Some((i, raw)) = lines.next() {
            let number = i as u32 + 1;
            // A multi-line definition: `$NAME= \` and the lines after it, up to one without `\`.
            let trimmed = raw.trim();
            if let Some((name, value)) = definition(trimmed)
                && value.trim() == "\\"
            {
                let mut body = Vec::new();
                for (_, next) in lines.by_ref() {
                    let next = next.trim_end();
                    match next.strip_suffix('\\') {
                        Some(more) => body.push(more.trim_end().to_owned()),
                        None => {
                            body.push(next.to_owned());
                            break;
                        }
                    }
                }
                self.params.insert(name.to_owned(), body.join("\n"));
                continue;
            }
            self.line(file, number, raw, depth);
        }
        match saved_pwd {
            Some(p) => self.params.insert("_PWD".to_owned(), p),
            None => self.params.remove("_PWD"),
        };
    }

    /// One logical line: conditional, definition, generator, substitution, include, or text.
    fn line(&mut self, file: u32, number: u32, raw: &str, depth: usize) {
        if depth > MAX_DEPTH {
            self.error(
                file,
                number,
                "substitutions or includes nested too deep (a loop?)".into(),
            );
            return;
        }
        let trimmed = raw.trim_start();
        if let Some(rest) = trimmed.strip_prefix('@') {
            let (negated, rest) = match rest.strip_prefix('^') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let id_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let (id, rest) = rest.split_at(id_len);
            if (id == self.config_id) != negated {
                self.line(file, number, rest, depth + 1);
            }
            return;
        }
        if let Some((name, value)) = definition(trimmed) {
            self.params.insert(name.to_owned(), value.trim().to_owned());
            return;
        }
        if trimmed.starts_with("~SEQ") || trimmed.starts_with("~LST") {
            self.generator(file, number, trimmed, depth);
            return;
        }
        if let std::borrow::Cow::Owned(substituted) = self.substitute(raw)
            && substituted != raw
        {
            for part in substituted.split('\n') {
                self.line(file, number, part, depth + 1);
            }
            return;
        }
        let mut words = trimmed.split_whitespace();
        if trimmed.starts_with("include") && words.next() == Some("include") {
            let patterns: Vec<&str> = words.take_while(|w| !w.starts_with(['#', '!'])).collect();
            if patterns.is_empty() {
                self.error(file, number, "include needs a file or a glob".into());
            }
            for pattern in patterns {
                self.include(file, number, pattern, depth);
            }
            return;
        }
        self.out.lines.push(Line {
            file,
            line: number,
            text: raw.to_owned(),
        });
    }

    fn include(&mut self, file: u32, number: u32, pattern: &str, depth: usize) {
        let pattern = pattern.trim_matches('"');
        // Relative to the including file's directory, as keepalived resolves it.
        let full = if Path::new(pattern).is_absolute() {
            pattern.to_owned()
        } else {
            let pwd = self
                .params
                .get("_PWD")
                .cloned()
                .unwrap_or_else(|| ".".into());
            format!("{pwd}/{pattern}")
        };
        let matches = self.sources.glob(&full);
        if matches.is_empty() {
            self.error(file, number, format!("include {pattern:?} matches no file"));
        }
        for path in matches {
            match self.sources.read(&path) {
                Ok(text) => self.file(&path.display().to_string(), &text, depth + 1),
                Err(e) => self.error(file, number, format!("include {}: {e}", path.display())),
            }
        }
    }

    /// `~SEQ(var, [start,] [step,] end)`, `~SEQx(...)`, `~LST(var, v...)`, `~LST({a,b}, {..}...)`
    /// followed by the rest of the line, which may hold more generators.
    fn generator(&mut self, file: u32, number: u32, text: &str, depth: usize) {
        let hex = text.starts_with("~SEQx");
        let list = text.starts_with("~LST");
        let Some(open) = text.find('(') else {
            self.error(file, number, "a generator needs (...)".into());
            return;
        };
        let Some(close) = matching_paren(text, open) else {
            self.error(file, number, "unbalanced parentheses in a generator".into());
            return;
        };
        let inner = self.substitute(&text[open + 1..close]);
        let rest = text[close + 1..].to_owned();
        let assignments: Vec<Vec<(String, String)>> = if list {
            match list_values(&inner) {
                Some(a) => a,
                None => {
                    self.error(file, number, format!("bad ~LST({inner})"));
                    return;
                }
            }
        } else {
            match seq_values(&inner, hex) {
                Some(a) => a,
                None => {
                    self.error(file, number, format!("bad ~SEQ({inner})"));
                    return;
                }
            }
        };
        for assignment in assignments {
            if self.out.lines.len() > MAX_LINES {
                // Said once, by the innermost generator that crossed the line.
                if !self
                    .errors
                    .iter()
                    .any(|e| e.message.starts_with("expands to more"))
                {
                    self.error(
                        file,
                        number,
                        format!("expands to more than {MAX_LINES} lines"),
                    );
                }
                return;
            }
            for (name, value) in assignment {
                self.params.insert(name, value);
            }
            self.line(file, number, &rest, depth + 1);
        }
    }

    /// Replaces `${NAME}`, `${_RANDOM ...}`, `${_ENV NAME}` and `$NAME` (followed by a
    /// non-name character or the end) by their values, once; undefined names stay as written.
    /// Most lines have none and are not copied.
    fn substitute<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        if !text.contains('$') {
            return text.into();
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(inner) = after.strip_prefix('{')
                && let Some(end) = inner.find('}')
            {
                let expr = &inner[..end];
                match self.value_of(expr) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push_str("${");
                        out.push_str(expr);
                        out.push('}');
                    }
                }
                rest = &inner[end + 1..];
                continue;
            }
            let len = after
                .char_indices()
                .find(|&(i, c)| {
                    if i == 0 {
                        !is_name_start(c)
                    } else {
                        !is_name(c)
                    }
                })
                .map_or(after.len(), |(i, _)| i);
            match (len > 0).then(|| self.params.get(&after[..len])).flatten() {
                Some(v) => out.push_str(v),
                None => {
                    out.push('$');
                    out.push_str(&after[..len]);
                }
            }
            rest = &after[len..];
        }
        out.push_str(rest);
        out.into()
    }

    fn value_of(&self, expr: &str) -> Option<String> {
        let mut words = expr.split_whitespace();
        let name = words.next()?;
        match name {
            "_HASH" => Some("#".to_owned()),
            "_BANG" => Some("!".to_owned()),
            "_INSTANCE" => Some(self.config_id.to_owned()),
            "_ENV" => words.next().and_then(|v| self.sources.env(v)),
            "_RANDOM" => {
                let min = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                let max = words.next().and_then(|w| w.parse().ok()).unwrap_or(32_767);
                Some(self.sources.random(min, max.max(min)).to_string())
            }
            _ => self.params.get(name).cloned(),
        }
    }
}

/// `$NAME=value` (only whitespace before the `$`, nothing between the name and `=`).
fn definition(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('$')?;
    let eq = rest.find('=')?;
    let name = &rest[..eq];
    let mut chars = name.chars();
    (chars.next().is_some_and(is_name_start) && chars.all(is_name)).then(|| (name, &rest[eq + 1..]))
}

fn matching_paren(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in text[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i);
                }
            }
            _ => {}
        }
    }
    None
}

fn number(text: &str) -> Option<i64> {
    let t = text.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let n = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => i64::from_str_radix(h, 16).ok()?,
        None => t.parse().ok()?,
    };
    Some(if negative { -n } else { n })
}

/// `var, [start,] [step,] end`: keepalived's defaults (start 1 or -1, step 1 or -1).
fn seq_values(inner: &str, hex: bool) -> Option<Vec<Vec<(String, String)>>> {
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    let (var, nums) = parts.split_first()?;
    let nums: Vec<i64> = nums.iter().map(|n| number(n)).collect::<Option<_>>()?;
    let (start, step, end) = match nums.as_slice() {
        [end] => (if *end < 0 { -1 } else { 1 }, None, *end),
        [start, end] => (*start, None, *end),
        [start, step, end] => (*start, Some(*step), *end),
        _ => return None,
    };
    let step = step.unwrap_or(if end >= start { 1 } else { -1 });
    if step == 0 || var.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    let mut v = start;
    while (step > 0 && v <= end) || (step < 0 && v >= end) {
        let text = if hex { format!("{v:x}") } else { v.to_string() };
        out.push(vec![((*var).to_owned(), text)]);
        v += step;
        if out.len() > 1_000_000 {
            return None;
        }
    }
    Some(out)
}

/// `var, v1, v2...` or `{a, b}, {1, 2}, {3, 4}`.
fn list_values(inner: &str) -> Option<Vec<Vec<(String, String)>>> {
    let inner = inner.trim();
    if inner.starts_with('{') {
        let groups: Vec<Vec<String>> = inner
            .split('}')
            .map(|g| g.trim().trim_start_matches(',').trim())
            .filter(|g| !g.is_empty())
            .map(|g| {
                g.strip_prefix('{')
                    .map(|g| g.split(',').map(|v| v.trim().to_owned()).collect())
            })
            .collect::<Option<_>>()?;
        let (names, values) = groups.split_first()?;
        values
            .iter()
            .map(|vals| {
                (vals.len() == names.len())
                    .then(|| names.iter().cloned().zip(vals.iter().cloned()).collect())
            })
            .collect()
    } else {
        let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
        let (var, values) = parts.split_first()?;
        (!values.is_empty()).then(|| {
            values
                .iter()
                .map(|v| vec![((*var).to_owned(), (*v).to_owned())])
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Files(std::collections::HashMap<String, String>);

    impl Sources for Files {
        fn read(&self, path: &Path) -> std::io::Result<String> {
            self.0
                .get(&path.display().to_string())
                .cloned()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        }

        fn glob(&self, pattern: &str) -> Vec<PathBuf> {
            let (prefix, suffix) = pattern.split_once('*').unwrap_or((pattern, ""));
            let mut found: Vec<PathBuf> = self
                .0
                .keys()
                .filter(|k| {
                    if pattern.contains('*') {
                        k.starts_with(prefix) && k.ends_with(suffix)
                    } else {
                        *k == pattern
                    }
                })
                .map(PathBuf::from)
                .collect();
            found.sort();
            found
        }

        fn env(&self, name: &str) -> Option<String> {
            (name == "HOME").then(|| "/root".to_owned())
        }

        fn random(&self, min: u32, _max: u32) -> u32 {
            min
        }
    }

    fn texts(text: &str, id: &str, files: &Files) -> Vec<String> {
        preprocess("/etc/keepalived/keepalived.conf", text, id, files)
            .expect("preprocesses")
            .lines
            .into_iter()
            .map(|l| l.text.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect()
    }

    #[test]
    fn conditional_lines_follow_the_config_id() {
        let text = "@main router_id main_router\n@backup router_id backup_router\n@^main 1.2.3.4\n@^backup 1.2.3.5\n";
        assert_eq!(
            texts(text, "main", &Files::default()),
            ["router_id main_router", "1.2.3.5"]
        );
        assert_eq!(
            texts(text, "other", &Files::default()),
            ["1.2.3.4", "1.2.3.5"]
        );
    }

    #[test]
    fn parameters_substitute_at_use_time_recursively() {
        let text = "$ADDRESS_BASE=10.2.${ADDRESS_BASE_SUB}\n$ADDRESS_BASE_SUB=0\n${ADDRESS_BASE}.100/32\n$ADDRESS_BASE_SUB=10\n${ADDRESS_BASE}.100/32\n$IF_MAIN=@main\n$IF_MAIN priority 240\nkeep ${UNDEFINED} and $ALSO\n${_HASH}${_BANG} ${_INSTANCE} ${_PWD} ${_ENV HOME} ${_RANDOM 5 9}\n";
        assert_eq!(
            texts(text, "main", &Files::default()),
            [
                "10.2.0.100/32",
                "10.2.10.100/32",
                "priority 240",
                "keep ${UNDEFINED} and $ALSO",
                "#! main /etc/keepalived /root 5",
            ]
        );
    }

    #[test]
    fn multi_line_definitions_nest() {
        let text = "$RS= \\\n  real_server 192.168.${VS_NUM}.${RS_NUM} 80 { \\\n    weight 1 \\\n  }\n$VS= \\\nvirtual_server 10.0.${VS_NUM}.4 80 { \\\n  $RS_NUM=1 \\\n  $RS \\\n  $RS_NUM=2 \\\n  $RS \\\n}\n$VS_NUM=0\n$VS\n";
        assert_eq!(
            texts(text, "x", &Files::default()),
            [
                "virtual_server 10.0.0.4 80 {",
                "real_server 192.168.0.1 80 {",
                "weight 1",
                "}",
                "real_server 192.168.0.2 80 {",
                "weight 1",
                "}",
                "}",
            ]
        );
    }

    #[test]
    fn sequences_and_lists_generate_lines() {
        let f = Files::default();
        assert_eq!(
            texts("~SEQ(SUBNET, 0, 3) ip_address 10.0.${SUBNET}.1", "x", &f),
            [
                "ip_address 10.0.0.1",
                "ip_address 10.0.1.1",
                "ip_address 10.0.2.1",
                "ip_address 10.0.3.1"
            ]
        );
        assert_eq!(
            texts(
                "~SEQx(SUBNET, 0x90, 0x10, 0xc0) fe80::20:${SUBNET}:1",
                "x",
                &f
            ),
            [
                "fe80::20:90:1",
                "fe80::20:a0:1",
                "fe80::20:b0:1",
                "fe80::20:c0:1"
            ]
        );
        assert_eq!(texts("~SEQ(N, 3) n$N", "x", &f), ["n1", "n2", "n3"]);
        assert_eq!(
            texts(
                "~LST({IP, IP1}, {10,1},{20,4}) 192.168.${IP}.${IP1}",
                "x",
                &f
            ),
            ["192.168.10.1", "192.168.20.4"]
        );
        assert_eq!(
            texts(
                "~LST(IP, 1, 2) ~LST(IP1, 5,6) 192.169.${IP}.${IP1}",
                "x",
                &f
            ),
            ["192.169.1.5", "192.169.1.6", "192.169.2.5", "192.169.2.6"]
        );
        assert!(preprocess("k.conf", "~SEQ(A, 1, 0, 3) x", "x", &f).is_err());
    }

    #[test]
    fn includes_glob_relative_to_the_including_file_and_keep_their_positions() {
        let mut files = Files::default();
        files.0.insert(
            "/etc/keepalived/conf.d/a.conf".into(),
            "router_id a\n\n$X=1\n".into(),
        );
        files.0.insert(
            "/etc/keepalived/conf.d/b.conf".into(),
            "x ${X} ${_PWD}\n".into(),
        );
        let out = preprocess(
            "/etc/keepalived/keepalived.conf",
            "global_defs {\ninclude conf.d/*.conf\n}\n",
            "x",
            &files,
        )
        .expect("preprocesses");
        let lines: Vec<(String, u32, String)> = out
            .lines
            .iter()
            .map(|l| (out.files[l.file as usize].clone(), l.line, l.text.clone()))
            .collect();
        assert_eq!(
            lines,
            [
                (
                    "/etc/keepalived/keepalived.conf".into(),
                    1,
                    "global_defs {".into()
                ),
                (
                    "/etc/keepalived/conf.d/a.conf".into(),
                    1,
                    "router_id a".into()
                ),
                ("/etc/keepalived/conf.d/a.conf".into(), 2, "".into()),
                (
                    "/etc/keepalived/conf.d/b.conf".into(),
                    1,
                    "x 1 /etc/keepalived/conf.d".into()
                ),
                ("/etc/keepalived/keepalived.conf".into(), 3, "}".into()),
            ]
        );
        let errors = preprocess("/k.conf", "include nothing/*.conf\n", "x", &files).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "/k.conf:1:1: include \"nothing/*.conf\" matches no file"
        );
    }

    #[test]
    fn a_self_referencing_parameter_is_an_error_not_a_hang() {
        let errors = preprocess("k.conf", "$A=$A x\n$A\n", "x", &Files::default()).unwrap_err();
        assert!(errors[0].message.contains("too deep"), "{errors:?}");
    }
}
