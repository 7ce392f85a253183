//! A fatal signal in llama.cpp's kernels (SIGSEGV, SIGILL, SIGBUS, SIGFPE) takes the process down
//! with no Rust panic and no log line. This handler writes one line saying what the engine was
//! running and on which CPU backend, then hands the signal on (to the handler that was there before,
//! Rust's stack-overflow reporter, else the default action), so the process still dies of it and
//! an orchestrator restarts it.
//!
//! The engine records its activity in atomics before each decode; the handler only reads them and
//! formats into a stack buffer (nothing that allocates or locks: it must be async-signal-safe).

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Once, OnceLock};

/// What the engine was doing.
#[derive(Clone, Copy)]
#[repr(u8)]
pub enum Activity {
    Idle = 0,
    /// The start-up decode that proves the kernels run on this CPU.
    WarmUp = 1,
    /// A decode of the serving model's batch.
    Decode = 2,
}

static ACTIVITY: AtomicU8 = AtomicU8::new(Activity::Idle as u8);
static TOKENS: AtomicU32 = AtomicU32::new(0);
static SEQUENCES: AtomicU32 = AtomicU32::new(0);
/// The CPU backend's variant, set once when it is known.
static VARIANT: OnceLock<String> = OnceLock::new();
const SIGNALS: [libc::c_int; 4] = [libc::SIGSEGV, libc::SIGILL, libc::SIGBUS, libc::SIGFPE];
/// The handlers that were installed before ours, indexed like SIGNALS.
static PREVIOUS: OnceLock<[libc::sigaction; 4]> = OnceLock::new();

/// Record what the engine is about to run.
pub fn running(activity: Activity, tokens: usize, sequences: usize) {
    TOKENS.store(tokens as u32, Ordering::Relaxed);
    SEQUENCES.store(sequences as u32, Ordering::Relaxed);
    ACTIVITY.store(activity as u8, Ordering::Release);
}

/// Test hook: die of SIGSEGV here, on the engine thread, as a faulting kernel would.
pub fn fault_for_test() {
    // SAFETY: raise(3) delivers the signal to this thread; the handler then ends the process.
    unsafe {
        libc::raise(libc::SIGSEGV);
    }
}

pub fn idle() {
    ACTIVITY.store(Activity::Idle as u8, Ordering::Release);
}

/// Install the handler (once per process) and name the CPU variant it reports.
pub fn install(variant: &str) {
    let _ = VARIANT.set(variant.to_string());
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sigaction(2) reads the current actions, then installs a handler that only reads
        // atomics and calls write(2) and sigaction(2). PREVIOUS is set before any handler of ours
        // can run.
        unsafe {
            let previous = SIGNALS.map(|sig| {
                let mut old: libc::sigaction = std::mem::zeroed();
                libc::sigaction(sig, std::ptr::null(), &mut old);
                old
            });
            let _ = PREVIOUS.set(previous);
            for sig in SIGNALS {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = handler as *const () as usize;
                new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut new.sa_mask);
                libc::sigaction(sig, &new, std::ptr::null_mut());
            }
        }
    });
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let mut buf = Line::default();
    buf.push(b"thinkscale: fatal signal ");
    buf.push(match sig {
        libc::SIGSEGV => b"SIGSEGV".as_slice(),
        libc::SIGILL => b"SIGILL (an instruction this CPU does not have)",
        libc::SIGBUS => b"SIGBUS",
        _ => b"SIGFPE",
    });
    buf.push(b" while the engine was ");
    let (tokens, seqs) = (TOKENS.load(Ordering::Relaxed), SEQUENCES.load(Ordering::Relaxed));
    match ACTIVITY.load(Ordering::Acquire) {
        1 => buf.push(b"running the start-up warm-up decode"),
        2 => {
            buf.push(b"decoding a batch of ");
            buf.number(tokens);
            buf.push(b" tokens over ");
            buf.number(seqs);
            buf.push(b" sequences");
        }
        _ => buf.push(b"not decoding (the fault is outside the serving model's decode loop)"),
    }
    buf.push(b"; llama.cpp CPU backend: ");
    buf.push(VARIANT.get().map_or(b"unknown".as_slice(), |v| v.as_bytes()));
    buf.push(b"\n");
    // SAFETY: write(2) and sigaction(2) are async-signal-safe; PREVIOUS is only read here.
    unsafe {
        libc::write(2, buf.bytes.as_ptr().cast(), buf.len);
        let i = SIGNALS.iter().position(|&s| s == sig).unwrap_or(0);
        if let Some(old) = PREVIOUS.get().map(|p| p[i]) {
            // Rust's own handler reports a stack overflow (and aborts); for other faults it
            // returns.
            if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN {
                if old.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = std::mem::transmute(old.sa_sigaction);
                    f(sig, info, ctx);
                } else {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(old.sa_sigaction);
                    f(sig);
                }
            }
        }
        // Then the default action: the signal, raised again, is pending until this handler
        // returns, and the process dies of it (a fault would also recur at the same instruction).
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &dfl, std::ptr::null_mut());
        libc::raise(sig);
    }
}

/// A fixed buffer: the handler may not allocate.
struct Line {
    bytes: [u8; 512],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Self { bytes: [0; 512], len: 0 }
    }
}

impl Line {
    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }
    fn number(&mut self, mut n: u32) {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

#[cfg(test)]
mod tests {
    use super::Line;

    #[test]
    fn formats_without_allocating() {
        let mut l = Line::default();
        l.push(b"batch of ");
        l.number(0);
        l.push(b" and ");
        l.number(4_294_967_295);
        assert_eq!(&l.bytes[..l.len], b"batch of 0 and 4294967295");
        let long = [b'x'; 600];
        l.push(&long);
        assert_eq!(l.len, 512);
    }
}
