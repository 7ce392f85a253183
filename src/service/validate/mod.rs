//! The validation gate for chat and text-completion requests: a raw body becomes a `Prepared`
//! job (typed fields, the reasoning plan, the tool grammar, the rendered and tokenized prompt,
//! the caps) or an `Invalid`; nothing after it re-checks the request. Templating, tokenizing and grammar
//! compilation block (a remote backend asks its engine), so `prepare_off_thread` runs it off the
//! async workers.

mod completion;

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::grading::AutoDecision;
use super::invalid::Invalid;
use super::request::{parse_object, typed, Common, Validated};
use super::verify::CheckInput;
use super::Service;
use crate::backend::controller::JobForcing;
use crate::backend::{Adaptive, Backend, ConfidenceSpec, ForcingRequest, JobSpec, Judge, StopRule, Token, VotePlan};
use crate::reasoning::chat::{judging_conversation, Message, ToolCall};
use crate::reasoning::plan::{self, Aggregate, ReasoningPlan, Scaffold, Verifier};
use crate::reasoning::tools::{self, Tool, ToolChoice};
pub use completion::{completion_request_schema, prepare_completion, PreparedCompletion};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct ChatFields {
    messages: Vec<RawMessage>,
    logprobs: Option<bool>,
    #[schemars(range(min = 0, max = 20))]
    top_logprobs: Option<i64>,
    #[serde(default)]
    tools: Vec<RawTool>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct RawMessage {
    #[schemars(extend("enum" = ["system", "developer", "user", "assistant", "tool", "function"]))]
    role: String,
    #[serde(default)]
    content: Value,
    tool_calls: Option<Vec<RawToolCall>>,
    tool_call_id: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct RawToolCall {
    id: Option<String>,
    function: RawFunctionCall,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct RawFunctionCall {
    name: String,
    /// JSON text as OpenAI sends it (an object is accepted too).
    #[serde(default)]
    arguments: Value,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct RawTool {
    #[serde(rename = "type")]
    kind: String,
    function: FunctionDef,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct FunctionDef {
    name: String,
    parameters: Option<Value>,
}

/// The tools a request offers and how the model may use them (None: no tools in play).
#[derive(Debug, Clone)]
pub struct ToolUse {
    pub tools: Vec<Tool>,
    pub choice: ToolChoice,
}

/// Validate `tools` and `tool_choice`. `tool_choice: "none"` (or no tools) leaves tools out of
/// the prompt, so the model cannot call them.
fn tool_use(fields: &ChatFields, obj: &Map<String, Value>) -> Result<Option<ToolUse>, Invalid> {
    let mut tools: Vec<Tool> = Vec::with_capacity(fields.tools.len());
    for (i, t) in fields.tools.iter().enumerate() {
        if t.kind != "function" {
            return Err(Invalid::field(format!("tools[{i}].type must be \"function\""), Some(&format!("tools[{i}].type"))));
        }
        let name = &t.function.name;
        let param = format!("tools[{i}].function.name");
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(Invalid::field(format!("'{param}' must be 1-64 letters, digits, '_' or '-'"), Some(&param)));
        }
        if tools.iter().any(|o| &o.name == name) {
            return Err(Invalid::field(format!("'{param}': two tools are named '{name}'"), Some(&param)));
        }
        let parameters = match &t.function.parameters {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                let param = format!("tools[{i}].function.parameters");
                return Err(Invalid::field(format!("'{param}' must be a JSON schema object"), Some(&param)));
            }
        };
        let raw = obj.get("tools").and_then(|v| v.get(i)).cloned().unwrap_or(Value::Null);
        tools.push(Tool { name: name.clone(), parameters, raw });
    }
    let bad = |msg: &str| Invalid::field(msg.to_string(), Some("tool_choice"));
    const CHOICES: &str =
        "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}";
    let choice = match &fields.tool_choice {
        None if tools.is_empty() => ToolChoice::None,
        None => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            _ => return Err(bad(CHOICES)),
        },
        Some(v) => {
            let name = v
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|_| v.get("type").and_then(Value::as_str) == Some("function"));
            match name {
                Some(n) if tools.iter().any(|t| t.name == n) => ToolChoice::Function(n.to_string()),
                Some(n) => return Err(bad(&format!("'tool_choice' names '{n}', which is not in 'tools'"))),
                None => return Err(bad(CHOICES)),
            }
        }
    };
    if tools.is_empty() && matches!(choice, ToolChoice::Required) {
        return Err(bad("'tool_choice' \"required\" needs 'tools'"));
    }
    Ok((choice != ToolChoice::None).then_some(ToolUse { tools, choice }))
}

/// Messages validated into the conversation the template renders.
fn messages(fields: &ChatFields) -> Result<Vec<Message>, Invalid> {
    if fields.messages.is_empty() {
        return Err(Invalid::field("'messages' must hold at least one message", Some("messages")));
    }
    let mut out = Vec::with_capacity(fields.messages.len());
    for (i, m) in fields.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            "tool" | "function" => "tool",
            other => {
                return Err(Invalid::field(
                    format!("Invalid role '{other}' in messages[{i}]; expected system, developer, user, assistant or tool"),
                    Some(&format!("messages[{i}].role")),
                ))
            }
        };
        let param = format!("messages[{i}].content");
        let text = match &m.content {
            Value::String(s) => s.clone(),
            Value::Null if role == "assistant" => String::new(),
            Value::Null if role == "tool" => String::new(),
            Value::Array(parts) => crate::reasoning::chat::text_parts(parts, &["text"]).map_err(|j| {
                Invalid::field(format!("messages[{i}].content[{j}]: only text parts are supported"), Some(&format!("{param}[{j}]")))
            })?,
            _ => return Err(Invalid::field(format!("'{param}' must be a string or a list of text parts"), Some(&param))),
        };
        if text.contains('\0') {
            return Err(Invalid::field(format!("'{param}' must not contain NUL characters"), Some(&param)));
        }
        let mut msg = Message::new(role, text);
        for (k, c) in m.tool_calls.iter().flatten().enumerate() {
            let arguments = match &c.function.arguments {
                Value::String(s) => s.clone(),
                Value::Null => "{}".to_string(),
                v @ Value::Object(_) => v.to_string(),
                _ => {
                    let param = format!("messages[{i}].tool_calls[{k}].function.arguments");
                    return Err(Invalid::field(format!("'{param}' must be a JSON string"), Some(&param)));
                }
            };
            msg.tool_calls.push(ToolCall { id: c.id.clone().unwrap_or_else(tools::call_id), name: c.function.name.clone(), arguments });
        }
        if !msg.tool_calls.is_empty() && role != "assistant" {
            return Err(Invalid::field(
                format!("messages[{i}]: only assistant messages carry tool_calls"),
                Some(&format!("messages[{i}].tool_calls")),
            ));
        }
        if role == "tool" {
            msg.tool_call_id = m.tool_call_id.clone();
            msg.name = m.name.clone();
        }
        out.push(msg);
    }
    if out.iter().all(|m| m.content.trim().is_empty() && m.tool_calls.is_empty()) {
        return Err(Invalid::field("'messages' are all empty", Some("messages")));
    }
    Ok(out)
}

