//! Tool calls in the Hermes format Qwen2.5 (and many fine-tunes) are trained on: each call a JSON
//! object `{"name": ..., "arguments": {...}}` between `<tool_call>` and `</tool_call>`. Parsing the
//! model's text, holding back a call while it streams, the JSON schema a required call must
//! follow, and the plain-text form for templates that know no tools.

use serde_json::{json, Value};

use super::chat::{Message, ToolCall};

pub const CALL_OPEN: &str = "<tool_call>";
pub const CALL_CLOSE: &str = "</tool_call>";

/// A function the client offers: its name and its parameters' JSON schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub parameters: Value,
    /// The tool as the client sent it, for the template (`{"type": "function", "function": ...}`).
    pub raw: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    Function(String),
}

/// The model's answer split into text and calls.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    pub content: String,
    /// (name, arguments as JSON text)
    pub calls: Vec<(String, String)>,
}

/// One call block's JSON, if it names a known tool. `arguments` may be an object or a JSON string.
fn call_of<S: AsRef<str>>(block: &str, known: &[S]) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(block.trim()).ok()?;
    let name = v.get("name")?.as_str()?;
    if !known.iter().any(|k| k.as_ref() == name) {
        return None;
    }
    let args = match v.get("arguments").or_else(|| v.get("parameters")) {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(s)) if serde_json::from_str::<Value>(s).is_ok_and(|a| a.is_object()) => s.clone(),
        Some(a @ Value::Object(_)) => a.to_string(),
        Some(_) => return None,
    };
    Some((name.to_string(), args))
}

/// Small models often drop the tags: an answer that is nothing but call objects (one per line,
/// or in a ```json fence) is read as calls too, as llama.cpp's Hermes parser does.
fn bare_calls<S: AsRef<str>>(text: &str, known: &[S]) -> Option<Vec<(String, String)>> {
    let t = text.trim();
    let t = match t.strip_prefix("```") {
        Some(rest) => rest.trim_start_matches("json").strip_suffix("```")?.trim(),
        None => t,
    };
    if !t.starts_with('{') {
        return None;
    }
    let calls: Vec<_> = serde_json::Deserializer::from_str(t)
        .into_iter::<Value>()
        .map(|v| v.ok().and_then(|v| call_of(&v.to_string(), known)))
        .collect::<Option<_>>()?;
    (!calls.is_empty()).then_some(calls)
}

/// Split text into content and calls. A block that is not a call to a known tool stays content,
/// so nothing the model wrote is lost; an unclosed last block counts when its JSON is complete.
pub fn parse<S: AsRef<str>>(text: &str, known: &[S]) -> Parsed {
    if let Some(calls) = bare_calls(text, known) {
        return Parsed { content: String::new(), calls };
    }
    let mut out = Parsed::default();
    let mut rest = text;
    while let Some(i) = rest.find(CALL_OPEN) {
        out.content.push_str(&rest[..i]);
        let after = &rest[i + CALL_OPEN.len()..];
        let (block, next, raw_len) = match after.find(CALL_CLOSE) {
            Some(j) => (&after[..j], &after[j + CALL_CLOSE.len()..], CALL_OPEN.len() + j + CALL_CLOSE.len()),
            None => (after, "", rest.len() - i),
        };
        match call_of(block, known) {
            Some(call) => out.calls.push(call),
            None => out.content.push_str(&rest[i..i + raw_len]),
        }
        rest = next;
    }
    out.content.push_str(rest);
    out.content = out.content.trim().to_string();
    out
}

/// Streams content while holding back anything that may be the start of a call: a tag, or an
/// answer that opens with `{` or a code fence (a call written without its tags).
#[derive(Debug, Default)]
pub struct CallStream {
    buf: String,
    emitted: usize,
    held: bool,
}

