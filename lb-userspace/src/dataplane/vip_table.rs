//! The XDP program's VIP table (`LB_VIPS`): open addressing with linear probing over
//! [`VIP_SLOTS`] slots of four words ([`VipSlot`]), written here through the memory mapping
//! while the program probes it.
//!
//! What this layer promises:
//! - every VIP sits within [`VIP_PROBES`] slots of its home slot, the most the program probes;
//!   a VIP that cannot is refused ([`TableFull`]), never placed where it would not be found;
//! - a lookup that races a write sees each VIP either as it was or as it is: a slot's `key`
//!   word, which holds its state, is written last (a release store) and read first by the
//!   program;
//! - removing a VIP never hides another one: it leaves a tombstone that probes go past, and a
//!   tombstone becomes empty only when the slot after it is empty (no probe can pass it then).
//!
//! Pure: it works on a slice of words, so the tests run it on a `Vec`.

use std::sync::atomic::{Ordering, fence};

use lb_common::{
    VIP_PROBES, VIP_SLOT_DELETED, VIP_SLOT_EMPTY, VIP_SLOT_USED, VIP_SLOTS, VipInfo, VipKey,
    VipSlot, vip_hash,
};

/// Words of one slot.
const WORDS: usize = size_of::<VipSlot>() / size_of::<u64>();
/// Offsets of a slot's words.
const ADDR_LO: usize = 0;
const ADDR_HI: usize = 1;
const KEY: usize = 2;
const INFO: usize = 3;

/// Words the table takes in the mapping.
pub const TABLE_WORDS: usize = VIP_SLOTS as usize * WORDS;

/// No slot within [`VIP_PROBES`] of the VIP's home slot is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no free slot of the VIP table within {VIP_PROBES} of this VIP's home slot")]
pub struct TableFull;

/// A VIP's words, as the program builds them from a packet.
struct Probe {
    addr_lo: u64,
    addr_hi: u64,
    key: u64,
    home: usize,
}

impl Probe {
    fn of(key: &VipKey) -> Self {
        let (addr_lo, addr_hi) = VipSlot::addr_words(&key.addr);
        let home = vip_hash(addr_lo, addr_hi, key.port_be, key.proto) as usize;
        Self {
            addr_lo,
            addr_hi,
            key: VipSlot::key_word(key.port_be, key.proto, VIP_SLOT_USED),
            home,
        }
    }

    /// The slots a lookup of this VIP probes, in order.
    fn slots(&self) -> impl Iterator<Item = usize> + use<> {
        let home = self.home;
        (0..VIP_PROBES as usize).map(move |k| (home + k) % VIP_SLOTS as usize)
    }

    fn matches(&self, words: &[u64], slot: usize) -> bool {
        let w = &words[slot * WORDS..][..WORDS];
        w[KEY] == self.key && w[ADDR_LO] == self.addr_lo && w[ADDR_HI] == self.addr_hi
    }
}

fn state(words: &[u64], slot: usize) -> u64 {
    VipSlot::state(words[slot * WORDS + KEY])
}

/// One aligned 8-byte store of a word the program may be reading (a single store, as the
/// Maglev tables' writes), ordered after the stores before it by the fence.
fn publish(words: &mut [u64], index: usize, value: u64) {
    fence(Ordering::Release);
    words[index] = value;
}

/// The slot holding `key`, if the table has it.
fn find(words: &[u64], probe: &Probe) -> Option<usize> {
    for slot in probe.slots() {
        if probe.matches(words, slot) {
            return Some(slot);
        }
        if state(words, slot) == VIP_SLOT_EMPTY {
            return None;
        }
    }
    None
}

/// Adds `key` with `info`, or changes its `info` (one store: the program sees the old or the
/// new).
pub fn insert(words: &mut [u64], key: &VipKey, info: VipInfo) -> Result<(), TableFull> {
    let probe = Probe::of(key);
    if let Some(slot) = find(words, &probe) {
        publish(words, slot * WORDS + INFO, VipSlot::info_word(info));
        return Ok(());
    }
    let free = probe
        .slots()
        .find(|&slot| state(words, slot) != VIP_SLOT_USED)
        .ok_or(TableFull)?;
    let base = free * WORDS;
    // The slot is empty or a tombstone: the program skips it until the key word says used.
    publish(words, base + INFO, VipSlot::info_word(info));
    publish(words, base + ADDR_LO, probe.addr_lo);
    publish(words, base + ADDR_HI, probe.addr_hi);
    publish(words, base + KEY, probe.key);
    Ok(())
}

/// Removes `key`; whether the table had it.
pub fn remove(words: &mut [u64], key: &VipKey) -> bool {
    let probe = Probe::of(key);
    let Some(slot) = find(words, &probe) else {
        return false;
    };
    let dead = VipSlot::key_word(key.port_be, key.proto, VIP_SLOT_DELETED);
    publish(words, slot * WORDS + KEY, dead);
    // Tombstones followed by an empty slot end every probe that reaches them: empty them,
    // from the last one back.
    let slots = VIP_SLOTS as usize;
    let mut at = slot;
    while state(words, (at + 1) % slots) == VIP_SLOT_EMPTY && state(words, at) == VIP_SLOT_DELETED {
        publish(words, at * WORDS + KEY, 0);
        at = (at + slots - 1) % slots;
    }
    true
}

