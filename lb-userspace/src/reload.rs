//! What a reload changes: the difference between the running model and a new one, in the
//! terms an operator thinks in (VRRP instances, virtual servers, real servers), and the
//! settings that only a restart applies. Pure: `lbd check-config --diff` prints it, and the
//! daemon logs it and answers `lbctl reload` with it.

use serde::{Deserialize, Serialize};

use std::{collections::HashMap, sync::Arc};

use crate::model::{Model, VirtualServer};

/// What a reload would change (or changed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReloadPlan {
    /// VRRP instances by name.
    pub vrrp_instances: Changes,
    /// Virtual servers by keepalived's name.
    pub virtual_servers: Changes,
    /// Real servers, `VIRTUAL_SERVER / REAL_SERVER`, of virtual servers in both.
    pub real_servers: Changes,
    /// Settings that differ but take effect only when lbd restarts; a reload keeps running
    /// the old ones and says so.
    pub needs_restart: Vec<String>,
}

/// Names added, removed and changed; what is in both and equal is not listed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Changes {
    /// Only in the new configuration.
    pub added: Vec<String>,
    /// Only in the running one.
    pub removed: Vec<String>,
    /// In both, different.
    pub changed: Vec<String>,
}

impl Changes {
    /// Compares two lists of named items: linear, as a reload of 30,000 real servers must
    /// stay cheap.
    fn of<T: PartialEq>(old: &[T], new: &[T], name: impl Fn(&T) -> String) -> Self {
        let mut changes = Self::default();
        let mut old_by_name: HashMap<String, &T> = old.iter().map(|o| (name(o), o)).collect();
        for n in new {
            let key = name(n);
            match old_by_name.remove(&key) {
                None => changes.added.push(key),
                Some(o) if o != n => changes.changed.push(key),
                Some(_) => {}
            }
        }
        // What is left was not in the new list; in the running configuration's order.
        changes.removed = old
            .iter()
            .map(&name)
            .filter(|key| old_by_name.contains_key(key))
            .collect();
        changes
    }

    /// Nothing added, removed or changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl ReloadPlan {
    /// The difference from `old` (running) to `new`.
    pub fn between(old: &Model, new: &Model) -> Self {
        let mut real_servers = Changes::default();
        let old_servers: HashMap<&str, &Arc<VirtualServer>> = old
            .virtual_servers
            .iter()
            .map(|v| (v.name.as_str(), v))
            .collect();
        for n in &new.virtual_servers {
            if let Some(o) = old_servers.get(n.name.as_str()).filter(|o| **o != n) {
                let part = Changes::of(&o.real_servers, &n.real_servers, |r| {
                    format!("{} / {}", n.name, r.addr)
                });
                real_servers.added.extend(part.added);
                real_servers.removed.extend(part.removed);
                real_servers.changed.extend(part.changed);
            }
        }
        let mut needs_restart = Vec::new();
        let mut restart = |differs: bool, what: &str| {
            if differs {
                needs_restart.push(what.to_owned());
            }
        };
        restart(
            old.dataplane != new.dataplane,
            "the data plane (mode, XDP settings)",
        );
        restart(
            old.ipvs != new.ipvs,
            "IPVS globals (sync daemon, timeouts, flush and release)",
        );
        restart(
            old.lvs_notify_fifo != new.lvs_notify_fifo,
            "lvs_notify_fifo",
        );
        restart(
            old.vrrp != new.vrrp,
            "VRRP globals (vrrp_script, vrrp_track_file, sync groups, notify FIFO, script_user)",
        );
        Self {
            vrrp_instances: Changes::of(&old.vrrp_instances, &new.vrrp_instances, |i| {
                i.name.clone()
            }),
            virtual_servers: Changes::of(&old.virtual_servers, &new.virtual_servers, |v| {
                v.name.clone()
            }),
            real_servers,
            needs_restart,
        }
    }

    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.vrrp_instances.is_empty()
            && self.virtual_servers.is_empty()
            && self.real_servers.is_empty()
            && self.needs_restart.is_empty()
    }

    /// The plan as lines a person reads: `+ added`, `- removed`, `~ changed`, `! restart`.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (what, changes) in [
            ("VRRP instance", &self.vrrp_instances),
            ("virtual server", &self.virtual_servers),
            ("real server", &self.real_servers),
        ] {
            lines.extend(changes.added.iter().map(|n| format!("+ {what} {n}")));
            lines.extend(changes.removed.iter().map(|n| format!("- {what} {n}")));
            lines.extend(changes.changed.iter().map(|n| format!("~ {what} {n}")));
        }
        lines.extend(
            self.needs_restart
                .iter()
                .map(|n| format!("! {n} changed: applied only when lbd restarts")),
        );
        lines
    }
}