/// A chat request turned into an engine job.
pub struct Prepared {
    pub spec: JobSpec,
    pub plan: ReasoningPlan,
    pub v: Validated,
    pub logprobs: bool,
    pub native: Option<(String, String)>,
    /// The messages as rendered (scaffold included) and the prompt text, for the self-judge.
    pub messages: Vec<Message>,
    pub prompt_text: String,
    /// The user's messages as sent (for a verifier model, which has its own template).
    pub original_messages: Vec<Message>,
    /// Tools the model may call: its answer is parsed for calls.
    pub tools: Option<ToolUse>,
    /// `metadata.expected_answer`: grade the response when it is done.
    pub expected: Option<String>,
    /// `reasoning_effort: "auto"`: the setting chosen and why (returned in `thinkscale.auto`).
    pub auto: Option<AutoDecision>,
    /// A checking verifier's inputs (tests, pattern, checker).
    pub check: Option<CheckInput>,
}

/// A chat body's own fields, validated without the model (the fuzz target runs this).
pub struct ChatBody {
    pub messages: Vec<Message>,
    pub tools: Option<ToolUse>,
    pub parallel_tool_calls: bool,
    /// Log-probabilities wanted, with this many alternatives per token.
    pub logprobs: Option<u32>,
}

pub fn conversation(obj: &Map<String, Value>) -> Result<ChatBody, Invalid> {
    let fields: ChatFields = typed(obj)?;
    let top = match fields.top_logprobs {
        Some(k) if !(0..=20).contains(&k) => return Err(Invalid::field("'top_logprobs' must be between 0 and 20", Some("top_logprobs"))),
        Some(_) if fields.logprobs != Some(true) => {
            return Err(Invalid::field("'top_logprobs' needs 'logprobs' set to true", Some("top_logprobs")))
        }
        k => k.unwrap_or(0) as u32,
    };
    Ok(ChatBody {
        tools: tool_use(&fields, obj)?,
        messages: messages(&fields)?,
        parallel_tool_calls: fields.parallel_tool_calls != Some(false),
        logprobs: (fields.logprobs == Some(true)).then_some(top),
    })
}

