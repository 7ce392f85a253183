//! The model's own chat template (the GGUF's `tokenizer.chat_template`, Jinja) rendered with
//! minijinja the way Hugging Face renders it: trimmed blocks, Python string methods, `tojson`
//! without HTML escaping, `raise_exception`, and the tools and tool calls of the conversation.

use minijinja::{Environment, Error, ErrorKind, Value as JValue};
use serde::Serialize;

use crate::reasoning::chat::Message;

pub struct Jinja {
    env: Environment<'static>,
    bos: String,
    eos: String,
    /// Whether the template renders `tools` (else tools are written into the system prompt).
    pub knows_tools: bool,
}

const NAME: &str = "chat";

/// `json.dumps` as Python writes it (", " and ": " separators, no escaping of "<" or "&"): what
/// Hugging Face's `tojson` prints, so the model sees the text it was trained on.
fn python_json(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Array(a) => format!("[{}]", a.iter().map(python_json).collect::<Vec<_>>().join(", ")),
        serde_json::Value::Object(o) => format!(
            "{{{}}}",
            o.iter().map(|(k, v)| format!("{}: {}", serde_json::Value::String(k.clone()), python_json(v))).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn tojson(value: JValue, _kwargs: minijinja::value::Kwargs) -> Result<JValue, Error> {
    let v = serde_json::to_value(&value).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    Ok(JValue::from_safe_string(python_json(&v)))
}

/// Marks an error the template raised on purpose (a conversation its rules reject).
#[derive(Debug, thiserror::Error)]
#[error("raised by the template")]
struct Raised;

fn raise_exception(msg: String) -> Result<JValue, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg).with_source(Raised))
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum RenderError {
    /// The template's own rules reject the conversation (e.g. roles that do not alternate).
    #[error("{0}")]
    Rejected(String),
    /// The template failed for reasons of its own (a construct minijinja lacks).
    #[error("{0}")]
    Failed(String),
}

impl From<Error> for RenderError {
    fn from(e: Error) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if s.is::<Raised>() {
                return Self::Rejected(e.detail().unwrap_or_default().to_string());
            }
            source = s.source();
        }
        Self::Failed(e.to_string())
    }
}

impl Jinja {
    pub fn new(source: &str, bos: String, eos: String) -> Result<Self, Error> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", |fmt: String| -> String {
            // Templates print today's date with it (Llama 3's "%d %b %Y"); the date only, so a
            // prompt stays the same, and cacheable, all day.
            let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            date(&fmt, civil_from_days((secs / 86_400) as i64))
        });
        env.add_template_owned(NAME, source.to_string())?;
        Ok(Self { env, bos, eos, knows_tools: source.contains("tools") })
    }

    /// Render the conversation and open the assistant's turn.
    pub fn render(&self, messages: &[Message], tools: Option<&[serde_json::Value]>) -> Result<String, RenderError> {
        #[derive(Serialize)]
        struct Ctx<'a> {
            messages: &'a [Message],
            tools: Option<&'a [serde_json::Value]>,
            add_generation_prompt: bool,
            bos_token: &'a str,
            eos_token: &'a str,
        }
        let ctx = Ctx { messages, tools, add_generation_prompt: true, bos_token: &self.bos, eos_token: &self.eos };
        let text = self.env.get_template(NAME)?.render(ctx)?;
        // The tokenizer adds BOS itself; a template that writes it too would double it.
        Ok(match text.strip_prefix(self.bos.as_str()) {
            Some(rest) if !self.bos.is_empty() => rest.to_string(),
            _ => text,
        })
    }
}

const MONTHS: [&str; 12] =
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

/// The date fields of a strftime format (%Y %m %d %B %b).
fn date(fmt: &str, (y, m, d): (i64, u32, u32)) -> String {
    let name = MONTHS[(m - 1) as usize];
    fmt.replace("%Y", &y.to_string())
        .replace("%m", &format!("{m:02}"))
        .replace("%d", &format!("{d:02}"))
        .replace("%B", name)
        .replace("%b", &name[..3])
}

/// Days since 1970-01-01 to a (year, month, day) date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reasoning::chat::ToolCall;
    use serde_json::json;

    const QWEN_LIKE: &str = r#"{%- if tools %}<|im_start|>system
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == "assistant" and message.tool_calls %}<|im_start|>assistant
{%- for tool_call in message.tool_calls %}{% set tool_call = tool_call.function %}
<tool_call>{"name": "{{ tool_call.name }}", "arguments": {{ tool_call.arguments | tojson }}}</tool_call>{% endfor %}<|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content.strip() }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"#;

    #[test]
    fn renders_tools_calls_and_python_json() {
        let j = Jinja::new(QWEN_LIKE, "<s>".into(), "</s>".into()).unwrap();
        assert!(j.knows_tools);
        let mut a = Message::new("assistant", "");
        a.tool_calls.push(ToolCall { id: "c".into(), name: "add".into(), arguments: r#"{"a": "<1>"}"#.into() });
        let tools = [json!({"type": "function", "function": {"name": "add"}})];
        let text = j.render(&[Message::new("user", " hi "), a, Message::new("tool", "3")], Some(&tools)).unwrap();
        assert!(text.contains(r#"{"type": "function", "function": {"name": "add"}}"#), "{text}");
        assert!(text.contains(r#"<tool_call>{"name": "add", "arguments": {"a": "<1>"}}</tool_call>"#), "{text}");
        assert!(text.contains("<|im_start|>user\nhi<|im_end|>"), "{text}");
        assert!(text.ends_with("<|im_start|>assistant\n"), "{text}");
    }

    #[test]
    fn bos_is_left_to_the_tokenizer_and_errors_are_reported() {
        let j = Jinja::new("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}", "<s>".into(), "".into()).unwrap();
        assert_eq!(j.render(&[Message::new("user", "x")], None).unwrap(), "x");
        let j = Jinja::new("{{ raise_exception('roles must alternate') }}", "".into(), "".into()).unwrap();
        assert_eq!(j.render(&[], None).unwrap_err(), RenderError::Rejected("roles must alternate".into()));
        let j = Jinja::new("{{ messages[0].content.nonexistent_method() }}", "".into(), "".into()).unwrap();
        assert!(matches!(j.render(&[Message::new("user", "x")], None), Err(RenderError::Failed(_))));
        assert!(Jinja::new("{% if %}", "".into(), "".into()).is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
        assert_eq!(date("%d %b %Y", (2026, 11, 29)), "29 Nov 2026");
        assert_eq!(date("%B %d, %Y / %m", (2026, 1, 5)), "January 05, 2026 / 01");
    }
}
