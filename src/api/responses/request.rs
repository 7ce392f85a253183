//! The Responses request mapped onto a chat request: input items -> messages, `instructions` ->
//! system message, `max_output_tokens`, `text.format` -> `response_format`, tools and tool choice;
//! every thinkscale and dialect field passes through.

use serde_json::{json, Map, Value};

use crate::api::error::ApiError;

/// Responses fields with no chat counterpart: dropped (they change nothing here) or mapped.
const RESPONSES_ONLY: [&str; 15] = [
    "input",
    "instructions",
    "max_output_tokens",
    "text",
    "store",
    "include",
    "truncation",
    "user",
    "background",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "previous_response_id",
    "tools",
    "tool_choice",
];

/// Chat parameter names in errors, spelled as the Responses request named them.
pub(super) fn responses_param(chat: &str) -> String {
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
        Value::Array(parts) => crate::reasoning::chat::text_parts(parts, &["input_text", "output_text", "text"]).map_err(|j| {
            ApiError::bad_request(
                format!("{param}[{j}]: only input_text and output_text parts are supported"),
                Some(&format!("{param}[{j}]")),
            )
        }),
        _ => Err(ApiError::bad_request(format!("'{param}' must be a string or a list of text parts"), Some(param))),
    }
}

/// The chat request a Responses request stands for.
// Long on purpose: one mapping per Responses field, in the order the API documents them.
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
                        return Err(ApiError::bad_request(
                            format!("input item type '{other}' is not supported"),
                            Some(&format!("{param}.type")),
                        ))
                    }
                }
            }
        }
        None | Some(Value::Null) => return Err(ApiError::bad_request("'input' is required", Some("input"))),
        Some(_) => return Err(ApiError::bad_request("'input' must be a string or a list of items", Some("input"))),
    }
    let mut chat: Map<String, Value> =
        obj.iter().filter(|(k, _)| !RESPONSES_ONLY.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
    chat.insert("messages".into(), Value::Array(messages));
    if let Some(m) = obj.get("max_output_tokens").filter(|v| !v.is_null()) {
        chat.insert("max_completion_tokens".into(), m.clone());
    }
    if let Some(Value::Object(r)) = obj.get("reasoning") {
        // `summary` asks OpenAI for a summary of hidden reasoning; here the whole chain is returned.
        let r: Map<String, Value> =
            r.iter().filter(|(k, _)| !matches!(k.as_str(), "summary" | "generate_summary")).map(|(k, v)| (k.clone(), v.clone())).collect();
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
            _ => {
                return Err(ApiError::bad_request("'text.format.type' must be text, json_object or json_schema", Some("text.format.type")))
            }
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
        assert_eq!(
            chat["messages"],
            json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3+3?"}])
        );
        assert_eq!(chat["reasoning"], json!({"effort": "low", "samples": 4}));
        assert_eq!(chat["max_completion_tokens"], 300);
        assert_eq!(
            chat["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}, "strict": true}})
        );
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
}
