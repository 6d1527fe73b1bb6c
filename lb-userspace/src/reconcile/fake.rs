//! A backend that keeps the table in memory and records every operation: the whole health
//! and reconcile loop runs against it without a kernel (tests, `--dataplane none`).

use std::collections::{BTreeSet, VecDeque};

use super::{Backend, BackendError, Op, ServiceState, Table};
use crate::model::ServiceKey;

/// Operations the log keeps (it runs for the daemon's life in check-only mode).
pub const LOG_LEN: usize = 1024;

/// An in-memory data plane.
#[derive(Debug, Default)]
pub struct FakeBackend {
    table: Table,
    log: VecDeque<Op>,
    observes: u64,
    failing: BTreeSet<ServiceKey>,
}

impl FakeBackend {
    /// The table as programmed.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The last [`LOG_LEN`] operations applied, oldest first.
    pub fn log(&self) -> impl Iterator<Item = &Op> {
        self.log.iter()
    }

    /// How many times the table was listed.
    pub fn observes(&self) -> u64 {
        self.observes
    }

    /// Makes operations on `key` fail, as a kernel refusing them would.
    pub fn fail_service(&mut self, key: ServiceKey) {
        self.failing.insert(key);
    }

    /// Stops failing.
    pub fn heal(&mut self) {
        self.failing.clear();
    }

    /// Empties the table behind the reconciler's back (`ipvsadm -C`).
    pub fn flush(&mut self) {
        self.table.clear();
    }

    fn missing(op: &Op, what: &str) -> BackendError {
        BackendError {
            op: format!("{op:?}"),
            message: format!("{what} does not exist"),
        }
    }
}

impl Backend for FakeBackend {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn observe(&mut self) -> Result<Table, BackendError> {
        self.observes += 1;
        Ok(self.table.clone())
    }

    async fn apply(&mut self, op: &Op) -> Result<(), BackendError> {
        let key = match op {
            Op::AddService(k, _)
            | Op::EditService(k, _)
            | Op::AddDest(k, ..)
            | Op::EditDest(k, ..)
            | Op::DelDest(k, _)
            | Op::DelService(k) => *k,
        };
        if self.failing.contains(&key) {
            return Err(BackendError {
                op: format!("{op:?}"),
                message: "refused (test)".to_owned(),
            });
        }
        match op {
            Op::AddService(k, s) => {
                if self.table.contains_key(k) {
                    return Err(BackendError {
                        op: format!("{op:?}"),
                        message: "exists".to_owned(),
                    });
                }
                self.table.insert(
                    *k,
                    std::sync::Arc::new(ServiceState {
                        settings: s.0.clone(),
                        dests: Default::default(),
                    }),
                );
            }
            Op::EditService(k, s) => {
                std::sync::Arc::make_mut(
                    self.table
                        .get_mut(k)
                        .ok_or_else(|| Self::missing(op, "service"))?,
                )
                .settings = s.0.clone();
            }
            Op::AddDest(k, addr, d) | Op::EditDest(k, addr, d) => {
                let svc = std::sync::Arc::make_mut(
                    self.table
                        .get_mut(k)
                        .ok_or_else(|| Self::missing(op, "service"))?,
                );
                let exists = svc.dests.contains_key(addr);
                if exists == matches!(op, Op::AddDest(..)) {
                    return Err(BackendError {
                        op: format!("{op:?}"),
                        message: if exists {
                            "exists"
                        } else {
                            "no such destination"
                        }
                        .to_owned(),
                    });
                }
                svc.dests.insert(*addr, d.0.clone());
            }
            Op::DelDest(k, addr) => {
                self.table
                    .get_mut(k)
                    .and_then(|s| std::sync::Arc::make_mut(s).dests.remove(addr))
                    .ok_or_else(|| Self::missing(op, "destination"))?;
            }
            Op::DelService(k) => {
                self.table
                    .remove(k)
                    .ok_or_else(|| Self::missing(op, "service"))?;
            }
        }
        if self.log.len() == LOG_LEN {
            self.log.pop_front();
        }
        self.log.push_back(op.clone());
        Ok(())
    }
}
