//! `cpu_wait = "auto"`: llama.cpp's compute threads spin at their barriers (libgomp's default,
//! the fastest on cores of their own), and step down to one thread while the machine is shared.
//!
//! Why: a decode is hundreds of barrier-separated steps. With more runnable threads than cores,
//! each barrier waits for a descheduled partner, whatever the threads do while they wait (spinning
//! loses 0.65x beside one busy process, sleeping costs 2-5x on an idle machine: docs/bench). One
//! thread has no barrier to wait at. So a monitor thread measures, from the kernel's per-thread
//! schedstat, what share of the CPU time the decoding threads wanted they got; when the parallel threads
//! together get no more than 1.5 cores' worth, it asks the decoding threads to run serially. It
//! probes parallel again once other processes leave 1.5 cores free (/proc/stat less our own
//! threads), backing off while probes keep failing (where /proc/stat counts a larger host than ours). The decoding thread applies
//! the answer before its next decode through OpenMP's `max-active-levels` (0: every parallel region
//! runs on the calling thread alone; ggml reads back how many threads it got and splits work by it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the monitor reads the counters, and how much history one decision rests on.
const TICK: Duration = Duration::from_millis(100);
const WINDOW: Duration = Duration::from_millis(500);
/// Parallel threads that together keep no more than this many cores' worth run slower than one.
const PARALLEL_WORTH: f64 = 1.5;
/// Below this demand (cores' worth of CPU wanted) the engine is idle and says nothing.
const MIN_DEMAND: f64 = 0.3;
const FIRST_PROBE: Duration = Duration::from_secs(1);
const LAST_PROBE: Duration = Duration::from_secs(16);
/// A parallel stint shorter than this that ends in contention counts as a failed probe.
const FAILED_PROBE: Duration = Duration::from_secs(2);

/// What the monitor asks of the decoding threads; each applies it before its next decode.
#[derive(Default)]
pub struct Governor {
    serial: AtomicBool,
}

impl Governor {
    /// Start monitoring this process's threads, for a context configured with `threads` threads.
    /// None where there is nothing to govern (one thread) or no schedstat to read it from.
    pub fn start(threads: i32) -> Option<Arc<Self>> {
        // Linux only: schedstat, and libgomp as llama.cpp's OpenMP there.
        if !cfg!(target_os = "linux") || threads < 2 || Counters::read().is_none() {
            if threads >= 2 {
                tracing::warn!("cpu_wait auto: /proc/self/task/*/schedstat is not readable; compute threads keep spinning");
            }
            return None;
        }
        let gov = Arc::new(Self::default());
        let g = gov.clone();
        let spawned = std::thread::Builder::new().name("cpu-governor".into()).spawn(move || {
            let mut policy = Policy::new(threads as f64, Instant::now());
            let mut window = std::collections::VecDeque::new();
            while Arc::strong_count(&g) > 1 {
                std::thread::sleep(TICK);
                let Some(c) = Counters::read() else { continue };
                let now = Instant::now();
                window.push_back((now, c));
                while window.front().is_some_and(|(t, _)| now.duration_since(*t) > WINDOW) {
                    window.pop_front();
                }
                let (Some((t0, first)), Some((_, last))) = (window.front(), window.back()) else { continue };
                let span = now.duration_since(*t0).as_secs_f64();
                if span < WINDOW.as_secs_f64() * 0.8 {
                    continue;
                }
                let w = first.window(last, span);
                let serial = policy.observe(now, w.got, w.waited, w.free);
                if serial != g.serial.swap(serial, Ordering::Relaxed) {
                    tracing::debug!(serial, got = w.got, waited = w.waited, free = w.free, "cpu_wait auto: compute threads switch");
                    crate::metrics::metrics().cpu_serial.set(serial as i64);
                    // Measure the new mode on its own samples.
                    window.clear();
                }
            }
        });
        match spawned {
            Ok(_) => Some(gov),
            Err(e) => {
                tracing::warn!(error = %e, "cpu_wait auto: no monitor thread; compute threads keep spinning");
                None
            }
        }
    }
}

/// A decoding thread's side of the governor: what it was asked, and what it has applied.
pub struct Decoding {
    governor: Option<Arc<Governor>>,
    serial: bool,
}

impl Decoding {
    pub fn new(governor: Option<Arc<Governor>>) -> Self {
        Self { governor, serial: false }
    }