/// Blocks (templating, tokenizing, grammar compilation, and a remote backend's requests): run it
/// with `prepare_off_thread` from async code.
pub fn prepare(state: &Service, backend: &dyn Backend, id: &str, body: Body) -> Result<Prepared, Invalid> {
    let vocab = backend.vocabulary();
    let obj = match body {
        Body::Raw(bytes) => parse_object(&bytes)?,
        Body::Object(obj) => obj,
    };
    let expected = super::grading::expected_answer(&obj)?;
    let common: Common = typed(&obj)?;
    let ChatBody { messages: mut msgs, tools, parallel_tool_calls, logprobs } = conversation(&obj)?;
    let want_logprobs = logprobs.is_some();
    let cfg = &state.cfg;
    let mut v = common.validate(cfg, logprobs, vocab.n_vocab(), vocab.eog(), backend.slot_ctx())?;
    v.constrain(backend)?;
    let original_messages = msgs.clone();
    let native = vocab.think_markers();
    let mut plan = plan::normalise(&obj, &state.policy, native.is_some())?;
    let auto = plan.auto.then(|| super::grading::apply_auto(state, &mut plan, tools.is_some()));
    let samples = plan.sampling.samples as usize;
    let limit = cfg.parallel as usize * cfg.queue_size;
    if samples > 1 && v.n * samples > limit {
        return Err(Invalid::field(
            format!("n x samples = {} exceeds this server's limit ({limit} = slots x queue)", v.n * samples),
            Some("samples"),
        ));
    }
    if samples > 1 && plan.sampling.verifier == Verifier::Model && !backend.capabilities().verifier_model {
        return Err(Invalid::unsupported("verifier 'model' needs the server started with --verifier-model", "verifier"));
    }
    let check = super::verify::inputs(state, &plan.sampling.check, &original_messages)?;
    if let Some(t) = &tools {
        tool_grammar(backend, t, &plan, &mut v, parallel_tool_calls)?;
    }
    let rc = &cfg.reasoning;
    if plan.thinking && native.is_none() && plan.scaffold == Scaffold::Instruct {
        plan::scaffold(&mut msgs, &rc.scaffold_instruction);
    }
    let offered = tools.as_ref().map_or(&[][..], |t| &t.tools[..]);
    let (text, prompt) = render(backend, &msgs, offered, native.as_ref(), plan.thinking)?;
    // Every token of the slot may be used: the prompt leaves at least one for the output.
    let room = backend.slot_ctx() as i64 - prompt.len() as i64;
    let (forcing, max_tokens) = thinking_and_cap(state, backend, &plan, native.as_ref(), &v, room as u32)?;
    let spec = JobSpec {
        id: id.to_string(),
        text: text.clone(),
        prompt,
        n: v.n * samples,
        sampling: v.sampling.clone(),
        max_tokens,
        forcing,
        want_logprob: samples > 1,
        vote: None,
    };
    let mut p = Prepared {
        spec,
        plan,
        v,
        logprobs: want_logprobs,
        native,
        messages: msgs,
        prompt_text: text,
        original_messages,
        tools,
        expected,
        auto,
        check,
    };
    // A sample group's plan (waves, stopping, judge, confidence) is part of the job the gate hands on.
    if samples > 1 {
        p.spec.vote = Some(vote_plan(state, backend, &p));
    }
    Ok(p)
}

