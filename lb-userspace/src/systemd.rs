//! systemd's notification protocol (`Type=notify`): READY once lbd runs, RELOADING then READY
//! around a reload, STOPPING when it stops, STATUS lines, and the watchdog. Without `$NOTIFY_SOCKET` (not started by systemd)
//! every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::warn;

fn send(states: &[NotifyState<'_>]) {
    // The environment stays: the watchdog keeps using it.
    if let Err(e) = sd_notify::notify(false, states) {
        warn!(error = %e, "notifying systemd");
    }
}

/// lbd is up: its control socket answers, its checks and VRRP instances run.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// lbd is reloading its configuration; [`ready`] follows when the reload is done.
pub fn reloading() {
    send(&[NotifyState::Reloading, NotifyState::Status("reloading")]);
}

/// lbd is stopping.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// The interval at which systemd wants watchdog keep-alives (half its `WatchdogSec`), if it
/// wants them.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

/// One watchdog keep-alive.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}
