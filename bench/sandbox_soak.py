#!/usr/bin/env python3
"""Mixed sandbox soak: code requests with `verifier: "tests"` from several clients, a third of them
carrying hostile client tests (fork, memory, disk and output bombs, syscall escapes, a sleeper, reads
of host files, a socket to the host). Checks as it goes: no 5xx, every honest request answered 200.
Records the server's RSS along the run, and afterwards that no sandboxed process and no sandbox
temp directory is left, and the host's free disk space. Writes docs/bench/<date>-sandbox-soak.{md,json}.

  python3 bench/sandbox_soak.py [--requests 300] [--clients 4] [--model models/qwen2.5-coder-0.5b-instruct.gguf]
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BIN, ROOT, free_port  # noqa: E402

PROMPT = ("Complete this function:\n```python\ndef add(a, b):\n    \"\"\"Return the sum of a and b.\n"
          "    >>> add(2, 3)\n    5\n    \"\"\"\n```")
HONEST = "assert add(2, 3) == 5\nassert add(-1, 1) == 0"
HOSTILE = {
    "fork bomb": "import os\nwhile True:\n    os.fork()",
    "memory bomb": "x = ' ' * (8 * 10**9)",
    "disk bomb": "for i in range(300):\n    open(f'f{i}', 'wb').write(b'x' * 10 * 2**20)",
    "output bomb": "import sys\nwhile True:\n    sys.stderr.write('x' * 2**20)",
    "sleeper": "import time\ntime.sleep(10**6)",
    "user namespace": "import ctypes\nassert ctypes.CDLL(None).unshare(0x10000000) == 0",
    "ptrace": "import ctypes\nassert ctypes.CDLL(None).ptrace(0, 0, None, None) == 0",
    "host files": "print(open('/etc/shadow').read())",
    "network": "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=2)",
}


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sandbox_leftovers():
    """Processes of the sandbox (bwrap, or a uid from its range) and its temp directories."""
    procs = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            status = (p / "status").read_text()
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        uid = int(next(l for l in status.splitlines() if l.startswith("Uid:")).split()[1])
        if "bwrap" in cmd or 0x4000_0000 <= uid < 0x4001_0000:
            procs.append(cmd.strip())
    dirs = [d.name for d in Path(tempfile.gettempdir()).glob("thinkscale-sandbox-*")]
    return procs, dirs


def free_mb():
    st = os.statvfs(tempfile.gettempdir())
    return st.f_bavail * st.f_frsize / 2**20


def post(port, body, timeout=600):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--model", default=str(ROOT / "models" / "qwen2.5-coder-0.5b-instruct.gguf"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench" / f"{datetime.date.today()}-sandbox-soak"))
    a = ap.parse_args()
    before_procs, before_dirs = sandbox_leftovers()
    free_before = free_mb()
    port = free_port()
    server = subprocess.Popen([str(BIN), "serve", "--model", a.model, "--port", str(port), "--code-exec", "python",
                               "--parallel", str(a.clients * a.samples)],
                              env={**os.environ, "RUST_LOG": "warn"}, stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.5)
        kinds = list(HOSTILE)
        jobs = [(i, None if i % 3 else kinds[(i // 3) % len(kinds)]) for i in range(a.requests)]
        results, rss, lock = [], [], threading.Lock()
        t0 = time.time()

        def client():
            while True:
                with lock:
                    if not jobs:
                        return
                    i, kind = jobs.pop(0)
                tests = HOSTILE[kind] + "\n" + HONEST if kind else HONEST
                body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": a.max_tokens, "temperature": 0.8,
                        "seed": i, "reasoning": {"enabled": False, "samples": a.samples, "verifier": "tests", "tests": tests}}
                start = time.time()
                status, v = post(port, body)
                samples = (v["choices"][0].get("thinkscale") or {}).get("samples", []) if status == 200 else []
                ran = [s.get("tests") for s in samples if s.get("tests")]
                with lock:
                    results.append({"i": i, "kind": kind or "honest", "status": status, "seconds": round(time.time() - start, 2),
                                    "tests": ran, "error": None if status == 200 else v.get("error", {}).get("message")})
                    done = len(results)
                    if done % 25 == 0:
                        rss.append({"requests": done, "seconds": round(time.time() - t0, 1), "rss_mb": round(rss_mb(server.pid), 1)})
                        print(f"{done}/{a.requests} requests, {rss[-1]['rss_mb']} MB RSS", file=sys.stderr)

        threads = [threading.Thread(target=client) for _ in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.time() - t0
        alive = server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=60)
    time.sleep(1)
    procs, dirs = sandbox_leftovers()
    by_kind = {}
    for r in results:
        k = by_kind.setdefault(r["kind"], {"requests": 0, "200": 0, "5xx": 0, "other": 0, "passed_all": 0, "checked": 0})
        k["requests"] += 1
        k["200" if r["status"] == 200 else "5xx" if r["status"] >= 500 else "other"] += 1
        for t in r["tests"]:
            k["checked"] += 1
            k["passed_all"] += int(t["run"] > 0 and t["passed"] == t["run"])
    summary = {
        "requests": len(results), "clients": a.clients, "samples": a.samples, "wall_seconds": round(wall, 1),
        "server_alive_at_end": alive, "by_kind": by_kind, "rss": rss,
        "leftover_processes": [p for p in procs if p not in before_procs],
        "leftover_temp_dirs": [d for d in dirs if d not in before_dirs],
        "free_disk_mb": {"before": round(free_before), "after": round(free_mb())},
        "errors": sorted({r["error"] for r in results if r["error"]}),
    }
    Path(a.out + ".json").write_text(json.dumps({"summary": summary, "results": results}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    fives = sum(k["5xx"] for k in by_kind.values())
    honest = by_kind.get("honest", {})
    ok = fives == 0 and honest.get("200") == honest.get("requests") and alive and not summary["leftover_processes"] \
        and not summary["leftover_temp_dirs"]
    print("PASS" if ok else "FAIL", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
