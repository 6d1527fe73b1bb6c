//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), weighted as Katran does: pure.
//!
//! [`table`] fills a lookup table of a prime size with real-server ids so that each live real
//! server owns a share of the slots proportional to its weight, and when one of N real servers
//! leaves or joins about 1/N of the slots change owner. Each real server's permutation of the
//! slots comes from [`endpoint_hash`] of its address alone, so the table depends only on the
//! set (not on the order it is given in). [`write_delta`] writes a new table over the old one
//! slot by slot, touching only the slots that changed (Katran's delta update).

use std::net::IpAddr;

/// A real server as the table sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The id written into its slots (never 0: 0 marks "no real server").
    pub id: u32,
    /// Its weight; 0 gets no slot.
    pub weight: u32,
    /// [`endpoint_hash`] of its address: where its permutation starts and its stride.
    pub hash: u64,
}

/// A stable 64-bit hash of a real server's address (FNV-1a, then a finaliser): the same
/// address gets the same permutation in every lbd, across restarts and versions.
pub fn endpoint_hash(addr: IpAddr) -> u64 {
    let bytes = match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix(h)
}

/// SplitMix64's finaliser: spreads every input bit over the output.
fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether `n` is prime (table sizes must be, for every stride to visit every slot).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

/// The lookup table of `size` slots (a prime) for `endpoints`; all zeros when none has weight.
pub fn table(endpoints: &[Endpoint], size: u32) -> Vec<u32> {
    let mut live: Vec<Endpoint> = endpoints.iter().copied().filter(|e| e.weight > 0).collect();
    let mut slots = vec![0u32; size as usize];
    if live.is_empty() || size == 0 {
        return slots;
    }
    // Independent of the caller's order: ties in the hash are broken by id.
    live.sort_unstable_by_key(|e| (e.hash, e.id));
    let m = size;
    let max_weight = live.iter().map(|e| e.weight).max().unwrap_or(1);
    let equal = live.iter().all(|e| e.weight == max_weight);
    // One record per real server, walked in order: where its permutation is, its stride, its
    // weight credit (u32 throughout: the table is smaller than 2^32).
    let mut walkers: Vec<Walker> = live
        .iter()
        .map(|e| Walker {
            position: (e.hash % u64::from(m)) as u32,
            skip: if m > 1 {
                (splitmix(e.hash) % u64::from(m - 1)) as u32 + 1
            } else {
                1
            },
            weight: e.weight,
            credit: 0,
            id: e.id,
            inverse: 0,
        })
        .collect();
    let mut left = slots.len();
    // Which slots are taken, one bit each: the probes hit this (8 KiB for 65,537 slots, in
    // L1) rather than the table (256 KiB).
    let mut taken = vec![0u64; slots.len().div_ceil(64)];
    // The walker whose turn it is when probing stops.
    let resume = 'probing: loop {
        for (i, w) in walkers.iter_mut().enumerate() {
            if left <= TAIL {
                break 'probing i;
            }
            // A real server takes a turn each time its weight has built up a full credit, so
            // the heaviest one takes one every round and the others in proportion (with equal
            // weights, every one every round).
            if !equal {
                w.credit += w.weight;
                if w.credit < max_weight {
                    continue;
                }
                w.credit -= max_weight;
            }
            // Its next slot in its permutation that nobody owns yet.
            let mut position = w.position;
            loop {
                let slot = position as usize;
                // position < m and skip < m: one subtraction replaces a division.
                position += w.skip;
                if position >= m {
                    position -= m;
                }
                let (word, bit) = (slot / 64, 1u64 << (slot % 64));
                if let Some(bits) = taken.get_mut(word)
                    && *bits & bit == 0
                {
                    *bits |= bit;
                    if let Some(owner) = slots.get_mut(slot) {
                        *owner = w.id;
                    }
                    break;
                }
            }
            w.position = position;
            left -= 1;
        }
    };
    // The last free slots: each turn finds its walker's next one by arithmetic over the free
    // list instead of by probing (M / F probes a turn with F slots left: the last 256 of
    // 65,537 slots took half of all probes).
    let mut free: Vec<u32> = Vec::with_capacity(left);
    for (word, &bits) in (0u32..).zip(&taken) {
        let mut open = !bits;
        while open != 0 {
            let slot = word * 64 + open.trailing_zeros();
            if slot < m {
                free.push(slot);
            }
            open &= open - 1;
        }
    }
    for w in &mut walkers {
        w.inverse = inverse(w.skip, m);
    }
    let count = walkers.len();
    for i in (0..count).cycle().skip(resume) {
        let w = &mut walkers[i];
        if free.is_empty() {
            break;
        }
        if !equal {
            w.credit += w.weight;
            if w.credit < max_weight {
                continue;
            }
            w.credit -= max_weight;
        }
        // Steps from the walker's position to each free slot along its permutation: the
        // nearest is the slot probing would have found.
        let (at, _) = free
            .iter()
            .enumerate()
            .map(|(at, &slot)| {
                let ahead = if slot >= w.position {
                    slot - w.position
                } else {
                    slot + m - w.position
                };
                (at, u64::from(ahead) * u64::from(w.inverse) % u64::from(m))
            })
            .min_by_key(|&(_, steps)| steps)
            .unwrap_or((0, 0));
        let slot = free.swap_remove(at);
        if let Some(owner) = slots.get_mut(slot as usize) {
            *owner = w.id;
        }
        w.position = slot + w.skip;
        if w.position >= m {
            w.position -= m;
        }
    }
    slots
}

