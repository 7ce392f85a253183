"""verifier "tests" through the official openai client: chat and Responses, the client's own
asserts, a hostile test that is contained, adaptive selection's early stop as `usage` reports it,
and the 400 a server without --code-exec gives."""
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from conftest import ROOT, start_server

QWEN05 = ROOT / "models" / "qwen2.5-coder-0.5b-instruct.gguf"
PROMPT = ("Complete this function and reply with it in one ```python block.\n\n```python\n"
          "def is_even(n):\n    \"\"\"\n    >>> is_even(4)\n    True\n    >>> is_even(7)\n    False\n    \"\"\"\n```")


@pytest.fixture(scope="module")
def coder():
    proc, base = start_server("--code-exec", "python", model=QWEN05)
    yield OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
    proc.terminate()
    assert proc.wait(timeout=60) == 0


def ask(client, **reasoning):
    return client.chat.completions.create(
        model="any", messages=[{"role": "user", "content": PROMPT}], max_tokens=120, temperature=0.7, seed=3,
        extra_body={"reasoning": {"enabled": False, "samples": 3, "verifier": "tests", **reasoning}})


def test_docstring_examples_choose_a_passing_program(coder):
    r = ask(coder)
    ext = r.choices[0].model_extra["thinkscale"]
    assert all(s["tests"]["run"] == 2 for s in ext["samples"] if "tests" in s), ext
    chosen = ext["samples"][ext["chosen_sample"]]
    assert chosen["tests"]["passed"] == 2, ext
    assert "passed 2/2" in ext["why"]
    assert "def is_even" in r.choices[0].message.content
    assert r.usage.completion_tokens == sum(s["completion_tokens"] for s in ext["samples"])


def test_client_asserts_and_a_hostile_test_are_run_contained(coder):
    r = ask(coder, tests="assert is_even(10)\nassert not is_even(3)\nassert is_even(1)")
    samples = r.choices[0].model_extra["thinkscale"]["samples"]
    assert all(s["tests"]["run"] == 3 and s["tests"]["passed"] <= 2 for s in samples if "tests" in s), samples
    r = ask(coder, tests="import os\nwhile True:\n    os.fork()")
    assert all(s["score"] == 0 for s in r.choices[0].model_extra["thinkscale"]["samples"])
    # The server is still there and answers.
    assert ask(coder).choices[0].message.content


def test_adaptive_selection_stops_once_a_program_passes(coder):
    r = ask(coder, samples=8, adaptive=True)
    ext = r.choices[0].model_extra["thinkscale"]
    seqs = r.usage.model_extra["sequences"]
    assert ext["stopped_early"] and ext["samples"][ext["chosen_sample"]]["tests"]["passed"] == 2, ext
    assert seqs["requested"] == 8 and seqs["run"] <= 2 and seqs["cancelled"] >= 6, seqs
    # Only what ran is billed.
    assert r.usage.completion_tokens == sum(s["completion_tokens"] for s in ext["samples"])


def test_responses_api_carries_the_same_controls(coder):
    r = coder.responses.create(model="any", input=PROMPT, max_output_tokens=120, temperature=0.7,
                               extra_body={"reasoning": {"enabled": False, "samples": 2, "verifier": "tests"}})
    assert "def is_even" in r.output_text


def test_without_code_exec_the_request_is_a_400_naming_the_flag(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="any", messages=[{"role": "user", "content": PROMPT}],
                                       extra_body={"reasoning": {"samples": 2, "verifier": "tests"}})
    assert "--code-exec python" in e.value.body["message"]
