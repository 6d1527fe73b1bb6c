//! Probe numbers: one probe per distinct checker of a configuration (equal in everything but
//! `alpha`), and where each probe's verdicts go. Pure.
//!
//! A reload numbers the new configuration's probes from the old numbering. An unchanged
//! virtual server (the same allocation: see [`crate::config::ParseCache`]) takes its probes by
//! number, without a checker compared or hashed; a changed one's checkers are looked up by key.
//! A checker's key is hashed once, when it first appears, and the hash moves with its probe:
//! renumbering 30,000 probes is array work, not 30,000 deep hashes.

use std::{
    collections::HashMap,
    hash::{BuildHasher as _, Hash as _, Hasher as _},
    sync::Arc,
};

use hashbrown::HashTable;

use crate::model::{Checker, VirtualServer};

/// Where a probe's verdict goes: (virtual server, real server, checker) indices.
pub(super) type Subscriber = (usize, usize, usize);

/// A configuration's probes, numbered.
#[derive(Debug, Default)]
pub(super) struct Numbering {
    servers: Vec<Arc<VirtualServer>>,
    /// Per probe: its checker, `alpha` only if every checker it serves has it.
    checkers: Vec<Arc<Checker>>,
    /// Per probe: its key's hash ([`key_hash`]).
    hashes: Vec<u64>,
    /// Probe numbers by key.
    index: HashTable<usize>,
    /// Per virtual server: the probe of each of its checkers, real server by real server.
    of: Vec<Box<[usize]>>,
}

/// A configuration's probes, numbered from the last numbering.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) numbering: Numbering,
    /// Per probe: where its verdicts go.
    pub(super) subscribers: Vec<Vec<Subscriber>>,
    /// Per probe: every virtual server it serves has `ha_suspend`.
    pub(super) suspendable: Vec<bool>,
    /// Per probe: the probe of the last numbering it continues.
    pub(super) continues: Vec<Option<usize>>,
}

/// A checker's key (everything but `alpha`), hashed the same way in every numbering.
fn key_hash(c: &Checker) -> u64 {
    let mut h =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    c.probe.hash(&mut h);
    c.timing.hash(&mut h);
    c.rise.hash(&mut h);
    c.log_all_failures.hash(&mut h);
    h.finish()
}

impl Numbering {
    /// The probes' checkers, by number.
    pub(super) fn checkers(&self) -> &[Arc<Checker>] {
        &self.checkers
    }

    /// The number of the probe with `checker`'s key.
    pub(super) fn find(&self, checker: &Checker) -> Option<usize> {
        self.find_hashed(key_hash(checker), checker)
    }

    fn find_hashed(&self, hash: u64, checker: &Checker) -> Option<usize> {
        self.index
            .find(hash, |&id| self.checkers[id].same_probe(checker))
            .copied()
    }

    /// Takes `servers` in place of this numbering's configuration when it has exactly the same
    /// probes under the same numbers (see [`super::same_probes`]); whether it did.
    pub(super) fn keep(&mut self, servers: &[Arc<VirtualServer>]) -> bool {
        let same = super::same_probes(&self.servers, servers);
        if same {
            self.servers = servers.to_vec();
        }
        same
    }

    /// The probes of `servers`, continuing this numbering's where the key is the same.
    pub(super) fn next(&self, servers: &[Arc<VirtualServer>]) -> Plan {
        let old_at: HashMap<*const VirtualServer, usize> = self
            .servers
            .iter()
            .enumerate()
            .map(|(j, vs)| (Arc::as_ptr(vs), j))
            .collect();
        let mut b = Builder {
            old: self,
            renumber: vec![None; self.checkers.len()],
            checkers: Vec::new(),
            hashes: Vec::new(),
            index: HashTable::new(),
            alpha: Vec::new(),
            subscribers: Vec::new(),
            continues: Vec::new(),
        };
        let mut of = Vec::with_capacity(servers.len());
        for (v, vs) in servers.iter().enumerate() {
            let unchanged = old_at.get(&Arc::as_ptr(vs)).map(|&j| &self.of[j]);
            let mut ids = Vec::with_capacity(unchanged.map_or(0, |o| o.len()));
            for (r, rs) in vs.real_servers.iter().enumerate() {
                for (c, checker) in rs.checkers.iter().enumerate() {
                    let id = match unchanged.and_then(|old| old.get(ids.len())) {
                        Some(&old) => b.continue_old(old),
                        None => b.checker(checker),
                    };
                    b.alpha[id] &= checker.alpha;
                    b.subscribers[id].push((v, r, c));
                    ids.push(id);
                }
            }
            of.push(ids.into_boxed_slice());
        }
        let Builder {
            mut checkers,
            hashes,
            index,
            alpha,
            mut subscribers,
            continues,
            ..
        } = b;
        // A probe starts down only if every checker it serves is alpha.
        for (c, alpha) in checkers.iter_mut().zip(alpha) {
            if c.alpha != alpha {
                *c = Arc::new(Checker {
                    alpha,
                    ..Checker::clone(c)
                });
            }
        }
        subscribers.shrink_to_fit();
        let suspendable = subscribers
            .iter()
            .map(|subs| subs.iter().all(|(v, ..)| servers[*v].ha_suspend))
            .collect();
        Plan {
            numbering: Numbering {
                servers: servers.to_vec(),
                checkers,
                hashes,
                index,
                of,
            },
            subscribers,
            suspendable,
            continues,
        }
    }
}