impl CallStream {
    /// Append generated text; returns the content that can be shown now.
    pub fn push(&mut self, text: &str) -> String {
        self.buf.push_str(text);
        if self.held {
            return String::new();
        }
        let pending = &self.buf[self.emitted..];
        // Only whitespace shown so far: the answer has not started, so it may still open with "{".
        let start = self.buf.trim_start();
        if self.buf[..self.emitted].trim().is_empty() && ["{", "`"].iter().any(|p| start.starts_with(p)) {
            self.held = true;
            return String::new();
        }
        let end = match pending.find(CALL_OPEN) {
            Some(p) => {
                self.held = true;
                self.emitted + p
            }
            // Keep back a tail that could grow into "<tool_call>" (ASCII, so a char boundary).
            None => self.buf.len() - (1..CALL_OPEN.len()).rev().find(|k| pending.ends_with(&CALL_OPEN[..*k])).unwrap_or(0),
        };
        let out = self.buf[self.emitted..end].to_string();
        self.emitted = end;
        out
    }

    /// At the end: the content not shown yet and the calls.
    pub fn finish<S: AsRef<str>>(&self, known: &[S]) -> Parsed {
        parse(&self.buf[self.emitted..], known)
    }
}

/// The JSON schema a forced call follows: one of the allowed tools, its name first.
pub fn call_schema(tools: &[&Tool]) -> String {
    let one = |t: &Tool| {
        let params = if t.parameters.is_object() { t.parameters.to_string() } else { r#"{"type":"object"}"#.to_string() };
        // Written by hand: the grammar keeps property order, and the model writes the name first.
        format!(
            r#"{{"type":"object","properties":{{"name":{{"const":{}}},"arguments":{params}}},"required":["name","arguments"]}}"#,
            json!(t.name)
        )
    };
    match tools {
        [t] => one(t),
        _ => format!(r#"{{"anyOf":[{}]}}"#, tools.iter().map(|t| one(t)).collect::<Vec<_>>().join(",")),
    }
}

/// The system text that offers tools to a model whose template has no tool support (the same
/// instructions Qwen2.5's template writes).
pub fn tools_prompt(tools: &[Tool]) -> String {
    let mut s = String::from(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>",
    );
    for t in tools {
        s.push('\n');
        s.push_str(&t.raw.to_string());
    }
    s.push_str("\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>");
    s
}

/// A conversation with tools, calls and results as plain text, for templates that know none of them.
pub fn flatten(messages: &[Message], tools: &[Tool]) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(messages.len() + 1);
    if !tools.is_empty() {
        match messages.first() {
            Some(m) if m.role == "system" => {}
            _ => out.push(Message::new("system", tools_prompt(tools))),
        }
    }
    for (i, m) in messages.iter().enumerate() {
        let mut m = m.clone();
        if i == 0 && m.role == "system" && !tools.is_empty() {
            m.content = format!("{}\n\n{}", m.content, tools_prompt(tools));
        }
        for c in std::mem::take(&mut m.tool_calls) {
            let call =
                json!({"name": c.name, "arguments": serde_json::from_str::<Value>(&c.arguments).unwrap_or(Value::String(c.arguments))});
            m.content.push_str(&format!("\n{CALL_OPEN}\n{call}\n{CALL_CLOSE}"));
        }
        if m.role == "tool" {
            let text = format!("<tool_response>\n{}\n</tool_response>", m.content);
            // Consecutive results share one user turn, as Qwen's template does.
            match out.last_mut() {
                Some(prev) if i > 0 && messages[i - 1].role == "tool" => {
                    prev.content.push('\n');
                    prev.content.push_str(&text);
                }
                _ => out.push(Message::new("user", text)),
            }
            continue;
        }
        m.tool_call_id = None;
        m.name = None;
        out.push(m);
    }
    out
}

/// A fresh call id, as OpenAI spells them.
pub fn call_id() -> String {
    format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..24])
}

