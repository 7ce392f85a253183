//! Self-consistency responses: `samples` chains forked from one prefill, scored by a verifier,
//! voted into one choice (`service::vote`), with the whole ballot in the `thinkscale` extension
//! object; streamed, the samples' progress comes first as SSE comments.

use std::sync::Arc;

use futures::future::BoxFuture;
use std::time::Instant;

use super::chat::{chat_completion, Answer, View};
use super::error::ApiError;
use super::openai::{ChatChoice, ChoiceExt, ChunkChoice, Delta, Finish, Progress};
use super::stream::{stream, Envelope, Out, Render};
use crate::backend::{Backend, Event, FinishReason};
use crate::reasoning::extract::final_answer;
use crate::service::grading::{AutoDecision, Grade};
use crate::service::pipeline::{collect, events, submit, Collector};
use crate::service::validate::Prepared;
use crate::service::vote::Ballots;
use crate::service::Service;

pub async fn respond(state: Service, backend: Arc<dyn Backend>, id: String, mut p: Prepared, started: Instant) -> Result<Answer, ApiError> {
    let plan = p.plan.sampling.clone();
    let group = plan.samples as usize;
    let n = p.v.n;
    let score = state.cfg.reasoning.confidence_score;
    let view = View::new(&p);
    let grade = Grade { service: state.clone(), id: id.clone(), plan: p.plan.clone(), expected: p.expected.clone() };
    let effort = p.plan.effort;
    let mut col = Collector::new("chat", id.clone(), n * group, started);
    col.effort = p.plan.thinking.then_some(effort);
    let (rx, _cancel) = submit(&*backend, p.spec)?;
    let env = Envelope::new(id, state.cfg.model_id());
    let check = p.check.take().map(|c| crate::service::verify::build(&state, &backend, c));
    let ballot = Ballots { n, group, plan, score, effort, check };
    if p.v.stream {
        let render = VoteStream { ballot, view, auto: p.auto, grade };
        return Ok(Answer::Stream(stream(env, vec![col], events(vec![rx]), p.v.include_usage, render)));
    }
    let col = collect(vec![col], events(vec![rx]), true).await?.remove(0);
    let outcomes = ballot.decide(&col).await;
    let graded = grade.record_vote(&col.choices[..group], &outcomes[0].answer, &outcomes[0].thinking);
    let choices = outcomes
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
    Ok(chat_completion(&env, choices, &col, graded, p.auto))
}

/// A streamed vote: progress as SSE comments (OpenAI clients skip them) while the samples run,
/// then each voted answer as one choice's deltas.
struct VoteStream {
    ballot: Ballots,
    view: View,
    auto: Option<AutoDecision>,
    grade: Grade,
}

impl Render for VoteStream {
    type Choice = ChunkChoice;
    const OBJECT: &'static str = "chat.completion.chunk";
    const DRAIN: bool = true;

    fn event(&mut self, _job: usize, event: &Event) -> Vec<Out<ChunkChoice>> {
        let group = self.ballot.group;
        let progress = match event {
            Event::Finished { index, reason, stats } if *reason != FinishReason::Cancelled || stats.completion_tokens > 0 => {
                Progress::Sample {
                    choice: index / group,
                    sample: index % group,
                    answer: final_answer(&stats.answer, &stats.thinking),
                    thinking_tokens: stats.thinking_tokens,
                    finish_reason: reason.as_str(),
                }
            }
            Event::Stopped { choice } => Progress::Stopped { choice: *choice },
            Event::Judged { choice, answer, score } => Progress::Judged { choice: *choice, answer: answer.clone(), score: *score },
            _ => return Vec::new(),
        };
        vec![Out::Progress(progress)]
    }

    fn closing<'a>(&'a mut self, cols: &'a [Collector]) -> BoxFuture<'a, Vec<Out<ChunkChoice>>> {
        Box::pin(self.decided(cols))
    }
}

impl VoteStream {
    async fn decided(&mut self, cols: &[Collector]) -> Vec<Out<ChunkChoice>> {
        let col = &cols[0];
        let outcomes = self.ballot.decide(col).await;
        self.grade.record_vote(&col.choices[..self.ballot.group], &outcomes[0].answer, &outcomes[0].thinking);
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
