//! Self-consistency responses: `samples` chains forked from one prefill, scored by a verifier,
//! voted into one choice, with the whole ballot in the `thinkscale` extension object.

use std::sync::Arc;
use std::time::Instant;

use axum::response::Response;
use serde_json::{json, Value};

use super::chat::View;
use super::validate::Prepared;
use super::error::ApiError;
use super::pipeline::{Finish, chat_chunk, chat_completion, submit, unix_now, usage_chunk, Collector};
use super::sse::{self, Item};
use super::AppState;
use crate::backend::{Adaptive, Backend, ConfidenceSpec, Event, FinishReason, Judge, StopRule, VotePlan};
use crate::metrics::metrics;
use crate::reasoning::chat::Message;
use crate::reasoning::extract::final_answer;
use crate::reasoning::confidence::{keep_top, ChainScore};
use crate::reasoning::sampling::{Aggregate, SamplingPlan, Verifier};
use crate::reasoning::verify::{arithmetic_score, logprob_score};
use crate::reasoning::vote::{decide, Ballot};

/// The P(True) judge: after the question prefix, the proposed answer and "Is it correct?" in the
/// model's own chat format when the template allows continuing the prompt, else in-turn text.
fn self_judge(backend: &dyn Backend, p: &Prepared, question_prompt: &str) -> Judge {
    let vocab = backend.vocabulary();
    let messages = p.messages.clone();
    let prompt_text = p.prompt_text.clone();
    let close = p.native.as_ref().map(|(_, c)| format!("{c}\n\n")).unwrap_or_default();
    let question = question_prompt.to_string();
    let suffix = move |answer: &str| -> String {
        match vocab.render_chat(&judging_conversation(&messages, answer, &question), &[]) {
            Ok(full) if p_is_prefix(&prompt_text, &full) => full[prompt_text.len()..].to_string(),
            _ => format!("{close}Final answer: {answer}\n\n{question}\nAnswer:"),
        }
    };
    Judge::Fork { suffix: Box::new(suffix) }
}

/// The judging conversation for the verifier model: the user's messages (without our scaffold),
/// the proposed answer, and the question.
fn verifier_judge(p: &Prepared, question_prompt: &str) -> Judge {
    let messages = p.original_messages.clone();
    let question = question_prompt.to_string();
    Judge::Verifier {
        conversation: Box::new(move |answer: &str| judging_conversation(&messages, answer, &question)),
    }
}

/// The conversation so far, the proposed answer as the assistant's turn, and the judging question.
fn judging_conversation(messages: &[Message], answer: &str, question: &str) -> Vec<Message> {
    let mut conv = messages.to_vec();
    conv.push(Message::new("assistant", format!("Final answer: {answer}")));
    conv.push(Message::new("user", question));
    conv
}

fn p_is_prefix(prefix: &str, full: &str) -> bool {
    full.len() > prefix.len() && full.starts_with(prefix)
}

/// One choice decided from its samples.
struct Outcome {
    thinking: String,
    answer: String,
    finish: Option<FinishReason>,
    ext: Value,
    stopped_early: bool,
    used: usize,
}

