//! POST /v1/responses: the OpenAI Responses API over the chat pipeline. The request is mapped onto
//! a chat request (input items -> messages, `instructions` -> system message, `reasoning.effort`,
//! `max_output_tokens`, `text.format` -> `response_format`; every thinkscale and dialect field passes
//! through), run by the chat endpoint, and its answer or stream is turned into Responses output
//! items and typed events: a `reasoning` item with the chain of thought, then the `message`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::stream::unix_now;
use super::sse::{self, Item};
use crate::service::request::parse_object;
use crate::service::Service;

/// Responses fields with no chat counterpart: dropped (they change nothing here) or mapped.
const RESPONSES_ONLY: [&str; 15] = [
    "input", "instructions", "max_output_tokens", "text", "store", "include", "truncation", "user", "background",
    "service_tier", "prompt_cache_key", "safety_identifier", "previous_response_id", "tools", "tool_choice",
];

/// Chat parameter names in errors, spelled as the Responses request named them.
fn responses_param(chat: &str) -> String {
    let mapped = [
        ("messages", "input"),
        ("max_completion_tokens", "max_output_tokens"),
        ("reasoning_effort", "reasoning.effort"),
        ("response_format", "text.format"),
    ];
    for (from, to) in mapped {
        if let Some(rest) = chat.strip_prefix(from) {
            return format!("{to}{rest}");
        }
    }
    chat.to_string()
}

fn text_of(content: &Value, param: &str) -> Result<String, ApiError> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                    (Some("input_text" | "output_text" | "text"), Some(t)) => text.push_str(t),
                    _ => {
                        return Err(ApiError::bad_request(
                            format!("{param}[{j}]: only input_text and output_text parts are supported"),
                            Some(&format!("{param}[{j}]")),
                        ))
                    }
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::bad_request(format!("'{param}' must be a string or a list of text parts"), Some(param))),
    }
}

/// The chat request a Responses request stands for.
pub fn to_chat(obj: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    if obj.get("previous_response_id").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::bad_request(
            "previous_response_id is not supported: this server keeps no responses; send the conversation in 'input'",
            Some("previous_response_id"),
        ));
    }
    let mut messages = Vec::new();
    match obj.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(_) => return Err(ApiError::bad_request("'instructions' must be a string", Some("instructions"))),
    }
    match obj.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let param = format!("input[{i}]");
                let field = |k: &str| {
                    item.get(k).and_then(Value::as_str).ok_or_else(|| {
                        ApiError::bad_request(format!("'{param}.{k}' is required and must be a string"), Some(&format!("{param}.{k}")))
                    })
                };
                match item.get("type").and_then(Value::as_str).unwrap_or("message") {
                    "message" => {
                        let role = field("role")?;
                        let content = text_of(item.get("content").unwrap_or(&Value::Null), &format!("{param}.content"))?;
                        messages.push(json!({"role": role, "content": content}));
                    }
                    // An earlier turn's call joins the assistant message before it (parallel calls).
                    "function_call" => {
                        let call = json!({"id": field("call_id")?, "type": "function", "function": {"name": field("name")?, "arguments": field("arguments")?}});
                        let earlier = messages.last_mut().filter(|m| m["role"] == "assistant").and_then(|m| m["tool_calls"].as_array_mut());
                        match earlier {
                            Some(calls) => calls.push(call),
                            None => messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
                        }
                    }
                    "function_call_output" => {
                        let call_id = field("call_id")?;
                        let output = text_of(item.get("output").unwrap_or(&Value::Null), &format!("{param}.output"))?;
                        messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
                    }
                    // An earlier response's chain of thought: the model's own turn keeps only its answer.
                    "reasoning" => {}
                    other => {
                        return Err(ApiError::bad_request(format!("input item type '{other}' is not supported"), Some(&format!("{param}.type"))))
                    }
                }
            }
        }
        None | Some(Value::Null) => return Err(ApiError::bad_request("'input' is required", Some("input"))),
        Some(_) => return Err(ApiError::bad_request("'input' must be a string or a list of items", Some("input"))),
    }
    let mut chat: Map<String, Value> = obj.iter().filter(|(k, _)| !RESPONSES_ONLY.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
    chat.insert("messages".into(), Value::Array(messages));
    if let Some(m) = obj.get("max_output_tokens").filter(|v| !v.is_null()) {
        chat.insert("max_completion_tokens".into(), m.clone());
    }
    if let Some(Value::Object(r)) = obj.get("reasoning") {
        // `summary` asks OpenAI for a summary of hidden reasoning; here the whole chain is returned.
        let r: Map<String, Value> = r.iter().filter(|(k, _)| !matches!(k.as_str(), "summary" | "generate_summary")).map(|(k, v)| (k.clone(), v.clone())).collect();
        chat.insert("reasoning".into(), Value::Object(r));
    }
    if let Some(format) = obj.get("text").and_then(|t| t.get("format")).filter(|v| !v.is_null()) {
        let rf = match format.get("type").and_then(Value::as_str) {
            Some("text") => None,
            Some("json_object") => Some(json!({"type": "json_object"})),
            Some("json_schema") => {
                let mut schema = format.as_object().cloned().unwrap_or_default();
                schema.remove("type");
                Some(json!({"type": "json_schema", "json_schema": schema}))
            }
            _ => return Err(ApiError::bad_request("'text.format.type' must be text, json_object or json_schema", Some("text.format.type"))),
        };
        if let Some(rf) = rf {
            chat.insert("response_format".into(), rf);
        }
    }
    if let Some(tools) = obj.get("tools").filter(|v| !v.is_null()) {
        let list = tools.as_array().ok_or_else(|| ApiError::bad_request("'tools' must be a list", Some("tools")))?;
        let mut out = Vec::with_capacity(list.len());
        for (i, t) in list.iter().enumerate() {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(ApiError::bad_request(
                    format!("tools[{i}]: only function tools are supported (built-in tools such as web search are OpenAI's)"),
                    Some(&format!("tools[{i}].type")),
                ));
            }
            // Responses tools are flat; chat nests the function.
            let mut function: Map<String, Value> = t.as_object().cloned().unwrap_or_default();
            function.remove("type");
            function.remove("strict");
            out.push(json!({"type": "function", "function": function}));
        }
        chat.insert("tools".into(), Value::Array(out));
    }
    match obj.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(c @ Value::String(_)) => {
            chat.insert("tool_choice".into(), c.clone());
        }
        Some(c) => {
            let name = c.get("name").cloned().unwrap_or(Value::Null);
            chat.insert("tool_choice".into(), json!({"type": c.get("type").cloned().unwrap_or(Value::Null), "function": {"name": name}}));
        }
    }
    if chat.get("stream").and_then(Value::as_bool) == Some(true) {
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(chat)
}

