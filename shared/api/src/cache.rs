//! A small in-container cache with a time-to-live and a size bound. Lambda reuses a container
//! for many invocations, so what one request learned can save the next a round trip.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

pub struct TtlCache<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        TtlCache {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// A fresh entry, if any.
    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    pub fn insert(&self, key: K, value: V) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            // Drop what has expired; if still full, drop the oldest entry.
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if entries.len() >= self.capacity
                && let Some(oldest) = entries.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (Instant::now(), value));
    }

    pub fn remove(&self, key: &K) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }
}

/// A read-through cache for hot, user-agnostic reads: an entry is loaded by one request at a
/// time (others asking meanwhile wait for that load instead of sending their own: no
/// stampede), and served until `ttl` after its load began, so nothing it serves is older than
/// `ttl`. A failed load is not kept: the next request tries again. A `ttl` of zero turns it off.
///
/// Bounded by entries and by bytes (each value weighed once loaded): whoever asks for many
/// different keys with large values (deep pages of 5,000-character posts) pushes out the
/// oldest entries, never the container's memory limit.
pub struct SingleFlight<K, V> {
    ttl: Duration,
    limits: Limits<V>,
    entries: Mutex<HashMap<K, Flight<V>>>,
}

/// How much a [`SingleFlight`] may hold.
pub struct Limits<V> {
    pub entries: usize,
    pub bytes: usize,
    /// The memory a value takes (an estimate that never undercounts what it owns).
    pub weigh: fn(&V) -> usize,
}

