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


def chromium(url: str, *extra: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                             capture_output=True, text=True, timeout=120)
    return out.stdout


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

    dom = chromium(server + "/dashboard", "--dump-dom")
    assert 'id="curve"' in dom
    assert len(re.findall(r'<circle[^>]*class="point"', dom)) == cells
    assert len(re.findall(r'<polyline[^>]*class="line"', dom)) == len({r["samples"] for r in scaling["data"]})
    assert len(re.findall(r'<tr class="cell"', dom)) == cells
    assert re.search(r'id="active">\d+<', dom) and re.search(r'id="queue">\d+<', dom)
    assert "never" not in re.search(r'id="updated">([^<]*)<', dom).group(1)
    # No external assets: the page is self-contained.
    assert "http://" not in dom.replace("http://www.w3.org/2000/svg", "") and "https://" not in dom
