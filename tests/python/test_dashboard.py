"""The /dashboard page in headless Chromium: a screenshot for the test output, assertions on the DOM."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1100,800", "--virtual-time-budget=6000",
]


def chromium(url: str, *extra: str, stderr: bool = False) -> str:
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                             capture_output=True, text=True, timeout=120)
    return out.stderr if stderr else out.stdout


def post(base: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def test_dashboard_draws_the_live_curve(server):
    # Grade a few requests at two budgets and with two sample counts so the page has a curve.
    for budget in (0, 32):
        for q, a in (("What is 2 + 5?", "7"), ("What is 3 + 3?", "6")):
            post(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": q}], "thinking_budget_tokens": budget,
                                                  "temperature": 0, "max_tokens": 96, "metadata": {"expected_answer": a}})
    post(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": "What is 2 + 5?"}], "thinking_budget_tokens": 32,
                                          "samples": 2, "metadata": {"expected_answer": "7"}})
    scaling = json.load(urllib.request.urlopen(server + "/v1/scaling"))
    cells = len(scaling["data"])
    assert cells >= 3

    artifacts = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "dashboard.png"
    chromium(server + "/dashboard", f"--screenshot={shot}")
    assert shot.exists() and shot.stat().st_size > 10_000
    print(f"dashboard screenshot: {shot}")

    # The page's console: chromium logs its messages with --enable-logging; a script error reads "Uncaught".
    console = chromium(server + "/dashboard", "--dump-dom", "--enable-logging=stderr", "--v=0", stderr=True)
    assert "Uncaught" not in console, console
    dom = chromium(server + "/dashboard", "--dump-dom")
    assert 'id="curve"' in dom
    assert len(re.findall(r'<circle[^>]*class="point"', dom)) == cells
    # One line per (explicit budgets or effort levels, samples), a legend swatch for each, and the frontier.
    family = lambda r: "budget" if r["effort"] in ("budget", "default") else "effort"
    series = {(family(r), r["samples"]) for r in scaling["data"]}
    assert len(re.findall(r'<polyline[^>]*class="line"', dom)) == len(series)
    assert len(re.findall(r'<span class="swatch" style="background:#', dom)) == len(series)
    assert len(re.findall(r'<polyline[^>]*class="frontier"', dom)) == 1
    assert len(re.findall(r'<tr class="cell"', dom)) == cells
    assert re.search(r'id="active">\d+<', dom) and re.search(r'id="queue">\d+<', dom)
    assert "never" not in re.search(r'id="updated">([^<]*)<', dom).group(1)
    # No external assets: the page is self-contained.
    assert "http://" not in dom.replace("http://www.w3.org/2000/svg", "") and "https://" not in dom


def test_a_page_on_another_origin_calls_the_api_only_when_allowed(tmp_path):
    import http.server
    import threading

    from conftest import _free_port, start_server

    page_port = _free_port()
    origin = f"http://127.0.0.1:{page_port}"
    allowed, base_allowed = start_server("--threads", "1", "--cors-origin", origin)
    closed, base_closed = start_server("--threads", "1")
    # The page asks both servers (with an API-key header, so the browser sends a preflight) and
    # writes what came back into the DOM.
    (tmp_path / "index.html").write_text(f"""<!doctype html><html><body><pre id="out">waiting</pre><script>
    async function ask(base) {{
      try {{
        const r = await fetch(base + "/v1/chat/completions", {{method: "POST",
          headers: {{"content-type": "application/json", "authorization": "Bearer none"}},
          body: JSON.stringify({{messages: [{{role: "user", content: "Say hi"}}], max_tokens: 4, temperature: 0}})}});
        const v = await r.json();
        return "ok:" + v.object;
      }} catch (e) {{ return "blocked"; }}
    }}
    Promise.all([ask("{base_allowed}"), ask("{base_closed}")]).then(r => document.getElementById("out").textContent = r.join(" "));
    </script></body></html>""")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", page_port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        dom = chromium(origin + "/index.html", "--dump-dom", "--virtual-time-budget=60000")
        assert re.search(r'id="out">ok:chat\.completion blocked<', dom), dom
    finally:
        httpd.shutdown()
        for p in (allowed, closed):
            p.terminate()
            p.wait(timeout=60)
