//! RFC behaviour of [`super::instance::Instance`], on the simulated LAN of [`super::sim`].
//!
//! Times are exact: the LAN delivers after 100 µs and the clock is virtual. For VRRPv3 at an
//! interval of 1 s, Skew_Time is `(256 - p) / 256` s in whole µs: 218.750 ms at priority 200,
//! 414.062 ms at 150, 609.375 ms at 100; Active_Down_Interval is 3 s plus that.

use std::time::Duration;

use super::{
    instance::{ActiveReason, BackupReason, Event, State},
    sim::{Lan, config},
    wire::{Auth, Version},
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

const A: &str = "192.0.2.11";
const B: &str = "192.0.2.12";
const C: &str = "192.0.2.13";

/// Three routers at priorities 100, 150, 200, all started at 0.
fn three(version: Version) -> Lan {
    let mut lan = Lan::new(vec![
        config(version, 100, A, 100),
        config(version, 150, B, 100),
        config(version, 200, C, 100),
    ]);
    for r in 0..3 {
        lan.start(r);
    }
    lan
}

#[test]
fn the_highest_priority_wins_the_election_after_its_down_interval() {
    // Input: three backups start together. Output: the 200 takes over at 3 s + 218.75 ms, alone.
    let mut lan = three(Version::V3);
    lan.run_for(Duration::from_secs(10));
    assert_eq!(lan.active(), [2]);
    assert_eq!(
        lan.changes(2),
        [
            (ms(0), Event::BecameBackup(BackupReason::Startup)),
            (us(3_218_750), Event::BecameActive(ActiveReason::ActiveDown)),
        ]
    );
    assert_eq!(
        lan.changes(1),
        [(ms(0), Event::BecameBackup(BackupReason::Startup))]
    );
    assert_eq!(
        lan.instance(1).active_router(),
        Some(("192.0.2.13".parse().expect("ip"), 200))
    );
}

#[test]
fn a_crashed_active_router_is_replaced_after_the_active_down_interval() {
    // Input: the 200 dies silently at 10.5 s; its last advert left at 10.21875 s and arrived
    // 100 µs later. Output: the 150 takes over 3.414062 s after that arrival; the 100 never does.
    let mut lan = three(Version::V3);
    lan.run_for(ms(10_500));
    lan.crash(2);
    lan.run_for(Duration::from_secs(10));
    assert_eq!(lan.active(), [1]);
    assert_eq!(
        lan.changes(1).last(),
        Some(&(
            us(10_218_750 + 3_414_062 + 100),
            Event::BecameActive(ActiveReason::ActiveDown)
        ))
    );
    assert_eq!(lan.changes(0).len(), 1, "the 100 only ever started");
}

#[test]
fn a_graceful_stop_hands_over_after_skew_time() {
    // Input: the 200 stops at 10.5 s and sends priority 0. Output: the 150 takes over after its
    // Skew_Time (414 ms), well before the 100's (609 ms), which then hears the new active.
    let mut lan = three(Version::V3);
    lan.run_for(ms(10_500));
    lan.stop(2);
    lan.run_for(ms(1));
    assert!(lan.instance(1).awaits_handover() && lan.instance(0).awaits_handover());
    lan.run_for(Duration::from_secs(5));
    assert_eq!(lan.active(), [1]);
    assert!(
        !lan.instance(0).awaits_handover(),
        "it heard the new active router"
    );
    assert_eq!(lan.changes(2).last(), Some(&(ms(10_500), Event::Stopped)));
    assert_eq!(
        lan.changes(1).last(),
        Some(&(
            ms(10_500) + us(414_062 + 100),
            Event::BecameActive(ActiveReason::ActiveDown)
        ))
    );
    assert_eq!(lan.instance(1).stats().priority_zero_received, 1);
    assert_eq!(lan.instance(2).stats().priority_zero_sent, 1);
}

#[test]
fn a_fault_on_the_active_router_hands_over_after_skew_time_and_recovery_preempts_back() {
    // Input: the 200's interface fails at 10.5 s (it can still send, as when a tracked script
    // fails), and recovers at 20 s. Output: it sends priority 0 and goes FAULT, the 150 takes
    // over after its Skew_Time; after recovery the 200 waits out its down interval as a backup,
    // hears the 150 and, having preempt, takes over at once.
    let mut lan = three(Version::V3);
    lan.run_for(ms(10_500));
    lan.fault(2, true);
    assert_eq!(lan.instance(2).state(), State::Fault);
    assert_eq!(
        lan.changes(2).last(),
        Some(&(ms(10_500), Event::BecameFault))
    );
    lan.run_for(ms(9_500));
    assert_eq!(lan.active(), [1]);
    assert_eq!(
        lan.changes(1).last(),
        Some(&(
            ms(10_500) + us(414_062 + 100),
            Event::BecameActive(ActiveReason::ActiveDown)
        ))
    );
    lan.fault(2, true);
    assert_eq!(
        lan.changes(2).len(),
        3,
        "a second fault report changes nothing"
    );
    lan.fault(2, false);
    assert_eq!(
        lan.changes(2).last(),
        Some(&(ms(20_000), Event::BecameBackup(BackupReason::Startup)))
    );
    lan.run_for(Duration::from_secs(5));
    assert_eq!(lan.active(), [2]);
}

#[test]
fn an_instance_faulty_at_start_waits_and_ignores_adverts() {
    // Input: the 200 starts with its interface down, so FAULT before startup; adverts of the
    // 150 do not reach its state. Output: no timer, no advert, until the fault clears.
    let mut lan = three(Version::V3);
    lan.stop(2);
    lan.fault(2, true);
    lan.start(2);
    lan.run_for(Duration::from_secs(10));
    assert_eq!(lan.instance(2).state(), State::Fault);
    assert_eq!(lan.instance(2).poll_timeout(), None);
    assert_eq!(lan.active(), [1]);
    lan.fault(2, false);
    lan.run_for(Duration::from_secs(5));
    assert_eq!(lan.active(), [2]);
}

#[test]
fn a_master_whose_priority_drops_is_preempted_and_takes_over_again_when_it_recovers() {
    // Input: at 10.5 s a tracked script fails and the 200 drops to 120. Output: it advertises
    // 120 at once; the 150 discards that as lower, so its down timer keeps running from the last
    // advert at 200 (10.21875 s) and it takes over 3.414062 s after that one arrived. With its
    // priority back at 20 s, the 200 preempts the same way.
    let mut lan = three(Version::V3);
    lan.run_for(ms(10_500));
    lan.set_priority(2, 120);
    assert_eq!(
        lan.changes(2).last(),
        Some(&(ms(10_500), Event::PriorityChanged(120)))
    );
    lan.run_for(ms(9_500));
    assert_eq!(lan.active(), [1]);
    assert_eq!(
        lan.changes(1).last(),
        Some(&(
            us(10_218_750 + 100 + 3_414_062),
            Event::BecameActive(ActiveReason::ActiveDown)
        ))
    );
    assert_eq!(lan.instance(2).priority(), 120);
    lan.set_priority(2, 200);
    lan.run_for(Duration::from_secs(5));
    assert_eq!(lan.active(), [2]);
}

/// A 150 running alone, and a 200 configured by `tune` that starts at 10 s.
fn late_higher(tune: impl FnOnce(&mut super::instance::Config)) -> Lan {
    let mut high = config(Version::V3, 200, C, 100);
    tune(&mut high);
    let mut lan = Lan::new(vec![config(Version::V3, 150, B, 100), high]);
    lan.start(0);
    lan.run_for(Duration::from_secs(10));
    lan.start(1);
    lan
}

#[test]
fn a_higher_priority_router_preempts() {
    // Output: the 200 discards the 150's adverts, takes over when its down timer runs out
    // (10 s + 3.21875 s) and the 150 yields on its first advert.
    let mut lan = late_higher(|_| {});
    lan.run_for(Duration::from_secs(10));
    assert_eq!(lan.active(), [1]);
    assert_eq!(
        lan.changes(1).last(),
        Some(&(
            us(13_218_750),
            Event::BecameActive(ActiveReason::ActiveDown)
        ))
    );
    let by = "192.0.2.13".parse().expect("ip");
    assert_eq!(
        lan.changes(0).last(),
        Some(&(
            us(13_218_750 + 100),
            Event::BecameBackup(BackupReason::Preempted { by, priority: 200 })
        ))
    );
}

#[test]
fn nopreempt_leaves_the_active_router_alone() {
    let mut lan = late_higher(|c| c.preempt = false);
    lan.run_for(Duration::from_secs(30));
    assert_eq!(lan.active(), [0]);
    assert_eq!(
        lan.changes(1),
        [(ms(10_000), Event::BecameBackup(BackupReason::Startup))]
    );
}

#[test]
fn preempt_delay_tolerates_the_lower_router_for_that_long() {
    // The 150 advertises at 3.414062 s + k. The 200 first hears it at 10.414162 s, tolerates it
    // until 15.414162 s (5 s later): the last advert it honours arrives at 14.414162 s, so it
    // takes over 3.21875 s after that.
    let mut lan = late_higher(|c| c.preempt_delay = Duration::from_secs(5));
    lan.run_for(Duration::from_secs(20));
    assert_eq!(lan.active(), [1]);
    assert_eq!(
        lan.changes(1).last(),
        Some(&(
            us(14_414_062 + 100 + 3_218_750),
            Event::BecameActive(ActiveReason::ActiveDown)
        ))
    );
}

#[test]
fn at_equal_priority_the_higher_address_wins() {
    // Both start active (keepalived's `state MASTER`); their first adverts cross.
    let mut low = config(Version::V3, 100, A, 100);
    let mut high = config(Version::V3, 100, B, 100);
    low.start_active = true;
    high.start_active = true;
    let mut lan = Lan::new(vec![low, high]);
    lan.start(0);
    lan.start(1);
    lan.run_for(Duration::from_secs(10));
    assert_eq!(lan.active(), [1]);
    let by = B.parse().expect("ip");
    assert_eq!(
        lan.changes(0).last(),
        Some(&(
            us(100),
            Event::BecameBackup(BackupReason::Preempted { by, priority: 100 })
        ))
    );
    // Started as backups, they time out together and resolve the same way.
    let mut lan = Lan::new(vec![
        config(Version::V3, 100, A, 100),
        config(Version::V3, 100, B, 100),
    ]);
    lan.start(0);
    lan.start(1);
    lan.run_for(Duration::from_secs(10));
    assert_eq!(lan.active(), [1]);
}

#[test]
fn the_address_owner_takes_over_at_once_and_never_yields() {
    let mut lan = Lan::new(vec![
        config(Version::V3, 254, A, 100),
        config(Version::V3, 255, B, 100),
    ]);
    lan.start(0);
    lan.run_for(Duration::from_secs(10));
    assert_eq!(lan.active(), [0]);
    lan.start(1);
    assert_eq!(
        lan.changes(1),
        [(ms(10_000), Event::BecameActive(ActiveReason::Owner))]
    );
    lan.run_for(Duration::from_secs(10));
    assert_eq!(lan.active(), [1]);
}

#[test]
fn a_v3_backup_learns_the_active_router_s_interval() {
    // The active advertises every 50 cs; the backup is configured for 100 cs but must use the
    // active's: down interval 3 * 500 ms + 106 * 500 ms / 256 (207.031 ms) = 1.707031 s.
    let mut lan = Lan::new(vec![
        config(Version::V3, 200, A, 50),
        config(Version::V3, 150, B, 100),
    ]);
    lan.start(0);
    lan.run_for(ms(100));
    lan.start(1);
    lan.run_for(Duration::from_secs(10));
    assert_eq!(lan.instance(1).active_adver_int_cs(), 50);
    assert_eq!(lan.instance(1).active_down_interval(), us(1_707_031));
    lan.crash(0);
    let crashed_at = lan.elapsed();
    lan.run_for(Duration::from_secs(5));
    let (at, event) = *lan.changes(1).last().expect("a change");
    assert_eq!(event, Event::BecameActive(ActiveReason::ActiveDown));
    assert!(
        at > crashed_at && at <= crashed_at + us(1_707_031 + 500_000),
        "took over at {at:?}, crash at {crashed_at:?}"
    );
}

#[test]
fn v2_uses_second_intervals_and_a_fractional_skew() {
    // v2 Skew_Time is (256 - 150) / 256 s = 414.0625 ms.
    let mut lan = three(Version::V2);
    assert_eq!(lan.instance(1).skew_time(), us(414_062));
    lan.run_for(ms(10_500));
    lan.crash(2);
    lan.run_for(Duration::from_secs(10));
    assert_eq!(lan.active(), [1]);
    // The 200's last advert left at 3.21875 s + 7 s (v2 skew at 200 is 218.75 ms).
    let last = us(3_218_750 + 7_000_000 + 100);
    assert_eq!(
        lan.changes(1).last(),
        Some(&(
            last + us(3_414_062),
            Event::BecameActive(ActiveReason::ActiveDown)
        ))
    );
}

#[test]
fn ipv6_v3_elects_the_same_way() {
    let mut lan = Lan::new(vec![
        config(Version::V3, 100, "fe80::11", 100),
        config(Version::V3, 200, "fe80::12", 100),
    ]);
    lan.start(0);
    lan.start(1);
    lan.run_for(Duration::from_secs(10));
    assert_eq!(lan.active(), [1]);
}

#[test]
fn v2_adverts_with_other_passwords_or_intervals_are_dropped_and_counted() {
    let mut a = config(Version::V2, 100, A, 100);
    let mut b = config(Version::V2, 200, B, 100);
    a.auth = Auth::simple("secret12");
    b.auth = Auth::simple("other");
    let mut lan = Lan::new(vec![a, b]);
    lan.start(0);
    lan.start(1);
    lan.run_for(Duration::from_secs(10));
    assert_eq!(lan.active(), [0, 1], "neither hears the other");
    assert!(lan.instance(0).stats().auth_failures > 0);
    assert_eq!(lan.instance(0).stats().adverts_received, 0);

    let mut lan = Lan::new(vec![
        config(Version::V2, 100, A, 100),
        config(Version::V2, 200, B, 200),
    ]);
    lan.start(0);
    lan.start(1);
    lan.run_for(Duration::from_secs(10));
    assert_eq!(lan.active(), [0, 1]);
    assert!(lan.instance(0).stats().advert_interval_errors > 0);
}

#[test]
fn address_list_mismatch_drops_in_v2_and_is_only_counted_in_v3() {
    for (version, expect_active) in [(Version::V2, vec![0, 1]), (Version::V3, vec![1])] {
        let mut other = config(version, 200, B, 100);
        other.addresses = vec!["192.0.2.200".parse().expect("ip")];
        let mut lan = Lan::new(vec![config(version, 100, A, 100), other]);
        lan.start(0);
        lan.start(1);
        lan.run_for(Duration::from_secs(10));
        assert_eq!(lan.active(), expect_active, "{version:?}");
        assert!(lan.instance(0).stats().address_list_errors > 0);
    }
}

#[test]
fn a_version_mismatch_is_counted_and_ignored() {
    let mut lan = Lan::new(vec![
        config(Version::V2, 100, A, 100),
        config(Version::V3, 200, B, 100),
    ]);
    lan.start(0);
    lan.start(1);
    lan.run_for(Duration::from_secs(10));
    assert_eq!(lan.active(), [0, 1]);
    assert!(lan.instance(0).stats().version_errors > 0);
}

#[test]
fn under_loss_the_highest_priority_router_ends_active() {
    // Input: 15 % of deliveries lost (fixed seed), 3 routers, 10 minutes. Output: whatever
    // flaps the loss causes, the 200 is active, alone, at the end of each quiet minute.
    let mut lan = three(Version::V3).with_loss(150, 7);
    for _ in 0..10 {
        lan.run_for(Duration::from_secs(60));
        assert_eq!(lan.active(), [2], "at {:?}", lan.elapsed());
    }
    assert!(
        lan.lost > 100 && lan.delivered > 1000,
        "lost {} delivered {}",
        lan.lost,
        lan.delivered
    );
    // Each takeover by a lower router was undone by the 200's next advert.
    let takeovers = lan
        .changes(1)
        .iter()
        .filter(|(_, e)| matches!(e, Event::BecameActive(_)))
        .count();
    let yields = lan
        .changes(1)
        .iter()
        .filter(|(_, e)| matches!(e, Event::BecameBackup(BackupReason::Preempted { .. })))
        .count();
    assert_eq!(takeovers, yields);
}

#[test]
fn shutdown_from_backup_sends_nothing_and_restart_works() {
    let mut lan = three(Version::V3);
    lan.run_for(Duration::from_secs(5));
    lan.stop(0);
    assert_eq!(lan.instance(0).state(), State::Initialize);
    assert_eq!(lan.instance(0).stats().priority_zero_sent, 0);
    lan.start(0);
    lan.run_for(Duration::from_secs(5));
    assert_eq!(lan.active(), [2]);
    assert!(matches!(lan.instance(0).state(), State::Backup { .. }));
}

#[test]
fn skew_and_down_interval_follow_keepalived_s_arithmetic() {
    // (version, priority, interval cs) -> (skew, down interval), worked by hand:
    // v3 skew = floor((256 - p) * cs * 10000 / 256) µs; v2 skew = (256 - p) / 256 s.
    let cases = [
        (Version::V3, 1, 100, us(996_093), us(3_996_093)), // 255 * 1e6 / 256 = 996093.75
        (Version::V3, 254, 5, us(390), us(150_390)),       // 2 * 50000 / 256 = 390.6
        (Version::V3, 128, 1000, ms(5_000), ms(35_000)),   // 128 * 1e7 / 256
        (Version::V3, 100, 1, us(6_093), us(36_093)), // advert_int 0.01: the reference's 36.1 ms
        (Version::V3, 100, 5, us(30_468), us(180_468)), // advert_int 0.05: 180.5 ms
        (Version::V3, 50, 256, ms(2_060), ms(9_740)), // 206 * 2.56e6 / 256
        (Version::V2, 1, 100, us(996_093), us(3_996_093)), // 255 / 256 s
        (Version::V2, 255, 300, us(3_906), us(9_003_906)), // 1 / 256 s, 3 * 3 s + skew
    ];
    for (version, priority, cs, skew, down) in cases {
        let instance = super::instance::Instance::new(config(version, priority, A, cs));
        assert_eq!(
            (instance.skew_time(), instance.active_down_interval()),
            (skew, down),
            "{version:?} p{priority} {cs}cs"
        );
    }
}

#[test]
fn kernel_stamps_keep_a_stalled_backup_from_taking_over_but_not_a_dead_master() {
    use super::instance::Instance;
    // Input: a 100 backup hears the 200 at 0 (v3, 1 s: down interval 3.609375 s); its driver
    // then stalls until 10 s. The kernel stamped the 200's adverts up to 9.5 s. Output: at
    // 10 s the backup counts from 9.5 s and stays; a stamp of another sender, or one older
    // than what it counted from, changes nothing; with no stamp after 5 s it takes over.
    let master: std::net::IpAddr = C.parse().expect("ip");
    let heard = |stamp: Option<(u64, &str)>| {
        let mut backup = Instance::new(config(Version::V3, 100, A, 100));
        backup.startup(super::super::time::Instant::from_nanos(0));
        let advert = lan_advert(200);
        backup.handle_advert(at(0), master, &advert);
        if let Some((ms_at, from)) = stamp {
            backup.handle_kernel_advert(at(ms_at), from.parse().expect("ip"), 200, 100);
        }
        backup.handle_timeout(at(10_000));
        backup.state()
    };
    assert!(matches!(heard(Some((9_500, C))), State::Backup { .. }));
    assert!(
        matches!(heard(Some((5_000, C))), State::Active { .. }),
        "5 s + 3.6 s < 10 s"
    );
    assert!(
        matches!(heard(Some((9_500, B))), State::Active { .. }),
        "not the master it follows"
    );
    assert!(matches!(heard(None), State::Active { .. }));
}

fn at(ms_since_start: u64) -> super::super::time::Instant {
    super::super::time::Instant::from_nanos(ms_since_start * 1_000_000)
}

fn lan_advert(priority: u8) -> super::wire::AdvertRepr {
    super::wire::AdvertRepr {
        version: Version::V3,
        vrid: 51,
        priority,
        advert_int_cs: 100,
        addresses: vec!["192.0.2.100".parse().expect("ip")],
        auth: Auth::None,
    }
}

#[test]
fn the_kernel_timer_takes_over_only_when_its_stamp_is_a_down_interval_old() {
    use super::instance::{ActiveReason, Instance};
    let master: std::net::IpAddr = C.parse().expect("ip");
    let mut backup = Instance::new(config(Version::V3, 100, A, 100));
    backup.startup(at(0));
    backup.handle_advert(at(0), master, &lan_advert(200));
    // The timer raced a fresh advert (stamped 1 s before): nothing happens.
    backup.handle_kernel_down(at(4_000), at(3_000));
    assert!(matches!(backup.state(), State::Backup { .. }));
    // No advert since 0: 3.609375 s have passed at 3.7 s.
    while backup.poll_event().is_some() {}
    backup.handle_kernel_down(at(3_700), at(0));
    assert!(backup.is_active());
    assert_eq!(
        backup.poll_event(),
        Some(Event::BecameActive(ActiveReason::KernelActiveDown))
    );
}
