//! POST /v1/responses: the OpenAI Responses API over the chat pipeline. The request is mapped onto
//! a chat request (`request.rs`), run by the chat endpoint, and its answer or stream is turned into
//! Responses output items and typed events: a `reasoning` item with the chain of thought, then the
//! `message` and any function calls.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::sse::{self, Item};
use super::stream::unix_now;
use crate::service::request::parse_object;
use crate::service::Service;
use request::{responses_param, to_chat};

mod request;

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
