//! Caps on heavy work a caller may start (issue 15.7: a read key queued 31 background
//! backtests in a row). A replay over every contact costs a core for seconds to minutes, so
//! each caller gets a few at once and the process a few more; beyond, the answer is
//! "busy, try again" rather than a queue that grows without bound. Per process: several
//! processes on one PostgreSQL each keep their own count.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::AppError;

/// Seconds a caller told "busy" waits before asking again.
const RETRY_AFTER_SECONDS: u64 = 30;

/// Why a replay cannot start now: too many are running (429, try again).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuotaError {
    #[error("{0} backtests of yours are running (at most {REPLAYS_PER_CALLER} at once); wait for one to finish")]
    Caller(usize),
    #[error("{0} backtests are running (at most {REPLAYS_IN_ALL} at once); try again shortly")]
    Everyone(usize),
    /// A thread panicked while holding the count.
    #[error("the quota table is unavailable")]
    Unavailable,
}

impl From<QuotaError> for AppError {
    fn from(err: QuotaError) -> Self {
        AppError::Busy { message: err.to_string(), retry_after_seconds: RETRY_AFTER_SECONDS }
    }
}

/// Replays (backtests, synchronous or in the background) one caller may run at once.
pub const REPLAYS_PER_CALLER: usize = 2;
/// Replays the process runs at once, whoever asked.
pub const REPLAYS_IN_ALL: usize = 4;

/// Who runs what, counted.
#[derive(Default)]
pub struct Quotas {
    running: Mutex<HashMap<String, usize>>,
}

/// A running replay; its slot is given back when it is dropped.
pub struct Slot {
    quotas: Arc<Quotas>,
    caller: String,
}

impl Quotas {
    /// Takes a replay slot for `caller` (a key id, a user id), or answers busy.
    pub fn replay(self: &Arc<Self>, caller: &str) -> Result<Slot, QuotaError> {
        let mut running = self.running.lock().map_err(|_| QuotaError::Unavailable)?;
        let mine = running.get(caller).copied().unwrap_or(0);
        let all: usize = running.values().sum();
        if mine >= REPLAYS_PER_CALLER {
            return Err(QuotaError::Caller(mine));
        }
        if all >= REPLAYS_IN_ALL {
            return Err(QuotaError::Everyone(all));
        }
        *running.entry(caller.to_string()).or_default() += 1;
        Ok(Slot { quotas: self.clone(), caller: caller.to_string() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut running) = self.quotas.running.lock()
            && let Some(count) = running.get_mut(&self.caller)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                running.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_gets_a_few_and_everyone_a_few_more() {
        let quotas = Arc::new(Quotas::default());
        let a1 = quotas.replay("a").unwrap();
        let _a2 = quotas.replay("a").unwrap();
        assert!(matches!(quotas.replay("a"), Err(QuotaError::Caller(2))));
        let _b1 = quotas.replay("b").unwrap();
        let _b2 = quotas.replay("b").unwrap();
        assert!(matches!(quotas.replay("c"), Err(QuotaError::Everyone(4))), "four in all");
        drop(a1);
        let _c1 = quotas.replay("c").unwrap();
    }
}
