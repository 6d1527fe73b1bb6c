//! External programs, as keepalived runs them: notify scripts on VRRP transitions, the notify
//! FIFO, and `vrrp_script` checks. The only module that starts processes or writes the FIFO.
//!
//! Every program runs as an unprivileged user unless the configuration names another: the
//! script's own `user`, else `script_user`, else `keepalived_script` if that user exists (as
//! keepalived does), else `nobody`. A user that does not exist is an error logged once per
//! attempt, and the program is not run: never root by surprise.
//!
//! Notify scripts get keepalived's exact argv: `notify_master|backup|fault|stop` their
//! configured words and nothing more; the generic `notify` those words plus
//! `INSTANCE|GROUP NAME STATE PRIORITY`. FIFO lines are keepalived's: `INSTANCE "VI_1" MASTER 150`.
//! Both are fire and forget: a slow script never delays VRRP.

use std::{
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tracing::{error, warn};

use crate::model::{Notify, Script, ScriptUser, VrrpGlobals};

/// A resolved user and group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl Identity {
    /// Resolves `user` (or, without one, the default: `keepalived_script` if it exists, else
    /// `nobody`).
    pub fn resolve(user: Option<&ScriptUser>) -> Result<Self, String> {
        use nix::unistd::{Group, User};
        let (name, group) = match user {
            Some(u) => (u.user.clone(), u.group.clone()),
            None => {
                let default = match User::from_name("keepalived_script") {
                    Ok(Some(_)) => "keepalived_script",
                    _ => "nobody",
                };
                (default.to_owned(), None)
            }
        };
        let found = User::from_name(&name)
            .map_err(|e| format!("looking up user {name}: {e}"))?
            .ok_or_else(|| format!("no user {name} to run scripts as"))?;
        let gid = match group {
            None => found.gid.as_raw(),
            Some(g) => Group::from_name(&g)
                .map_err(|e| format!("looking up group {g}: {e}"))?
                .ok_or_else(|| format!("no group {g} to run scripts as"))?
                .gid
                .as_raw(),
        };
        Ok(Self {
            uid: found.uid.as_raw(),
            gid,
        })
    }
}

/// A command for `argv` running as `identity`, with no stdin and its output discarded.
fn command(argv: &[String], identity: Identity) -> Option<tokio::process::Command> {
    let (program, args) = argv.split_first()?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .uid(identity.uid)
        .gid(identity.gid)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Some(cmd)
}

/// Runs a `vrrp_script` check: success is exit status 0 within `timeout`; a run past it is
/// killed and fails.
pub async fn check(argv: &[String], identity: Identity, timeout: Duration) -> bool {
    match exit_status(argv, identity, timeout).await {
        Ok(code) => code == Some(0),
        Err(e) => {
            warn!(program = ?argv.first(), error = %e, "check script");
            false
        }
    }
}

/// Runs `argv` as `identity` and returns its exit code (`None`: killed by a signal). A run
/// longer than `timeout` is killed and is an error, as is a program that cannot start.
pub async fn exit_status(
    argv: &[String],
    identity: Identity,
    timeout: Duration,
) -> Result<Option<i32>, String> {
    let mut cmd = command(argv, identity).ok_or("an empty command")?;
    cmd.kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| format!("starting {}: {e}", argv[0]))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => Ok(output.status.code()),
        Ok(Err(e)) => Err(format!("waiting for {}: {e}", argv[0])),
        // Dropped: killed (kill_on_drop) and reaped by tokio.
        Err(_) => Err(format!("{} ran longer than {timeout:?}", argv[0])),
    }
}

/// A VRRP state as notify scripts and the FIFO name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyState {
    /// MASTER.
    Master,
    /// BACKUP.
    Backup,
    /// FAULT.
    Fault,
    /// STOP.
    Stop,
}

impl NotifyState {
    /// keepalived's word for it.
    pub fn word(self) -> &'static str {
        match self {
            Self::Master => "MASTER",
            Self::Backup => "BACKUP",
            Self::Fault => "FAULT",
            Self::Stop => "STOP",
        }
    }
}

/// The FIFO line keepalived writes: `INSTANCE "VI_1" MASTER 150`.
pub fn fifo_line(kind: &str, name: &str, word: &str, priority: u8) -> String {
    format!("{kind} \"{name}\" {word} {priority}\n")
}

/// The generic `notify` script's argv: its words, then `KIND NAME STATE PRIORITY`.
pub fn generic_argv(
    script: &[String],
    kind: &str,
    name: &str,
    state: NotifyState,
    priority: u8,
) -> Vec<String> {
    let mut argv = script.to_vec();
    argv.extend([
        kind.to_owned(),
        name.to_owned(),
        state.word().to_owned(),
        priority.to_string(),
    ]);
    argv
}

