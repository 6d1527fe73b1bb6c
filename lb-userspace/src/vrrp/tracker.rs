//! The tracked scripts and files of VRRP instances: every `vrrp_script` runs on its interval
//! (as its unprivileged user, with its timeout) through rise/fall [`Hysteresis`], every
//! `vrrp_track_file` is read every [`FILE_POLL`]; the drivers watch the published
//! [`TrackValues`] and turn them into priorities and FAULTs ([`super::track::verdict`]).

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::sync::watch;
use tracing::{error, info};

use super::track::Hysteresis;
use crate::{
    model::{TrackFile, VrrpGlobals, VrrpScript},
    scripts::{self, Identity},
};

/// How often tracked files are read.
pub const FILE_POLL: Duration = Duration::from_millis(100);

/// The current state of every tracked script and file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackValues {
    /// Script name → good.
    pub scripts: HashMap<String, bool>,
    /// File name → value.
    pub files: HashMap<String, i64>,
}

/// A tracked file's value: the number it holds, 0 when it is missing or holds no number (as
/// keepalived reads it), kept within -254..254.
pub fn read_value(path: &std::path::Path) -> i64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.split_whitespace()
                .next()
                .and_then(|w| w.parse::<i64>().ok())
        })
        .unwrap_or(0)
        .clamp(-254, 254)
}

/// Starts the tracker; it runs until `shutdown` turns true.
pub fn start(
    globals: &VrrpGlobals,
    shutdown: &watch::Receiver<bool>,
) -> watch::Receiver<Arc<TrackValues>> {
    let initial = TrackValues {
        scripts: globals
            .scripts
            .iter()
            .map(|s| (s.name.clone(), !s.init_fail))
            .collect(),
        files: globals
            .track_files
            .iter()
            .map(|f| (f.name.clone(), read_value(&f.path)))
            .collect(),
    };
    let (tx, rx) = watch::channel(Arc::new(initial));
    let tx = Arc::new(tx);
    for script in globals.scripts.clone() {
        let identity =
            Identity::resolve(script.script.user.as_ref().or(globals.script_user.as_ref()));
        match identity {
            Ok(identity) => {
                tokio::spawn(run_script(
                    script,
                    identity,
                    Arc::clone(&tx),
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                error!(script = %script.name, error = %e, "vrrp_script not run: it stays in its initial state")
            }
        }
    }
    if !globals.track_files.is_empty() {
        tokio::spawn(poll_files(
            globals.track_files.clone(),
            tx,
            shutdown.clone(),
        ));
    }
    rx
}

async fn run_script(
    script: VrrpScript,
    identity: Identity,
    tx: Arc<watch::Sender<Arc<TrackValues>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut health = Hysteresis::new(script.rise, script.fall, !script.init_fail);
    loop {
        let ok = tokio::select! {
            ok = scripts::check(&script.script.argv, identity, script.timeout) => ok,
            _ = shutdown.changed() => return,
        };
        if health.observe(ok) {
            info!(script = %script.name, good = health.good(), "vrrp_script changed");
            tx.send_modify(|values| {
                Arc::make_mut(values)
                    .scripts
                    .insert(script.name.clone(), health.good());
            });
        }
        tokio::select! {
            () = tokio::time::sleep(script.interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn poll_files(
    files: Vec<TrackFile>,
    tx: Arc<watch::Sender<Arc<TrackValues>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        for file in &files {
            let value = read_value(&file.path);
            if tx.borrow().files.get(&file.name) != Some(&value) {
                info!(file = %file.name, value, "vrrp_track_file changed");
                tx.send_modify(|values| {
                    Arc::make_mut(values).files.insert(file.name.clone(), value);
                });
            }
        }
        tokio::select! {
            () = tokio::time::sleep(FILE_POLL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_value_is_its_first_number_or_zero() {
        let dir = std::env::temp_dir().join(format!("lbd-track-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            ("12\n", 12),
            ("-3 extra", -3),
            ("x", 0),
            ("", 0),
            ("9999", 254),
        ];
        for (i, (text, value)) in cases.iter().enumerate() {
            let path = dir.join(format!("f{i}"));
            std::fs::write(&path, text).unwrap();
            assert_eq!(read_value(&path), *value, "{text:?}");
        }
        assert_eq!(read_value(&dir.join("missing")), 0);
        std::fs::remove_dir_all(&dir).ok();
    }
}