fn decide_choice(col: &Collector, choice: usize, group: usize, plan: &SamplingPlan, score: ChainScore) -> Outcome {
    let range = choice * group..(choice + 1) * group;
    let mut ballots = Vec::new();
    let mut samples = Vec::new();
    let mut members = Vec::new();
    let mut pruned = 0;
    // keep_top: only the most confident share of the finished chains votes (with prune it set
    // the online threshold instead, and every surviving chain votes, as in DeepConf online).
    let finished: Vec<usize> = range.clone().filter(|&i| matches!(col.choices[i].finish, Some(FinishReason::Stop | FinishReason::Length))).collect();
    let confidence = |i: usize| col.choices[i].stats.confidence.map(|c| c.get(score));
    let kept: Vec<usize> = match plan.keep_top {
        Some(eta) if !plan.prune => {
            let scores: Vec<f64> = finished.iter().map(|&i| confidence(i).unwrap_or(0.0)).collect();
            finished.iter().zip(keep_top(&scores, eta)).filter(|(_, k)| *k).map(|(i, _)| *i).collect()
        }
        _ => finished.clone(),
    };
    for i in range {
        let c = &col.choices[i];
        // An adaptive stop cancels the samples not yet launched: they never ran, so they are not listed.
        if c.finish == Some(FinishReason::Cancelled) && c.stats.completion_tokens == 0 {
            continue;
        }
        let voted = kept.contains(&i);
        pruned += usize::from(c.finish == Some(FinishReason::Pruned));
        if let Some(conf) = confidence(i) {
            let fate = match c.finish {
                Some(FinishReason::Pruned) => "pruned",
                _ if voted => "voted",
                _ if finished.contains(&i) => "dropped",
                _ => "cancelled",
            };
            metrics().chain_confidence.with_label_values(&[fate]).observe(conf);
        }
        let answer = final_answer(&c.stats.answer, &c.stats.thinking);
        let score = match plan.verifier {
            Verifier::None => None,
            Verifier::Logprob => Some(logprob_score(c.stats.mean_logprob)),
            Verifier::Arithmetic => Some(arithmetic_score(&format!("{}\n{}", c.stats.thinking, c.stats.answer), answer.as_deref()).unwrap_or(0.5)),
            Verifier::SelfJudge | Verifier::Model => Some(
                col.judged.iter().find(|(ch, a, _)| *ch == choice && Some(a) == answer.as_ref()).map_or(0.0, |j| j.2),
            ),
        };
        samples.push(json!({
            "index": i - choice * group,
            "answer": answer,
            "thinking_tokens": c.stats.thinking_tokens,
            "completion_tokens": c.stats.completion_tokens,
            "mean_logprob": c.stats.mean_logprob,
            "score": score,
            "finish_reason": c.finish.map(FinishReason::as_str),
            "confidence": c.stats.confidence,
            "voted": voted,
            "reasoning": c.stats.thinking,
            "content": c.stats.answer,
        }));
        if voted {
            ballots.push(Ballot { answer, score, mean_logprob: c.stats.mean_logprob, confidence: confidence(i) });
            members.push(i);
        }
    }
    let d = decide(&ballots, plan.aggregate);
    let rep = members.get(d.index).map(|&i| &col.choices[i]);
    let stopped_early = col.stopped.contains(&choice);
    let ext = json!({
        "answer": d.answer,
        "samples_requested": group,
        // Chains decoded (pruned and dropped ones included: their tokens were spent), and voting.
        "samples_used": samples.len(),
        "samples_voted": members.len(),
        "stopped_early": stopped_early,
        "aggregate": plan.aggregate.as_str(),
        "verifier": plan.verifier.as_str(),
        "adaptive": plan.adaptive,
        "prune": if plan.prune { "confidence" } else { "none" },
        "keep_top": plan.keep_top,
        "prune_threshold": col.calibrated.iter().find(|(c, _)| *c == choice).map(|(_, t)| *t),
        "pruned": pruned,
        "votes": d.table.iter().map(|t| json!({"answer": t.answer, "votes": t.votes, "weight": t.weight, "confidence": t.confidence, "mean_logprob": t.mean_logprob})).collect::<Vec<_>>(),
        "chosen_sample": members.get(d.index).map(|&i| i - choice * group),
        "samples": samples,
    });
    Outcome {
        thinking: rep.map(|c| c.thinking.clone()).unwrap_or_default(),
        answer: rep.map(|c| c.answer.clone()).unwrap_or_default(),
        finish: rep.and_then(|c| c.finish),
        ext,
        stopped_early,
        used: samples.len(),
    }
}

/// Record choice 0 for grading: thinking time is the longest sample's (they run in parallel),
/// thinking tokens are all samples' (the compute spent).
fn record_vote(state: &AppState, id: &str, plan: &crate::reasoning::plan::ReasoningPlan, col: &Collector, o: &Outcome, group: usize, expected: Option<&str>) -> Option<bool> {
    let samples = &col.choices[..group];
    let secs = samples.iter().map(|c| c.stats.thinking_ms).fold(0.0, f64::max) / 1000.0;
    let tokens: u32 = samples.iter().map(|c| c.stats.thinking_tokens).sum();
    super::grading::record_request(state, id, plan, &o.answer, &o.thinking, secs, tokens as f64, expected)
}

