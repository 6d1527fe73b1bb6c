//! One VRRP virtual router as a sans-IO state machine (RFC 3768 §6, RFC 9568 §6).
//!
//! The instance never reads a clock or touches a socket. The driver feeds it what happened,
//! `handle_advert(now, src, &repr)`, `handle_timeout(now)`, `startup(now)`, `shutdown(now)`, and
//! drains what it wants done: `poll_transmit()` (adverts to send), `poll_event()` (state
//! changes, for VIPs, gratuitous ARP and notify scripts) and `poll_timeout()` (when to call
//! `handle_timeout` next). Time is a [`crate::time::Instant`] on the monotonic clock.
//!
//! States use RFC 9568's names (Active is keepalived's MASTER). Timer arithmetic matches
//! keepalived's, so the two agree on who takes over and when:
//! - Skew_Time: v3 `((256 - priority) * Active_Adver_Interval) / 256`, in whole microseconds
//!   (keepalived's `VRRP_TIMER_SKEW`: not truncated to centiseconds, so at small intervals each
//!   priority still gets its own down interval); v2 `(256 - priority) / 256` seconds.
//! - Active_Down_Interval: `down_timer_adverts` (3 in the RFCs) times Active_Adver_Interval,
//!   plus Skew_Time.

use std::{collections::VecDeque, net::IpAddr, time::Duration};

use super::wire::{AdvertRepr, Auth, DecodeError, Version};
use crate::time::Instant;

/// What one instance is configured to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Protocol version.
    pub version: Version,
    /// Virtual router id (1-255).
    pub vrid: u8,
    /// Priority (1-255; 255 is the address owner).
    pub priority: u8,
    /// Advertisement interval in centiseconds (v2: whole seconds only).
    pub advert_int_cs: u16,
    /// The virtual addresses, all of one family.
    pub addresses: Vec<IpAddr>,
    /// This router's primary address on the interface: the adverts' source, and the tie
    /// breaker at equal priority.
    pub primary: IpAddr,
    /// Whether a higher-priority backup takes over from a lower-priority active router.
    pub preempt: bool,
    /// keepalived's `preempt_delay`: how long a lower-priority active router is tolerated,
    /// from the first of its adverts this backup hears, before preempting.
    pub preempt_delay: Duration,
    /// keepalived's `state MASTER`: start active instead of waiting out the down interval.
    pub start_active: bool,
    /// v2 authentication.
    pub auth: Auth,
    /// Active_Down_Interval in adverts (keepalived's `down_timer_adverts`; the RFCs' 3).
    pub down_timer_adverts: u8,
    /// Whether an advert whose address list differs from ours is counted and dropped (v2, as
    /// RFC 3768 §7.1 says, unless sent by the owner) or only counted (v3, RFC 9568 §7.1).
    pub check_addresses: bool,
}

/// The instance's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not running (before startup, after shutdown).
    Initialize,
    /// Listening to the active router; takes over when `down_at` passes.
    Backup {
        /// When the active router is declared down.
        down_at: Instant,
    },
    /// Owning the addresses and advertising; the next advert goes at `advert_at`.
    Active {
        /// When the next advert is due.
        advert_at: Instant,
    },
    /// keepalived's FAULT: the interface is down (or a tracked object failed); neither
    /// advertising nor listening until it recovers, then Backup (or Active for the owner).
    Fault,
}

/// Why the instance became active.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActiveReason {
    /// It owns the addresses (priority 255).
    Owner,
    /// Configured to start active (keepalived's `state MASTER`).
    StartActive,
    /// No advert from an active router within Active_Down_Interval (or Skew_Time after a
    /// priority-0 advert).
    ActiveDown,
    /// Another member of its sync group became active.
    SyncGroup,
    /// The kernel's master-down timer fired and its stamps agree: no advert to follow for
    /// Active_Down_Interval.
    KernelActiveDown,
}

/// Why the instance became backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupReason {
    /// Startup, waiting to hear from an active router.
    Startup,
    /// An advert with a higher priority, or an equal one from a higher address.
    Preempted {
        /// Its sender.
        by: IpAddr,
        /// Its priority.
        priority: u8,
    },
    /// Another member of its sync group became backup.
    SyncGroup,
}

