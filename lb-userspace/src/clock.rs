//! The daemon's clock: CLOCK_MONOTONIC read directly, and a timer that wakes at a monotonic
//! instant to the microsecond. The only module that reads time; pure code receives the
//! [`Instant`]s it returns.
//!
//! Why not tokio's timer: it rounds every deadline up to its 1 ms wheel, and VRRP at
//! advert_int 0.01 has 36 ms to decide; a timerfd armed with TFD_TIMER_ABSTIME fires within
//! microseconds of the deadline. Why CLOCK_MONOTONIC itself rather than an origin of our own:
//! it is the clock of `bpf_ktime_get_ns`, so kernel timestamps compare with ours directly.

use std::{io, time::Duration};

use nix::{
    sys::{
        time::TimeSpec,
        timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags},
    },
    time::{ClockId as Clock, clock_gettime},
};
use tokio::io::unix::AsyncFd;

use crate::time::Instant;

/// Now, on CLOCK_MONOTONIC.
pub fn now() -> Instant {
    // CLOCK_MONOTONIC cannot fail on Linux; a zero would only make timers fire at once.
    let ts = clock_gettime(Clock::CLOCK_MONOTONIC).unwrap_or_else(|_| TimeSpec::new(0, 0));
    let nanos = u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000_000
        + u64::try_from(ts.tv_nsec()).unwrap_or(0);
    Instant::from_nanos(nanos)
}

/// A one-shot timer on CLOCK_MONOTONIC.
#[derive(Debug)]
pub struct Timer {
    fd: AsyncFd<crate::sys::TimerHandle>,
}

impl Timer {
    /// A disarmed timer.
    pub fn new() -> io::Result<Self> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        Ok(Self {
            fd: crate::sys::async_timer(fd)?,
        })
    }

    /// Sleeps until `deadline`, or forever without one. A deadline already past returns at
    /// once.
    pub async fn sleep_until(&self, deadline: Option<Instant>) {
        let Some(at) = deadline else {
            return std::future::pending().await;
        };
        let at = Duration::from_nanos(at.as_nanos().max(1));
        let armed = self.fd.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from_duration(at)),
            TimerSetTimeFlags::TFD_TIMER_ABSTIME,
        );
        if let Err(e) = armed {
            tracing::error!(error = %e, "arming the timer; falling back to tokio's");
            let wait = at.saturating_sub(Duration::from_nanos(now().as_nanos()));
            return tokio::time::sleep(wait).await;
        }
        loop {
            let Ok(mut guard) = self.fd.readable().await else {
                return;
            };
            match self.fd.get_ref().0.wait() {
                Ok(()) => return,
                Err(nix::errno::Errno::EAGAIN) => guard.clear_ready(),
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_timer_never_fires_before_its_deadline_and_a_past_one_fires_at_once() {
        let timer = Timer::new().expect("timerfd");
        for delay_us in [0u64, 300, 2_000, 5_000] {
            let deadline = now() + Duration::from_micros(delay_us);
            timer.sleep_until(Some(deadline)).await;
            assert!(
                now() >= deadline,
                "woke before the deadline ({delay_us} µs)"
            );
        }
        let past = Instant::from_nanos(1);
        timer.sleep_until(Some(past)).await;
    }
}
