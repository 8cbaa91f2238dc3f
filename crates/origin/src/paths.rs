//! Per-path state: how often a path was hit, how many faults it has had and
//! which content version it serves.
//!
//! Only routes that need it touch this table (flaky and retry-after counters,
//! `/file/` when faults are on, content routes after a `bump`), so the
//! benchmark's fault-free hot path never locks it. It is keyed by a 64-bit
//! hash of the path rather than the path itself, which keeps an entry at a
//! few dozen bytes when a faulty benchmark run touches millions of paths, and
//! split into shards so concurrent requests to different paths rarely meet
//! on the same lock.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Power of two, so a shard is picked with a mask.
const SHARDS: usize = 16;

/// The state of one path.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PathState {
    /// Requests counted so far by routes that count (see the module docs).
    pub(crate) hits: u64,
    /// Faults injected so far.
    pub(crate) faults: u32,
    /// Content version: 0, then +1 per `bump`.
    pub(crate) version: u32,
}

/// Sharded map from path key ([`crate::content::path_key`]) to [`PathState`].
#[derive(Debug)]
pub(crate) struct PathTable {
    shards: Box<[Mutex<HashMap<u64, PathState>>]>,
}

impl Default for PathTable {
    fn default() -> Self {
        PathTable {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl PathTable {
    /// Run `f` on the state of `key`, creating it if needed, under its shard lock.
    pub(crate) fn with<R>(&self, key: u64, f: impl FnOnce(&mut PathState) -> R) -> R {
        // Keys are already well-mixed hashes, so the low bits pick shards evenly.
        let shard = &self.shards[(key as usize) & (SHARDS - 1)];
        // A panic while holding the lock cannot leave plain counters
        // half-updated in a way that matters to a test server.
        let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
        f(map.entry(key).or_default())
    }

    /// The state of `key` without creating an entry.
    pub(crate) fn get(&self, key: u64) -> PathState {
        let shard = &self.shards[(key as usize) & (SHARDS - 1)];
        let map = shard.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&key).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_per_key() {
        let table = PathTable::default();
        assert_eq!(
            table.with(1, |s| {
                s.hits += 1;
                s.hits
            }),
            1
        );
        assert_eq!(
            table.with(1, |s| {
                s.hits += 1;
                s.hits
            }),
            2
        );
        assert_eq!(table.get(17).hits, 0);
        table.with(17, |s| s.version += 1);
        assert_eq!(table.get(17).version, 1);
        assert_eq!(table.get(1).version, 0);
    }
}