/// Free slots left when a table's population stops probing: below this, finding a walker's
/// next free slot over the free list costs less than probing for it.
const TAIL: usize = 256;

/// The inverse of `a` modulo the prime `m` (extended Euclid).
fn inverse(a: u32, m: u32) -> u32 {
    let (mut old_r, mut r) = (i64::from(a), i64::from(m));
    let (mut old_s, mut s) = (1i64, 0i64);
    while r != 0 {
        let q = old_r / r;
        (old_r, r) = (r, old_r - q * r);
        (old_s, s) = (s, old_s - q * s);
    }
    u32::try_from(old_s.rem_euclid(i64::from(m))).unwrap_or(0)
}

/// A real server's walk through its permutation of the slots.
struct Walker {
    position: u32,
    skip: u32,
    weight: u32,
    credit: u32,
    id: u32,
    /// `skip`'s inverse modulo the table size, for the last slots.
    inverse: u32,
}

/// Writes `new` over `current` where they differ; returns how many slots changed. `current`
/// is the table as the kernel holds it (two slots to an 8-byte array element, seen as `u32`s:
/// each slot is one aligned store).
pub fn write_delta(current: &mut [u32], new: &[u32]) -> usize {
    let mut changed = 0;
    for (slot, &id) in current.iter_mut().zip(new) {
        if *slot != id {
            *slot = id;
            changed += 1;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn endpoints(n: u32) -> Vec<Endpoint> {
        (1..=n)
            .map(|id| Endpoint {
                id,
                weight: 1,
                hash: endpoint_hash(IpAddr::from([198, 51, 100, id as u8])),
            })
            .collect()
    }

    fn shares(t: &[u32]) -> HashMap<u32, usize> {
        let mut counts = HashMap::new();
        for &id in t {
            *counts.entry(id).or_default() += 1;
        }
        counts
    }

    #[test]
    fn every_slot_is_owned_and_shares_are_even() {
        let t = table(&endpoints(10), 65_537);
        let counts = shares(&t);
        assert_eq!(counts.len(), 10);
        assert!(!counts.contains_key(&0));
        for (&id, &n) in &counts {
            // Maglev's balance: within a few percent of 1/N.
            assert!((6_200..=6_900).contains(&n), "real {id} owns {n} slots");
        }
    }

    #[test]
    fn weights_set_the_shares() {
        let mut e = endpoints(3);
        e[0].weight = 3;
        e[1].weight = 2;
        e[2].weight = 1;
        let counts = shares(&table(&e, 65_537));
        let total = 65_537.0;
        for (id, want) in [(1u32, 0.5), (2, 1.0 / 3.0), (3, 1.0 / 6.0)] {
            let got = counts[&id] as f64 / total;
            assert!(
                (got - want).abs() < 0.01,
                "real {id}: {got:.3} of the slots, want {want:.3}"
            );
        }
    }

    #[test]
    fn one_of_n_leaving_moves_about_one_nth_of_the_slots() {
        let all = endpoints(10);
        let before = table(&all, 65_537);
        let after = table(&all[..9], 65_537);
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        // The leaving real's tenth, plus Maglev's small disruption of the others.
        let tenth = 65_537 / 10;
        assert!(moved >= tenth, "moved {moved}");
        assert!(moved <= tenth * 13 / 10, "moved {moved}, over 1.3 x 1/N");
        // Slots of the real that stayed kept their owner unless they had to move.
        let kept = before
            .iter()
            .zip(&after)
            .filter(|(a, b)| **a != 10 && a == b)
            .count();
        assert!(kept >= (65_537 - tenth) * 9 / 10);
    }

    #[test]
    fn order_of_the_endpoints_does_not_matter() {
        let mut e = endpoints(7);
        let a = table(&e, 251);
        e.reverse();
        assert_eq!(a, table(&e, 251));
    }

    #[test]
    fn no_live_endpoint_gives_an_empty_table() {
        let mut e = endpoints(2);
        e.iter_mut().for_each(|e| e.weight = 0);
        assert!(table(&e, 13).iter().all(|&id| id == 0));
        assert!(table(&[], 13).iter().all(|&id| id == 0));
    }

    #[test]
    fn delta_writes_only_changed_slots() {
        let mut current = vec![1u32, 2, 3, 4];
        assert_eq!(write_delta(&mut current, &[1, 5, 3, 6]), 2);
        assert_eq!(current, [1, 5, 3, 6]);
    }

    #[test]
    fn primes() {
        assert!(is_prime(65_537) && is_prime(13) && is_prime(2));
        assert!(!is_prime(65_536) && !is_prime(1) && !is_prime(0) && !is_prime(91));
    }

    /// Maglev as written: every turn probes its walker's permutation to the next free slot.
    fn reference(endpoints: &[Endpoint], size: u32) -> Vec<u32> {
        let mut live: Vec<Endpoint> = endpoints.iter().copied().filter(|e| e.weight > 0).collect();
        live.sort_unstable_by_key(|e| (e.hash, e.id));
        let mut slots = vec![0u32; size as usize];
        if live.is_empty() {
            return slots;
        }
        let m = u64::from(size);
        let max = live.iter().map(|e| e.weight).max().unwrap_or(1);
        let mut next: Vec<u64> = vec![0; live.len()];
        let mut credit: Vec<u32> = vec![0; live.len()];
        let mut left = slots.len();
        loop {
            for (i, e) in live.iter().enumerate() {
                credit[i] += e.weight;
                if credit[i] < max {
                    continue;
                }
                credit[i] -= max;
                let offset = e.hash % m;
                let skip = if m > 1 {
                    splitmix(e.hash) % (m - 1) + 1
                } else {
                    1
                };
                loop {
                    let slot = ((offset + next[i] * skip) % m) as usize;
                    next[i] += 1;
                    if slots[slot] == 0 {
                        slots[slot] = e.id;
                        break;
                    }
                }
                left -= 1;
                if left == 0 {
                    return slots;
                }
            }
        }
    }

    #[test]
    fn the_tail_by_arithmetic_fills_as_probing_does() {
        for (n, size, weighted) in [
            (1, 13, false),
            (3, 13, true),
            (7, 61, false),
            (10, 251, true),
            (100, 65_537, false),
            (37, 65_537, true),
            (5, 1_009, true),
        ] {
            let mut e = endpoints(n);
            if weighted {
                for (i, e) in e.iter_mut().enumerate() {
                    e.weight = 1 + (i as u32 * 7) % 5;
                }
            }
            assert_eq!(
                table(&e, size),
                reference(&e, size),
                "{n} real servers, {size} slots"
            );
        }
    }

    #[test]
    fn inverses_modulo_a_prime() {
        for a in [1u32, 2, 3, 1000, 65_536] {
            assert_eq!(u64::from(a) * u64::from(inverse(a, 65_537)) % 65_537, 1);
        }
    }
}
