//! The sandbox against hostile programs: each is contained and reported, and the sandbox (and the
//! test process that owns it) keeps running programs afterwards. Needs bubblewrap, not root.

use std::net::TcpListener;

use thinkscale::reasoning::code::Suite;
use thinkscale::sandbox::{harness, CgroupMode, Language, Limits, Program, Run, RunStatus, Sandbox};

fn sandbox(limits: Limits) -> (tokio::runtime::Runtime, Sandbox) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sb = rt.block_on(Sandbox::new(Language::Python, limits)).expect("bubblewrap works here (apt-get install bubblewrap)");
    (rt, sb)
}

fn fast() -> Limits {
    Limits { wall_seconds: 4.0, cpu_seconds: 3, ..Limits::default() }
}

fn run(rt: &tokio::runtime::Runtime, sb: &Sandbox, code: &str) -> Run {
    let p = Program { files: vec![("main.py".into(), code.into())], main: "main.py".into(), stdin: String::new() };
    rt.block_on(sb.run(&p)).unwrap()
}

/// After each hostile program, an honest one still runs.
fn still_works(rt: &tokio::runtime::Runtime, sb: &Sandbox) {
    let r = run(rt, sb, "print(sum(range(10)))");
    assert!(r.ok() && r.stdout.trim() == "45", "{r:?}");
}

#[test]
fn time_limits_kill_loops_and_sleepers() {
    let (rt, sb) = sandbox(fast());
    let r = run(&rt, &sb, "while True:\n    pass\n");
    assert!(matches!(r.status, RunStatus::Signalled(_) | RunStatus::TimedOut), "{r:?}");
    let r = run(&rt, &sb, "import time\ntime.sleep(10**6)\n");
    assert_eq!(r.status, RunStatus::TimedOut);
    assert!(r.seconds < 10.0, "{}", r.seconds);
    still_works(&rt, &sb);
}

/// The command lines of this host's processes.
fn command_lines() -> Vec<String> {
    let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
    String::from_utf8_lossy(&ps.stdout).lines().map(str::to_string).collect()
}

/// Processes on this host whose command line holds `marker`.
fn processes_named(marker: &str) -> usize {
    command_lines().iter().filter(|l| l.contains(marker)).count()
}

/// Runs `work` while another thread samples every 20 ms; returns its result and the samples
/// folded by `pick` (the least, the most), starting from `start`.
fn while_sampling<R, T: Send>(work: impl FnOnce() -> R, sample: impl Fn() -> T + Sync, pick: fn(T, T) -> T, start: T) -> (R, T) {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut acc = start;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                acc = pick(acc, sample());
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            acc
        });
        let r = work();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (r, watcher.join().unwrap())
    })
}

