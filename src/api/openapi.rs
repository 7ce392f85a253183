//! GET /openapi.json: the API contract, generated (schemars) from the serde types the handlers
//! parse and serialize (`openai.rs`), with the bounds that depend on the configuration (token
//! caps, `n`) filled in, and every reasoning field from `reasoning::params`, which the gate
//! checks requests against. The contract test (tests/python/test_openapi.py) fuzzes the live server
//! against it.

use axum::extract::State;
use axum::Json;
use schemars::generate::SchemaSettings;
use serde_json::{json, Value};

use super::openai::{ChatChoice, Completion, ErrorBody, TextChoice};
use crate::service::Service;

/// A JSON body or, with `stream: true`, server-sent events (each a `data:` line: a chunk, an
/// error object or `[DONE]`).
fn ok(schema: &str) -> Value {
    json!({"description": "OK", "content": {
        "application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}},
        "text/event-stream": {"schema": {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}}}})
}

fn errors() -> Value {
    let e = json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let with = |d: &str| {
        let mut v = e.clone();
        v["description"] = json!(d);
        v
    };
    json!({"400": with("invalid request"), "401": with("missing or wrong API key"), "413": with("body too large"),
           "429": with("every slot busy and the queue full (Retry-After)"), "500": with("the engine failed"),
           "503": with("loading or shutting down")})
}

fn post(op: &str, body: &str, schema: &str) -> Value {
    let mut responses = errors();
    responses["200"] = ok(schema);
    json!({"post": {"operationId": op, "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{body}")}}}},
                    "responses": responses}})
}

/// What the chat handler checks beyond the field types, written into the contract so a
/// schema-driven client generates bodies the server accepts: one message at least, content as
/// text (with something in it) or text parts, `tool_calls` on assistant turns only, tool results
/// naming their call, `top_logprobs` only with `logprobs: true`.
fn chat_constraints(schemas: &mut serde_json::Map<String, Value>) {
    // Something besides spaces, and no NUL (which no tokenizer takes).
    let text = json!({"type": "string", "pattern": "^[^\\u0000]*\\S[^\\u0000]*$"});
    let content = json!({"oneOf": [text, {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["type", "text"],
        "properties": {"type": {"type": "string", "enum": ["text"]}, "text": text}}}]});
    let calls = json!({"type": "array", "items": {"$ref": "#/components/schemas/RawToolCall"}});
    schemas.insert(
        "RawMessage".into(),
        json!({"oneOf": [
            {"type": "object", "required": ["role", "content"], "properties": {
                "role": {"type": "string", "enum": ["system", "developer", "user"]}, "content": content, "name": {"type": "string"}}},
            {"type": "object", "required": ["role", "content"], "properties": {
                "role": {"type": "string", "enum": ["assistant"]}, "content": content, "tool_calls": calls, "name": {"type": "string"}}},
            {"type": "object", "required": ["role", "content", "tool_call_id"], "properties": {
                "role": {"type": "string", "enum": ["tool"]}, "content": content, "tool_call_id": {"type": "string"}}},
        ]}),
    );
    if let Some(tool) = schemas.get_mut("RawTool") {
        tool["properties"]["type"]["enum"] = json!(["function"]);
    }
    if let Some(f) = schemas.get_mut("FunctionDef") {
        f["properties"]["name"]["pattern"] = json!("^[A-Za-z0-9_-]{1,64}$");
    }
    if let Some(chat) = schemas.get_mut("ChatFields") {
        chat["properties"]["messages"]["minItems"] = json!(1);
        chat["properties"]["tool_choice"] = json!({
            "description": "needs `tools`; a named function must be one of them",
            "oneOf": [{"type": "string", "enum": ["none", "auto", "required"]},
                      {"type": "object", "required": ["type", "function"], "properties": {"type": {"type": "string", "enum": ["function"]},
                       "function": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}}]});
        chat["anyOf"] =
            json!([{"required": ["logprobs"], "properties": {"logprobs": {"enum": [true]}}}, {"not": {"required": ["top_logprobs"]}}]);
    }
}

/// The definition a `$ref` schema points to.
fn defined_name(schema: &schemars::Schema) -> String {
    schema.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()).unwrap_or_default().to_string()
}

/// `efforts`: the server's effort levels (`reasoning_effort`'s values besides "auto").
pub fn document(slot_ctx: u32, parallel: u32, efforts: &[String]) -> Value {
    let mut gen = SchemaSettings::openapi3().into_generator();
    let chat = crate::service::chat_request_schema(&mut gen);
    let completion = crate::service::completion_request_schema(&mut gen);
    let chat_response = defined_name(&gen.subschema_for::<Completion<ChatChoice>>());
    let text_response = defined_name(&gen.subschema_for::<Completion<TextChoice>>());
    gen.subschema_for::<ErrorBody>();
    let mut schemas = gen.take_definitions(true);
    // Bounds from the configuration: one request's cap is its slot's context, `n` the slots.
    if let Some(props) = schemas.get_mut("Common").and_then(|c| c.get_mut("properties")) {
        for cap in ["max_tokens", "max_completion_tokens"] {
            props[cap]["maximum"] = json!(slot_ctx);
        }
        props["n"]["maximum"] = json!(parallel);
    }
    chat_constraints(&mut schemas);
    schemas.insert("Reasoning".into(), crate::reasoning::params::schema(efforts));
    schemas.insert("ChatRequest".into(), chat);
    schemas.insert("CompletionRequest".into(), completion);
    // Responses: the types the handlers serialize, under the names the paths use.
    for (name, generated, object) in
        [("ChatCompletion", chat_response, "chat.completion"), ("Completion", text_response, "text_completion")]
    {
        if let Some(mut schema) = schemas.remove(&generated) {
            schema["properties"]["object"]["enum"] = json!([object]);
            // Optional in the shared envelope (chunks leave it out), always in a whole response.
            if let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) {
                required.push(json!("usage"));
            }
            schemas.insert(name.into(), schema);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "thinkscale", "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/v1/chat/completions": post("createChatCompletion", "ChatRequest", "ChatCompletion"),
            "/v1/completions": post("createCompletion", "CompletionRequest", "Completion"),
        },
        "components": {"schemas": schemas},
    })
}

pub async fn openapi(State(state): State<Service>) -> Json<Value> {
    let cfg = &state.cfg;
    // The backend's slot once it is known (a remote engine's may differ from this config's).
    let slot_ctx = state.slot_ctx().unwrap_or(cfg.ctx_size / cfg.parallel);
    let efforts: Vec<String> = state.policy.effort_budgets.keys().cloned().collect();
    Json(document(slot_ctx, cfg.parallel, &efforts))
}