/// Runs notify scripts and writes the notify FIFO.
#[derive(Debug)]
pub struct Notifier {
    default_user: Option<ScriptUser>,
    /// The FIFO, written in place: non-blocking, so a write never waits, and nothing is
    /// queued that an exit could lose (the STOP line).
    fifo: Option<(PathBuf, std::sync::Mutex<std::fs::File>)>,
}

impl Notifier {
    /// A notifier for `globals`; opens the FIFO, creating it (mode 0600) if missing. A FIFO
    /// that cannot be opened is logged and left out.
    pub fn start(globals: &VrrpGlobals) -> Self {
        Self::with_fifo(globals.notify_fifo.as_deref(), globals.script_user.clone())
    }

    /// A notifier that writes `fifo` (if any) and runs scripts as `default_user` by default.
    pub fn with_fifo(fifo: Option<&Path>, default_user: Option<ScriptUser>) -> Self {
        let fifo = fifo.and_then(|path| match open_fifo(path) {
            Ok(file) => Some((path.to_owned(), std::sync::Mutex::new(file))),
            Err(e) => {
                error!(path = %path.display(), error = %e, "opening the notify FIFO");
                None
            }
        });
        Self { default_user, fifo }
    }

    /// Writes a line as it is (it ends in a newline).
    pub fn raw_line(&self, line: &str) {
        let Some((path, file)) = &self.fifo else {
            return;
        };
        let mut file = file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = file.write_all(line.as_bytes()) {
            warn!(path = %path.display(), error = %e, line = line.trim_end(), "notify FIFO line dropped (no reader?)");
        }
    }

    /// Runs `script` with its own words, fire and forget.
    pub fn run(&self, script: &Script) {
        self.spawn(script, script.argv.clone());
    }

    /// Writes one FIFO line (`MASTER_PRIORITY`, `MASTER_RX_LOWER_PRI` and the like).
    pub fn line(&self, kind: &str, name: &str, word: &str, priority: u8) {
        self.raw_line(&fifo_line(kind, name, word, priority));
    }

    /// A transition of instance (kind `INSTANCE`) or sync group (`GROUP`) `name`: the FIFO
    /// line, the state's own script, and the generic one.
    pub fn transition(
        &self,
        kind: &str,
        name: &str,
        state: NotifyState,
        priority: u8,
        notify: &Notify,
    ) {
        self.line(kind, name, state.word(), priority);
        let specific = match state {
            NotifyState::Master => notify.master.as_ref(),
            NotifyState::Backup => notify.backup.as_ref(),
            NotifyState::Fault => notify.fault.as_ref(),
            NotifyState::Stop => notify.stop.as_ref(),
        };
        if let Some(script) = specific {
            self.spawn(script, script.argv.clone());
        }
        if let Some(script) = &notify.any {
            self.spawn(
                script,
                generic_argv(&script.argv, kind, name, state, priority),
            );
        }
    }

    fn spawn(&self, script: &Script, argv: Vec<String>) {
        let identity = match Identity::resolve(script.user.as_ref().or(self.default_user.as_ref()))
        {
            Ok(identity) => identity,
            Err(e) => {
                error!(program = %script.argv[0], error = %e, "notify script not run");
                return;
            }
        };
        match command(&argv, identity).map(|mut c| c.spawn()) {
            // Not waited for: tokio reaps it when it exits.
            Some(Ok(_child)) => {}
            Some(Err(e)) => warn!(program = %argv[0], error = %e, "starting a notify script"),
            None => {}
        }
    }
}

/// Opens the FIFO for writing without ever blocking: read-write (so opening does not wait for
/// a reader, as keepalived does) and non-blocking (a reader that stops reading costs lines,
/// not the daemon).
fn open_fifo(path: &Path) -> std::io::Result<std::fs::File> {
    if !path.exists() {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(std::io::Error::from)?;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_lines_and_generic_argv_are_keepalived_s() {
        assert_eq!(
            fifo_line("INSTANCE", "VI_1", "MASTER", 150),
            "INSTANCE \"VI_1\" MASTER 150\n"
        );
        let words = vec![
            "notify.sh".to_owned(),
            "ka1".to_owned(),
            "notify".to_owned(),
        ];
        assert_eq!(
            generic_argv(&words, "INSTANCE", "VI_1", NotifyState::Backup, 90),
            [
                "notify.sh",
                "ka1",
                "notify",
                "INSTANCE",
                "VI_1",
                "BACKUP",
                "90"
            ]
        );
    }

    #[test]
    fn the_default_user_is_never_root() {
        let identity = Identity::resolve(None).expect("nobody exists");
        assert_ne!(identity.uid, 0);
        let root = ScriptUser {
            user: "root".to_owned(),
            group: None,
        };
        assert_eq!(Identity::resolve(Some(&root)).expect("root").uid, 0);
        let missing = ScriptUser {
            user: "no-such-user-lbd".to_owned(),
            group: None,
        };
        assert!(Identity::resolve(Some(&missing)).is_err());
    }
}
