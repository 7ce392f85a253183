#!/usr/bin/env python3
"""Side-by-side benchmark: the bare decode loop (ceiling), thinkscale, and a peer server —
llama.cpp's own llama-server (built by scripts/llama-server.sh; the default) or llama-cpp-python's
OpenAI server — same GGUF, context size, slots, threads, prompts and output length, in one run.
Writes a markdown table and raw JSON under docs/bench/."""
import argparse
import datetime
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
BIN = TARGET / "release" / "thinkscale"
PROMPT = "Write a story about a robot who learns to paint."


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Server:
    def __init__(self, name, cmd, port, ready_path):
        self.name, self.port = name, port
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=2):
                    pass
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                    self.models = json.load(r)
                    break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"{name} did not start: {' '.join(map(str, cmd))}")
                time.sleep(0.2)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def stat_cpu(path):
    """user + system CPU seconds from a /proc stat file (fields 14 and 15; the name before them may hold spaces)."""
    fields = open(path).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid):
    """CPU seconds used so far by each thread name of a process (from /proc), so a run can say
    where its cycles went: llama.cpp compute (the engine thread and the OpenMP workers it
    starts, which inherit its name), the HTTP runtime, or the benchmark client itself."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            out[name] = out.get(name, 0.0) + stat_cpu(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue
    return out


def process_cpu(pid):
    """CPU seconds of a whole process, threads that have exited included (the peer serves each
    request on a short-lived thread, which the per-thread view misses)."""
    return stat_cpu(f"/proc/{pid}/stat")


def cpu_share(before, after, total_s, client_s, wall):
    """Shares of all cores over the wall time: per live server thread name, the whole server
    process, and the client."""
    cores = os.cpu_count() * wall
    server = {k: round((after.get(k, 0.0) - before.get(k, 0.0)) / cores, 4) for k in after}
    return {"server": {k: v for k, v in server.items() if v > 0}, "server_total": round(total_s / cores, 4),
            "client": round(client_s / cores, 4)}


def chat(port, body):
    """Stream one chat completion; return (ttft_s, e2e_s, completion_tokens, prompt_tokens)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", json.dumps({**body, "stream": True, "stream_options": {"include_usage": True}}),
                 {"content-type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    ttft, chunks, usage = None, 0, None
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        data = json.loads(line[6:])
        if data.get("usage"):
            usage = data["usage"]
        for c in data.get("choices", []):
            if (c.get("delta") or {}).get("content"):
                chunks += 1
                ttft = ttft or time.perf_counter() - t0
    e2e = time.perf_counter() - t0
    conn.close()
    tokens = usage["completion_tokens"] if usage else chunks
    return ttft or e2e, e2e, tokens, usage["prompt_tokens"] if usage else 0


def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=900) as r:
        return json.load(r)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))]


def load(server, conc, n_requests, body):
    """n_requests through `conc` workers; aggregate tokens/s, TTFT and latency percentiles, peak RSS."""
    results, lock, jobs = [], threading.Lock(), list(range(n_requests))
    peak = [rss_mb(server.proc.pid)]

    def worker():
        while True:
            with lock:
                if not jobs:
                    return
                jobs.pop()
            r = chat(server.port, body)
            with lock:
                results.append(r)

    def watch():
        while any(t.is_alive() for t in threads):
            peak[0] = max(peak[0], rss_mb(server.proc.pid))
            time.sleep(0.1)

    cpu0, total0, client0 = thread_cpu(server.proc.pid), process_cpu(server.proc.pid), sum(os.times()[:2])
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads:
        t.start()
    w = threading.Thread(target=watch)
    w.start()
    for t in threads:
        t.join()
    w.join()
    wall = time.perf_counter() - t0
    cpu = cpu_share(cpu0, thread_cpu(server.proc.pid), process_cpu(server.proc.pid) - total0, sum(os.times()[:2]) - client0, wall)
    ttfts, e2es, toks = [r[0] for r in results], [r[1] for r in results], sum(r[2] for r in results)
    return {"concurrency": conc, "requests": n_requests, "tokens": toks, "wall_s": wall, "tokens_per_s": toks / wall,
            "ttft_p50_s": pct(ttfts, 50), "ttft_p99_s": pct(ttfts, 99), "e2e_p50_s": pct(e2es, 50), "e2e_p99_s": pct(e2es, 99),
            "rss_peak_mb": peak[0], "cpu": cpu}