#[test]
fn a_fork_bomb_and_subprocesses_die_with_the_run() {
    let (rt, sb) = sandbox(fast());
    // Each child sleeps, so only the process limit can stop the forking: it ends on EAGAIN from
    // fork within the limit, and every child is gone once the run returns.
    let bomb = format!("forkbomb_{}.py", std::process::id());
    let code = "import errno, os, time\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError as e:\n        print('refused after', n, errno.errorcode[e.errno])\n        break\n    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n    n += 1\n";
    let p = Program { files: vec![(bomb.clone(), code.into())], main: bomb.clone(), stdin: String::new() };
    let r = rt.block_on(sb.run(&p)).unwrap();
    assert!(r.ok() && r.stdout.contains("EAGAIN"), "{r:?}");
    let forks: u64 = r.stdout.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(forks < sb.limits.processes, "{forks} forks under a limit of {}", sb.limits.processes);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(processes_named(&bomb), 0, "forked children outlived the run");
    // A child left running in the background (its own session) is gone once the run returns.
    let marker = format!("thinkscale-orphan-{}", std::process::id());
    let code = format!("import subprocess\nsubprocess.Popen(['/bin/sh', '-c', 'exec -a {marker} sleep 1000'], start_new_session=True)\nprint(subprocess.run(['/bin/echo', 'child ran'], capture_output=True, text=True).stdout)\n");
    let r = run(&rt, &sb, &code);
    assert!(r.ok() && r.stdout.contains("child ran"), "{r:?}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(processes_named(&marker), 0, "a sandboxed child outlived its run");
    still_works(&rt, &sb);
}

#[test]
fn memory_and_output_are_capped() {
    let (rt, sb) = sandbox(fast());
    // The address-space limit: allocations fail inside the program (MemoryError), well before the
    // wall clock; a 4 GB buffer would fit in this machine's memory without it.
    let r = run(&rt, &sb, "x = bytearray(4 * 1024**3)\nprint('allocated')\n");
    assert!(!r.ok() && !r.stdout.contains("allocated") && r.stderr.contains("MemoryError"), "{r:?}");
    let r = run(&rt, &sb, "blob = []\nwhile True:\n    blob.append(' ' * 10**7)\n");
    assert!(r.stderr.contains("MemoryError"), "{r:?}");
    let r = run(&rt, &sb, "import sys\nchunk = 'x' * 2**20\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n");
    assert_eq!(r.status, RunStatus::OutputLimit);
    assert!(r.stdout.len() <= sb.limits.output_bytes);
    let r = run(&rt, &sb, "with open('big', 'w') as f:\n    f.write('x' * 100 * 2**20)\n");
    assert!(!r.ok(), "a 100 MB file passed the file-size limit: {r:?}");
    still_works(&rt, &sb);
}

#[test]
fn the_hosts_files_are_absent_or_read_only() {
    let (rt, sb) = sandbox(fast());
    let own = env!("CARGO_MANIFEST_DIR");
    let code = format!(
        r#"
import os
for path in ['/etc/shadow', '/etc/passwd', '{own}/Cargo.toml', '/root', os.path.expanduser('~root')]:
    try:
        open(path).read()
        print('READ', path)
    except OSError as e:
        print('denied', path, type(e).__name__)
for path in ['/usr/evil', '/evil', '{own}/evil', '/sandbox/../evil']:
    try:
        open(path, 'w').write('x')
        print('WROTE', path)
    except OSError as e:
        print('denied', path, type(e).__name__)
open('mine.txt', 'w').write('ok')
print('own dir writable', open('mine.txt').read())
print('pids', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))
"#
    );
    let r = run(&rt, &sb, &code);
    assert!(r.ok(), "{r:?}");
    assert!(!r.stdout.contains("READ") && !r.stdout.contains("WROTE"), "{}", r.stdout);
    assert!(r.stdout.contains("own dir writable ok"));
    // Its own PID namespace: a handful of processes, none of the host's.
    let pids = r.stdout.lines().find(|l| l.starts_with("pids")).unwrap();
    assert!(pids.matches(',').count() < 4, "{pids}");
    assert!(!std::path::Path::new(own).join("evil").exists());
    still_works(&rt, &sb);
}

#[test]
fn no_network_not_even_loopback() {
    let (rt, sb) = sandbox(fast());
    // A listener of this process on loopback: the server a program might try to reach.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!(
        r#"
import socket
for host, port in [('127.0.0.1', {port}), ('1.1.1.1', 80), ('10.0.0.1', 443)]:
    try:
        socket.create_connection((host, port), timeout=2)
        print('CONNECTED', host)
    except OSError as e:
        print('refused', host, type(e).__name__)
try:
    socket.getaddrinfo('example.com', 80)
    print('RESOLVED')
except OSError:
    print('no dns')
"#
    );
    let r = run(&rt, &sb, &code);
    assert!(r.ok(), "{r:?}");
    assert!(!r.stdout.contains("CONNECTED") && !r.stdout.contains("RESOLVED"), "{}", r.stdout);
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "a sandboxed program reached the host's loopback");
    still_works(&rt, &sb);
}

