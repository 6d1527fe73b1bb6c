//! keepalived's sync groups: instances that change state together, pure. Members report their
//! transitions; the group answers with the commands that bring the other members along.
//!
//! - A member becoming MASTER makes every other member MASTER at once.
//! - A member becoming BACKUP while the group is MASTER (it was preempted) makes every other
//!   member BACKUP.
//! - A member's own FAULT puts the whole group in FAULT; the group leaves FAULT (as BACKUP)
//!   when no member has a fault of its own left.

use std::collections::HashSet;

use crate::model::SyncGroup;

/// A member's (or the group's) state as the group sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// MASTER.
    Active,
    /// BACKUP.
    Backup,
    /// FAULT.
    Fault,
}

/// What the group asks of one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Become MASTER now.
    ForceActive(String),
    /// Become BACKUP now.
    ForceBackup(String),
    /// Enter (`true`) or leave the group's FAULT.
    GroupFault(String, bool),
}

/// What one report leads to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Commands for other members.
    pub commands: Vec<Command>,
    /// The group's new state, when it changed: (group name, state) for its notify scripts.
    pub transition: Option<(String, MemberState)>,
}

#[derive(Debug)]
struct Group {
    name: String,
    members: Vec<String>,
    state: Option<MemberState>,
    own_faults: HashSet<String>,
}

/// Every sync group.
#[derive(Debug)]
pub struct Groups {
    groups: Vec<Group>,
}

impl Groups {
    /// The groups of the configuration.
    pub fn new(groups: &[SyncGroup]) -> Self {
        Self {
            groups: groups
                .iter()
                .map(|g| Group {
                    name: g.name.clone(),
                    members: g.members.clone(),
                    state: None,
                    own_faults: HashSet::new(),
                })
                .collect(),
        }
    }

    /// Whether `member` is in a group.
    pub fn contains(&self, member: &str) -> bool {
        self.groups
            .iter()
            .any(|g| g.members.iter().any(|m| m == member))
    }

    /// `member` entered `state`; `own` is false when the group itself put it there (a forced
    /// FAULT).
    pub fn report(&mut self, member: &str, state: MemberState, own: bool) -> Outcome {
        let Some(group) = self
            .groups
            .iter_mut()
            .find(|g| g.members.iter().any(|m| m == member))
        else {
            return Outcome::default();
        };
        let others = |f: fn(String) -> Command| -> Vec<Command> {
            group
                .members
                .iter()
                .filter(|m| *m != member)
                .map(|m| f(m.clone()))
                .collect()
        };
        let before = group.state;
        let mut outcome = Outcome::default();
        match state {
            MemberState::Fault if own => {
                group.own_faults.insert(member.to_owned());
                if group.state != Some(MemberState::Fault) {
                    outcome.commands = others(|m| Command::GroupFault(m, true));
                    group.state = Some(MemberState::Fault);
                }
            }
            MemberState::Fault => {}
            MemberState::Backup | MemberState::Active => {
                group.own_faults.remove(member);
                if group.state == Some(MemberState::Fault) {
                    if group.own_faults.is_empty() {
                        outcome.commands = others(|m| Command::GroupFault(m, false));
                        group.state = Some(MemberState::Backup);
                    }
                } else if state == MemberState::Active && group.state != Some(MemberState::Active) {
                    outcome.commands = others(Command::ForceActive);
                    group.state = Some(MemberState::Active);
                } else if state == MemberState::Backup && group.state != Some(MemberState::Backup) {
                    if group.state == Some(MemberState::Active) {
                        outcome.commands = others(Command::ForceBackup);
                    }
                    group.state = Some(MemberState::Backup);
                }
            }
        }
        if group.state != before {
            outcome.transition = group.state.map(|s| (group.name.clone(), s));
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Notify;

    fn groups() -> Groups {
        Groups::new(&[SyncGroup {
            name: "G".to_owned(),
            members: vec!["A".to_owned(), "B".to_owned(), "C".to_owned()],
            notify: Notify::default(),
        }])
    }

    #[test]
    fn members_move_together_and_faults_hold_the_group_until_all_clear() {
        use Command::*;
        use MemberState::*;
        let mut g = groups();
        let s = |v: &str| v.to_owned();
        assert!(g.contains("B") && !g.contains("Z"));
        assert_eq!(
            g.report("Z", Active, true),
            Outcome::default(),
            "not in a group"
        );
        // Startup: everyone backup.
        let o = g.report("A", Backup, true);
        assert!(o.commands.is_empty());
        assert_eq!(o.transition, Some((s("G"), Backup)));
        assert_eq!(g.report("B", Backup, true), Outcome::default(), "no change");
        // A wins: B and C follow.
        let o = g.report("A", Active, true);
        assert_eq!(o.commands, [ForceActive(s("B")), ForceActive(s("C"))]);
        assert_eq!(o.transition, Some((s("G"), Active)));
        assert_eq!(g.report("B", Active, true).commands, []);
        // B preempted: A and C follow.
        assert_eq!(
            g.report("B", Backup, true).commands,
            [ForceBackup(s("A")), ForceBackup(s("C"))]
        );
        // C's own fault: the group is FAULT; A's too; forced faults change nothing.
        assert_eq!(
            g.report("C", Fault, true).commands,
            [GroupFault(s("A"), true), GroupFault(s("B"), true)]
        );
        assert_eq!(g.report("A", Fault, false).commands, []);
        assert_eq!(g.report("A", Fault, true).commands, [], "already FAULT");
        // C recovers, A still faulty: the group stays FAULT; A recovers: it leaves.
        assert_eq!(g.report("C", Backup, true).commands, []);
        let o = g.report("A", Backup, true);
        assert_eq!(
            o.commands,
            [GroupFault(s("B"), false), GroupFault(s("C"), false)]
        );
        assert_eq!(o.transition, Some((s("G"), Backup)));
    }
}