/// A required tool call is enforced with a grammar over the forced tools' schemas.
fn tool_grammar(
    backend: &dyn Backend,
    t: &ToolUse,
    plan: &ReasoningPlan,
    v: &mut Validated,
    parallel_tool_calls: bool,
) -> Result<(), Invalid> {
    if plan.sampling.samples > 1 {
        return Err(Invalid::field(
            "Voting over samples cannot be combined with tools; send one sample or tool_choice \"none\"",
            Some("tools"),
        ));
    }
    let forced: Vec<&Tool> = match &t.choice {
        ToolChoice::Required => t.tools.iter().collect(),
        ToolChoice::Function(name) => t.tools.iter().filter(|x| &x.name == name).collect(),
        _ => Vec::new(),
    };
    if forced.is_empty() {
        return Ok(());
    }
    if v.sampling.grammar.is_some() {
        return Err(Invalid::field("A required tool call cannot be combined with 'response_format'", Some("tool_choice")));
    }
    // A named function is one call; "required" may be several unless parallel calls are off.
    let parallel = t.choice == ToolChoice::Required && parallel_tool_calls;
    if !backend.capabilities().grammar {
        return Err(Invalid::unsupported(
            "A required tool call is enforced with a grammar, which the remote backend does not take; send tool_choice \"auto\"",
            "tool_choice",
        ));
    }
    let grammar = backend
        .vocabulary()
        .tool_grammar(&tools::call_schema(&forced), parallel)
        .map_err(|e| Invalid::field(format!("the tools' parameter schemas cannot be turned into a grammar ({e})"), Some("tools")))?;
    v.sampling.grammar = Some(grammar);
    Ok(())
}

/// The prompt as text and tokens: the chat template, then a thinking model's think block opened
/// (or closed at once when thinking is off). Refused when it leaves no room to answer.
fn render(
    backend: &dyn Backend,
    msgs: &[Message],
    offered: &[Tool],
    native: Option<&(String, String)>,
    thinking: bool,
) -> Result<(String, Vec<Token>), Invalid> {
    let vocab = backend.vocabulary();
    let mut text = vocab.render_chat(msgs, offered).map_err(|e| Invalid::text(e, "messages"))?;
    if let Some((open, close)) = native {
        if thinking {
            text.push_str(open);
            text.push('\n');
        } else {
            text.push_str(&format!("{open}\n\n{close}\n\n"));
        }
    }
    let prompt = vocab.tokenize(&text, true).map_err(|e| Invalid::text(e, "messages"))?;
    let slot_ctx = backend.slot_ctx();
    if prompt.len() as i64 >= slot_ctx as i64 {
        return Err(Invalid::ContextLength {
            message: format!("The prompt is {} tokens; the context holds {} (with room to answer)", prompt.len(), slot_ctx),
            param: "messages".into(),
        });
    }
    Ok((text, prompt))
}

