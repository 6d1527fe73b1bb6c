//! One checker's verdict over time: keepalived's retry semantics plus lbd's `rise`. Pure.
//!
//! keepalived (`check_tcp.c`'s epilogue and its siblings): an up checker that fails is retried
//! `retry` times, `delay_before_retry` apart, and goes down on the failure after the last
//! retry; a down checker comes back up on a success. Before its first result a checker is up
//! (and one failure is enough to take it down) unless `alpha` says it starts down. lbd adds
//! `rise`: successes in a row needed to come up.

use std::time::Duration;

use crate::model::{Checker, Timing};

/// What a probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Healthy.
    pub ok: bool,
    /// A weight change the probe asks for (`misc_dynamic`, a dynamic `FILE_CHECK`).
    pub weight: Option<WeightChange>,
    /// Why it failed, or what it saw, in words.
    pub detail: String,
}

impl Outcome {
    /// Healthy, no weight change.
    pub fn up(detail: impl Into<String>) -> Self {
        Self {
            ok: true,
            weight: None,
            detail: detail.into(),
        }
    }

    /// Unhealthy.
    pub fn down(detail: impl Into<String>) -> Self {
        Self {
            ok: false,
            weight: None,
            detail: detail.into(),
        }
    }
}

/// A change a checker makes to its real server's weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightChange {
    /// Replace the configured weight (`misc_dynamic`: exit status - 2).
    Set(u32),
    /// Add to it (`FILE_CHECK dynamic`: the file's value times the weight).
    Add(i64),
}

/// A checker's verdict and retry bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckState {
    up: bool,
    has_run: bool,
    /// Failed retries so far in the current run of failures.
    retries: u32,
    /// Successes in a row while down.
    successes: u32,
    weight: Option<WeightChange>,
    timing: Timing,
    rise: u32,
}

impl CheckState {
    /// The state before the first probe: up unless `alpha`.
    pub fn new(checker: &Checker) -> Self {
        Self {
            up: !checker.alpha,
            has_run: false,
            // Not alpha: one failure is enough initially (keepalived).
            retries: checker.timing.retry,
            successes: 0,
            weight: None,
            timing: checker.timing,
            rise: checker.rise.max(1),
        }
    }

    /// Whether the checker is up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Whether it has had a result yet.
    pub fn has_run(&self) -> bool {
        self.has_run
    }

    /// The weight change it holds.
    pub fn weight(&self) -> Option<WeightChange> {
        self.weight
    }

    /// Takes a probe's outcome: returns whether the verdict changed, and when to probe next.
    pub fn observe(&mut self, outcome: &Outcome) -> (bool, Duration) {
        let was = self.up;
        self.has_run = true;
        let delay = if outcome.ok {
            self.retries = 0;
            self.weight = outcome.weight;
            if !self.up {
                self.successes += 1;
                if self.successes >= self.rise {
                    self.up = true;
                    self.successes = 0;
                }
            }
            if self.up || !self.timing.fast_recovery {
                self.timing.delay_loop
            } else {
                self.timing.delay_before_retry
            }
        } else {
            self.successes = 0;
            if self.up && self.retries < self.timing.retry {
                self.retries += 1;
                self.timing.delay_before_retry
            } else {
                self.up = false;
                self.retries = 0;
                if self.timing.fast_recovery {
                    self.timing.delay_before_retry
                } else {
                    self.timing.delay_loop
                }
            }
        };
        (self.up != was, delay)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{Probe, ProbeKind, Target};

    /// A TCP checker with these retry, rise and alpha (delay_loop 6 s, retry delay 2 s).
    pub(crate) fn checker(retry: u32, rise: u32, alpha: bool) -> Checker {
        Checker {
            probe: Probe {
                target: Target {
                    addr: "192.0.2.2:80".parse().unwrap(),
                    bind_addr: None,
                    bind_port: None,
                    bind_if: None,
                    fwmark: None,
                },
                kind: ProbeKind::Tcp,
            },
            timing: Timing {
                delay_loop: Duration::from_secs(6),
                timeout: Duration::from_secs(1),
                retry,
                delay_before_retry: Duration::from_secs(2),
                warmup: Duration::ZERO,
                fast_recovery: false,
            },
            alpha,
            rise,
            log_all_failures: false,
        }
    }

    const S6: Duration = Duration::from_secs(6);
    const S2: Duration = Duration::from_secs(2);

    #[test]
    fn one_failure_is_enough_before_the_first_success() {
        let mut s = CheckState::new(&checker(3, 1, false));
        assert!(s.is_up());
        assert_eq!(s.observe(&Outcome::down("refused")), (true, S6));
        assert!(!s.is_up());
    }

    #[test]
    fn an_up_checker_is_retried_before_it_goes_down() {
        let mut s = CheckState::new(&checker(2, 1, false));
        assert_eq!(s.observe(&Outcome::up("")), (false, S6));
        assert_eq!(s.observe(&Outcome::down("x")), (false, S2));
        assert_eq!(s.observe(&Outcome::down("x")), (false, S2));
        assert_eq!(s.observe(&Outcome::down("x")), (true, S6));
        assert!(!s.is_up());
        // A success in the middle of retries starts the count again.
        let mut s = CheckState::new(&checker(1, 1, false));
        s.observe(&Outcome::up(""));
        s.observe(&Outcome::down("x"));
        s.observe(&Outcome::up(""));
        assert_eq!(s.observe(&Outcome::down("x")), (false, S2));
    }

    #[test]
    fn alpha_starts_down_and_rise_counts_successes() {
        // keepalived's alpha: down until the first success (rise 1).
        let mut s = CheckState::new(&checker(1, 1, true));
        assert!(!s.is_up());
        assert_eq!(s.observe(&Outcome::up("")), (true, S6));
        let mut s = CheckState::new(&checker(1, 3, true));
        assert_eq!(s.observe(&Outcome::up("")), (false, S6));
        assert_eq!(s.observe(&Outcome::up("")), (false, S6));
        assert_eq!(s.observe(&Outcome::down("x")), (false, S6));
        for _ in 0..2 {
            assert_eq!(s.observe(&Outcome::up("")), (false, S6));
        }
        assert_eq!(s.observe(&Outcome::up("")), (true, S6));
    }

    #[test]
    fn fast_recovery_probes_a_down_checker_at_the_retry_delay() {
        let mut c = checker(0, 1, false);
        c.timing.fast_recovery = true;
        let mut s = CheckState::new(&c);
        assert_eq!(s.observe(&Outcome::down("x")), (true, S2));
        assert_eq!(s.observe(&Outcome::down("x")), (false, S2));
        assert_eq!(s.observe(&Outcome::up("")), (true, S6));
    }

    #[test]
    fn dynamic_weight_follows_the_last_success() {
        let mut s = CheckState::new(&checker(0, 1, false));
        let mut o = Outcome::up("exit 7");
        o.weight = Some(WeightChange::Set(5));
        s.observe(&o);
        assert_eq!(s.weight(), Some(WeightChange::Set(5)));
        s.observe(&Outcome::up("exit 0"));
        assert_eq!(s.weight(), None);
    }
}
