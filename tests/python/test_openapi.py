"""GET /openapi.json: the contract is generated from the request types the handlers parse, with
the bounds the server's configuration sets, and the requests it describes are served."""
import json
import urllib.request

import pytest

from conftest import start_server


@pytest.fixture(scope="module")
def contract():
    proc, base = start_server("--parallel", "2", "--ctx-size", "512")
    with urllib.request.urlopen(base + "/openapi.json") as r:
        yield base, json.load(r)
    proc.terminate()
    assert proc.wait(timeout=60) == 0


def test_the_contract_is_generated_from_the_request_types(contract):
    _, doc = contract
    schemas = doc["components"]["schemas"]
    common = schemas["Common"]["properties"]
    # Configuration bounds: a 256-token slot, two slots.
    assert common["max_tokens"]["maximum"] == 256 and common["n"]["maximum"] == 2
    assert common["temperature"]["maximum"] == 2.0 and common["top_p"]["maximum"] == 1.0
    assert "tools" in schemas["ChatFields"]["properties"] and "prompt" in schemas["CompletionFields"]["properties"]
    assert set(doc["paths"]) == {"/v1/chat/completions", "/v1/completions"}
    # Every $ref resolves inside the document.
    refs = [r.split("/")[-1] for r in _refs(doc)]
    assert refs and all(r in schemas for r in refs)


def test_responses_follow_the_documented_shapes(contract):
    base, doc = contract
    schemas = doc["components"]["schemas"]
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0}
    req = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        v = json.load(r)
    assert set(schemas["ChatCompletion"]["required"]) <= set(v)
    assert v["choices"][0]["finish_reason"] in schemas["ChatCompletion"]["properties"]["choices"]["items"]["properties"]["finish_reason"]["enum"]
    req = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps({**body, "max_tokens": 257}).encode(), headers={"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    err = json.load(e.value)
    assert set(schemas["Error"]["required"]) <= set(err) and set(schemas["Error"]["properties"]["error"]["required"]) <= set(err["error"])


def _refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)