/// Budget forcing's texts and limits for a thinking plan, and the job's token cap (the request's,
/// else a default that leaves the thinking budget room to answer), within the `room` the prompt
/// leaves. The texts forcing injects are tokenized here, once. A cap too small to think, or to
/// hold `min_thinking_tokens`, is refused.
fn thinking_and_cap(
    state: &Service,
    backend: &dyn Backend,
    plan: &ReasoningPlan,
    native: Option<&(String, String)>,
    v: &Validated,
    room: u32,
) -> Result<(Option<JobForcing>, u32), Invalid> {
    let (cfg, rc) = (&state.cfg, &state.cfg.reasoning);
    let forcing = plan.thinking.then(|| ForcingRequest {
        min_thinking: plan.min_thinking,
        max_thinking: plan.max_thinking,
        close_marker: native.map_or_else(|| rc.scaffold_marker.clone(), |(_, c)| c.clone()),
        // The scaffold's marker starts a paragraph of its own, after whatever the chain ended with.
        close_text: native.map_or_else(|| format!("\n\n{}", rc.scaffold_marker), |(_, c)| c.clone()),
        budget_message: plan.budget_message.clone().unwrap_or_else(|| rc.budget_message.clone()),
        answer_cue: if native.is_some() { "\n\n".into() } else { rc.answer_cue.clone() },
        wait_text: rc.wait_text.clone(),
        max_extensions: rc.max_extensions,
        answer_reserve: rc.answer_reserve,
    });
    let default_cap = match (plan.thinking, plan.max_thinking) {
        (true, Some(b)) => b + 64 + rc.answer_max_tokens,
        // Unlimited thinking may use the whole context, as llama-server and vLLM allow.
        (true, None) => u32::MAX,
        (false, _) => cfg.default_max_tokens,
    };
    let max_tokens = v.max_tokens.unwrap_or(default_cap).min(room);
    let Some(f) = forcing else { return Ok((None, max_tokens)) };
    let vocab = backend.vocabulary();
    let jf = JobForcing::new(&f, max_tokens, |t| vocab.tokenize(t, false)).map_err(|e| Invalid::text(e, "messages"))?;
    if let (false, Some(cap)) = (jf.spec.thinking, v.max_tokens) {
        // A cap that leaves no thinking after the close and the answer's reserve would skip
        // thinking without a sign: say so instead.
        return Err(Invalid::field(
            format!(
                "The token cap ({cap}) leaves no room to think: thinking needs more than {} tokens (the answer's reserve and the injected close); raise the cap or turn thinking off",
                f.answer_reserve + jf.cutoff.tokens.len() as u32
            ),
            Some(v.max_tokens_param),
        ));
    }
    if f.min_thinking > 0 && f.min_thinking + rc.answer_reserve > max_tokens {
        return Err(Invalid::field(
            format!("'min_thinking_tokens' ({}) does not fit in the token cap ({max_tokens}) with room to answer", f.min_thinking),
            Some("min_thinking_tokens"),
        ));
    }
    Ok((Some(jf), max_tokens))
}

// A sample group's part of the job: the plan the backend runs (waves, stop rules, measured
// confidence) and the judge a vote may use, rendered once here.

/// The vote a request's plan asks for: its judge, its waves and stop rule, what confidence is
/// measured.
pub fn vote_plan(state: &Service, backend: &dyn Backend, p: &Prepared) -> VotePlan {
    let plan = &p.plan.sampling;
    let group = plan.samples as usize;
    let judge = match plan.verifier {
        Verifier::SelfJudge => Some(self_judge(backend, p, &state.cfg.reasoning.self_verifier_prompt)),
        // The gate checked that the backend has a verifier model.
        Verifier::Model => Some(verifier_judge(p, &state.cfg.reasoning.self_verifier_prompt)),
        _ => None,
    };
    let r = &state.cfg.reasoning;
    let first = if plan.prune { r.prune_warmup } else { r.wave_size };
    let wave = (plan.warmup.unwrap_or(first).max(1) as usize).min(group);
    // auto, when it may widen: the chosen samples run first; the rest only if they disagree.
    let widen_from = p.auto.as_ref().and_then(|a| a.choice.as_ref()).map(|c| c.setting.samples as usize).filter(|&k| k < group);
    let adaptive = if let Some(first) = widen_from {
        Some(Adaptive { wave: first, greedy_first: false, rule: StopRule::Unanimous { wave: first }, prune_keep: None })
    } else if plan.prune {
        Some(Adaptive {
            wave,
            greedy_first: false,
            rule: StopRule::Consensus { level: plan.confidence, warmup: wave },
            prune_keep: Some(plan.keep_top.unwrap_or(r.prune_keep_top)),
        })
    } else if plan.adaptive && matches!(p.check, Some(CheckInput::Tests(_))) {
        // Each finished program is tested while the others decode; passing ones end the choice.
        let wave = (plan.warmup.unwrap_or(r.tests_wave).max(1) as usize).min(group);
        Some(Adaptive {
            wave,
            greedy_first: r.tests_greedy_first,
            rule: StopRule::Verified {
                agree: r.tests_agree.max(1) as usize,
                give_up: (r.tests_give_up > 0).then_some(r.tests_give_up as usize),
            },
            prune_keep: None,
        })
    } else {
        plan.adaptive.then_some(Adaptive { wave, greedy_first: false, rule: StopRule::Beta(plan.confidence), prune_keep: None })
    };
    let measure = plan.prune || plan.keep_top.is_some() || plan.aggregate == Aggregate::Confidence;
    let confidence =
        measure.then_some(ConfidenceSpec { top_k: r.confidence_top_k, window: r.confidence_window, score: r.confidence_score });
    VotePlan { group, adaptive, judge, confidence }
}