#[test]
fn killing_the_parent_kills_nothing_outside() {
    let (rt, sb) = sandbox(fast());
    let r = run(&rt, &sb, "import os, signal\nfor pid in (os.getppid(), 1, -1):\n    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError as e:\n        print(pid, type(e).__name__)\nprint('still here')\n");
    // Whatever it managed inside its namespace, this process and the sandbox carry on.
    assert!(!matches!(r.status, RunStatus::TimedOut), "{r:?}");
    still_works(&rt, &sb);
}

#[test]
fn the_harness_scores_programs_and_contains_hostile_tests() {
    let (rt, sb) = sandbox(Limits { wall_seconds: 6.0, ..Limits::default() });
    let prompt = "def add(a, b):\n    \"\"\"\n    >>> add(2, 3)\n    5\n    >>> add(-1, 1)\n    0\n    \"\"\"\n";
    let suite =
        Suite { entry_point: Some("add".into()), examples: thinkscale::reasoning::code::examples(prompt, Some("add")), ..Suite::default() };
    let good = rt.block_on(harness::run(&sb, "def add(a, b):\n    print('noise')\n    return a + b\n", &suite, 8)).unwrap();
    assert_eq!((good.cases, good.passed, good.loaded), (2, 2, true), "{good:?}");
    let same = rt.block_on(harness::run(&sb, "def add(x, y):\n    return y + x\n", &suite, 8)).unwrap();
    assert_eq!(same.behaviour, good.behaviour, "equal programs behave alike on the probes");
    let wrong = rt.block_on(harness::run(&sb, "def add(a, b):\n    return a * b + 1\n", &suite, 8)).unwrap();
    assert_eq!(wrong.passed, 1);
    assert_ne!(wrong.behaviour, good.behaviour);
    let none = rt.block_on(harness::run(&sb, "def subtract(a, b):\n    return a - b\n", &suite, 8)).unwrap();
    assert!(!none.loaded && none.error.as_deref().unwrap_or("").contains("add"), "{none:?}");
    // Client-sent tests are untrusted too. Each hostile suite ends in an assert that holds, so it
    // passes exactly when its hostile part got through: the guard named beside it stops it.
    let secret = std::env::temp_dir().join(format!("thinkscale-secret-{}", uuid::Uuid::new_v4()));
    std::fs::write(&secret, "SECRET").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    for (guard, hostile) in [
        ("the wall clock", "import time\ntime.sleep(10**6)".to_string()),
        (
            "the process limit",
            "import os, time\nfor _ in range(64):\n    if os.fork() == 0:\n        time.sleep(30)\n        os._exit(0)".into(),
        ),
        ("the memory limit", "x = ' ' * (2 * 10**9)".into()),
        ("the output cap", "import sys\nfor _ in range(512):\n    sys.stdout.write('x' * 2**20)".into()),
        ("the mount namespace", format!("data = open('{}').read()", secret.display())),
        ("the network namespace", format!("import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)")),
    ] {
        let tests = format!("{hostile}\nassert add(1, 1) == 2");
        let s = Suite { entry_point: Some("add".into()), tests: Some(tests), ..Suite::default() };
        let r = rt.block_on(harness::run(&sb, "def add(a, b):\n    return a + b\n", &s, 0)).unwrap();
        assert_eq!(r.passed, 0, "{guard} did not stop: {hostile}: {r:?}");
    }
    std::fs::remove_file(&secret).unwrap();
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "a client's test reached the host's loopback");
    let asserts = Suite {
        tests: Some("import math\nassert add(1, 2) == 3\nassert add(2, 2) == 5\nassert math.isfinite(add(0.5, 0.5))".into()),
        ..Suite::default()
    };
    let r = rt.block_on(harness::run(&sb, "def add(a, b):\n    return a + b\n", &asserts, 0)).unwrap();
    assert_eq!((r.cases, r.passed), (3, 2), "{r:?}");
    // A model's own failing assert and example call at top level sink the program as written;
    // definitions only, with the prompt's imports before it, it loads and passes.
    let chatty = "def add(a: List[int], b):\n    return a + b\n\nassert add(1, 1) == 3\nprint(add(2, 2))\nif __name__ == '__main__':\n    raise SystemExit(add(1, 2))\n";
    let as_written = rt.block_on(harness::run(&sb, chatty, &suite, 0)).unwrap();
    assert!(!as_written.loaded, "{as_written:?}");
    let defs = Suite { prelude: "from typing import List".into(), definitions_only: true, ..suite.clone() };
    let r = rt.block_on(harness::run(&sb, chatty, &defs, 0)).unwrap();
    assert_eq!((r.loaded, r.passed), (true, 2), "{r:?}");
    still_works(&rt, &sb);
}

