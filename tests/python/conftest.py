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


# THINKSCALE_TEST_BACKEND=remote: every server is a thinkscale over a second thinkscale process
# that holds the model (`serve --backend URL`); =llama-server: over llama.cpp's llama-server
# (LLAMA_SERVER names the binary; scripts/llama-server.sh builds it). The suite runs in all three.
BACKEND = os.environ.get("THINKSCALE_TEST_BACKEND", "")
REMOTE = BACKEND in ("remote", "llama-server")
# llama-server's greedy text depends on what else is in its batch and on its prompt cache, so
# separately generated texts are compared only over thinkscale's engine.
REPRODUCIBLE = BACKEND != "llama-server"
LLAMA_SERVER = os.environ.get("LLAMA_SERVER", str(ROOT / "target" / "llama-server" / "build" / "bin" / "llama-server"))
# Flags (with a value) for the engine only, and for the client-facing server only.
ENGINE_FLAGS = {"--model", "--threads", "--ctx-size", "--verifier-model"}
CLIENT_FLAGS = {"--api-key", "--cors-origin"}


def _launch(args: list, llama_server: bool = False) -> tuple:
    port = _free_port()
    if llama_server:
        # Our engine flags, as llama-server spells them; everything else is thinkscale's alone.
        flags = dict(zip(args[::2], args[1::2]))
        cmd = [LLAMA_SERVER, "--host", "127.0.0.1", "--port", str(port), "-m", flags["--model"], "--alias", Path(flags["--model"]).stem,
               "-t", flags.get("--threads", "1"),
               "-np", flags.get("--parallel", "8"), "-c", flags.get("--ctx-size", "16384"), "--metrics", "--no-webui"]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        proc = subprocess.Popen([str(_binary()), "serve", "--port", str(port), *args], cwd=ROOT, env={**os.environ, "RUST_LOG": "warn"})
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
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


class Pair:
    """The client-facing server of remote mode and the engine under it, handled as one process."""

    def __init__(self, outer, inner):
        self.outer, self.inner = outer, inner

    def terminate(self):
        self.outer.terminate()

    def kill(self):
        self.outer.kill()
        self.inner.kill()

    def poll(self):
        return self.outer.poll()

    def wait(self, timeout=None):
        code = self.outer.wait(timeout=timeout)
        self.inner.terminate()
        self.inner.wait(timeout=timeout)
        return code


def start_server(*extra: str, model: Path = MODEL):
    assert model.exists(), f"fetch the model first: models/fetch.sh ({model.name} is missing)"
    if not REMOTE:
        return _launch(["--model", str(model), *extra])
    inner, outer = ["--model", str(model)], []
    it = iter(extra)
    for flag in it:
        pair = [flag] if flag in ("--test-hooks", "--no-jinja") else [flag, next(it)]
        if flag in ENGINE_FLAGS:
            inner += pair
        elif flag in CLIENT_FLAGS:
            outer += pair
        else:
            if BACKEND != "llama-server" or flag == "--parallel":
                inner += pair
            outer += pair
    engine, engine_base = _launch(inner, llama_server=BACKEND == "llama-server")
    proc, base = _launch(["--backend", engine_base, *outer])
    return Pair(proc, engine), base


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