    /// Called by the decoding thread before each decode.
    pub fn apply(&mut self) {
        let Some(g) = &self.governor else { return };
        let serial = g.serial.load(Ordering::Relaxed);
        if serial != self.serial {
            self.serial = serial;
            // Per calling thread (an OpenMP task ICV): other contexts' threads decide for themselves.
            // SAFETY: a plain setter of the calling thread's OpenMP state.
            #[cfg(target_os = "linux")]
            unsafe {
                omp_set_max_active_levels(if serial { 0 } else { 1 })
            };
        }
    }
}

#[cfg(target_os = "linux")]
extern "C" {
    fn omp_set_max_active_levels(levels: std::os::raw::c_int);
}

/// What one reading holds: per thread of this process, nanoseconds run on a CPU and spent runnable
/// waiting for one, and whether it decodes; and the machine's busy and total CPU seconds (all CPUs
/// together; None where /proc/stat cannot be read).
struct Counters {
    threads: HashMap<u32, (u64, u64, bool)>,
    machine: Option<(f64, f64)>,
}

/// What a window of readings says, in cores' worth.
struct Window {
    /// CPU the decoding threads got and waited for.
    got: f64,
    waited: f64,
    /// Cores other processes leave free (infinite where unknown).
    free: f64,
}

/// Busy and total CPU seconds of the whole machine, from the first line of /proc/stat.
fn machine_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // SAFETY: sysconf only reads a constant of the system.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let total: u64 = cpu.iter().take(8).sum();
    let idle = cpu.get(3)? + cpu.get(4).copied().unwrap_or(0);
    Some(((total - idle) as f64 / tick, total as f64 / tick))
}

impl Counters {
    fn read() -> Option<Self> {
        let mut threads = HashMap::new();
        for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else { continue };
            // A thread that exited between the listing and the read is simply absent.
            let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else { continue };
            let mut f = text.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
            // The decoding threads, and the OpenMP workers they start (which inherit the name).
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            let decodes = matches!(name.trim_end(), super::THREAD | super::verifier::THREAD);
            threads.insert(tid, (f.next().unwrap_or(0), f.next().unwrap_or(0), decodes));
        }
        (!threads.is_empty()).then_some(Self { threads, machine: machine_seconds() })
    }

    /// From this reading to a later one, over the threads present in both, per second of `span`.
    fn window(&self, later: &Self, span: f64) -> Window {
        let (mut got, mut waited, mut ours) = (0u64, 0u64, 0u64);
        for (tid, (c1, w1, decodes)) in &later.threads {
            if let Some((c0, w0, _)) = self.threads.get(tid) {
                let ran = c1.saturating_sub(*c0);
                ours += ran;
                if *decodes {
                    got += ran;
                    waited += w1.saturating_sub(*w0);
                }
            }
        }
        // The machine's cores, less what processes other than this one kept busy.
        let free = match (self.machine, later.machine) {
            (Some((b0, t0)), Some((b1, t1))) => ((t1 - t0) - ((b1 - b0) - ours as f64 / 1e9).max(0.0)) / span,
            _ => f64::INFINITY,
        };
        Window { got: got as f64 / 1e9 / span, waited: waited as f64 / 1e9 / span, free }
    }
}

/// The decision, apart from the clock and the kernel, so it can be tested.
#[derive(Debug)]
struct Policy {
    threads: f64,
    serial: bool,
    /// When the current mode began, and when a serial stint ends in a probe of parallel.
    since: Instant,
    probe_at: Instant,
    backoff: Duration,
    /// Serial, other processes have been seen taking the cores parallel needs.
    crowded: bool,
}

impl Policy {
    fn new(threads: f64, now: Instant) -> Self {
        Self { threads, serial: false, since: now, probe_at: now, backoff: FIRST_PROBE, crowded: false }
    }