/// Every VIP in the table, with its info.
pub fn entries(words: &[u64]) -> Vec<(VipKey, VipInfo)> {
    words
        .chunks_exact(WORDS)
        .filter(|w| VipSlot::state(w[KEY]) == VIP_SLOT_USED)
        .map(|w| {
            let key = VipKey {
                addr: VipSlot::addr_of(w[ADDR_LO], w[ADDR_HI]),
                port_be: w[KEY] as u16,
                proto: (w[KEY] >> 16) as u8,
                _pad: 0,
            };
            (key, VipSlot::info_of(w[INFO]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_common::{IPPROTO_TCP, IPPROTO_UDP};

    fn table() -> Vec<u64> {
        vec![0; TABLE_WORDS]
    }

    fn key(i: u32, port: u16) -> VipKey {
        let a = 0xcb00_7100_u32 + i;
        VipKey::v4(a.to_be_bytes(), port, IPPROTO_TCP)
    }

    fn info(index: u32) -> VipInfo {
        VipInfo { index, flags: 1 }
    }

    /// A lookup as the program makes it: `find`'s probe from the home slot to the first
    /// empty slot, at most VIP_PROBES slots, then the slot's info word.
    fn lookup(words: &[u64], key: &VipKey) -> Option<VipInfo> {
        let probe = Probe::of(key);
        find(words, &probe).map(|slot| VipSlot::info_of(words[slot * WORDS + INFO]))
    }

    #[test]
    fn inserted_vips_are_found_changed_and_listed() {
        let mut t = table();
        for i in 0..512 {
            insert(&mut t, &key(i, 80), info(i)).expect("room");
        }
        insert(&mut t, &key(7, 80), info(1000)).expect("change");
        for i in 0..512 {
            let want = if i == 7 { info(1000) } else { info(i) };
            assert_eq!(lookup(&t, &key(i, 80)), Some(want), "VIP {i}");
        }
        assert_eq!(lookup(&t, &key(0, 81)), None);
        let udp = VipKey {
            proto: IPPROTO_UDP,
            ..key(0, 80)
        };
        assert_eq!(lookup(&t, &udp), None);
        let mut listed = entries(&t);
        listed.sort_by_key(|(_, i)| i.index);
        assert_eq!(listed.len(), 512);
        assert_eq!(listed[0], (key(0, 80), info(0)));
    }

    #[test]
    fn removing_a_vip_never_hides_another() {
        let mut t = table();
        // Force collisions: every VIP placed, then half removed in a scattered order, and the
        // rest must still be found after each removal.
        let keys: Vec<VipKey> = (0..512).map(|i| key(i, 443)).collect();
        for (i, k) in keys.iter().enumerate() {
            insert(&mut t, k, info(i as u32)).expect("room");
        }
        let mut gone = vec![false; keys.len()];
        for step in 0..256 {
            let victim = (step * 97) % keys.len();
            assert!(remove(&mut t, &keys[victim]), "{victim} was in");
            gone[victim] = true;
            for (i, k) in keys.iter().enumerate() {
                let want = (!gone[i]).then(|| info(i as u32));
                assert_eq!(lookup(&t, k), want, "VIP {i} after removing {victim}");
            }
        }
        assert!(!remove(&mut t, &keys[0]), "removed twice");
        // Removed VIPs come back, into tombstones or empty slots.
        for (i, k) in keys.iter().enumerate().filter(|(i, _)| gone[*i]) {
            insert(&mut t, k, info(i as u32)).expect("room");
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(lookup(&t, k), Some(info(i as u32)));
        }
    }

    #[test]
    fn a_table_emptied_again_has_no_tombstones_left() {
        let mut t = table();
        for i in 0..300 {
            insert(&mut t, &key(i, 80), info(i)).expect("room");
        }
        for i in 0..300 {
            assert!(remove(&mut t, &key(i, 80)));
        }
        assert!(
            t.chunks_exact(WORDS)
                .all(|w| VipSlot::state(w[KEY]) == VIP_SLOT_EMPTY),
            "every tombstone is followed by an empty slot once the table is empty"
        );
    }

    #[test]
    fn a_vip_with_no_free_slot_within_the_probes_is_refused() {
        let mut t = table();
        let wanted = key(0, 80);
        let home = Probe::of(&wanted).home;
        // Fill every slot the VIP could take with other (fake) used slots.
        for k in 0..VIP_PROBES as usize {
            let slot = (home + k) % VIP_SLOTS as usize;
            t[slot * WORDS + KEY] = VipSlot::key_word(1, IPPROTO_UDP, VIP_SLOT_USED);
        }
        assert_eq!(insert(&mut t, &wanted, info(1)), Err(TableFull));
        assert_eq!(lookup(&t, &wanted), None);
    }
}
