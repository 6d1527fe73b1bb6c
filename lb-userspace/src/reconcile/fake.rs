//! A backend that keeps the table in memory and records every operation: the whole health
//! and reconcile loop runs against it without a kernel (tests, `--dataplane none`).

use std::collections::{BTreeSet, VecDeque};

use super::{Backend, BackendError, Op, Table};
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
        if self.failing.contains(&op.service()) {
            return Err(BackendError {
                op: format!("{op:?}"),
                message: "refused (test)".to_owned(),
            });
        }
        op.apply_to(&mut self.table)?;
        if self.log.len() == LOG_LEN {
            self.log.pop_front();
        }
        self.log.push_back(op.clone());
        Ok(())
    }
}
