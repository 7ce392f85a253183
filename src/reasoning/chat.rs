//! A chat conversation as the templates see it: messages, tool calls and tool results. Plain data,
//! shared by the API (which parses requests into it), the template renderer and the judges.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// system, user, assistant or tool.
    pub role: String,
    pub content: String,
    /// An assistant turn's calls (the template renders them in the model's own format).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// A tool result: the call it answers, and the function's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self { role: role.to_string(), content: content.into(), tool_calls: Vec::new(), tool_call_id: None, name: None }
    }
}

/// The text of a list of content parts whose `type` is one of `kinds` (chat's "text",
/// Responses' "input_text"/"output_text"), joined; Err: the index of the first other part.
pub fn text_parts(parts: &[Value], kinds: &[&str]) -> Result<String, usize> {
    let mut text = String::new();
    for (j, p) in parts.iter().enumerate() {
        match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
            (Some(kind), Some(t)) if kinds.contains(&kind) => text.push_str(t),
            _ => return Err(j),
        }
    }
    Ok(text)
}

/// A judge's conversation: the conversation so far, the proposed answer as the assistant's turn,
/// and the judging question.
pub fn judging_conversation(messages: &[Message], answer: &str, question: &str) -> Vec<Message> {
    let mut conv = messages.to_vec();
    conv.push(Message::new("assistant", format!("Final answer: {answer}")));
    conv.push(Message::new("user", question));
    conv
}

/// One function call; `arguments` is the JSON text as OpenAI clients send and receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// Templates follow Hugging Face's convention: `function.arguments` is an object (Qwen's
/// template prints it with `tojson`), so arguments that parse are passed parsed.
impl Serialize for ToolCall {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let arguments = serde_json::from_str::<Value>(&self.arguments).unwrap_or_else(|_| Value::String(self.arguments.clone()));
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("type", "function")?;
        m.serialize_entry("function", &serde_json::json!({"name": self.name, "arguments": arguments}))?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_parts_join_the_allowed_kinds_and_name_the_first_other() {
        let parts = [json!({"type": "text", "text": "a"}), json!({"type": "input_text", "text": "b"})];
        assert_eq!(text_parts(&parts, &["text", "input_text"]), Ok("ab".into()));
        assert_eq!(text_parts(&parts, &["text"]), Err(1));
        assert_eq!(text_parts(&[json!({"type": "image_url", "image_url": {}})], &["text"]), Err(0));
        assert_eq!(text_parts(&[], &["text"]), Ok(String::new()));
    }

    #[test]
    fn tool_calls_serialise_with_parsed_arguments() {
        let mut m = Message::new("assistant", "");
        m.tool_calls.push(ToolCall { id: "c1".into(), name: "add".into(), arguments: r#"{"a": 1}"#.into() });
        m.tool_calls.push(ToolCall { id: "c2".into(), name: "f".into(), arguments: "not json".into() });
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["tool_calls"][0], json!({"id": "c1", "type": "function", "function": {"name": "add", "arguments": {"a": 1}}}));
        assert_eq!(v["tool_calls"][1]["function"]["arguments"], "not json");
        assert!(v.get("tool_call_id").is_none());
        assert!(serde_json::to_value(Message::new("user", "hi")).unwrap().get("tool_calls").is_none());
    }
}
