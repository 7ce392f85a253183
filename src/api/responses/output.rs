//! A chat answer, whole or frame by frame, as a Responses object and events: a `reasoning` item
//! with the chain of thought, then the `message` and any function calls.

use serde_json::{Map, Value};

use super::objects::{
    Echo, IncompleteDetails, Numbered, OutputItem, OutputText, ReasoningText, ResponseError, ResponseObject, ResponseUsage, Status,
    StreamEvent,
};
use crate::api::error::ApiError;
use crate::api::openai::{ChatChoice, ChoiceExt, ChunkChoice, Completion, Finish, ToolCallOut, Usage};
use crate::api::stream::Frame;

/// One response's identity and echo; builds its objects and items.
pub struct Builder {
    id: String,
    created: u64,
    model: String,
    echo: Echo,
}

impl Builder {
    pub fn new(id: String, created: u64, model: String, req: &Map<String, Value>) -> Self {
        Self { id, created, model, echo: Echo::of(req) }
    }

    fn object(&self, status: Status, output: Vec<OutputItem>) -> ResponseObject {
        ResponseObject {
            id: format!("resp_{}", self.id),
            object: "response",
            created_at: self.created,
            status,
            error: None,
            incomplete_details: (status == Status::Incomplete).then_some(IncompleteDetails { reason: "max_output_tokens" }),
            model: self.model.clone(),
            output,
            echo: self.echo.clone(),
            usage: None,
            thinkscale: None,
        }
    }

    fn reasoning_id(&self) -> String {
        format!("rs_{}", self.id)
    }

    fn message_id(&self) -> String {
        format!("msg_{}", self.id)
    }

    /// The reasoning item; `None` while it is still streaming (no content yet).
    fn reasoning(&self, chain: Option<&str>) -> OutputItem {
        let (content, status) = match chain {
            Some(text) => (vec![ReasoningText { text: text.to_string() }], Status::Completed),
            None => (Vec::new(), Status::InProgress),
        };
        OutputItem::Reasoning { id: self.reasoning_id(), summary: Vec::new(), content, status }
    }

    fn message(&self, text: Option<&str>, status: Status) -> OutputItem {
        OutputItem::Message { id: self.message_id(), status, role: "assistant", content: text.map(OutputText::new).into_iter().collect() }
    }

    /// A finished chat completion as a response.
    pub fn completed(&self, chat: &Completion<ChatChoice>) -> ResponseObject {
        let mut output = Vec::new();
        let Some(choice) = chat.choices.first() else { return self.object(Status::Completed, output) };
        let msg = &choice.message;
        if let Some(chain) = msg.reasoning_content.as_deref().filter(|s| !s.is_empty()) {
            output.push(self.reasoning(Some(chain)));
        }
        let status = Status::of(Some(choice.finish_reason));
        let calls = msg.tool_calls.as_deref().unwrap_or_default();
        let text = msg.content.as_deref().unwrap_or("");
        if calls.is_empty() || !text.is_empty() {
            output.push(self.message(Some(text), status));
        }
        output.extend(calls.iter().map(|c| call_item(c, Status::Completed, true)));
        let mut r = self.object(status, output);
        r.created_at = chat.created;
        r.model = chat.model.clone();
        r.usage = chat.usage.as_ref().map(ResponseUsage::from);
        r.thinkscale = choice.thinkscale.clone();
        r
    }
}

fn call_id(call: &ToolCallOut) -> String {
    format!("fc_{}", call.id.trim_start_matches("call_"))
}

fn call_item(call: &ToolCallOut, status: Status, with_arguments: bool) -> OutputItem {
    OutputItem::FunctionCall {
        id: call_id(call),
        call_id: call.id.clone(),
        name: call.function.name.clone(),
        arguments: if with_arguments { call.function.arguments.clone() } else { String::new() },
        status,
    }
}

/// A chat stream read as Responses events. Output items open as their first text arrives: the
/// reasoning item (index 0) when there is a chain, then the message; calls come whole (the chat
/// stream holds a call back until it parses), after the message.
pub struct Streamer {
    b: Builder,
    seq: u64,
    chain: String,
    answer: String,
    reasoning_open: bool,
    message_index: Option<usize>,
    calls: Vec<ToolCallOut>,
    finish: Option<Finish>,
    usage: Option<Usage>,
    thinkscale: Option<ChoiceExt>,
    failed: bool,
}

