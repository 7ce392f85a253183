//! The remote engines a request may go to. Each request (all its samples) goes to one replica:
//! the least busy, unless the one that last served the same prompt prefix is nearly as free
//! (its prefix cache is warm). A replica that fails is marked down until a probe of its
//! `/health` succeeds again.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::metrics::metrics;

/// Bytes of a prompt that key its affinity (the system prompt and the start of the conversation).
const AFFINITY_PREFIX: usize = 512;
/// A warm replica is preferred while it has at most this many more requests than the least busy.
const AFFINITY_SLACK: u64 = 1;
const AFFINITY_ENTRIES: usize = 4096;

pub struct Replica {
    pub url: String,
    up: AtomicBool,
    in_flight: AtomicU64,
    served: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

#[derive(Debug, Serialize)]
pub struct ReplicaStatus {
    pub url: String,
    pub up: bool,
    pub in_flight: u64,
    pub served: u64,
    pub failures: u64,
    pub last_error: Option<String>,
}

/// An engine's root URL, whether given as the root or as the `/v1` base URL the OpenAI SDKs,
/// vLLM and llama-server document: requests append `/v1/...` (and `/health`, `/tokenize`) to it.
pub fn base_url(url: &str) -> String {
    let u = url.trim().trim_end_matches('/');
    u.strip_suffix("/v1").unwrap_or(u).trim_end_matches('/').to_string()
}

impl Replica {
    fn new(url: &str) -> Self {
        let r = Self {
            url: base_url(url),
            up: AtomicBool::new(true),
            in_flight: AtomicU64::new(0),
            served: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        };
        metrics().replica_up.with_label_values(&[&r.url]).set(1);
        r
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn mark_down(&self, why: &str) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(replica = %self.url, error = why, "replica marked down");
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(why.to_string());
        }
        metrics().replica_up.with_label_values(&[&self.url]).set(0);
    }

    pub fn mark_up(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!(replica = %self.url, "replica back up");
        }
        metrics().replica_up.with_label_values(&[&self.url]).set(1);
    }

    /// Requests this replica is serving now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> ReplicaStatus {
        ReplicaStatus {
            url: self.url.clone(),
            up: self.is_up(),
            in_flight: self.in_flight(),
            served: self.served.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }
}

/// A request's hold on a replica: counted in flight until dropped.
pub struct Lease {
    pub replica: Arc<Replica>,
}

impl Lease {
    fn new(replica: Arc<Replica>) -> Self {
        replica.in_flight.fetch_add(1, Ordering::Relaxed);
        replica.served.fetch_add(1, Ordering::Relaxed);
        metrics().replica_in_flight.with_label_values(&[&replica.url]).inc();
        Self { replica }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.replica.in_flight.fetch_sub(1, Ordering::Relaxed);
        metrics().replica_in_flight.with_label_values(&[&self.replica.url]).dec();
    }
}

pub struct Replicas {
    pub all: Vec<Arc<Replica>>,
    /// Prompt-prefix hash -> the replica that last served it.
    affinity: Mutex<HashMap<u64, usize>>,
}

impl Replicas {
    pub fn new(urls: &[String]) -> Self {
        Self { all: urls.iter().map(|u| Arc::new(Replica::new(u))).collect(), affinity: Mutex::new(HashMap::new()) }
    }

    /// The replica for a request with this prompt, skipping `avoid` (replicas that just failed it).
    pub fn lease(&self, prompt: &str, avoid: &[String]) -> Option<Lease> {
        let key = prefix_key(prompt);
        let loads: Vec<Option<(u64, u64)>> = self
            .all
            .iter()
            .map(|r| (r.is_up() && !avoid.contains(&r.url)).then(|| (r.in_flight(), r.served.load(Ordering::Relaxed))))
            .collect();
        let mut affinity = self.affinity.lock().ok()?;
        let chosen = pick(&loads, affinity.get(&key).copied())?;
        if affinity.len() >= AFFINITY_ENTRIES {
            affinity.clear();
        }
        affinity.insert(key, chosen);
        Some(Lease::new(self.all[chosen].clone()))
    }

    pub fn any_up(&self) -> bool {
        self.all.iter().any(|r| r.is_up())
    }
}

fn prefix_key(prompt: &str) -> u64 {
    let mut cut = prompt.len().min(AFFINITY_PREFIX);
    while !prompt.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    prompt[..cut].hash(&mut h);
    h.finish()
}

/// Among the replicas that may serve (`Some((in flight, served))`): the warm one when its load is
/// within the slack of the least; else the least loaded, and of those the one that served least
/// (so new prompts take turns).
fn pick(loads: &[Option<(u64, u64)>], warm: Option<usize>) -> Option<usize> {
    let (best, (min, _)) = loads.iter().enumerate().filter_map(|(i, l)| l.map(|l| (i, l))).min_by_key(|&(i, l)| (l, i))?;
    match warm.and_then(|w| loads.get(w).copied().flatten().map(|(l, _)| (w, l))) {
        Some((w, l)) if l <= min + AFFINITY_SLACK => Some(w),
        _ => Some(best),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_base_url_forms_name_the_root() {
        for u in ["http://h:8081", "http://h:8081/", "http://h:8081/v1", "http://h:8081/v1/", " http://h:8081/v1 "] {
            assert_eq!(base_url(u), "http://h:8081", "{u}");
        }
        assert_eq!(base_url("http://h/prefix/v1"), "http://h/prefix");
        assert_eq!(base_url("http://h/v10"), "http://h/v10");
    }

    #[test]
    fn least_busy_unless_the_warm_replica_is_nearly_as_free() {
        assert_eq!(pick(&[Some((2, 0)), Some((0, 9)), Some((1, 0))], None), Some(1));
        assert_eq!(pick(&[Some((1, 0)), Some((0, 0))], Some(0)), Some(0));
        assert_eq!(pick(&[Some((3, 0)), Some((0, 0))], Some(0)), Some(1));
        // Equally busy: the one that served least.
        assert_eq!(pick(&[Some((0, 4)), Some((0, 3))], None), Some(1));
        // Down (or avoided) replicas are never picked, warm or not.
        assert_eq!(pick(&[None, Some((5, 0))], Some(0)), Some(1));
        assert_eq!(pick(&[None, None], None), None);
    }

    #[test]
    fn leases_count_in_flight_and_follow_the_prompt() {
        let r = Replicas::new(&["http://a".to_string(), "http://b/".to_string()]);
        let first = r.lease("system: be brief. user: hi", &[]).unwrap();
        assert_eq!(first.replica.url, "http://a");
        // Same prefix, the warm replica one request busier: still it.
        let again = r.lease("system: be brief. user: hi", &[]).unwrap();
        assert_eq!(again.replica.url, "http://a");
        // Another prompt goes to the free one.
        assert_eq!(r.lease("other", &[]).unwrap().replica.url, "http://b");
        drop((first, again));
        assert_eq!(r.all[0].in_flight(), 0);
        r.all[0].mark_down("connection refused");
        assert_eq!(r.lease("system: be brief. user: hi", &[]).unwrap().replica.url, "http://b");
        assert!(r.lease("x", &["http://b".to_string()]).is_none());
        r.all[0].mark_up();
        assert!(r.any_up());
    }
}