def median_run(runs, key):
    """The run whose `key` is the median (the lower middle one for an even count)."""
    return sorted(runs, key=lambda r: r[key])[(len(runs) - 1) // 2]


def metric(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return float("nan")


def self_consistency(server, body, ours):
    """8 chains for one prompt: one samples:8 request (ours), 8 concurrent and 8 sequential requests.
    Prompt tokens processed: our prefill counter (forks and the prefix cache make it smaller than
    the prompt x 8); for the peer, the prompt tokens it reports (it may reuse a cached prefix)."""
    out = {}
    sampled = {**body, "temperature": 0.7}
    counted = lambda: metric(server.port, "thinkscale_prompt_tokens_total") if ours else 0.0

    def run(label, fn):
        before = counted()
        t0 = time.perf_counter()
        reported = fn()
        out[f"{label}_wall_s"] = time.perf_counter() - t0
        out[f"{label}_prompt_tokens_processed"] = counted() - before if ours else reported

    if ours:
        run("samples8", lambda: post(server.port, {**sampled, "reasoning": {"samples": 8}})["usage"]["prompt_tokens"])

    def concurrent():
        res = []
        threads = [threading.Thread(target=lambda i=i: res.append(post(server.port, {**sampled, "seed": i}))) for i in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return sum(r["usage"]["prompt_tokens"] for r in res)

    run("concurrent8", concurrent)
    run("sequential8", lambda: sum(post(server.port, {**sampled, "seed": i})["usage"]["prompt_tokens"] for i in range(8)))
    return out


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    gpu = subprocess.run(["sh", "-c", "nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null"], capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_mb": mem, "gpu": gpu or None, "os": platform.platform()}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=str(ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--tokens", type=int, default=128, help="generated tokens per request (end-of-generation banned)")
    ap.add_argument("--concurrency", default="1,4,8,16")
    ap.add_argument("--requests", type=int, default=0, help="requests per level (default: max(8, 2 x concurrency))")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--ctx-size", type=int, default=16384)
    ap.add_argument("--gpu-layers", type=int, default=None)
    ap.add_argument("--cache-type", choices=["q8_0", "f16"], default="q8_0",
                    help="KV cache type, for thinkscale and llama-server alike (llama-server's own default is f16)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of every level; the median run is reported")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--peer", choices=["llama-server", "llama-cpp-python"], default="llama-server")
    ap.add_argument("--skip-ceiling", action="store_true")
    ap.add_argument("--features", default="", help="cargo features the binary was built with (recorded)")
    ap.add_argument("--out", default=str(ROOT / "docs/bench"))
    a = ap.parse_args()
    levels = [int(c) for c in a.concurrency.split(",")]
    par = max(levels)
    gl = [] if a.gpu_layers is None else ["--gpu-layers", str(a.gpu_layers)]
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "model": Path(a.model).name, "repeat": a.repeat, "tokens_per_request": a.tokens, "threads": a.threads, "ctx_size": a.ctx_size, "cache_type": a.cache_type,
              "build": {"profile": "release", "features": a.features or "default (CPU)",
                        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()}}
    print(json.dumps(report["machine"]))

    def ceiling():
        out = subprocess.run([str(BIN), "bench-ceiling", "--model", a.model, "--seqs", a.concurrency, "--tokens", str(a.tokens),
                              "--ctx-size", str(a.ctx_size), "--parallel", str(par), "--threads", str(a.threads), "--cache-type", a.cache_type, *gl],
                             capture_output=True, text=True, check=True).stdout
        rows = json.loads(out)
        print("ceiling", [round(r["tokens_per_second"], 1) for r in rows])
        return rows

    ceiling_runs = []
    servers = [("thinkscale", [str(BIN), "serve", "--model", a.model, "--parallel", str(par), "--ctx-size", str(a.ctx_size),
                               "--threads", str(a.threads), "--cache-type", a.cache_type, *gl], True)]
    if not a.skip_peer and a.peer == "llama-server":
        llama_server = subprocess.run([str(ROOT / "scripts" / "llama-server.sh")], capture_output=True, text=True, check=True).stdout.strip()
        # -np slots as our --parallel; -c the same total context; prompt caching is its default.
        servers.append(("peer", [str(ROOT / llama_server), "-m", a.model, "-c", str(a.ctx_size), "-np", str(par), "-t", str(a.threads),
                                 "-tb", str(a.threads), "--no-webui", "-ctk", a.cache_type, "-ctv", a.cache_type, *(["-ngl", str(a.gpu_layers)] if a.gpu_layers is not None else [])], False))
    elif not a.skip_peer:
        servers.append(("peer", [sys.executable, "-m", "llama_cpp.server", "--model", a.model, "--n_ctx", str(a.ctx_size),
                                 "--n_threads", str(a.threads), "--n_threads_batch", str(a.threads),
                                 # queue concurrent requests instead of cutting the running one short
                                 "--interrupt_requests", "False",
                                 *(["--n_gpu_layers", str(a.gpu_layers)] if a.gpu_layers is not None else [])], False))
    report["peer_name"] = a.peer
    for name, cmd, ours in servers:
        port = free_port()
        cmd = cmd + (["--port", str(port)] if ours else ["--port", str(port), "--host", "127.0.0.1"])
        srv = Server(name, cmd, port, "/health" if ours or a.peer == "llama-server" else "/v1/models")
        eog = srv.models["data"][0].get("meta", {}).get("eog_token_ids") if ours else report.get("eog")
        if ours:
            report["eog"] = eog
        body = {"model": "bench", "messages": [{"role": "user", "content": PROMPT}], "temperature": 0, "max_tokens": a.tokens,
                "logit_bias": {str(t): -100 for t in (eog or [])}}
        chat(port, body)  # warm-up
        entry = {"rss_idle_mb": rss_mb(srv.proc.pid), "levels": []}
        runs = {c: [] for c in levels}
        # Shared machines drift: every level runs --repeat times, the ceiling in between (while our
        # server idles), and the median run of each level is reported.
        for _ in range(a.repeat):
            if ours and not a.skip_ceiling:
                ceiling_runs.append(ceiling())
            for c in levels:
                r = load(srv, c, a.requests or max(8, 2 * c), body)
                runs[c].append(r)
                print(name, f"c={c}", f"{r['tokens_per_s']:.1f} tok/s", f"ttft p50 {r['ttft_p50_s']:.3f}s", f"rss {r['rss_peak_mb']:.0f} MB")
        for c in levels:
            r = median_run(runs[c], "tokens_per_s")
            entry["levels"].append({**r, "runs_tokens_per_s": [x["tokens_per_s"] for x in runs[c]]})
        if ceiling_runs:
            report["ceiling"] = [{**median_run([run[i] for run in ceiling_runs], "tokens_per_second"),
                                  "runs_tokens_per_second": [run[i]["tokens_per_second"] for run in ceiling_runs]}
                                 for i in range(len(levels))]
        entry["self_consistency"] = self_consistency(srv, body, ours)
        print(name, entry["self_consistency"])
        entry["rss_load_mb"] = max(l["rss_peak_mb"] for l in entry["levels"])
        report[name] = entry
        srv.stop()

    write(report, Path(a.out))


def ratio(x, y):
    return f"{x / y:.2f}x" if x and y else "–"


def write(r, out):
    out.mkdir(parents=True, exist_ok=True)
    stem = r["date"][:10] + ("-gpu" if r["machine"]["gpu"] else "-cpu")
    (out / f"{stem}.json").write_text(json.dumps(r, indent=2))
    ts, peer = r.get("thinkscale"), r.get("peer", r.get("llama-cpp-python"))
    peer_name = r.get("peer_name", "llama-cpp-python")
    ceil = {c["sequences"]: c for c in r.get("ceiling", [])}
    m = r["machine"]
    lines = [f"# Benchmark {r['date']}", "",
             f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_mb']} MB RAM" + (f", GPU {m['gpu']}" if m["gpu"] else ""),
             f"- model: {r['model']}; {r['tokens_per_request']} generated tokens per request (greedy, end-of-generation banned); "
             f"ctx {r['ctx_size']}; {r['threads']} threads; KV cache {r.get('cache_type', 'q8_0 (thinkscale), f16 (peer)')}; peer: {peer_name}",
             f"- build: {r['build']['profile']}, features {r['build']['features']}, git {r['build']['git']}",
             "- reproduce: `bench/run.sh` (ratios are measured side by side in this one run); throughput, latency and "
             f"CPU figures are each level's median run of {r.get('repeat', 1)} (every run's tokens/s is in the JSON)", "",
             "## Aggregate throughput and latency", "",
             "| concurrency | ceiling tok/s | thinkscale tok/s | peer tok/s | thinkscale / ceiling | thinkscale / peer | TTFT p50 / p99 (ts) | TTFT p50 / p99 (peer) | e2e p50 / p99 (ts) | e2e p50 / p99 (peer) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for i, lv in enumerate(ts["levels"]):
        c = lv["concurrency"]
        pl = peer["levels"][i] if peer else None
        ce = ceil.get(c, {}).get("tokens_per_second")
        f = lambda x: f"{x:.1f}" if x else "–"
        lat = lambda l, k: f"{l[k + '_p50_s']:.2f} / {l[k + '_p99_s']:.2f} s" if l else "–"
        lines.append(f"| {c} | {f(ce)} | {lv['tokens_per_s']:.1f} | {f(pl['tokens_per_s'] if pl else None)} | {ratio(lv['tokens_per_s'], ce)} | "
                     f"{ratio(lv['tokens_per_s'], pl['tokens_per_s'] if pl else None)} | {lat(lv, 'ttft')} | {lat(pl, 'ttft')} | {lat(lv, 'e2e')} | {lat(pl, 'e2e')} |")
    lines += ["", "## Where the CPU went", "",
              "Share of all cores over each level's wall time: llama.cpp compute (thinkscale's engine thread and "
              "its OpenMP workers), thinkscale's HTTP runtime (tokio workers), the whole peer process (– where a run "
              "predates that reading), and the "
              "benchmark's own Python client, which shares the machine with the server it measures.", "",
              "| concurrency | ts compute | ts HTTP | ts other | client (ts run) | peer server | client (peer run) |",
              "|---|---|---|---|---|---|---|"]
    pct = lambda x: f"{100 * x:.1f}%" if x is not None else "–"
    for i, lv in enumerate(ts["levels"]):
        srv = lv.get("cpu", {}).get("server", {})
        compute, http = srv.get("engine", 0.0), sum(v for k, v in srv.items() if k.startswith("tokio"))
        pl = (peer["levels"][i] if peer else {}).get("cpu")
        lines.append(f"| {lv['concurrency']} | {pct(compute)} | {pct(http)} | {pct(max(0.0, lv['cpu'].get('server_total', sum(srv.values())) - compute - http))} | "
                     f"{pct(lv.get('cpu', {}).get('client'))} | {pct(pl.get('server_total') if pl else None)} | {pct(pl['client'] if pl else None)} |")
    sc, psc = ts["self_consistency"], (peer or {}).get("self_consistency", {})
    lines += ["", "## Self-consistency@8, one prompt", "",
              "| setup | wall s | prompt tokens processed | thinkscale samples:8 / this |", "|---|---|---|---|",
              f"| thinkscale `samples: 8` | {sc['samples8_wall_s']:.2f} | {sc['samples8_prompt_tokens_processed']:.0f} | 1.00x |",
              f"| thinkscale, 8 concurrent requests | {sc['concurrent8_wall_s']:.2f} | {sc['concurrent8_prompt_tokens_processed']} | {ratio(sc['samples8_wall_s'], sc['concurrent8_wall_s'])} |",
              f"| thinkscale, 8 sequential requests | {sc['sequential8_wall_s']:.2f} | {sc['sequential8_prompt_tokens_processed']} | {ratio(sc['samples8_wall_s'], sc['sequential8_wall_s'])} |"]
    if psc:
        lines += [f"| peer, 8 concurrent requests | {psc['concurrent8_wall_s']:.2f} | {psc['concurrent8_prompt_tokens_processed']} | {ratio(sc['samples8_wall_s'], psc['concurrent8_wall_s'])} |",
                  f"| peer, 8 sequential requests | {psc['sequential8_wall_s']:.2f} | {psc['sequential8_prompt_tokens_processed']} | {ratio(sc['samples8_wall_s'], psc['sequential8_wall_s'])} |"]
    lines += ["", "## Resident memory", "", "| server | idle MB | under load (peak) MB |", "|---|---|---|",
              f"| thinkscale | {ts['rss_idle_mb']:.0f} | {ts['rss_load_mb']:.0f} |"]
    if peer:
        lines.append(f"| {peer_name} | {peer['rss_idle_mb']:.0f} | {peer['rss_load_mb']:.0f} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}/{stem}.md and .json")


if __name__ == "__main__":
    main()