/// What the driver must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Now active: add the addresses, announce them (gratuitous ARP / unsolicited NA), notify.
    BecameActive(ActiveReason),
    /// Now backup: remove the addresses (if it held them), notify.
    BecameBackup(BackupReason),
    /// Now faulty: remove the addresses (if it held them), notify.
    BecameFault,
    /// The effective priority changed (tracked objects): notify if asked to.
    PriorityChanged(u8),
    /// While active, an advert of lower priority arrived (keepalived's
    /// `MASTER_RX_LOWER_PRI`); it was answered at once.
    ActiveHeardLower {
        /// Its sender.
        from: IpAddr,
        /// Its priority.
        priority: u8,
    },
    /// Stopped (after a shutdown): remove the addresses, notify.
    Stopped,
}

/// Per-instance statistics (RFC 6527 `vrrpRouterStatisticsEntry`), plus the decode errors the
/// driver counts for the instance's VRID.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Transitions to Active.
    pub became_active: u64,
    /// Adverts received and accepted for processing.
    pub adverts_received: u64,
    /// Adverts sent.
    pub adverts_sent: u64,
    /// Priority-0 adverts received.
    pub priority_zero_received: u64,
    /// Priority-0 adverts sent.
    pub priority_zero_sent: u64,
    /// v2 adverts whose interval differs from ours.
    pub advert_interval_errors: u64,
    /// Adverts of another version than ours.
    pub version_errors: u64,
    /// v2 adverts whose authentication type differs from ours.
    pub auth_type_mismatch: u64,
    /// v2 adverts whose authentication data differs from ours.
    pub auth_failures: u64,
    /// Adverts whose address list differs from ours.
    pub address_list_errors: u64,
    /// Adverts from ourselves or to an owner (ignored).
    pub ignored: u64,
    /// Decode errors, by `DecodeError::counter`: TTL, checksum, length, type, VRID, ...
    pub ttl_errors: u64,
    /// Checksum errors.
    pub checksum_errors: u64,
    /// Length errors.
    pub length_errors: u64,
    /// Adverts of another type than ADVERTISEMENT.
    pub invalid_type_errors: u64,
    /// Adverts with VRID 0.
    pub vrid_errors: u64,
    /// v2 adverts with an unknown authentication type.
    pub invalid_auth_type: u64,
    /// Datagrams whose IP header is malformed.
    pub ip_header_errors: u64,
    /// Transitions out of Active (keepalived's "Released master").
    pub released_active: u64,
}

impl Stats {
    /// Every advert dropped by a check.
    pub fn errors(&self) -> u64 {
        self.ttl_errors
            + self.checksum_errors
            + self.length_errors
            + self.version_errors
            + self.invalid_type_errors
            + self.vrid_errors
            + self.invalid_auth_type
            + self.ip_header_errors
            + self.auth_failures
            + self.auth_type_mismatch
            + self.advert_interval_errors
            + self.address_list_errors
    }
}

impl Stats {
    /// Counts a message for this VRID that failed to decode.
    pub fn count_decode_error(&mut self, error: DecodeError) {
        match error {
            DecodeError::Ttl(_) => self.ttl_errors += 1,
            DecodeError::Checksum => self.checksum_errors += 1,
            DecodeError::Length => self.length_errors += 1,
            DecodeError::Version(_) => self.version_errors += 1,
            DecodeError::Type(_) => self.invalid_type_errors += 1,
            DecodeError::Vrid => self.vrid_errors += 1,
            DecodeError::AuthType(_) => self.invalid_auth_type += 1,
            DecodeError::AdvertInterval => self.advert_interval_errors += 1,
            DecodeError::IpHeader => self.ip_header_errors += 1,
        }
    }
}