/// Stands for the proposed answer while the judging text is rendered once, at the gate.
const ANSWER: &str = "\u{1}thinkscale-answer\u{1}";

/// The P(True) judge: after the question prefix, the proposed answer and "Is it correct?" in the
/// model's own chat format when the template allows continuing the prompt, else in-turn text.
/// The template renders here, once, around a placeholder the answer later replaces.
fn self_judge(backend: &dyn Backend, p: &Prepared, question: &str) -> Judge {
    let rendered = backend.vocabulary().render_chat(&judging_conversation(&p.messages, ANSWER, question), &[]);
    let split = rendered
        .ok()
        .filter(|full| p_is_prefix(&p.prompt_text, full))
        .and_then(|full| full[p.prompt_text.len()..].split_once(ANSWER).map(|(b, a)| (b.to_string(), a.to_string())));
    let (before, after) = split.unwrap_or_else(|| {
        let close = p.native.as_ref().map(|(_, c)| format!("{c}\n\n")).unwrap_or_default();
        (format!("{close}Final answer: "), format!("\n\n{question}\nAnswer:"))
    });
    Judge::Fork { before, after }
}

/// The verifier model's judge: the user's messages (without our scaffold) and the question.
fn verifier_judge(p: &Prepared, question: &str) -> Judge {
    Judge::Verifier { messages: p.original_messages.clone(), question: question.to_string() }
}

fn p_is_prefix(prefix: &str, full: &str) -> bool {
    full.len() > prefix.len() && full.starts_with(prefix)
}

/// A chat request as it reaches the gate: the client's raw body, or an object another endpoint
/// built (`/v1/responses` maps its request onto chat; the verifier asks the model for tests).
pub enum Body {
    Raw(Bytes),
    Object(Map<String, Value>),
}

pub async fn prepare_off_thread(state: &Service, backend: &Arc<dyn Backend>, id: &str, body: Body) -> Result<Prepared, Invalid> {
    let (state, backend, id) = (state.clone(), backend.clone(), id.to_string());
    off_thread(move || prepare(&state, &*backend, &id, body)).await
}

/// Run a blocking preparation on tokio's blocking pool.
pub async fn off_thread<T: Send + 'static>(f: impl FnOnce() -> Result<T, Invalid> + Send + 'static) -> Result<T, Invalid> {
    tokio::task::spawn_blocking(f).await.map_err(|_| Invalid::Internal)?
}

/// The request body's schema for /openapi.json: the shared sampling fields, the chat fields and
/// the reasoning fields (`Reasoning`, which the caller defines from `reasoning::params`).
pub fn chat_request_schema(gen: &mut schemars::SchemaGenerator) -> Value {
    json!({"allOf": [gen.subschema_for::<super::request::Common>(), gen.subschema_for::<ChatFields>(),
                     {"$ref": "#/components/schemas/Reasoning"}], "required": ["messages"]})
}
