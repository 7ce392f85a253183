"""Every PromQL expression of the Grafana dashboard, run against a real Prometheus (Debian's
`prometheus` package) scraping a real server with config/prometheus.yml: each returns data."""
import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from conftest import _free_port, start_server

ROOT = Path(__file__).resolve().parents[2]


def post(base: str, body: dict) -> dict:
    req = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.load(r)


def query(prom: str, expr: str) -> list:
    url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=30) as r:
        v = json.load(r)
    assert v["status"] == "success", v
    return v["data"]["result"]


def test_every_grafana_query_returns_data(tmp_path):
    binary = shutil.which("prometheus")
    assert binary, "install Prometheus first: apt-get install prometheus"
    proc, base = start_server("--threads", "1")
    # The shipped scrape config, pointed at this server and scraping every second.
    config = (ROOT / "config" / "prometheus.yml").read_text()
    config = config.replace("thinkscale:8080", base.removeprefix("http://")).replace("scrape_interval: 5s", "scrape_interval: 1s")
    (tmp_path / "prometheus.yml").write_text(config)
    port = _free_port()
    prom = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    prom_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if query(prom_url, 'up{job="thinkscale"} == 1'):
                    break
            except OSError:
                pass
            assert time.time() < deadline, "Prometheus never scraped the server"
            time.sleep(0.5)
        # Graded traffic at two budgets and two sample counts, spread over several scrapes.
        for budget in (0, 32):
            for q, a in (("What is 2 + 5?", "7"), ("What is 3 + 3?", "6")):
                post(base, {"messages": [{"role": "user", "content": q}], "thinking_budget_tokens": budget, "temperature": 0,
                            "max_tokens": 96, "metadata": {"expected_answer": a}})
            time.sleep(1.5)
        post(base, {"messages": [{"role": "user", "content": "What is 2 + 5?"}], "thinking_budget_tokens": 32, "samples": 2,
                    "max_tokens": 96, "metadata": {"expected_answer": "7"}})
        time.sleep(3)

        dashboard = json.loads((ROOT / "config" / "grafana" / "dashboards" / "thinkscale.json").read_text())
        exprs = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
        assert len(exprs) >= 10
        empty = []
        for title, expr in exprs:
            # Grafana's variables as a dashboard opened on the last five minutes expands them.
            concrete = re.sub(r"\$(effort|samples)", ".*", expr).replace("$__range", "5m")
            if not query(prom_url, concrete):
                empty.append((title, concrete))
        assert not empty, empty
    finally:
        prom.terminate()
        prom.wait(timeout=30)
        proc.terminate()
        proc.wait(timeout=60)