/// A numbering being built from the last one.
struct Builder<'a> {
    old: &'a Numbering,
    /// Per old probe: its new number, once taken.
    renumber: Vec<Option<usize>>,
    checkers: Vec<Arc<Checker>>,
    hashes: Vec<u64>,
    index: HashTable<usize>,
    alpha: Vec<bool>,
    subscribers: Vec<Vec<Subscriber>>,
    continues: Vec<Option<usize>>,
}

impl Builder<'_> {
    /// The new number of old probe `old`.
    fn continue_old(&mut self, old: usize) -> usize {
        if let Some(id) = self.renumber[old] {
            return id;
        }
        let id = self.push(
            self.old.checkers[old].clone(),
            self.old.hashes[old],
            Some(old),
        );
        self.renumber[old] = Some(id);
        id
    }

    /// The number of a new or changed virtual server's checker: a probe already numbered,
    /// an old one continued, or a new one.
    fn checker(&mut self, checker: &Checker) -> usize {
        let hash = key_hash(checker);
        let checkers = &self.checkers;
        if let Some(&id) = self
            .index
            .find(hash, |&id| checkers[id].same_probe(checker))
        {
            return id;
        }
        match self.old.find_hashed(hash, checker) {
            Some(old) => self.continue_old(old),
            None => self.push(Arc::new(checker.clone()), hash, None),
        }
    }

    fn push(&mut self, checker: Arc<Checker>, hash: u64, continues: Option<usize>) -> usize {
        let id = self.checkers.len();
        self.checkers.push(checker);
        self.hashes.push(hash);
        let hashes = &self.hashes;
        self.index.insert_unique(hash, id, |&i| hashes[i]);
        self.alpha.push(true);
        self.subscribers.push(Vec::new());
        self.continues.push(continues);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(text: &str) -> Vec<Arc<VirtualServer>> {
        crate::config::test_model(text).virtual_servers
    }

    /// Virtual servers on ports `vs`, each with real servers on `reals` (TCP_CHECK each; the
    /// checker of real server port 1 is alpha in virtual server 80 only).
    fn conf(vs: &[u16], reals: &[u16]) -> String {
        let mut text = String::new();
        for v in vs {
            text.push_str(&format!("virtual_server 192.0.2.1 {v} {{\n"));
            for r in reals {
                let alpha = if *v == 80 && *r == 1 { "alpha" } else { "" };
                text.push_str(&format!(
                    "  real_server 198.51.100.1 {r} {{\n    TCP_CHECK {{\n      {alpha}\n    }}\n  }}\n"
                ));
            }
            text.push_str("}\n");
        }
        text
    }

    /// Every probe once, its subscribers all of that key.
    fn consistent(plan: &Plan, servers: &[Arc<VirtualServer>]) {
        let n = plan.numbering.checkers.len();
        assert_eq!(plan.subscribers.len(), n);
        for (id, subs) in plan.subscribers.iter().enumerate() {
            assert!(!subs.is_empty());
            for &(v, r, c) in subs {
                let checker = &servers[v].real_servers[r].checkers[c];
                assert!(plan.numbering.checkers[id].same_probe(checker));
                assert_eq!(plan.numbering.find(checker), Some(id));
            }
            let all_alpha = subs
                .iter()
                .all(|&(v, r, c)| servers[v].real_servers[r].checkers[c].alpha);
            assert_eq!(plan.numbering.checkers[id].alpha, all_alpha);
        }
    }

    #[test]
    fn shared_checkers_are_one_probe_and_reloads_continue_them() {
        // Two virtual servers share their real servers' checkers: 3 probes for 6 checkers.
        let first = servers(&conf(&[80, 81], &[1, 2, 3]));
        let plan = Numbering::default().next(&first);
        consistent(&plan, &first);
        assert_eq!(plan.numbering.checkers.len(), 3);
        assert_eq!(plan.continues, [None, None, None]);
        // Port 1's probe is alpha only through 80's checker, which other subscribers are not.
        assert!(!plan.numbering.checkers[0].alpha);

        // A virtual server leaves, a real server is added: the three probes continue (port 1's
        // now alpha, all its checkers being so), a fourth starts.
        let second = servers(&conf(&[80], &[1, 2, 3, 4]));
        let next = plan.numbering.next(&second);
        consistent(&next, &second);
        assert_eq!(next.continues, [Some(0), Some(1), Some(2), None]);
        assert!(next.numbering.checkers[0].alpha);

        // The unchanged virtual server taken by number, a changed one by key.
        let mut third = second;
        third.extend(servers(&conf(&[82], &[4, 5])));
        let last = next.numbering.next(&third);
        consistent(&last, &third);
        assert_eq!(last.continues, [Some(0), Some(1), Some(2), Some(3), None]);
    }

    #[test]
    fn keep_takes_only_the_same_probes() {
        let first = servers(&conf(&[80], &[1, 2]));
        let mut numbering = Numbering::default().next(&first).numbering;
        let again = servers(&conf(&[80], &[1, 2]));
        assert!(numbering.keep(&again));
        assert!(Arc::ptr_eq(&numbering.servers[0], &again[0]));
        assert!(!numbering.keep(&servers(&conf(&[80], &[1]))));
    }
}
