//! What tracked objects do to a VRRP instance, with keepalived's semantics. Pure: states in,
//! a verdict out; the driver and the tracker task feed it.
//!
//! - An interface: weight 0 means down is FAULT; a positive weight is added while it is up, a
//!   negative one while it is down.
//! - A script: weight 0 means failed is FAULT; a positive weight is added while it succeeds, a
//!   negative one while it fails. Success and failure go through rise/fall [`Hysteresis`].
//! - A file holding a number: weight 0 means non-zero is FAULT; otherwise value × weight is
//!   added.
//! - `reverse` turns up into down and success into failure (a file's value changes sign).
//!
//! The effective priority is the base plus every adjustment, kept within 1-254; the address
//! owner (255) is never adjusted, but can be put in FAULT.

/// What a tracked object reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// An interface, up or down (up: IFF_UP and IFF_RUNNING).
    Interface {
        /// Whether it is up.
        up: bool,
    },
    /// A script, good or failed (after its rise/fall).
    Script {
        /// Whether it is good.
        good: bool,
    },
    /// A file's number.
    File {
        /// The value read.
        value: i64,
    },
}

/// One tracked object as an instance sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracked {
    /// Its weight (0: a failure means FAULT).
    pub weight: i32,
    /// keepalived's `reverse`.
    pub reverse: bool,
    /// Its current status.
    pub status: Status,
}

/// The outcome for an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A weight-0 object failed.
    Fault,
    /// Running at this priority.
    Priority(u8),
}

/// The verdict for an instance of priority `base` tracking `objects`.
pub fn verdict(base: u8, objects: &[Tracked]) -> Verdict {
    let mut adjustment: i64 = 0;
    for o in objects {
        let weight = i64::from(o.weight);
        match o.status {
            Status::Interface { up: ok } | Status::Script { good: ok } => {
                let ok = ok != o.reverse;
                match (o.weight, ok) {
                    (0, false) => return Verdict::Fault,
                    (w, true) if w > 0 => adjustment += weight,
                    (w, false) if w < 0 => adjustment += weight,
                    _ => {}
                }
            }
            Status::File { value } => {
                let value = if o.reverse { -value } else { value };
                if o.weight == 0 {
                    if value != 0 {
                        return Verdict::Fault;
                    }
                } else {
                    adjustment = adjustment.saturating_add(value.saturating_mul(weight));
                }
            }
        }
    }
    if base == 255 {
        return Verdict::Priority(255);
    }
    let priority = (i64::from(base) + adjustment).clamp(1, 254);
    Verdict::Priority(u8::try_from(priority).unwrap_or(1))
}

/// rise/fall: `rise` successes in a row make a failed object good, `fall` failures in a row
/// make a good one failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hysteresis {
    rise: u32,
    fall: u32,
    good: bool,
    /// Results in a row that disagree with `good`.
    streak: u32,
}

impl Hysteresis {
    /// Starts good, or failed with keepalived's `init_fail`.
    pub fn new(rise: u32, fall: u32, good: bool) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            good,
            streak: 0,
        }
    }

    /// Whether it is good now.
    pub fn good(&self) -> bool {
        self.good
    }

    /// One result; returns whether the state changed.
    pub fn observe(&mut self, ok: bool) -> bool {
        if ok == self.good {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        let needed = if ok { self.rise } else { self.fall };
        if self.streak >= needed {
            self.good = ok;
            self.streak = 0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(weight: i32, reverse: bool, status: Status) -> Tracked {
        Tracked {
            weight,
            reverse,
            status,
        }
    }

    #[test]
    fn weights_follow_keepalived() {
        use Status::{File, Interface, Script};
        let cases: [(&str, u8, Vec<Tracked>, Verdict); 11] = [
            ("nothing tracked", 100, vec![], Verdict::Priority(100)),
            (
                "weight 0, down",
                100,
                vec![t(0, false, Interface { up: false })],
                Verdict::Fault,
            ),
            (
                "weight 0, up",
                100,
                vec![t(0, false, Interface { up: true })],
                Verdict::Priority(100),
            ),
            (
                "reverse: up is down",
                100,
                vec![t(0, true, Interface { up: true })],
                Verdict::Fault,
            ),
            (
                "negative weight applies when failed",
                100,
                vec![t(-30, false, Script { good: false })],
                Verdict::Priority(70),
            ),
            (
                "negative weight, good: nothing",
                100,
                vec![t(-30, false, Script { good: true })],
                Verdict::Priority(100),
            ),
            (
                "positive weight applies when good",
                100,
                vec![t(20, false, Script { good: true })],
                Verdict::Priority(120),
            ),
            (
                "file value times weight",
                100,
                vec![t(5, false, File { value: -3 })],
                Verdict::Priority(85),
            ),
            (
                "file weight 0, non-zero value",
                100,
                vec![t(0, false, File { value: 2 })],
                Verdict::Fault,
            ),
            (
                "clamped to 254",
                250,
                vec![t(100, false, Script { good: true })],
                Verdict::Priority(254),
            ),
            (
                "the owner is never adjusted",
                255,
                vec![t(-100, false, Script { good: false })],
                Verdict::Priority(255),
            ),
        ];
        for (what, base, objects, expected) in cases {
            assert_eq!(verdict(base, &objects), expected, "{what}");
        }
        assert_eq!(
            verdict(10, &[t(-100, false, Script { good: false })]),
            Verdict::Priority(1),
            "clamped to 1"
        );
    }

    #[test]
    fn rise_and_fall_need_results_in_a_row() {
        let mut h = Hysteresis::new(2, 3, true);
        assert!(!h.observe(false));
        assert!(!h.observe(false));
        assert!(!h.observe(true), "a success breaks the streak");
        assert!(!h.observe(false));
        assert!(!h.observe(false));
        assert!(h.observe(false), "third failure in a row");
        assert!(!h.good());
        assert!(!h.observe(true));
        assert!(h.observe(true), "second success in a row");
        assert!(h.good());
    }
}
