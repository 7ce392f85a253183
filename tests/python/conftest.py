"""Start the real thinkscale binary on the real test model for the openai-client tests."""
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "release" / "thinkscale"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*extra: str, model: Path = MODEL):
    assert model.exists(), f"fetch the model first: models/fetch.sh ({model.name} is missing)"
    port = _free_port()
    proc = subprocess.Popen(
        [str(_binary()), "serve", "--model", str(model), "--port", str(port), *extra],
        cwd=ROOT,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(base + "/health", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError("thinkscale did not become healthy")
        time.sleep(0.05)
    return proc, base


@pytest.fixture(scope="session")
def server():
    assert _binary().exists(), "build first: cargo build --release"
    assert MODEL.exists(), "fetch the model first: models/fetch.sh"
    proc, base = start_server()
    yield base
    proc.terminate()
    assert proc.wait(timeout=60) == 0


@pytest.fixture(scope="session")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)
