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
    # Every reasoning dialect's fields, with the bounds the gate enforces.
    reasoning = schemas["Reasoning"]["properties"]
    assert {"reasoning_effort", "thinking_budget_tokens", "thinking", "think", "samples", "verifier"} <= set(reasoning)
    assert reasoning["reasoning"]["properties"]["samples"]["maximum"] == reasoning["samples"]["maximum"] == 64
    assert "auto" in reasoning["reasoning_effort"]["enum"] and "high" in reasoning["reasoning_effort"]["enum"]
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
    assert {"usage", "choices"} <= set(schemas["ChatCompletion"]["required"]) <= set(v)
    choice = _resolve(schemas, schemas["ChatCompletion"]["properties"]["choices"]["items"])
    assert set(choice["required"]) <= set(v["choices"][0])
    assert v["choices"][0]["finish_reason"] in _resolve(schemas, choice["properties"]["finish_reason"])["enum"]
    req = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps({**body, "max_tokens": 257}).encode(), headers={"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    err = json.load(e.value)
    assert set(schemas["Error"]["required"]) <= set(err) and set(_resolve(schemas, schemas["Error"]["properties"]["error"])["required"]) <= set(err["error"])


def _resolve(schemas, node):
    """The schema a `$ref` node points to (the node itself when it is not a reference)."""
    return schemas[node["$ref"].split("/")[-1]] if "$ref" in node else node


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


def _openai_error(ctx, response, case):
    """Every 4xx is an OpenAI error object naming a type and a message."""
    if 400 <= response.status_code < 500:
        body = response.json()
        err = body.get("error") if isinstance(body, dict) else None
        assert isinstance(err, dict) and isinstance(err.get("message"), str) and isinstance(err.get("type"), str), body


def test_schema_driven_fuzzing_finds_no_server_error(contract):
    """schemathesis generates bodies from the contract (valid and invalid) for a bounded number of
    examples per operation: no 5xx, every 4xx an OpenAI error, every 2xx matching its schema."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

    base, doc = contract
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance, _openai_error]
    schema = schemathesis.openapi.from_dict(doc)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert {op.path for op in operations} == {"/v1/chat/completions", "/v1/completions"}
    seen = {}
    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=30, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case):
            response = case.call(base_url=base, timeout=60)
            seen.setdefault(op.path, set()).add(response.status_code)
            case.validate_response(response, checks=checks)

        fuzz()
    # Both valid and rejected bodies were exercised on each path.
    for path, codes in seen.items():
        assert any(c < 300 for c in codes) and any(400 <= c < 500 for c in codes), (path, codes)
