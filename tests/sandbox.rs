//! The sandbox against hostile programs: each is contained and reported, and the sandbox (and the
//! test process that owns it) keeps running programs afterwards. Needs bubblewrap, not root.

use std::net::TcpListener;

use thinkscale::reasoning::code::Suite;
use thinkscale::sandbox::{harness, Language, Limits, Program, Run, RunStatus, Sandbox};

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

#[test]
fn a_fork_bomb_and_subprocesses_die_with_the_run() {
    let (rt, sb) = sandbox(fast());
    let r = run(&rt, &sb, "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n");
    assert!(!r.ok(), "{r:?}");
    // A child left running in the background (its own session) is gone once the run returns.
    let marker = format!("thinkscale-orphan-{}", std::process::id());
    let code = format!("import subprocess\nsubprocess.Popen(['/bin/sh', '-c', 'exec -a {marker} sleep 1000'], start_new_session=True)\nprint(subprocess.run(['/bin/echo', 'child ran'], capture_output=True, text=True).stdout)\n");
    let r = run(&rt, &sb, &code);
    assert!(r.ok() && r.stdout.contains("child ran"), "{r:?}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&ps.stdout).contains(&marker), "a sandboxed child outlived its run");
    still_works(&rt, &sb);
}

#[test]
fn memory_and_output_are_capped() {
    let (rt, sb) = sandbox(fast());
    let r = run(&rt, &sb, "x = bytearray(4 * 1024**3)\nprint('allocated')\n");
    assert!(!r.ok() && !r.stdout.contains("allocated"), "{r:?}");
    let r = run(&rt, &sb, "blob = []\nwhile True:\n    blob.append(' ' * 10**7)\n");
    assert!(!r.ok(), "{r:?}");
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
    // Client-sent tests are untrusted too: hostile setup code is contained like a hostile program.
    for hostile in [
        "import time\ntime.sleep(10**6)\nassert add(1, 1) == 2",
        "import os\nwhile True:\n    os.fork()",
        "x = ' ' * 10**10",
        "print(open('/etc/shadow').read())\nassert add(1, 1) == 2",
    ] {
        let s = Suite { entry_point: Some("add".into()), tests: Some(hostile.into()), ..Suite::default() };
        let r = rt.block_on(harness::run(&sb, "def add(a, b):\n    return a + b\n", &s, 0)).unwrap();
        assert_eq!(r.passed, 0, "{hostile}: {r:?}");
    }
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