    /// One window's measurement: cores' worth of CPU the decoding threads got and waited for, and
    /// cores other processes leave free. Returns whether the decoding threads should run serially.
    fn observe(&mut self, now: Instant, got: f64, waited: f64, free: f64) -> bool {
        if self.serial {
            // Parallel is worth a probe only where other processes leave it the cores it needs:
            // at once when the ones seen crowding it out have gone, else after the back-off (a
            // /proc/stat that counts a larger host than ours may never show them).
            if free < PARALLEL_WORTH {
                self.crowded = true;
            } else if self.crowded || now >= self.probe_at {
                self.crowded = false;
                self.serial = false;
                self.since = now;
            }
            return self.serial;
        }
        let demand = got + waited;
        if demand < MIN_DEMAND {
            return false;
        }
        // Cores' worth the parallel threads keep: `threads` times the share of their demand met.
        if self.threads * got / demand <= PARALLEL_WORTH {
            let failed_probe = now.duration_since(self.since) < FAILED_PROBE;
            self.backoff = if failed_probe { (self.backoff * 2).min(LAST_PROBE) } else { FIRST_PROBE };
            self.serial = true;
            self.since = now;
            self.probe_at = now + self.backoff;
        }
        self.serial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn idle_and_uncontended_stay_parallel() {
        let t0 = Instant::now();
        let mut p = Policy::new(2.0, t0);
        assert!(!p.observe(at(t0, 500), 0.01, 0.05, 2.0), "an idle engine decides nothing");
        assert!(!p.observe(at(t0, 1000), 1.95, 0.02, 2.0), "two cores of their own");
    }

    #[test]
    fn one_busy_neighbour_makes_two_threads_serial_then_probes_back_off() {
        let t0 = Instant::now();
        let mut p = Policy::new(2.0, t0);
        // Three runnable threads on two cores: ours get 2/3 of what they want.
        assert!(p.observe(at(t0, 5000), 1.33, 0.67, 2.0));
        assert!(p.observe(at(t0, 5500), 1.0, 0.0, 2.0), "serial until the probe");
        assert!(!p.observe(at(t0, 6000), 1.0, 0.0, 2.0), "probe after the first back-off");
        // The probe fails at once: the next one waits twice as long.
        assert!(p.observe(at(t0, 6500), 1.33, 0.67, 2.0));
        assert!(p.observe(at(t0, 8000), 1.0, 0.0, 2.0));
        assert!(!p.observe(at(t0, 8500), 1.0, 0.0, 2.0));
        assert_eq!(p.backoff, Duration::from_secs(2));
        // The neighbour is gone: parallel holds, and a later contention starts the back-off over.
        assert!(!p.observe(at(t0, 9000), 1.98, 0.01, 2.0));
        assert!(p.observe(at(t0, 20_000), 1.3, 0.7, 2.0));
        assert_eq!(p.backoff, FIRST_PROBE);
    }

    #[test]
    fn no_probe_while_no_core_is_idle() {
        let t0 = Instant::now();
        let mut p = Policy::new(2.0, t0);
        assert!(p.observe(at(t0, 1000), 1.33, 0.67, 0.0));
        // Long past the back-off, the busy neighbour still takes the other core.
        assert!(p.observe(at(t0, 30_000), 1.0, 0.0, 1.0));
        // It stops: both cores are free to us, and parallel is tried at once.
        assert!(!p.observe(at(t0, 31_000), 1.0, 0.0, 1.95));
        // Back to serial; the neighbour seen crowding us leaves before the back-off has run out.
        assert!(p.observe(at(t0, 31_500), 1.3, 0.7, 1.0));
        assert!(p.observe(at(t0, 31_600), 1.0, 0.0, 1.0));
        assert!(!p.observe(at(t0, 31_700), 1.0, 0.0, 1.9), "probe as soon as it has gone");
    }

    #[test]
    fn back_off_is_bounded() {
        let t0 = Instant::now();
        let mut p = Policy::new(2.0, t0);
        let mut now = at(t0, 2000);
        for _ in 0..10 {
            assert!(p.observe(now, 1.0, 1.0, 2.0));
            now = p.probe_at;
            assert!(!p.observe(now, 1.0, 0.0, 2.0));
            now += Duration::from_millis(500);
        }
        assert_eq!(p.backoff, LAST_PROBE);
    }

    #[test]
    fn many_threads_keep_parallel_beside_one_neighbour() {
        let t0 = Instant::now();
        let mut p = Policy::new(16.0, t0);
        // 17 runnable on 16 cores: each of ours gets 16/17 of its demand.
        assert!(!p.observe(at(t0, 1000), 15.06, 0.94, 2.0));
        // Crowded out to a core's worth: serial is as fast and frees the rest.
        assert!(p.observe(at(t0, 2000), 1.4, 14.6, 2.0));
    }

    #[test]
    fn counters_read_this_process() {
        let c = Counters::read().expect("/proc/self/task is readable on Linux");
        assert!(!c.threads.is_empty() && c.machine.is_some());
        let w = c.window(&c, 1.0);
        assert_eq!((w.got, w.waited, w.free), (0.0, 0.0, 0.0));
    }
}