struct Flight<V> {
    began: Instant,
    value: Arc<OnceCell<V>>,
    /// 0 until its load completes.
    bytes: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> SingleFlight<K, V> {
    pub fn new(ttl: Duration, limits: Limits<V>) -> Self {
        SingleFlight {
            ttl,
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The fresh value for `key`, loading it with `load` unless a fresh one exists or another
    /// request is loading it already.
    pub async fn get_or_load<E, F, Fut>(&self, key: K, load: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if self.ttl.is_zero() {
            return load().await;
        }
        let cell = {
            let Ok(mut entries) = self.entries.lock() else {
                return load().await;
            };
            match entries.get(&key) {
                Some(flight) if flight.began.elapsed() < self.ttl => flight.value.clone(),
                _ => {
                    entries.retain(|_, f| f.began.elapsed() < self.ttl);
                    while entries.len() >= self.limits.entries && evict_oldest(&mut entries, None) {}
                    let cell = Arc::new(OnceCell::new());
                    entries.insert(
                        key.clone(),
                        Flight {
                            began: Instant::now(),
                            value: cell.clone(),
                            bytes: 0,
                        },
                    );
                    cell
                }
            }
        };
        let mut loaded_here = false;
        let value = cell
            .get_or_try_init(|| {
                loaded_here = true;
                load()
            })
            .await?
            .clone();
        if loaded_here {
            self.weigh_in(&key, &cell, &value);
        }
        Ok(value)
    }

    /// Records a fresh load's size and evicts the oldest entries while over the byte budget.
    fn weigh_in(&self, key: &K, cell: &Arc<OnceCell<V>>, value: &V) {
        let Ok(mut entries) = self.entries.lock() else { return };
        match entries.get_mut(key) {
            Some(flight) if Arc::ptr_eq(&flight.value, cell) => flight.bytes = (self.limits.weigh)(value),
            _ => return,
        }
        while entries.values().map(|f| f.bytes).sum::<usize>() > self.limits.bytes
            && evict_oldest(&mut entries, Some(key))
        {}
        // A single value over the whole budget is served to its waiters but not kept.
        if entries.get(key).is_some_and(|f| f.bytes > self.limits.bytes) {
            entries.remove(key);
        }
    }

    /// Drops `key`: the next request reads it afresh (this container's own write changed it).
    pub fn forget(&self, key: &K) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }

    pub fn forget_all(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    /// Entries and bytes held (for tests and benchmarks).
    pub fn held(&self) -> (usize, usize) {
        self.entries
            .lock()
            .map(|e| (e.len(), e.values().map(|f| f.bytes).sum()))
            .unwrap_or_default()
    }
}

/// Removes the oldest entry other than `keep`; false when there is none.
fn evict_oldest<K: Eq + Hash + Clone, V>(entries: &mut HashMap<K, Flight<V>>, keep: Option<&K>) -> bool {
    let oldest = entries
        .iter()
        .filter(|(k, _)| Some(*k) != keep)
        .min_by_key(|(_, f)| f.began)
        .map(|(k, _)| k.clone());
    match oldest {
        Some(k) => entries.remove(&k).is_some(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn limits(entries: usize, bytes: usize) -> Limits<u32> {
        Limits {
            entries,
            bytes,
            weigh: |_| 1000,
        }
    }

    #[tokio::test]
    async fn large_values_for_many_keys_stay_within_the_byte_budget() {
        // 1,000 bytes a value, 10,000 bytes allowed: ten kept, the newest ones.
        let cache = SingleFlight::new(Duration::from_secs(60), limits(1000, 10_000));
        for k in 0..50u32 {
            assert_eq!(cache.get_or_load(k, || async move { Ok::<_, ()>(k) }).await, Ok(k));
            let (entries, bytes) = cache.held();
            assert!(bytes <= 10_000 && entries <= 10, "{entries} entries, {bytes} bytes");
        }
        let loads = AtomicU32::new(0);
        let again = |k: u32| {
            let loads = &loads;
            async move {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(k)
            }
        };
        assert_eq!(cache.get_or_load(49, || again(49)).await, Ok(49));
        assert_eq!(loads.load(Ordering::SeqCst), 0, "the newest entry is kept");
        assert_eq!(cache.get_or_load(0, || again(0)).await, Ok(0));
        assert_eq!(loads.load(Ordering::SeqCst), 1, "the oldest went");
        // A value larger than the whole budget is answered, not kept.
        let tiny = SingleFlight::new(Duration::from_secs(60), limits(10, 500));
        assert_eq!(tiny.get_or_load(1, || async { Ok::<_, ()>(1) }).await, Ok(1));
        assert_eq!(tiny.held(), (0, 0));
    }

    #[tokio::test]
    async fn one_load_serves_everyone_asking_at_once_until_the_ttl() {
        let cache = Arc::new(SingleFlight::new(Duration::from_millis(200), limits(8, 1 << 20)));
        let loads = Arc::new(AtomicU32::new(0));
        let ask = |cache: Arc<SingleFlight<&'static str, u32>>, loads: Arc<AtomicU32>| async move {
            cache
                .get_or_load("feed", || async {
                    let n = loads.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    Ok::<_, ()>(n)
                })
                .await
        };
        let answers = futures::future::join_all((0..50).map(|_| tokio::spawn(ask(cache.clone(), loads.clone())))).await;
        assert!(answers.into_iter().all(|a| a.unwrap() == Ok(1)));
        assert_eq!(loads.load(Ordering::SeqCst), 1, "one load for 50 requests at once");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(ask(cache.clone(), loads.clone()).await, Ok(2), "reloaded after the TTL");
        cache.forget(&"feed");
        assert_eq!(
            ask(cache.clone(), loads.clone()).await,
            Ok(3),
            "reloaded once forgotten"
        );
    }

    #[tokio::test]
    async fn a_failed_load_is_not_kept_and_zero_ttl_never_caches() {
        let cache = SingleFlight::new(Duration::from_secs(5), limits(8, 1 << 20));
        assert_eq!(
            cache.get_or_load("k", || async { Err::<u32, _>("down") }).await,
            Err("down")
        );
        assert_eq!(cache.get_or_load("k", || async { Ok::<_, &str>(7) }).await, Ok(7));
        let off = SingleFlight::new(Duration::ZERO, limits(8, 1 << 20));
        assert_eq!(off.get_or_load("k", || async { Ok::<_, ()>(1) }).await, Ok(1));
        assert_eq!(off.get_or_load("k", || async { Ok::<_, ()>(2) }).await, Ok(2));
    }

    #[test]
    fn entries_expire_and_the_size_is_bounded() {
        let cache = TtlCache::new(Duration::from_millis(50), 2);
        cache.insert("a", 1);
        cache.insert("b", 2);
        cache.insert("c", 3);
        assert_eq!(cache.get(&"a"), None, "the oldest entry made room");
        assert_eq!(cache.get(&"c"), Some(3));
        cache.remove(&"c");
        assert_eq!(cache.get(&"c"), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get(&"b"), None, "expired");
    }
}