/// One virtual router.
#[derive(Debug)]
pub struct Instance {
    config: Config,
    /// The effective priority: the configured one adjusted by tracked objects.
    priority: u8,
    state: State,
    /// Active_Adver_Interval: learned from the active router's adverts (v3), ours otherwise.
    active_adver_int_cs: u16,
    /// The active router as last heard (address, priority), while backup.
    active_router: Option<(IpAddr, u8)>,
    /// With `preempt_delay`: when this backup may preempt the lower-priority active router.
    preempt_at: Option<Instant>,
    /// A backup whose active router announced it is leaving (priority 0): its timer runs
    /// Skew_Time, not Active_Down_Interval.
    handover: bool,
    stats: Stats,
    transmits: VecDeque<AdvertRepr>,
    events: VecDeque<Event>,
}

impl Instance {
    /// A stopped instance.
    pub fn new(config: Config) -> Self {
        let active_adver_int_cs = config.advert_int_cs;
        Self {
            priority: config.priority,
            config,
            state: State::Initialize,
            active_adver_int_cs,
            active_router: None,
            preempt_at: None,
            handover: false,
            stats: Stats::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether this backup is in the Skew_Time handover after its active router's priority-0
    /// advert (rather than waiting out Active_Down_Interval).
    pub fn awaits_handover(&self) -> bool {
        self.handover && matches!(self.state, State::Backup { .. })
    }

    /// The effective priority.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// Changes the effective priority (tracked objects changed; keepalived's
    /// `vrrp_set_effective_priority`). An active router advertises the new priority at once, so
    /// a backup that now outranks it preempts without waiting for the next advert; a backup's
    /// running down timer moves by the change of its Skew_Time.
    pub fn set_priority(&mut self, now: Instant, priority: u8) {
        if priority == self.priority || self.config.priority == 255 {
            return;
        }
        let old_down = self.active_down_interval();
        self.priority = priority;
        if self.state != State::Initialize {
            self.events.push_back(Event::PriorityChanged(priority));
        }
        match self.state {
            State::Active { .. } => {
                self.send_advert(priority);
                self.state = State::Active {
                    advert_at: now + self.advertisement_interval(),
                };
            }
            State::Backup { down_at } => {
                let new_down = self.active_down_interval();
                let down_at = if new_down >= old_down {
                    down_at + (new_down - old_down)
                } else {
                    Instant::from_nanos(down_at.as_nanos().saturating_sub(
                        u64::try_from((old_down - new_down).as_nanos()).unwrap_or(0),
                    ))
                };
                self.state = State::Backup { down_at };
            }
            State::Initialize | State::Fault => {}
        }
    }

    /// Takes a reloaded configuration without leaving its state: an active router stays
    /// active, a backup keeps its down timer. The caller sets the effective priority next
    /// ([`Self::set_priority`], from the tracked objects); becoming or ceasing to be the
    /// address owner (255) applies here, as `set_priority` leaves an owner alone.
    pub fn reconfigure(&mut self, now: Instant, config: Config) {
        let owner_changed = (config.priority == 255) != (self.config.priority == 255);
        self.config = config;
        if owner_changed {
            let configured = std::mem::replace(&mut self.config.priority, 0);
            self.set_priority(now, configured);
            self.config.priority = configured;
        }
    }

    /// Whether it is active.
    pub fn is_active(&self) -> bool {
        matches!(self.state, State::Active { .. })
    }

    /// The active router as last heard, while backup: (address, priority).
    pub fn active_router(&self) -> Option<(IpAddr, u8)> {
        self.active_router
    }

    /// Active_Adver_Interval in centiseconds.
    pub fn active_adver_int_cs(&self) -> u16 {
        self.active_adver_int_cs
    }

    /// Statistics.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Statistics, for the driver's decode-error counts.
    pub fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }

    /// Skew_Time.
    pub fn skew_time(&self) -> Duration {
        let weight = 256 - u64::from(self.priority);
        match self.config.version {
            Version::V3 => {
                Duration::from_micros(weight * u64::from(self.active_adver_int_cs) * 10_000 / 256)
            }
            Version::V2 => Duration::from_micros(weight * 1_000_000 / 256),
        }
    }

    /// Active_Down_Interval.
    pub fn active_down_interval(&self) -> Duration {
        let adverts = u64::from(self.config.down_timer_adverts.max(1));
        Duration::from_millis(adverts * u64::from(self.active_adver_int_cs) * 10) + self.skew_time()
    }

    fn advertisement_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.config.advert_int_cs) * 10)
    }

    fn advert(&self, priority: u8) -> AdvertRepr {
        AdvertRepr {
            version: self.config.version,
            vrid: self.config.vrid,
            priority,
            advert_int_cs: self.config.advert_int_cs,
            addresses: self.config.addresses.clone(),
            auth: self.config.auth,
        }
    }

    fn send_advert(&mut self, priority: u8) {
        self.stats.adverts_sent += 1;
        if priority == 0 {
            self.stats.priority_zero_sent += 1;
        }
        self.transmits.push_back(self.advert(priority));
    }

    fn become_active(&mut self, now: Instant, reason: ActiveReason) {
        self.send_advert(self.priority);
        self.state = State::Active {
            advert_at: now + self.advertisement_interval(),
        };
        self.active_router = None;
        self.active_adver_int_cs = self.config.advert_int_cs;
        self.stats.became_active += 1;
        self.events.push_back(Event::BecameActive(reason));
    }

    fn become_backup(&mut self, now: Instant, reason: BackupReason) {
        self.handover = false;
        if self.is_active() {
            self.stats.released_active += 1;
        }
        self.state = State::Backup {
            down_at: now + self.active_down_interval(),
        };
        self.events.push_back(Event::BecameBackup(reason));
    }

    /// RFC 9568 §6.4.1: leaves Initialize (ignored in Fault: clearing the fault starts it).
    pub fn startup(&mut self, now: Instant) {
        if self.state != State::Initialize {
            return;
        }
        self.start(now);
    }

    fn start(&mut self, now: Instant) {
        self.active_adver_int_cs = self.config.advert_int_cs;
        self.preempt_at = None;
        if self.priority == 255 {
            self.become_active(now, ActiveReason::Owner);
        } else if self.config.start_active {
            self.become_active(now, ActiveReason::StartActive);
        } else {
            self.become_backup(now, BackupReason::Startup);
        }
    }

    /// Enters or leaves keepalived's FAULT state (the interface went down or came back, or a
    /// tracked object failed or recovered). An active router leaving for FAULT sends a
    /// priority-0 advert, as on shutdown, so a backup takes over after Skew_Time; clearing the
    /// fault starts the instance afresh (RFC 9568 §6.4.1). Works before `startup` too: an
    /// instance whose interface is down at start waits in FAULT.
    pub fn set_fault(&mut self, now: Instant, fault: bool) {
        match (self.state, fault) {
            (State::Fault, false) => self.start(now),
            (State::Fault, true) | (State::Backup { .. } | State::Active { .. }, false) => {}
            (_, true) => {
                if self.is_active() {
                    self.send_advert(0);
                    self.stats.released_active += 1;
                }
                self.state = State::Fault;
                self.active_router = None;
                self.preempt_at = None;
                self.events.push_back(Event::BecameFault);
            }
            (State::Initialize, false) => {}
        }
    }

    /// keepalived's sync groups: another member became active, so this one does too, at once
    /// (only from Backup: a faulty or stopped member stays so).
    pub fn force_active(&mut self, now: Instant) {
        if matches!(self.state, State::Backup { .. }) {
            self.become_active(now, ActiveReason::SyncGroup);
        }
    }

    /// keepalived's sync groups: another member became backup, so this one does too, and
    /// waits out a full down interval before it may take over again.
    pub fn force_backup(&mut self, now: Instant) {
        if self.is_active() {
            self.become_backup(now, BackupReason::SyncGroup);
        }
    }

    /// RFC 9568 §6.4.2/6.4.3 Shutdown: an active router sends a priority-0 advert so a backup
    /// takes over after Skew_Time instead of Active_Down_Interval.
    pub fn shutdown(&mut self, _now: Instant) {
        match self.state {
            State::Initialize => return,
            State::Active { .. } => {
                self.send_advert(0);
                self.stats.released_active += 1;
            }
            State::Backup { .. } | State::Fault => {}
        }
        self.state = State::Initialize;
        self.active_router = None;
        self.events.push_back(Event::Stopped);
    }

    /// The timers: Adver_Timer while active, Active_Down_Timer while backup.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Initialize | State::Fault => {}
            // RFC 9568 §6.4.2: Active_Down_Timer fires.
            State::Backup { down_at } if now >= down_at => {
                self.become_active(now, ActiveReason::ActiveDown)
            }
            // RFC 9568 §6.4.3: Adver_Timer fires.
            State::Active { advert_at } if now >= advert_at => {
                self.send_advert(self.priority);
                self.state = State::Active {
                    advert_at: now + self.advertisement_interval(),
                };
            }
            State::Backup { .. } | State::Active { .. } => {}
        }
    }

    /// When `handle_timeout` is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Initialize | State::Fault => None,
            State::Backup { down_at } => Some(down_at),
            State::Active { advert_at } => Some(advert_at),
        }
    }

    /// The next advert to send, if any (to the multicast group or the unicast peers).
    pub fn poll_transmit(&mut self) -> Option<AdvertRepr> {
        self.transmits.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The configuration-dependent checks of RFC 3768 §7.1 / RFC 9568 §7.1; `false` drops.
    fn accept(&mut self, src: IpAddr, advert: &AdvertRepr) -> bool {
        if advert.version != self.config.version {
            self.stats.version_errors += 1;
            return false;
        }
        // Our own adverts come back on some setups (unicast to ourselves, looped multicast).
        if src == self.config.primary {
            self.stats.ignored += 1;
            return false;
        }
        if self.config.version == Version::V2 {
            match (self.config.auth, advert.auth) {
                (Auth::None, Auth::None) => {}
                (Auth::Simple(ours), Auth::Simple(theirs)) if ours == theirs => {}
                (Auth::Simple(_), Auth::Simple(_)) => {
                    self.stats.auth_failures += 1;
                    return false;
                }
                _ => {
                    self.stats.auth_type_mismatch += 1;
                    return false;
                }
            }
            // RFC 3768 §7.1: the v2 interval must be ours.
            if advert.advert_int_cs != self.config.advert_int_cs {
                self.stats.advert_interval_errors += 1;
                return false;
            }
        }
        if self.config.check_addresses && !same_addresses(&advert.addresses, &self.config.addresses)
        {
            self.stats.address_list_errors += 1;
            // RFC 3768 §7.1 drops unless the owner sent it; RFC 9568 §7.1 only logs.
            if self.config.version == Version::V2 && advert.priority != 255 {
                return false;
            }
        }
        true
    }

    /// An advert for our VRID, already decoded and checked by the codec.
    pub fn handle_advert(&mut self, now: Instant, src: IpAddr, advert: &AdvertRepr) {
        if matches!(self.state, State::Initialize | State::Fault) || !self.accept(src, advert) {
            return;
        }
        self.stats.adverts_received += 1;
        if advert.priority == 0 {
            self.stats.priority_zero_received += 1;
        }
        // The owner never yields (RFC 9568 §6.4.3 only ever moves a non-owner to Backup).
        match self.state {
            State::Initialize | State::Fault => {}
            State::Backup { .. } => self.backup_receives(now, src, advert),
            State::Active { .. } => self.active_receives(now, src, advert),
        }
    }

    /// The kernel saw an advert at `at` from `src` (lbd's TC program stamps adverts as they
    /// arrive, whenever the driver runs). A backup that already follows `src` as its active
    /// router counts its down interval from `at`, if that is later than what it counted from:
    /// a driver that wakes late, with the adverts of its stall dropped from an overflowing
    /// socket or still queued, does not mistake its own stall for the master's death. Never
    /// shortens a timer, never changes who is followed, ignores priority 0 (the socket path
    /// handles the handover).
    pub fn handle_kernel_advert(
        &mut self,
        at: Instant,
        src: IpAddr,
        priority: u8,
        advert_int_cs: u16,
    ) {
        let State::Backup { down_at } = self.state else {
            return;
        };
        if self.active_router.map(|(a, _)| a) != Some(src) || priority == 0 {
            return;
        }
        if self.config.preempt && priority < self.priority {
            return;
        }
        if self.config.version == Version::V3 && advert_int_cs != 0 {
            self.active_adver_int_cs = advert_int_cs;
        }
        let down = at + self.active_down_interval();
        if down > down_at {
            self.active_router = Some((src, priority));
            self.state = State::Backup { down_at: down };
        }
    }

    /// The kernel's master-down timer fired at `now`; the latest advert it stamped from a router
    /// this backup would follow arrived at `last`. Takes over at once when that is at least
    /// Active_Down_Interval ago; otherwise the timer raced a fresh advert and nothing changes.
    pub fn handle_kernel_down(&mut self, now: Instant, last: Instant) {
        if matches!(self.state, State::Backup { .. }) && now >= last + self.active_down_interval() {
            self.become_active(now, ActiveReason::KernelActiveDown);
        }
    }

    /// RFC 9568 §6.4.2, Backup receives an ADVERTISEMENT.
    fn backup_receives(&mut self, now: Instant, src: IpAddr, advert: &AdvertRepr) {
        if advert.priority == 0 {
            // The active router is leaving: take over after Skew_Time.
            self.state = State::Backup {
                down_at: now + self.skew_time(),
            };
            self.handover = true;
            return;
        }
        self.handover = false;
        let lower = advert.priority < self.priority;
        let tolerate_lower = lower && self.config.preempt && self.in_preempt_delay(now);
        if !self.config.preempt || !lower || tolerate_lower {
            if !lower {
                self.preempt_at = None;
            }
            if self.config.version == Version::V3 {
                self.active_adver_int_cs = advert.advert_int_cs;
            }
            self.active_router = Some((src, advert.priority));
            self.state = State::Backup {
                down_at: now + self.active_down_interval(),
            };
        }
        // else: discard; Active_Down_Timer runs out and this router preempts.
    }

    /// keepalived's `preempt_delay`: counted from the first lower-priority advert heard.
    fn in_preempt_delay(&mut self, now: Instant) -> bool {
        if self.config.preempt_delay.is_zero() {
            return false;
        }
        let until = *self
            .preempt_at
            .get_or_insert(now + self.config.preempt_delay);
        now < until
    }

    /// RFC 9568 §6.4.3, Active receives an ADVERTISEMENT.
    fn active_receives(&mut self, now: Instant, src: IpAddr, advert: &AdvertRepr) {
        if advert.priority == 0 {
            // Another router left: make sure the backups hear from us at once.
            self.send_advert(self.priority);
            self.state = State::Active {
                advert_at: now + self.advertisement_interval(),
            };
            return;
        }
        let ours = self.priority;
        let yields = advert.priority > ours
            || (advert.priority == ours
                && ours != 255
                && address_greater(src, self.config.primary));
        if yields {
            if self.config.version == Version::V3 {
                self.active_adver_int_cs = advert.advert_int_cs;
            }
            self.active_router = Some((src, advert.priority));
            self.become_backup(
                now,
                BackupReason::Preempted {
                    by: src,
                    priority: advert.priority,
                },
            );
        } else {
            // A lower-priority router thinks it is active: answer at once so it yields now
            // rather than at our next advert (keepalived: "forcing a new election").
            if advert.priority < ours {
                self.events.push_back(Event::ActiveHeardLower {
                    from: src,
                    priority: advert.priority,
                });
            }
            self.send_advert(ours);
            self.state = State::Active {
                advert_at: now + self.advertisement_interval(),
            };
        }
    }
}

/// RFC 9568 §6.4.3: "unsigned integer comparison of the IPvX addresses in network byte order".
fn address_greater(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets() > b.octets(),
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets() > b.octets(),
        _ => false,
    }
}

/// The same addresses, in any order.
fn same_addresses(a: &[IpAddr], b: &[IpAddr]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}
