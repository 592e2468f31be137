//! Broker names → socket addresses, cached for a while (`--dns-cache-ttl`).
//!
//! Every upstream connection starts from a broker's name (`b-1.….kafka.….amazonaws.com`).
//! Resolving it on every connect runs one blocking `getaddrinfo` per connect on tokio's blocking
//! pool: a storm of 5,000 client connections spawned up to 157 resolver threads
//! (BENCHMARKS.md, "Connection storm"). Here one lookup per name serves every connect for the
//! TTL, concurrent connects to the same name wait for the one lookup in flight, and a name
//! whose connect failed is looked up again on the next attempt (a replaced broker keeps its
//! name, not its address). `getaddrinfo` does not report DNS TTLs, so the TTL is the
//! operator's; 0 turns the cache off.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most names remembered. The names come from the `--upstream` list and the broker table,
/// which `--max-brokers` bounds; beyond this a lookup is simply not cached.
const MAX_NAMES: usize = 4096;

/// The addresses of one name, once looked up.
type Answer = Option<(Arc<[SocketAddr]>, Instant)>;

/// One name's slot: the async lock makes concurrent connects share one lookup.
type Slot = Arc<tokio::sync::Mutex<Answer>>;

/// The cache of broker name lookups shared by every connection of the process.
#[derive(Debug)]
pub struct Resolver {
    ttl: Duration,
    names: Mutex<HashMap<(String, u16), Slot>>,
    /// Bumped on every fresh answer: the free-text scrub's set of addresses follows it.
    generation: AtomicU64,
}

impl Resolver {
    /// A cache keeping each answer for `ttl` (zero: no caching, every connect looks up).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            names: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Changes each time a lookup brings a fresh answer.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The cached addresses of `host:port`, without looking anything up or waiting for a
    /// lookup in flight: the addresses the free-text scrub replaces besides the names.
    pub fn cached(&self, host: &str, port: u16) -> Option<Arc<[SocketAddr]>> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let slot = names.get(&(host.to_owned(), port))?;
        let answer = slot.try_lock().ok()?;
        answer.as_ref().map(|(addrs, _)| addrs.clone())
    }

    /// The addresses of `host:port`: an IP literal as it is, else the cached answer while it
    /// is younger than the TTL, else a fresh lookup (one at a time per name).
    pub async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Arc<[SocketAddr]>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Arc::from([SocketAddr::new(ip, port)]));
        }
        let Some(slot) = self.slot(host, port) else {
            return lookup(host, port).await;
        };
        let mut answer = slot.lock().await;
        if let Some((addrs, at)) = answer.as_ref() {
            if at.elapsed() < self.ttl {
                return Ok(addrs.clone());
            }
        }
        let addrs = lookup(host, port).await?;
        *answer = Some((addrs.clone(), Instant::now()));
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(addrs)
    }

    /// Drops the answer for `host:port` (its connect failed): the next connect looks it up.
    pub fn forget(&self, host: &str, port: u16) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.remove(&(host.to_owned(), port));
    }

    /// The slot for a name, created if there is room; `None` when caching is off or full.
    fn slot(&self, host: &str, port: u16) -> Option<Slot> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let key = (host.to_owned(), port);
        if let Some(slot) = names.get(&key) {
            return Some(slot.clone());
        }
        if names.len() >= MAX_NAMES {
            // Keep the slots in use or still fresh; drop stale ones to make room.
            let ttl = self.ttl;
            names.retain(|_, slot| match slot.try_lock() {
                Ok(answer) => matches!(answer.as_ref(), Some((_, at)) if at.elapsed() < ttl),
                Err(_) => true,
            });
            if names.len() >= MAX_NAMES {
                return None;
            }
        }
        Some(names.entry(key).or_default().clone())
    }
}

/// One `getaddrinfo` (on tokio's blocking pool).
async fn lookup(host: &str, port: u16) -> std::io::Result<Arc<[SocketAddr]>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    if addrs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host}: no addresses"),
        ));
    }
    Ok(addrs.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ip_literals_are_not_looked_up_or_cached() {
        let r = Resolver::new(Duration::from_secs(30));
        let a = r.resolve("127.0.0.1", 9094).await.unwrap();
        assert_eq!(&a[..], &["127.0.0.1:9094".parse().unwrap()]);
        let a = r.resolve("::1", 9094).await.unwrap();
        assert_eq!(&a[..], &["[::1]:9094".parse().unwrap()]);
        assert!(r.names.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_name_is_looked_up_once_within_the_ttl_and_again_after_forget() {
        let r = Resolver::new(Duration::from_secs(30));
        let a = r.resolve("localhost", 9094).await.unwrap();
        assert!(a.iter().all(|s| s.ip().is_loopback() && s.port() == 9094));
        let b = r.resolve("localhost", 9094).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b), "the second connect reuses the answer");
        r.forget("localhost", 9094);
        let c = r.resolve("localhost", 9094).await.unwrap();
        assert!(
            !Arc::ptr_eq(&a, &c),
            "after forget the name is looked up again"
        );
    }

    #[tokio::test]
    async fn a_stale_answer_is_looked_up_again_and_ttl_zero_caches_nothing() {
        let r = Resolver::new(Duration::from_millis(1));
        let a = r.resolve("localhost", 1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let b = r.resolve("localhost", 1).await.unwrap();
        assert!(!Arc::ptr_eq(&a, &b));

        let off = Resolver::new(Duration::ZERO);
        off.resolve("localhost", 1).await.unwrap();
        assert!(off.names.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_an_error_and_not_cached() {
        let r = Resolver::new(Duration::from_secs(30));
        assert!(r.resolve("no-such-host.invalid", 9094).await.is_err());
        let names = r.names.lock().unwrap();
        let slot = names
            .get(&("no-such-host.invalid".to_owned(), 9094))
            .unwrap();
        assert!(slot.try_lock().unwrap().is_none());
    }

    #[tokio::test]
    async fn the_cache_never_holds_more_than_max_names() {
        let r = Resolver::new(Duration::from_secs(30));
        for i in 0..MAX_NAMES + 10 {
            // Each (name, port) is its own entry.
            r.resolve("localhost", i as u16).await.unwrap();
        }
        assert_eq!(r.names.lock().unwrap().len(), MAX_NAMES);
    }
}