/// The new model as a reload runs it: what only a restart applies stays as it runs.
pub fn effective(old: &Model, mut new: Model) -> Model {
    new.dataplane = old.dataplane.clone();
    new.ipvs = old.ipvs.clone();
    new.lvs_notify_fifo = old.lvs_notify_fifo.clone();
    new.vrrp = old.vrrp.clone();
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_model as model;

    const BASE: &str = r#"
vrrp_instance A {
    interface eth0
    virtual_router_id 1
    priority 100
    virtual_ipaddress { 192.0.2.10/24 }
}
vrrp_instance B {
    interface eth0
    virtual_router_id 2
    priority 100
    virtual_ipaddress { 192.0.2.11/24 }
}
virtual_server 192.0.2.10 80 {
    lb_kind DR
    protocol TCP
    real_server 198.51.100.1 80 { TCP_CHECK { } }
    real_server 198.51.100.2 80 { TCP_CHECK { } }
}
"#;

    #[test]
    fn the_same_file_changes_nothing() {
        let plan = ReloadPlan::between(&model(BASE), &model(BASE));
        assert!(plan.is_empty(), "{plan:?}");
        assert!(plan.lines().is_empty());
    }

    #[test]
    fn one_real_server_changed_is_all_it_lists() {
        let new = BASE.replace(
            "real_server 198.51.100.2 80 { TCP_CHECK { } }",
            "real_server 198.51.100.2 80 {\n weight 3\n TCP_CHECK { }\n}",
        );
        let plan = ReloadPlan::between(&model(BASE), &model(&new));
        assert!(plan.vrrp_instances.is_empty());
        assert_eq!(plan.virtual_servers.changed, ["[192.0.2.10]:tcp:80"]);
        assert_eq!(
            plan.real_servers.changed,
            ["[192.0.2.10]:tcp:80 / 198.51.100.2:80"]
        );
        assert!(plan.real_servers.added.is_empty() && plan.real_servers.removed.is_empty());
        assert!(plan.needs_restart.is_empty());
    }

    #[test]
    fn a_vip_moving_between_instances_changes_both() {
        let new = BASE
            .replace("{ 192.0.2.10/24 }", "{\n}")
            .replace("{ 192.0.2.11/24 }", "{\n 192.0.2.11/24\n 192.0.2.10/24\n}");
        let plan = ReloadPlan::between(&model(BASE), &model(&new));
        assert_eq!(plan.vrrp_instances.changed, ["A", "B"]);
        assert!(plan.vrrp_instances.added.is_empty());
        assert!(plan.lines().contains(&"~ VRRP instance A".to_owned()));
    }

    #[test]
    fn added_and_removed_instances_and_restart_only_settings() {
        let new = BASE.replace("vrrp_instance B", "vrrp_instance C")
            + "global_defs { lvs_notify_fifo /run/lvs.fifo }\n";
        let plan = ReloadPlan::between(&model(BASE), &model(&new));
        assert_eq!(plan.vrrp_instances.added, ["C"]);
        assert_eq!(plan.vrrp_instances.removed, ["B"]);
        assert_eq!(plan.needs_restart, ["lvs_notify_fifo"]);
        let effective = effective(&model(BASE), model(&new));
        assert_eq!(effective.lvs_notify_fifo, None);
    }
}
