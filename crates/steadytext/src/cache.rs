//! The result cache: deterministic results keyed by [`steadytext_core::cache_key::cache_key`],
//! in an in-memory LRU in front of a persistent redb file, so a restarted daemon keeps them.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use lru::LruCache;
use redb::{Database, ReadableDatabase, TableDefinition};

use crate::error::DaemonError;

const RESULTS: TableDefinition<&str, &str> = TableDefinition::new("results");

/// Hit/miss counters and sizes of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from memory or disk.
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Entries in the memory tier.
    pub memory_entries: usize,
    /// Whether the disk tier is open.
    pub persistent: bool,
}

/// Two-tier cache of result texts.
pub struct ResultCache {
    memory: Mutex<LruCache<String, String>>,
    disk: Option<Database>,
    path: Option<PathBuf>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ResultCache {
    /// A cache with `capacity` entries in memory and, when `path` is given, a redb file there
    /// (created if missing).
    pub fn open(capacity: NonZeroUsize, path: Option<&Path>) -> Result<Self, DaemonError> {
        let disk = match path {
            None => None,
            Some(p) => {
                let err = |reason: String| DaemonError::Cache { path: p.to_owned(), reason };
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| err(e.to_string()))?;
                }
                let db = Database::create(p).map_err(|e| err(e.to_string()))?;
                let tx = db.begin_write().map_err(|e| err(e.to_string()))?;
                tx.open_table(RESULTS).map_err(|e| err(e.to_string()))?;
                tx.commit().map_err(|e| err(e.to_string()))?;
                Some(db)
            }
        };
        Ok(Self {
            memory: Mutex::new(LruCache::new(capacity)),
            disk,
            path: path.map(Path::to_owned),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// The cached result for `key`, from memory, else from disk (then promoted to memory).
    pub fn get(&self, key: &str) -> Option<String> {
        let found = self.memory.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned();
        let found = found.or_else(|| {
            let value = self.disk_get(key)?;
            self.memory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .put(key.to_owned(), value.clone());
            Some(value)
        });
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores `value` under `key` in both tiers. A disk failure is reported on stderr and
    /// otherwise ignored: the cache is an optimisation, never a reason to fail a request.
    pub fn put(&self, key: &str, value: &str) {
        self.memory.lock().unwrap_or_else(|p| p.into_inner()).put(key.to_owned(), value.to_owned());
        if let Some(db) = &self.disk {
            let write = || -> Result<(), redb::Error> {
                let tx = db.begin_write()?;
                tx.open_table(RESULTS)?.insert(key, value)?;
                tx.commit()?;
                Ok(())
            };
            if let Err(e) = write() {
                eprintln!("steadytext: cache write to {:?} failed: {e}", self.path);
            }
        }
    }

    fn disk_get(&self, key: &str) -> Option<String> {
        let db = self.disk.as_ref()?;
        let read = || -> Result<Option<String>, redb::Error> {
            let tx = db.begin_read()?;
            let table = tx.open_table(RESULTS)?;
            Ok(table.get(key)?.map(|v| v.value().to_owned()))
        };
        read().unwrap_or_else(|e| {
            eprintln!("steadytext: cache read from {:?} failed: {e}", self.path);
            None
        })
    }

    /// Current counters and sizes.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            memory_entries: self.memory.lock().unwrap_or_else(|p| p.into_inner()).len(),
            persistent: self.disk.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_tier_evicts_least_recently_used() {
        let c = ResultCache::open(NonZeroUsize::new(2).unwrap(), None).unwrap();
        c.put("a", "1");
        c.put("b", "2");
        assert_eq!(c.get("a").as_deref(), Some("1"));
        c.put("c", "3"); // evicts b, the least recently used
        assert_eq!(c.get("b"), None);
        assert_eq!(c.get("c").as_deref(), Some("3"));
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.memory_entries, s.persistent), (2, 1, 2, false));
    }

    #[test]
    fn disk_tier_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cache.redb");
        {
            let c = ResultCache::open(NonZeroUsize::new(1).unwrap(), Some(&path)).unwrap();
            c.put("k1", "v1");
            c.put("k2", "v2"); // k1 leaves memory but stays on disk
            assert_eq!(c.get("k1").as_deref(), Some("v1"));
        }
        let c = ResultCache::open(NonZeroUsize::new(8).unwrap(), Some(&path)).unwrap();
        assert_eq!(c.get("k2").as_deref(), Some("v2"));
        assert_eq!(c.get("k1").as_deref(), Some("v1"));
        assert_eq!(c.get("nope"), None);
        assert!(c.stats().persistent);
    }
}