impl Streamer {
    pub fn new(b: Builder) -> Self {
        Self {
            b,
            seq: 0,
            chain: String::new(),
            answer: String::new(),
            reasoning_open: false,
            message_index: None,
            calls: Vec::new(),
            finish: None,
            usage: None,
            thinkscale: None,
            failed: false,
        }
    }

    fn number(&mut self, events: Vec<StreamEvent>) -> Vec<Numbered> {
        events
            .into_iter()
            .map(|event| {
                self.seq += 1;
                Numbered { event, sequence_number: self.seq - 1 }
            })
            .collect()
    }

    pub fn start(&mut self) -> Vec<Numbered> {
        let pending = self.b.object(Status::InProgress, Vec::new());
        self.number(vec![StreamEvent::Created { response: pending.clone() }, StreamEvent::InProgress { response: pending }])
    }

    /// Events for one frame of the chat stream.
    pub fn frame(&mut self, frame: Frame<ChunkChoice>) -> Vec<Numbered> {
        let events = match frame {
            Frame::Chunk(c) => self.chunk(c),
            Frame::Progress(_) => Vec::new(),
            Frame::Failed(e) => self.fail(&e),
        };
        self.number(events)
    }

    fn chunk(&mut self, c: Completion<ChunkChoice>) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if c.usage.is_some() {
            self.usage = c.usage;
        }
        let Some(choice) = c.choices.into_iter().next() else { return out };
        let delta = choice.delta;
        if let Some(t) = delta.reasoning_content.filter(|t| !t.is_empty()) {
            if !self.reasoning_open {
                self.reasoning_open = true;
                out.push(StreamEvent::ItemAdded { output_index: 0, item: self.b.reasoning(None) });
            }
            self.chain.push_str(&t);
            out.push(StreamEvent::ReasoningDelta { item_id: self.b.reasoning_id(), output_index: 0, content_index: 0, delta: t });
        }
        if let Some(t) = delta.content.filter(|t| !t.is_empty()) {
            let index = match self.message_index {
                Some(i) => i,
                None => self.open_message(&mut out),
            };
            self.answer.push_str(&t);
            out.push(StreamEvent::TextDelta {
                item_id: self.b.message_id(),
                output_index: index,
                content_index: 0,
                delta: t,
                logprobs: Vec::new(),
            });
        }
        self.calls.extend(delta.tool_calls.unwrap_or_default());
        if choice.finish_reason.is_some() {
            self.finish = choice.finish_reason;
        }
        if choice.thinkscale.is_some() {
            self.thinkscale = choice.thinkscale;
        }
        out
    }

    /// Closes the reasoning item (when there is one) and opens the message after it.
    fn open_message(&mut self, out: &mut Vec<StreamEvent>) -> usize {
        if self.reasoning_open {
            out.extend(self.close_reasoning());
        }
        let index = usize::from(self.reasoning_open);
        self.message_index = Some(index);
        out.push(StreamEvent::ItemAdded { output_index: index, item: self.b.message(None, Status::InProgress) });
        out.push(StreamEvent::PartAdded { item_id: self.b.message_id(), output_index: index, content_index: 0, part: OutputText::new("") });
        index
    }

    fn close_reasoning(&self) -> [StreamEvent; 2] {
        [
            StreamEvent::ReasoningDone { item_id: self.b.reasoning_id(), output_index: 0, content_index: 0, text: self.chain.clone() },
            StreamEvent::ItemDone { output_index: 0, item: self.b.reasoning(Some(&self.chain)) },
        ]
    }

    fn fail(&mut self, e: &ApiError) -> Vec<StreamEvent> {
        self.failed = true;
        let mut r = self.b.object(Status::Failed, Vec::new());
        r.error = Some(ResponseError { code: "server_error", message: e.message.clone() });
        vec![StreamEvent::Failed { response: r }]
    }

    /// The closing events once the chat stream ended (none after a failure).
    pub fn finish(&mut self) -> Vec<Numbered> {
        if self.failed {
            return Vec::new();
        }
        let mut out = Vec::new();
        let status = Status::of(self.finish);
        if self.message_index.is_none() && self.calls.is_empty() {
            // No answer text arrived: the message is opened empty.
            self.open_message(&mut out);
        }
        let mut output = Vec::new();
        if self.reasoning_open {
            output.push(self.b.reasoning(Some(&self.chain)));
            if self.message_index.is_none() {
                // The chain ends in calls only: its item closes here.
                out.extend(self.close_reasoning());
            }
        }
        if let Some(index) = self.message_index {
            let (id, text) = (self.b.message_id(), self.answer.clone());
            out.push(StreamEvent::TextDone {
                item_id: id.clone(),
                output_index: index,
                content_index: 0,
                text: text.clone(),
                logprobs: Vec::new(),
            });
            out.push(StreamEvent::PartDone { item_id: id, output_index: index, content_index: 0, part: OutputText::new(&text) });
            out.push(StreamEvent::ItemDone { output_index: index, item: self.b.message(Some(&text), status) });
            output.push(self.b.message(Some(&text), status));
        }
        for call in &self.calls {
            let output_index = output.len();
            let (id, f) = (call_id(call), &call.function);
            out.push(StreamEvent::ItemAdded { output_index, item: call_item(call, Status::InProgress, false) });
            out.push(StreamEvent::ArgumentsDelta { item_id: id.clone(), output_index, delta: f.arguments.clone() });
            out.push(StreamEvent::ArgumentsDone { item_id: id, output_index, name: f.name.clone(), arguments: f.arguments.clone() });
            out.push(StreamEvent::ItemDone { output_index, item: call_item(call, Status::Completed, true) });
            output.push(call_item(call, Status::Completed, true));
        }
        let mut done = self.b.object(status, output);
        done.usage = self.usage.as_ref().map(ResponseUsage::from);
        done.thinkscale = self.thinkscale.take();
        out.push(if status == Status::Completed {
            StreamEvent::Completed { response: done }
        } else {
            StreamEvent::Incomplete { response: done }
        });
        self.number(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::{AssistantMessage, CompletionTokensDetails, Delta, PromptTokensDetails};
    use crate::api::stream::Envelope;
    use crate::reasoning::chat::ToolCall;
    use serde_json::json;

    fn builder(req: Value) -> Builder {
        Builder::new("x".into(), 7, "m".into(), req.as_object().unwrap())
    }

    fn env() -> Envelope {
        Envelope { id: "chatcmpl-x".into(), created: 7, model: "m".into() }
    }

    fn calls() -> Vec<ToolCallOut> {
        ToolCallOut::list(vec![ToolCall { id: "call_x".into(), name: "add".into(), arguments: "{}".into() }], false)
    }

    fn usage() -> Usage {
        Usage {
            prompt_tokens: 5,
            completion_tokens: 9,
            total_tokens: 14,
            prompt_tokens_details: PromptTokensDetails { cached_tokens: 2 },
            completion_tokens_details: CompletionTokensDetails { reasoning_tokens: 3 },
            sequences: None,
        }
    }

    fn chat(message: AssistantMessage, finish: Finish) -> Completion<ChatChoice> {
        let mut c =
            env().wrap("chat.completion", vec![ChatChoice { index: 0, message, logprobs: None, finish_reason: finish, thinkscale: None }]);
        c.usage = Some(usage());
        c
    }

    #[test]
    fn tool_calls_become_function_call_items() {
        let message = AssistantMessage { role: "assistant", tool_calls: Some(calls()), ..AssistantMessage::default() };
        let r = serde_json::to_value(builder(json!({"input": "q"})).completed(&chat(message, Finish::ToolCalls))).unwrap();
        assert_eq!(r["status"], "completed");
        assert_eq!(r["output"].as_array().unwrap().len(), 1);
        assert_eq!(
            r["output"][0],
            json!({"type": "function_call", "id": "fc_x", "call_id": "call_x", "name": "add", "arguments": "{}", "status": "completed"})
        );
    }

    #[test]
    fn a_chat_completion_becomes_reasoning_and_message_items() {
        let message = AssistantMessage {
            role: "assistant",
            content: Some("42".into()),
            reasoning_content: Some("6*7".into()),
            ..AssistantMessage::default()
        };
        let b = builder(json!({"input": "q", "reasoning": {"effort": "low"}, "max_output_tokens": 50}));
        let r = serde_json::to_value(b.completed(&chat(message, Finish::Length))).unwrap();
        assert_eq!(r["object"], "response");
        assert_eq!(r["id"], "resp_x");
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(
            r["output"][0],
            json!({"type": "reasoning", "id": "rs_x", "summary": [], "content": [{"type": "reasoning_text", "text": "6*7"}], "status": "completed"})
        );
        assert_eq!(r["output"][1]["content"][0], json!({"type": "output_text", "text": "42", "annotations": [], "logprobs": []}));
        assert_eq!(
            r["usage"],
            json!({"input_tokens": 5, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 9,
                                      "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 14})
        );
        assert_eq!(r["reasoning"]["effort"], "low");
        assert_eq!(r["max_output_tokens"], 50);
        assert_eq!(r["temperature"], 1.0);
        assert!(r["previous_response_id"].is_null());
    }

    fn chunk(delta: Delta, finish: Option<Finish>) -> Frame<ChunkChoice> {
        let mut c = ChunkChoice::delta(0, delta);
        c.finish_reason = finish;
        Frame::Chunk(env().wrap("chat.completion.chunk", vec![c]))
    }

    fn reasoning(t: &str) -> Delta {
        Delta { reasoning_content: Some(t.into()), ..Delta::default() }
    }

    /// The events of a whole stream: their types, and the closing response.
    fn run(frames: Vec<Frame<ChunkChoice>>) -> (Vec<String>, Value) {
        let mut s = Streamer::new(builder(json!({"input": "q"})));
        let mut events = s.start();
        for f in frames {
            events.extend(s.frame(f));
        }
        events.extend(s.finish());
        let events: Vec<Value> = events.iter().map(|e| serde_json::to_value(e).unwrap()).collect();
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["sequence_number"], i as u64, "{e}");
        }
        let last = events.last().unwrap()["response"].clone();
        (events.iter().map(|e| e["type"].as_str().unwrap().to_string()).collect(), last)
    }

    #[test]
    fn a_streamed_chain_closes_before_the_message_opens() {
        let mut end = env().wrap::<ChunkChoice>("chat.completion.chunk", Vec::new());
        end.usage = Some(usage());
        let (types, done) = run(vec![
            chunk(Delta::role(), None),
            chunk(reasoning("6*"), None),
            chunk(reasoning("7"), None),
            chunk(Delta::content("42"), None),
            chunk(Delta::default(), Some(Finish::Stop)),
            Frame::Chunk(end),
        ]);
        let expect = [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_text.delta",
            "response.reasoning_text.delta",
            "response.reasoning_text.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ];
        assert_eq!(types, expect);
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], "6*7");
        assert_eq!(done["output"][1]["content"][0]["text"], "42");
        assert_eq!(done["usage"]["output_tokens_details"]["reasoning_tokens"], 3);
    }

    #[test]
    fn streamed_calls_come_whole_after_the_chain() {
        let calls = Delta {
            tool_calls: Some(ToolCallOut::list(
                vec![ToolCall { id: "call_x".into(), name: "add".into(), arguments: "{\"a\":1}".into() }],
                true,
            )),
            ..Delta::default()
        };
        let (types, done) = run(vec![chunk(reasoning("add"), None), chunk(calls, Some(Finish::ToolCalls))]);
        assert_eq!(
            &types[types.len() - 7..],
            [
                "response.reasoning_text.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert_eq!(
            done["output"][1],
            json!({"type": "function_call", "id": "fc_x", "call_id": "call_x", "name": "add", "arguments": "{\"a\":1}", "status": "completed"})
        );
    }

    #[test]
    fn an_empty_answer_still_has_a_message_and_a_cut_one_is_incomplete() {
        let (types, done) = run(vec![chunk(Delta::default(), Some(Finish::Length))]);
        assert!(types.contains(&"response.content_part.added".to_string()));
        assert_eq!(types.last().unwrap(), "response.incomplete");
        assert_eq!(done["output"][0]["content"][0]["text"], "");
        assert_eq!(done["incomplete_details"]["reason"], "max_output_tokens");
    }

    #[test]
    fn a_failure_mid_stream_ends_it_with_response_failed() {
        let (types, done) = run(vec![chunk(Delta::content("4"), None), Frame::Failed(ApiError::internal("the engine failed"))]);
        assert_eq!(types.last().unwrap(), "response.failed");
        assert_eq!(done["status"], "failed");
        assert_eq!(done["error"], json!({"code": "server_error", "message": "the engine failed"}));
    }
}
