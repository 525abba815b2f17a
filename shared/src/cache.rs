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
pub struct SingleFlight<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, Flight<V>>>,
}

struct Flight<V> {
    began: Instant,
    value: Arc<OnceCell<V>>,
}

impl<K: Eq + Hash + Clone, V: Clone> SingleFlight<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        SingleFlight {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
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
                    if entries.len() >= self.capacity && !entries.contains_key(&key) {
                        entries.retain(|_, f| f.began.elapsed() < self.ttl);
                        if entries.len() >= self.capacity
                            && let Some(oldest) = entries.iter().min_by_key(|(_, f)| f.began).map(|(k, _)| k.clone())
                        {
                            entries.remove(&oldest);
                        }
                    }
                    let cell = Arc::new(OnceCell::new());
                    entries.insert(
                        key,
                        Flight {
                            began: Instant::now(),
                            value: cell.clone(),
                        },
                    );
                    cell
                }
            }
        };
        cell.get_or_try_init(load).await.cloned()
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn one_load_serves_everyone_asking_at_once_until_the_ttl() {
        let cache = Arc::new(SingleFlight::new(Duration::from_millis(200), 8));
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
        let cache = SingleFlight::new(Duration::from_secs(5), 8);
        assert_eq!(
            cache.get_or_load("k", || async { Err::<u32, _>("down") }).await,
            Err("down")
        );
        assert_eq!(cache.get_or_load("k", || async { Ok::<_, &str>(7) }).await, Ok(7));
        let off = SingleFlight::new(Duration::ZERO, 8);
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