/// Calls with fresh ids.
pub fn with_ids(calls: Vec<(String, String)>) -> Vec<ToolCall> {
    calls.into_iter().map(|(name, arguments)| ToolCall { id: call_id(), name, arguments }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &[&str] = &["add", "weather"];

    #[test]
    fn calls_are_split_from_text() {
        let p = parse("Let me add.\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>", K);
        assert_eq!(p.content, "Let me add.");
        assert_eq!(p.calls, vec![("add".into(), r#"{"a":1,"b":2}"#.into())]);
        let two = "<tool_call>{\"name\":\"add\",\"arguments\":\"{\\\"a\\\":1}\"}</tool_call>\n<tool_call>{\"name\":\"weather\"}";
        let p = parse(two, K);
        assert_eq!(p.content, "");
        assert_eq!(p.calls, vec![("add".into(), r#"{"a":1}"#.into()), ("weather".into(), "{}".into())]);
    }

    #[test]
    fn what_is_not_a_known_call_stays_text() {
        for text in [
            "<tool_call>{\"name\": \"rm\", \"arguments\": {}}</tool_call>",
            "<tool_call>{oops</tool_call> x",
            "<tool_call>{\"name\": \"add\", \"arguments\": 3}",
        ] {
            let p = parse(text, K);
            assert!(p.calls.is_empty(), "{text}");
            assert_eq!(p.content, text.trim(), "{text}");
        }
        assert_eq!(parse("no calls", K), Parsed { content: "no calls".into(), calls: vec![] });
        // A JSON answer that is not a call stays the answer.
        assert_eq!(parse("{\"a\": 1}", K).content, "{\"a\": 1}");
    }

    #[test]
    fn calls_without_tags_are_read() {
        let p = parse(" {\"name\": \"add\", \"arguments\": {\"a\": 1}}\n{\"name\": \"weather\", \"arguments\": {}}", K);
        assert_eq!(p.calls, vec![("add".into(), r#"{"a":1}"#.into()), ("weather".into(), "{}".into())]);
        assert_eq!(parse("```json\n{\"name\": \"add\", \"arguments\": {}}\n```", K).calls.len(), 1);
        assert!(parse("{\"name\": \"add\", \"arguments\": {}} and more", K).calls.is_empty());
    }

    #[test]
    fn streaming_holds_back_a_call() {
        let mut s = CallStream::default();
        let text = "Sure <tool_call>\n{\"name\": \"add\", \"arguments\": {}}\n</tool_call>";
        let mut shown = String::new();
        for ch in text.chars() {
            shown.push_str(&s.push(&ch.to_string()));
        }
        assert_eq!(shown, "Sure ");
        let end = s.finish(K);
        assert_eq!((end.content.as_str(), end.calls.len()), ("", 1));
        // A "<" that never becomes a call is shown at the end.
        let mut s = CallStream::default();
        assert_eq!(s.push("a <tool"), "a ");
        assert_eq!(s.push("s are"), "<tools are");
        assert_eq!(s.push(" <"), " ");
        assert_eq!(s.finish(K).content, "<");
        // An answer opening with "{" is held whole: a call without tags, or JSON shown at the end.
        let mut s = CallStream::default();
        assert_eq!(s.push("\n"), "\n");
        assert_eq!(s.push(" {\"name\": \"add\","), "");
        assert_eq!(s.push(" \"arguments\": {}}"), "");
        assert_eq!(s.finish(K).calls.len(), 1);
    }

    #[test]
    fn the_call_schema_names_the_tool_first() {
        let t = Tool { name: "add".into(), parameters: json!({"type": "object"}), raw: json!({}) };
        let s = call_schema(&[&t]);
        assert!(s.find("\"name\"").unwrap() < s.find("\"arguments\"").unwrap());
        let v: Value = serde_json::from_str(&call_schema(&[&t, &t])).unwrap();
        assert_eq!(v["anyOf"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn flattening_writes_calls_and_results_as_text() {
        let tools = [Tool { name: "add".into(), parameters: json!({}), raw: json!({"type": "function", "function": {"name": "add"}}) }];
        let mut a = Message::new("assistant", "");
        a.tool_calls.push(ToolCall { id: "c".into(), name: "add".into(), arguments: r#"{"a":1}"#.into() });
        let mut t1 = Message::new("tool", "3");
        t1.tool_call_id = Some("c".into());
        let msgs = vec![Message::new("user", "1+2?"), a, t1, Message::new("tool", "4")];
        let flat = flatten(&msgs, &tools);
        assert_eq!(flat.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(), ["system", "user", "assistant", "user"]);
        assert!(flat[0].content.contains("\"name\":\"add\""));
        assert!(flat[2].content.contains("<tool_call>") && flat[2].tool_calls.is_empty());
        assert_eq!(flat[3].content, "<tool_response>\n3\n</tool_response>\n<tool_response>\n4\n</tool_response>");
    }
}
