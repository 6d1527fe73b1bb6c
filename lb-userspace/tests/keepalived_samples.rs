//! The sample configurations keepalived ships (Debian's package installs them under
//! /usr/share/doc/keepalived/samples): each loads, with warnings for the features lbd does not
//! implement, or fails only for a reason on the short list below.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test uses a part of the package's dependencies"
)]

use std::path::{Path, PathBuf};

use lbd::config::{
    ConfigError, Format, Loaded, Overrides, ParseCache, Unimplemented, import::to_toml,
    keepalived_spec, load, load_cached, preprocess::Sources,
};

const SAMPLES: &str = "/usr/share/doc/keepalived/samples";

/// Why a sample may fail, and the one that does.
const EXPECTED_FAILURES: &[(&str, &str)] = &[
    // AH authentication (RFC 2338, dropped by RFC 3768) is not implemented.
    (
        "keepalived.conf.SSL_GET",
        "auth_type AH is not implemented by lbd",
    ),
    // keepalived 2.2.7 rejects it too ("Unknown keyword 'VI_2'"): a 1.x sync group.
    (
        "keepalived.conf.vrrp.lvs_syncd",
        "unknown keyword \"VI_2\" in vrrp_sync_group",
    ),
];

struct NoIncludes;

impl Sources for NoIncludes {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn glob(&self, _: &str) -> Vec<PathBuf> {
        Vec::new()
    }

    fn env(&self, _: &str) -> Option<String> {
        None
    }

    fn random(&self, min: u32, _: u32) -> u32 {
        min
    }
}

#[test]
fn keepalived_s_samples_load() {
    let dir = Path::new(SAMPLES);
    assert!(
        dir.is_dir(),
        "{SAMPLES} is missing: install Debian's keepalived package (cargo xtask setup does)"
    );
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("samples")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("keepalived.conf."))
        })
        .collect();
    names.sort();
    assert!(
        names.len() >= 20,
        "expected keepalived's samples, found {names:?}"
    );
    for path in names {
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        let text = std::fs::read_to_string(&path).expect("sample");
        // `-i high`: the conditional sample has lines for `high` and `low` only.
        let read = |cache: Option<&mut ParseCache>| {
            load_cached(
                name,
                &text,
                Format::Keepalived,
                Unimplemented::Warn,
                &Overrides::default(),
                "high",
                &NoIncludes,
                cache,
            )
        };
        let result = read(None);
        // A reload's cached parse reads it the same, cold and warm.
        let mut cache = ParseCache::default();
        for round in ["cold", "warm"] {
            let cached = read(Some(&mut cache));
            assert_eq!(outcome(&cached), outcome(&result), "{name}, {round} cache");
        }
        let expected = EXPECTED_FAILURES.iter().find(|(n, _)| *n == name);
        match (result, expected) {
            (Ok(loaded), None) => {
                // `lbd import-keepalived`: its TOML loads to the same model.
                let (spec, _) =
                    keepalived_spec(name, &text, Unimplemented::Warn, "high", &NoIncludes)
                        .expect("parses");
                let toml = to_toml(&spec);
                let again = load(
                    "imported.toml",
                    &toml,
                    Format::Toml,
                    Unimplemented::Reject,
                    &Overrides::default(),
                )
                .unwrap_or_else(|e| panic!("{name} imported:\n{toml}\n{e:?}"));
                assert_eq!(again.model, loaded.model, "{name} imported:\n{toml}");
            }
            (Err(errors), Some((_, why))) => assert!(
                errors.iter().any(|e| e.message.contains(why)),
                "{name}: {errors:?}"
            ),
            (Ok(_), Some(_)) => panic!("{name} loads: take it off the expected failures"),
            (Err(errors), None) => panic!(
                "{name}:\n{}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }
}

/// A load's model (debug-printed) and messages, to compare two ways of loading.
fn outcome(result: &Result<Loaded, Vec<ConfigError>>) -> (String, Vec<String>) {
    let messages = |list: &[ConfigError]| list.iter().map(ToString::to_string).collect();
    match result {
        Ok(loaded) => (format!("{:?}", loaded.model), messages(&loaded.warnings)),
        Err(errors) => (String::new(), messages(errors)),
    }
}