pub async fn respond(state: AppState, backend: Arc<dyn Backend>, id: String, mut p: Prepared, started: Instant) -> Result<Response, ApiError> {
    let plan = p.plan.sampling.clone();
    let group = plan.samples as usize;
    let n = p.v.n;
    let limit = state.cfg.parallel as usize * state.cfg.queue_size;
    if n * group > limit {
        return Err(ApiError::bad_request(format!("n x samples = {} exceeds this server's limit ({limit} = slots x queue)", n * group), Some("samples")));
    }
    let judge = match plan.verifier {
        Verifier::SelfJudge => Some(self_judge(&*backend, &p, &state.cfg.reasoning.self_verifier_prompt)),
        Verifier::Model if backend.capabilities().verifier_model => Some(verifier_judge(&p, &state.cfg.reasoning.self_verifier_prompt)),
        Verifier::Model => {
            return Err(ApiError::bad_request("verifier 'model' needs the server started with --verifier-model", Some("verifier")))
        }
        _ => None,
    };
    let r = &state.cfg.reasoning;
    let first = if plan.prune { r.prune_warmup } else { r.wave_size };
    let wave = (plan.warmup.unwrap_or(first).max(1) as usize).min(group);
    // auto, when it may widen: the chosen samples run first; the rest only if they disagree.
    let widen_from = p.auto.as_ref().and_then(|a| a.choice.as_ref()).map(|c| c.setting.samples as usize).filter(|&k| k < group);
    let auto = p.auto.clone();
    let adaptive = if let Some(first) = widen_from {
        Some(Adaptive { wave: first, rule: StopRule::Unanimous { wave: first }, prune_keep: None })
    } else if plan.prune {
        Some(Adaptive { wave, rule: StopRule::Consensus { level: plan.confidence, warmup: wave }, prune_keep: Some(plan.keep_top.unwrap_or(r.prune_keep_top)) })
    } else {
        plan.adaptive.then_some(Adaptive { wave, rule: StopRule::Beta(plan.confidence), prune_keep: None })
    };
    let measure = plan.prune || plan.keep_top.is_some() || plan.aggregate == Aggregate::Confidence;
    let confidence = measure.then_some(ConfidenceSpec { top_k: r.confidence_top_k, window: r.confidence_window, score: r.confidence_score });
    p.spec.vote = Some(VotePlan { group, adaptive, judge, confidence });
    let score = r.confidence_score;
    let view = Arc::new(View::new(&p));
    let (p_plan, p_expected) = (p.plan.clone(), p.expected.clone());
    let effort = p.plan.effort;
    let stream = p.v.stream;
    let include_usage = p.v.include_usage;
    let mut col = Collector::new("chat", id.clone(), n * group, started);
    col.effort = p.plan.thinking.then_some(effort);
    let (mut rx, _cancel) = submit(&*backend, p.spec)?;
    let model = state.cfg.model_id();
    let created = unix_now();
    let finalize = move |col: &Collector| -> Vec<Outcome> {
        let outcomes: Vec<Outcome> = (0..n).map(|c| decide_choice(col, c, group, &plan, score)).collect();
        for o in &outcomes {
            metrics().samples_used.with_label_values(&[effort]).observe(o.used as f64);
            if o.stopped_early {
                metrics().early_stops.inc();
            }
        }
        col.log();
        outcomes
    };
    if !stream {
        while let Some(e) = rx.recv().await {
            col.absorb(&e);
        }
        if let Some(m) = &col.error {
            col.log();
            return Err(ApiError::internal(m.clone()));
        }
        let outcomes = finalize(&col);
        let graded = record_vote(&state, &id, &p_plan, &col, &outcomes[0], group, p_expected.as_deref());
        let choices: Vec<Value> = outcomes
            .iter()
            .enumerate()
            .map(|(i, o)| {
                json!({"index": i, "message": view.message(&o.thinking, &o.answer), "logprobs": null,
                       "finish_reason": Finish::from(o.finish).as_str(), "thinkscale": o.ext})
            })
            .collect();
        return Ok(chat_completion(&id, created, &model, choices, &col, graded, auto.as_ref()));
    }
    let s = async_stream::stream! {
        let chunk = |choices: Value| chat_chunk(&id, created, &model, choices);
        // Progress as SSE comments (OpenAI clients skip them), then the voted answer.
        while let Some(e) = rx.recv().await {
            col.absorb(&e);
            match &e {
                Event::Finished { index, reason, stats } if *reason != FinishReason::Cancelled || stats.completion_tokens > 0 => {
                    let answer = final_answer(&stats.answer, &stats.thinking);
                    let note = json!({"event": "sample", "choice": index / group, "sample": index % group, "answer": answer,
                                      "thinking_tokens": stats.thinking_tokens, "finish_reason": reason.as_str()});
                    yield Item::Comment(format!("thinkscale {note}"));
                }
                Event::Stopped { choice } => yield Item::Comment(format!("thinkscale {}", json!({"event": "stopped", "choice": choice}))),
                Event::Judged { choice, answer, score } => {
                    yield Item::Comment(format!("thinkscale {}", json!({"event": "judged", "choice": choice, "answer": answer, "score": score})));
                }
                _ => {}
            }
        }
        if let Some(m) = col.error.clone() {
            col.log();
            yield Item::Data(ApiError::internal(m).body());
            return;
        }
        let outcomes = finalize(&col);
        record_vote(&state, &id, &p_plan, &col, &outcomes[0], group, p_expected.as_deref());
        for (i, o) in outcomes.into_iter().enumerate() {
            yield Item::Data(chunk(json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}])));
            let mut answering = false;
            for delta in view.stream_delta(&o.thinking, &o.answer, &mut answering) {
                yield Item::Data(chunk(json!([{"index": i, "delta": delta, "logprobs": null, "finish_reason": null}])));
            }
            let mut ext = o.ext;
            if let Some(a) = &auto {
                ext["auto"] = json!(a);
            }
            yield Item::Data(chunk(json!([{"index": i, "delta": {}, "logprobs": null, "finish_reason": Finish::from(o.finish).as_str(), "thinkscale": ext}])));
        }
        if include_usage {
            yield Item::Data(usage_chunk(chunk(json!([])), &col));
        }
    };
    Ok(sse::respond(s))
}