/// Statfs free bytes of the filesystem holding `path`.
fn free_bytes(path: &std::path::Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bavail as u64 * st.f_frsize as u64
}

#[test]
fn a_disk_bomb_fills_only_its_own_small_tmpfs() {
    let (rt, sb) = sandbox(fast());
    // 300 files of 10 MB, each under the per-file limit: 3 GB if nothing capped the total.
    let code = "import errno\nchunk = b'x' * 10 * 2**20\nn = 0\ntry:\n    for i in range(300):\n        with open(f'f{i}', 'wb') as f:\n            f.write(chunk)\n        n += 1\nexcept OSError as e:\n    print('stopped after', n, errno.errorcode[e.errno])\nimport time\ntime.sleep(1)\n";
    // The host's free space, watched while the program runs (its files would be gone after).
    let tmp = std::env::temp_dir();
    let before = free_bytes(&tmp);
    let (r, least) = while_sampling(|| run(&rt, &sb, code), || free_bytes(&tmp), u64::min, u64::MAX);
    // Other tests write a little meanwhile; 3 GB, or even the tmpfs's 64 MB, would show.
    let dropped = before.saturating_sub(least) / (1024 * 1024);
    assert!(dropped < 32, "the host's free space fell by {dropped} MB during the run: {r:?}");
    assert!(r.ok() && r.stdout.contains("ENOSPC"), "{r:?}");
    let files: u64 = r.stdout.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(files * 10 <= sb.limits.disk_mb, "{files} files of 10 MB in a {} MB tmpfs", sb.limits.disk_mb);
    still_works(&rt, &sb);
}