/// The Responses usage object from a chat usage object.
fn usage(u: &Value) -> Value {
    json!({
        "input_tokens": u["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": u["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0)},
        "output_tokens": u["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": u["completion_tokens_details"]["reasoning_tokens"].as_u64().unwrap_or(0)},
        "total_tokens": u["total_tokens"],
    })
}

fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"type": "reasoning", "id": format!("rs_{id}"), "summary": [], "content": [{"type": "reasoning_text", "text": text}], "status": "completed"})
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": format!("msg_{id}"), "status": status, "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
}

fn call_item(call: &Value, status: &str) -> Value {
    let f = &call["function"];
    let call_id = call["id"].as_str().unwrap_or("");
    json!({"type": "function_call", "id": format!("fc_{}", call_id.trim_start_matches("call_")), "call_id": call_id,
           "name": f["name"], "arguments": f["arguments"], "status": status})
}

/// The response object around `output`, echoing the request's settings as OpenAI does.
fn response_object(id: &str, created: u64, req: &Map<String, Value>, model: &str, status: &str, output: Vec<Value>, finish: Option<&str>) -> Value {
    let effort = req.get("reasoning").and_then(|r| r.get("effort")).cloned().unwrap_or(Value::Null);
    json!({
        "id": format!("resp_{id}"),
        "object": "response",
        "created_at": created,
        "status": status,
        "error": null,
        "incomplete_details": if finish == Some("length") { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "instructions": req.get("instructions").cloned().unwrap_or(Value::Null),
        "max_output_tokens": req.get("max_output_tokens").cloned().unwrap_or(Value::Null),
        "model": model,
        "output": output,
        "parallel_tool_calls": req.get("parallel_tool_calls").and_then(Value::as_bool).unwrap_or(true),
        "previous_response_id": null,
        "reasoning": {"effort": effort, "summary": null},
        "temperature": req.get("temperature").cloned().unwrap_or(json!(1.0)),
        "top_p": req.get("top_p").cloned().unwrap_or(json!(1.0)),
        "text": {"format": req.get("text").and_then(|t| t.get("format")).cloned().unwrap_or(json!({"type": "text"}))},
        "tool_choice": req.get("tool_choice").cloned().unwrap_or(json!("auto")),
        "tools": req.get("tools").cloned().unwrap_or(json!([])),
        "metadata": req.get("metadata").cloned().unwrap_or(json!({})),
        "usage": null,
    })
}

/// A finished chat completion as a response.
fn from_chat(id: &str, req: &Map<String, Value>, chat: &Value) -> Value {
    let choice = &chat["choices"][0];
    let msg = &choice["message"];
    let finish = choice["finish_reason"].as_str();
    let mut output = Vec::new();
    if let Some(chain) = msg["reasoning_content"].as_str().filter(|s| !s.is_empty()) {
        output.push(reasoning_item(id, chain));
    }
    let status = if finish == Some("length") { "incomplete" } else { "completed" };
    let calls = msg["tool_calls"].as_array().map_or(&[][..], Vec::as_slice);
    let text = msg["content"].as_str().unwrap_or("");
    if calls.is_empty() || !text.is_empty() {
        output.push(message_item(id, text, status));
    }
    output.extend(calls.iter().map(|c| call_item(c, "completed")));
    let mut r = response_object(id, chat["created"].as_u64().unwrap_or_else(unix_now), req, chat["model"].as_str().unwrap_or(""), status, output, finish);
    r["usage"] = usage(&chat["usage"]);
    if !choice["thinkscale"].is_null() {
        r["thinkscale"] = choice["thinkscale"].clone();
    }
    r
}

/// Events that close the reasoning item (when there is one) and open the message after it.
fn open_message(id: &str, chain: Option<&str>) -> Vec<(&'static str, Value)> {
    let mut events = Vec::new();
    if let Some(chain) = chain {
        events.push(("response.reasoning_text.done", json!({"item_id": format!("rs_{id}"), "output_index": 0, "content_index": 0, "text": chain})));
        events.push(("response.output_item.done", json!({"output_index": 0, "item": reasoning_item(id, chain)})));
    }
    let index = usize::from(chain.is_some());
    let mut item = message_item(id, "", "in_progress");
    item["content"] = json!([]);
    events.push(("response.output_item.added", json!({"output_index": index, "item": item})));
    events.push(("response.content_part.added", json!({"item_id": format!("msg_{id}"), "output_index": index, "content_index": 0,
        "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})));
    events
}

pub async fn responses(State(state): State<Service>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let req = parse_object(&body?)?;
    let chat = to_chat(&req)?;
    let stream = chat.get("stream").and_then(Value::as_bool) == Some(true);
    let inner = super::chat::chat_completions(State(state.clone()), Ok(Bytes::from(Value::Object(chat).to_string())))
        .await
        .map_err(|e| e.rename_param(responses_param))?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    if !stream {
        let bytes = axum::body::to_bytes(inner.into_body(), usize::MAX).await.map_err(|e| ApiError::internal(e.to_string()))?;
        let chat: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok(axum::Json(from_chat(&id, &req, &chat)).into_response());
    }
    let model = state.cfg.model_id();
    let events = async_stream::stream! {
        let mut seq = 0u64;
        let mut event = |kind: &str, mut v: Value| {
            v["type"] = json!(kind);
            v["sequence_number"] = json!(seq);
            seq += 1;
            Item::json(&v)
        };
        let created = unix_now();
        let pending = response_object(&id, created, &req, &model, "in_progress", Vec::new(), None);
        yield event("response.created", json!({"response": pending}));
        yield event("response.in_progress", json!({"response": pending}));
        let (mut chain, mut answer) = (String::new(), String::new());
        let (mut finish, mut chat_usage) = (None::<String>, Value::Null);
        let mut thinkscale = Value::Null;
        let mut calls: Vec<Value> = Vec::new();
        // Output items open as their first text arrives: the reasoning item (index 0) when there
        // is a chain, then the message.
        let mut reasoning_open = false;
        let mut message_index: Option<usize> = None;
        let mut body = inner.into_body().into_data_stream();
        let mut buf = String::new();
        let mut failed = None;
        'read: while let Some(part) = body.next().await {
            let Ok(part) = part else { failed = Some("the response stream broke".to_string()); break };
            buf.push_str(&String::from_utf8_lossy(&part));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
                if data == "[DONE]" {
                    break 'read;
                }
                let Ok(chunk) = serde_json::from_str::<Value>(data) else { continue };
                if let Some(msg) = chunk["error"]["message"].as_str() {
                    failed = Some(msg.to_string());
                    break 'read;
                }
                if !chunk["usage"].is_null() {
                    chat_usage = chunk["usage"].clone();
                }
                let Some(c) = chunk["choices"].get(0) else { continue };
                let delta = &c["delta"];
                if let Some(t) = delta["reasoning_content"].as_str().filter(|t| !t.is_empty()) {
                    if !reasoning_open {
                        reasoning_open = true;
                        let mut item = reasoning_item(&id, "");
                        item["content"] = json!([]);
                        item["status"] = json!("in_progress");
                        yield event("response.output_item.added", json!({"output_index": 0, "item": item}));
                    }
                    chain.push_str(t);
                    yield event("response.reasoning_text.delta", json!({"item_id": format!("rs_{id}"), "output_index": 0, "content_index": 0, "delta": t}));
                }
                if let Some(t) = delta["content"].as_str().filter(|t| !t.is_empty()) {
                    if message_index.is_none() {
                        message_index = Some(usize::from(reasoning_open));
                        for (kind, v) in open_message(&id, reasoning_open.then_some(chain.as_str())) {
                            yield event(kind, v);
                        }
                    }
                    answer.push_str(t);
                    yield event("response.output_text.delta", json!({"item_id": format!("msg_{id}"), "output_index": message_index, "content_index": 0, "delta": t, "logprobs": []}));
                }
                if let Some(list) = delta["tool_calls"].as_array() {
                    calls.extend(list.iter().cloned());
                }
                if let Some(f) = c["finish_reason"].as_str() {
                    finish = Some(f.to_string());
                }
                if !c["thinkscale"].is_null() {
                    thinkscale = c["thinkscale"].clone();
                }
            }
        }
        if let Some(message) = failed {
            let mut r = response_object(&id, created, &req, &model, "failed", Vec::new(), None);
            r["error"] = json!({"code": "server_error", "message": message});
            yield event("response.failed", json!({"response": r}));
            return;
        }
        let status = if finish.as_deref() == Some("length") { "incomplete" } else { "completed" };
        if message_index.is_none() && calls.is_empty() {
            // No answer text arrived: the message is opened empty.
            message_index = Some(usize::from(reasoning_open));
            for (kind, v) in open_message(&id, reasoning_open.then_some(chain.as_str())) {
                yield event(kind, v);
            }
        }
        let mut output = Vec::new();
        if reasoning_open {
            output.push(reasoning_item(&id, &chain));
            if message_index.is_none() {
                // The chain ends in calls only: close its item here.
                yield event("response.reasoning_text.done", json!({"item_id": format!("rs_{id}"), "output_index": 0, "content_index": 0, "text": chain}));
                yield event("response.output_item.done", json!({"output_index": 0, "item": reasoning_item(&id, &chain)}));
            }
        }
        if let Some(index) = message_index {
            let part = json!({"type": "output_text", "text": answer, "annotations": [], "logprobs": []});
            yield event("response.output_text.done", json!({"item_id": format!("msg_{id}"), "output_index": index, "content_index": 0, "text": answer, "logprobs": []}));
            yield event("response.content_part.done", json!({"item_id": format!("msg_{id}"), "output_index": index, "content_index": 0, "part": part}));
            yield event("response.output_item.done", json!({"output_index": index, "item": message_item(&id, &answer, status)}));
            output.push(message_item(&id, &answer, status));
        }
        // Calls arrive whole (the chat stream holds a call back until it parses).
        for call in &calls {
            let index = output.len();
            let item = call_item(call, "completed");
            let mut added = call_item(call, "in_progress");
            added["arguments"] = json!("");
            yield event("response.output_item.added", json!({"output_index": index, "item": added}));
            let args = &item["arguments"];
            yield event("response.function_call_arguments.delta", json!({"item_id": item["id"], "output_index": index, "delta": args}));
            yield event("response.function_call_arguments.done", json!({"item_id": item["id"], "output_index": index, "name": item["name"], "arguments": args}));
            yield event("response.output_item.done", json!({"output_index": index, "item": item}));
            output.push(item);
        }
        let mut done = response_object(&id, created, &req, &model, status, output, finish.as_deref());
        done["usage"] = usage(&chat_usage);
        if !thinkscale.is_null() {
            done["thinkscale"] = thinkscale;
        }
        let kind = if status == "completed" { "response.completed" } else { "response.incomplete" };
        yield event(kind, json!({"response": done}));
    };
    Ok(sse::respond(events))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_responses_request_maps_onto_chat() {
        let chat = to_chat(&obj(json!({
            "model": "m", "instructions": "Be brief.",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "2+2?"}]},
                      {"type": "reasoning", "id": "rs_1", "summary": []},
                      {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "4"}]},
                      {"role": "user", "content": "and 3+3?"}],
            "reasoning": {"effort": "low", "summary": "auto", "samples": 4},
            "max_output_tokens": 300, "store": false, "temperature": 0.2, "thinking_budget_tokens": 64,
            "text": {"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}, "strict": true}},
        })))
        .unwrap();
        assert_eq!(chat["messages"], json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3+3?"}]));
        assert_eq!(chat["reasoning"], json!({"effort": "low", "samples": 4}));
        assert_eq!(chat["max_completion_tokens"], 300);
        assert_eq!(chat["response_format"], json!({"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}, "strict": true}}));
        assert_eq!((chat["temperature"].clone(), chat["thinking_budget_tokens"].clone()), (json!(0.2), json!(64)));
        for gone in ["input", "instructions", "max_output_tokens", "store", "text"] {
            assert!(!chat.contains_key(gone), "{gone}");
        }
    }

    #[test]
    fn unsupported_inputs_are_named() {
        let e = to_chat(&obj(json!({"input": "hi", "previous_response_id": "resp_1"}))).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("previous_response_id"));
        let e = to_chat(&obj(json!({"model": "m"}))).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input"));
        let e = to_chat(&obj(json!({"input": [{"type": "item_reference", "id": "c"}]}))).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input[0].type"));
        let e = to_chat(&obj(json!({"input": [{"type": "function_call", "call_id": "c", "name": "f"}]}))).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input[0].arguments"));
        let e = to_chat(&obj(json!({"input": "q", "tools": [{"type": "web_search"}]}))).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tools[0].type"));
        let e = to_chat(&obj(json!({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}))).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input[0].content[0]"));
        assert_eq!(responses_param("max_completion_tokens"), "max_output_tokens");
        assert_eq!(responses_param("messages[2].content"), "input[2].content");
    }

    #[test]
    fn tools_calls_and_results_map_onto_chat() {
        let chat = to_chat(&obj(json!({
            "input": [{"role": "user", "content": "add 1 and 2"},
                      {"type": "function_call", "call_id": "call_a", "name": "add", "arguments": "{\"a\":1}"},
                      {"type": "function_call", "call_id": "call_b", "name": "add", "arguments": "{}"},
                      {"type": "function_call_output", "call_id": "call_a", "output": "3"}],
            "tools": [{"type": "function", "name": "add", "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": {"type": "function", "name": "add"}, "parallel_tool_calls": false,
        })))
        .unwrap();
        assert_eq!(chat["tools"], json!([{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]));
        assert_eq!(chat["tool_choice"], json!({"type": "function", "function": {"name": "add"}}));
        assert_eq!(chat["parallel_tool_calls"], false);
        let m = &chat["messages"];
        assert_eq!(m[1]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(m[1]["tool_calls"][0]["function"], json!({"name": "add", "arguments": "{\"a\":1}"}));
        assert_eq!(m[2], json!({"role": "tool", "tool_call_id": "call_a", "content": "3"}));
    }

    #[test]
    fn tool_calls_become_function_call_items() {
        let req = obj(json!({"input": "q"}));
        let call = json!({"id": "call_x", "type": "function", "function": {"name": "add", "arguments": "{}"}});
        let chat = json!({"created": 7, "model": "m", "choices": [{"message": {"content": null, "tool_calls": [call]}, "finish_reason": "tool_calls"}],
            "usage": {}});
        let r = from_chat("x", &req, &chat);
        assert_eq!(r["status"], "completed");
        assert_eq!(r["output"].as_array().unwrap().len(), 1);
        assert_eq!(r["output"][0], json!({"type": "function_call", "id": "fc_x", "call_id": "call_x", "name": "add", "arguments": "{}", "status": "completed"}));
    }

    #[test]
    fn a_chat_completion_becomes_reasoning_and_message_items() {
        let req = obj(json!({"input": "q", "reasoning": {"effort": "low"}, "max_output_tokens": 50}));
        let chat = json!({"created": 7, "model": "m", "choices": [{"message": {"content": "42", "reasoning_content": "6*7"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14, "prompt_tokens_details": {"cached_tokens": 2},
                      "completion_tokens_details": {"reasoning_tokens": 3}}});
        let r = from_chat("x", &req, &chat);
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(r["output"][0]["type"], "reasoning");
        assert_eq!(r["output"][0]["content"][0]["text"], "6*7");
        assert_eq!(r["output"][1]["content"][0]["text"], "42");
        assert_eq!(r["usage"]["output_tokens_details"]["reasoning_tokens"], 3);
        assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 2);
        assert_eq!(r["reasoning"]["effort"], "low");
    }
}
