//! Self-consistency responses: `samples` chains forked from one prefill, scored by a verifier,
//! voted into one choice by the service, with the whole ballot in the `thinkscale` extension
//! object; streamed, the samples' progress comes first as SSE comments.

use super::answer::{chat_completion, Answer, View};
use super::error::ApiError;
use super::openai::{ChatChoice, ChoiceExt, ChunkChoice, Delta, Finish, Progress};
use super::stream::{stream, Envelope, Out, Render};
use crate::reasoning::labels::FinishReason;
use crate::service::infer::ChatRun;
use crate::service::{AutoDecision, Outcome, Update};

pub async fn respond(env: Envelope, view: View, run: ChatRun, group: usize) -> Result<Answer, ApiError> {
    if run.v.stream {
        let render = VoteStream { group, view, auto: run.auto };
        return Ok(Answer::Stream(stream(env, run.reader, run.v.include_usage, render)));
    }
    let auto = run.auto.clone();
    let whole = run.whole().await?;
    let choices = whole
        .outcomes
        .into_iter()
        .enumerate()
        .map(|(index, o)| ChatChoice {
            index,
            message: view.message(&o.thinking, &o.answer),
            logprobs: None,
            finish_reason: Finish::from(o.finish),
            thinkscale: ChoiceExt::some(Some(o.ext), None),
        })
        .collect();
    Ok(chat_completion(&env, choices, &whole.col, whole.graded, auto))
}

/// A streamed vote: progress as SSE comments (OpenAI clients skip them) while the samples run,
/// then each voted answer as one choice's deltas.
struct VoteStream {
    group: usize,
    view: View,
    auto: Option<AutoDecision>,
}

impl Render for VoteStream {
    type Choice = ChunkChoice;
    const OBJECT: &'static str = "chat.completion.chunk";

    fn update(&mut self, _job: usize, update: Update) -> Vec<Out<ChunkChoice>> {
        let group = self.group;
        let progress = match update {
            Update::Finished { index, reason, completion_tokens, thinking_tokens, answer }
                if reason != FinishReason::Cancelled || completion_tokens > 0 =>
            {
                Progress::Sample { choice: index / group, sample: index % group, answer, thinking_tokens, finish_reason: reason.as_str() }
            }
            Update::Stopped { choice } => Progress::Stopped { choice },
            Update::Judged { choice, answer, score } => Progress::Judged { choice, answer, score },
            Update::Decided { outcomes, .. } => return self.decided(outcomes),
            _ => return Vec::new(),
        };
        vec![Out::Progress(progress)]
    }
}

impl VoteStream {
    fn decided(&self, outcomes: Vec<Outcome>) -> Vec<Out<ChunkChoice>> {
        let mut out = Vec::new();
        for (i, o) in outcomes.into_iter().enumerate() {
            out.push(Out::Choice(ChunkChoice::delta(i, Delta::role())));
            let mut answering = false;
            for delta in self.view.stream_delta(&o.thinking, &o.answer, &mut answering) {
                out.push(Out::Choice(ChunkChoice::delta(i, delta)));
            }
            out.push(Out::Choice(ChunkChoice::finish(i, Finish::from(o.finish), ChoiceExt::some(Some(o.ext), self.auto.clone()))));
        }
        out
    }
}