#[test]
fn syscall_escapes_are_refused_and_ordinary_processes_still_work() {
    let (rt, sb) = sandbox(fast());
    let code = r#"
import ctypes, errno, os, subprocess, sys, threading
sys.stdout.reconfigure(line_buffering=True)
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def result(r):
    return 'ok' if r >= 0 else errno.errorcode[ctypes.get_errno()]
print('unshare', result(libc.unshare(0x10000000)))
print('ptrace', result(libc.ptrace(0, 0, None, None)))
params = ctypes.create_string_buffer(120)
print('io_uring_setup', result(libc.syscall(425, 1, params)))
print('keyctl', result(libc.syscall(250, 0, -3, 0)))
print('bpf', result(libc.syscall(321, 0, None, 0)))
print('perf_event_open', result(libc.syscall(298, None, 0, -1, -1, 0)))
print('mount', result(libc.mount(b'none', b'/sandbox', b'tmpfs', 0, None)))
r = libc.syscall(56, 0x10000000 | 17, None, None, None, None)
if r == 0:
    os._exit(0)
print('clone_newuser', result(r))
print('clone3', result(libc.syscall(435, None, 0)))
t = threading.Thread(target=lambda: print('thread ran'))
t.start()
t.join()
print(subprocess.run(['/bin/echo', 'subprocess ran'], capture_output=True, text=True).stdout.strip())
pid = os.fork()
if pid == 0:
    os._exit(7)
print('fork ran', os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"#;
    let r = run(&rt, &sb, code);
    for call in ["unshare", "ptrace", "io_uring_setup", "keyctl", "bpf", "perf_event_open", "mount", "clone_newuser"] {
        assert!(r.stdout.contains(&format!("{call} EPERM")), "{call}: {}", r.stdout);
    }
    // clone3's flags cannot be filtered: it answers ENOSYS, and glibc falls back to clone.
    assert!(r.stdout.contains("clone3 ENOSYS"), "{}", r.stdout);
    assert!(r.ok(), "{r:?}");
    for ran in ["thread ran", "subprocess ran", "fork ran 7"] {
        assert!(r.stdout.contains(ran), "{ran}: {}", r.stdout);
    }
    still_works(&rt, &sb);
}

#[test]
fn no_more_than_the_concurrency_cap_run_at_once() {
    let (rt, sb) = sandbox(Limits { concurrency: 2, ..fast() });
    let marker = format!("capped_{}.py", std::process::id());
    let program = Program {
        files: vec![(marker.clone(), "import time\ntime.sleep(1)\nprint('done')\n".into())],
        main: marker.clone(),
        stdin: String::new(),
    };
    // Each run is one interpreter with the program's name on its command line (and bwrap's two
    // processes, which carry it too).
    let alive = || command_lines().iter().filter(|l| l.contains(&marker) && !l.contains("bwrap")).count();
    let started = std::time::Instant::now();
    let (runs, most) = while_sampling(|| rt.block_on(futures::future::join_all((0..3).map(|_| sb.run(&program)))), alive, usize::max, 0);
    for r in runs {
        let r = r.unwrap();
        assert!(r.ok() && r.stdout.contains("done"), "{r:?}");
    }
    assert_eq!(most, 2, "programs alive at once");
    // The third waited for a permit: two rounds of one second.
    assert!(started.elapsed().as_secs_f64() >= 2.0, "{:?}", started.elapsed());
}

#[test]
fn without_bubblewrap_the_server_refuses_to_run_code() {
    // No bwrap on PATH: `serve --code-exec python` stops before it loads anything (the model path
    // only has to exist) and names what is missing; it never runs code unisolated.
    let empty = std::env::temp_dir().join(format!("thinkscale-nobwrap-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_thinkscale"))
        .args(["serve", "--code-exec", "python", "--port", "0", "--model", "Cargo.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", &empty)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("bubblewrap"), "{err}");
    std::fs::remove_dir(&empty).unwrap();
}

/// Whether this host mounts cgroup v2 with the pids or memory controller (read here without the
/// sandbox's code).
fn host_offers_cgroup_v2() -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo.lines().filter(|l| l.contains(" - cgroup2 ")).any(|l| {
        let root = l.split_whitespace().nth(4).unwrap();
        let offered = std::fs::read_to_string(format!("{root}/cgroup.controllers")).unwrap_or_default();
        offered.split_whitespace().any(|c| c == "pids" || c == "memory")
    })
}

#[test]
fn cgroup_limits_bind_the_whole_run_where_offered_and_their_absence_is_said() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let required = Limits { cgroup: CgroupMode::Required, ..fast() };
    match rt.block_on(Sandbox::new(Language::Python, required)) {
        Err(e) => {
            assert!(!host_offers_cgroup_v2(), "cgroup v2 is offered here, yet: {e}");
            assert!(e.to_string().contains("cgroup limits are required"), "{e}");
            // The default falls back to rlimits and says why in the start-up guards.
            let (_rt, sb) = sandbox(fast());
            assert!(sb.guards().contains("no cgroup limits: "), "{}", sb.guards());
        }
        Ok(sb) => {
            let guards = sb.guards();
            assert!(guards.contains("cgroup v2 limits for the whole run"), "{guards}");
            // Sleeping children: only a process limit stops the forking.
            let code = "import errno, os, time\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError as e:\n        print('refused after', n, errno.errorcode[e.errno])\n        break\n    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n    n += 1\n";
            let r = run(&rt, &sb, code);
            assert!(r.ok() && r.stdout.contains("EAGAIN"), "{r:?}");
            // The run's cgroup is removed once it is over.
            let parent = guards.rsplit(" under ").next().unwrap().split(';').next().unwrap().trim().to_string();
            std::thread::sleep(std::time::Duration::from_secs(3));
            let left: Vec<_> =
                std::fs::read_dir(&parent).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("run-")).collect();
            assert!(left.is_empty(), "run cgroups left under {parent}: {}", left.len());
            still_works(&rt, &sb);
        }
    }
}
