"""The official `openai` package as the client, streaming and not."""
import concurrent.futures

import openai
import pytest

from conftest import REPRODUCIBLE

MSG = [{"role": "user", "content": "What is 3 + 4?"}]


def test_models(client):
    models = client.models.list()
    assert models.data[0].id == "SmolLM2-135M-Instruct.Q4_1"


def test_chat_non_streaming(client):
    r = client.chat.completions.create(model="any", messages=MSG, max_tokens=20, temperature=0)
    assert r.id.startswith("chatcmpl-")
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 20
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_streaming_equals_non_streaming(client):
    whole = client.chat.completions.create(model="any", messages=MSG, max_tokens=24, temperature=0)
    stream = client.chat.completions.create(
        model="any", messages=MSG, max_tokens=24, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    text, usage, finish = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    assert text and usage.completion_tokens > 0 and finish
    if REPRODUCIBLE:
        assert text == whole.choices[0].message.content
        assert usage.completion_tokens == whole.usage.completion_tokens
        assert finish == whole.choices[0].finish_reason


def test_n_and_logprobs(client):
    r = client.chat.completions.create(
        model="any", messages=MSG, max_tokens=6, n=3, temperature=0.9, seed=1, logprobs=True, top_logprobs=2
    )
    assert len(r.choices) == 3
    for c in r.choices:
        assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in c.logprobs.content)


def test_stop_and_max_completion_tokens(client):
    r = client.chat.completions.create(model="any", messages=MSG, max_completion_tokens=5, temperature=0)
    assert r.usage.completion_tokens == 5 and r.choices[0].finish_reason == "length"
    r = client.chat.completions.create(model="any", messages=MSG, max_tokens=40, temperature=0, stop=["4", "7"])
    assert "4" not in r.choices[0].message.content and "7" not in r.choices[0].message.content


def test_text_completions(client):
    r = client.completions.create(model="any", prompt="Once upon a time", max_tokens=8, temperature=0)
    assert r.choices[0].text
    chunks = list(client.completions.create(model="any", prompt="Once upon a time", max_tokens=8, temperature=0, stream=True))
    streamed = "".join(c.choices[0].text for c in chunks if c.choices)
    assert streamed == r.choices[0].text if REPRODUCIBLE else streamed


def test_errors_are_raised_as_openai_exceptions(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="any", messages=[], max_tokens=5)
    assert e.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="any", messages=MSG, temperature=5)
    assert e.value.body["param"] == "temperature"
    # The server keeps serving.
    assert client.chat.completions.create(model="any", messages=MSG, max_tokens=3).choices


def test_concurrent_clients(client):
    prompts = [f"What is {i} times 2?" for i in range(8)]

    def ask(p):
        return client.chat.completions.create(model="any", messages=[{"role": "user", "content": p}], max_tokens=16, temperature=0).choices[0].message.content

    alone = [ask(p) for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        together = list(ex.map(ask, prompts))
    if REPRODUCIBLE:
        assert together == alone
    else:
        assert all(together) and len(together) == len(prompts)


def test_reasoning_content_through_the_client(client):
    r = client.chat.completions.create(model="any", messages=MSG, temperature=0, extra_body={"thinking_budget_tokens": 32})
    msg = r.choices[0].message
    assert msg.reasoning_content and msg.content
    assert "Final answer" not in msg.content
    assert 0 < r.usage.completion_tokens_details.reasoning_tokens <= 32
    stream = client.chat.completions.create(model="any", messages=MSG, temperature=0, stream=True, extra_body={"thinking_budget_tokens": 32})
    reasoning, content = "", ""
    for chunk in stream:
        for c in chunk.choices:
            d = c.delta.model_extra or {}
            reasoning += d.get("reasoning_content") or ""
            content += c.delta.content or ""
    if REPRODUCIBLE:
        assert reasoning == msg.reasoning_content and content == msg.content
    else:
        assert reasoning and content


def test_reasoning_effort_and_samples_through_the_client(client):
    r = client.chat.completions.create(model="any", messages=MSG, reasoning_effort="minimal", max_completion_tokens=200, temperature=0)
    assert r.usage.completion_tokens_details.reasoning_tokens <= 64
    r = client.chat.completions.create(model="any", messages=MSG, temperature=0.8, extra_body={"reasoning": {"samples": 3}, "thinking_budget_tokens": 24})
    ext = r.choices[0].model_extra["thinkscale"]
    assert len(ext["samples"]) == 3 and ext["samples_used"] == 3


def test_structured_output_through_the_client(client):
    from pydantic import BaseModel, Field

    class Cat(BaseModel):
        name: str = Field(max_length=20)
        age: int

    # `parse` moved out of `beta` in later releases of the package.
    parse = getattr(client.chat.completions, "parse", None) or client.beta.chat.completions.parse
    r = parse(model="any", messages=[{"role": "user", "content": "Describe a cat."}], response_format=Cat, max_tokens=120, temperature=0)
    cat = r.choices[0].message.parsed
    assert isinstance(cat, Cat) and len(cat.name) <= 20


def test_responses_api_streaming_and_not(client):
    args = dict(model="any", input="What is 17 + 25?", reasoning={"effort": "minimal"}, max_output_tokens=120, temperature=0)
    r = client.responses.create(**args)
    assert r.id.startswith("resp_") and r.object == "response"
    assert [o.type for o in r.output] == ["reasoning", "message"]
    chain = r.output[0].content[0].text
    assert chain and r.output_text
    assert 0 < r.usage.output_tokens_details.reasoning_tokens <= 64  # minimal effort: 64 tokens
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens

    events = list(client.responses.create(**args, stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    # The chain streams before the answer, and the deltas spell what the final response holds.
    assert kinds.index("response.reasoning_text.delta") < kinds.index("response.output_text.delta")
    done = events[-1].response
    assert "".join(e.delta for e in events if e.type == "response.reasoning_text.delta") == done.output[0].content[0].text
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == done.output_text
    # Greedy: the streamed response is the non-streamed one.
    if REPRODUCIBLE:
        assert done.output_text == r.output_text and done.output[0].content[0].text == chain


def test_responses_api_maps_instructions_limits_and_errors(client):
    r = client.responses.create(model="any", instructions="Answer in one word.", input=[{"role": "user", "content": "Name a colour."}],
                                max_output_tokens=3, temperature=0, extra_body={"ignore_eos": True})
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 3
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="any", input="hi", previous_response_id="resp_123")
    assert e.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="any", input="hi", max_output_tokens=0)
    assert e.value.body["param"] == "max_output_tokens"
