//! The gate's part for a sample group: the plan the backend runs (waves, stop rules, measured
//! confidence) and the judge a vote may use, rendered once here.

use super::Prepared;
use crate::backend::{Adaptive, Backend, ConfidenceSpec, Judge, StopRule, VotePlan};
use crate::reasoning::chat::judging_conversation;
use crate::reasoning::sampling::{Aggregate, Verifier};
use crate::service::verify::CheckInput;
use crate::service::Service;

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
        Some(Adaptive { wave: first, rule: StopRule::Unanimous { wave: first }, prune_keep: None })
    } else if plan.prune {
        Some(Adaptive {
            wave,
            rule: StopRule::Consensus { level: plan.confidence, warmup: wave },
            prune_keep: Some(plan.keep_top.unwrap_or(r.prune_keep_top)),
        })
    } else if plan.adaptive && matches!(p.check, Some(CheckInput::Tests(_))) {
        // Each finished program is tested while the others decode; passing ones end the choice.
        let wave = (plan.warmup.unwrap_or(r.tests_wave).max(1) as usize).min(group);
        Some(Adaptive { wave, rule: StopRule::Verified { agree: r.tests_agree.max(1) as usize }, prune_keep: None })
    } else {
        plan.adaptive.then_some(Adaptive { wave, rule: StopRule::Beta(plan.confidence), prune_keep: None })
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
