//! Grading and the accuracy-vs-compute table: what finished requests answered (kept so they can
//! be graded later), `metadata.expected_answer`, the graded observations per label set, and the
//! setting `reasoning_effort: "auto"` picks from them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::Value;

use super::invalid::Invalid;
use super::Service;
use crate::metrics::metrics;
use crate::reasoning::grade::{grade, summarise, Cell, Observation};
use crate::reasoning::labels::{BudgetBucket, Effort, Labels, SamplesBucket};
use crate::reasoning::plan::ReasoningPlan;

/// What is kept of a finished request so it can be graded later.
#[derive(Debug, Clone)]
pub struct Summary {
    pub labels: Labels,
    pub answer: String,
    pub thinking: String,
    pub thinking_seconds: f64,
    pub thinking_tokens: f64,
    pub graded: Option<bool>,
}

/// The last N request summaries and every graded observation's table cell.
pub struct History {
    /// How many recent requests are kept for grading later.
    pub cap: usize,
    order: VecDeque<String>,
    pub by_id: HashMap<String, Summary>,
    /// Graded observations per label set: the accuracy-vs-compute table.
    pub cells: HashMap<Labels, Vec<Observation>>,
}

impl History {
    pub fn new(cap: usize) -> Mutex<Self> {
        Mutex::new(Self { cap, order: VecDeque::new(), by_id: HashMap::new(), cells: HashMap::new() })
    }

    pub fn observe(&mut self, labels: &Labels, o: Observation) {
        let outcome = if o.correct { "correct" } else { "incorrect" };
        let [e, b, s] = labels.as_array();
        let l = [e, b, s, outcome];
        let m = metrics();
        m.graded.with_label_values(&l).inc();
        m.graded_thinking_seconds.with_label_values(&l).observe(o.thinking_seconds);
        m.graded_thinking_tokens.with_label_values(&l).observe(o.thinking_tokens);
        self.cells.entry(labels.clone()).or_default().push(o);
    }

    /// Remember a finished request; grade it now when the request carried a reference answer.
    pub fn record(&mut self, id: &str, mut s: Summary, expected: Option<&str>) -> Option<bool> {
        if let Some(exp) = expected {
            let ok = grade(&s.answer, &s.thinking, exp).1;
            s.graded = Some(ok);
            self.observe(&s.labels, Observation { correct: ok, thinking_seconds: s.thinking_seconds, thinking_tokens: s.thinking_tokens });
        }
        let graded = s.graded;
        if self.cap == 0 {
            return graded;
        }
        while self.order.len() >= self.cap {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
        self.order.push_back(id.to_string());
        self.by_id.insert(id.to_string(), s);
        graded
    }
}

/// Remember a finished chat request (its first choice) and grade it when it carried a reference.
// Each argument is one measured fact of the request; a struct for them would only be built here.
#[allow(clippy::too_many_arguments)]
pub fn record_request(
    state: &Service,
    id: &str,
    plan: &ReasoningPlan,
    answer: &str,
    thinking: &str,
    thinking_seconds: f64,
    thinking_tokens: f64,
    expected: Option<&str>,
) -> Option<bool> {
    let labels = Labels {
        effort: plan.effort,
        budget: BudgetBucket::of(if plan.thinking { plan.max_thinking } else { Some(0) }),
        samples: SamplesBucket::of(plan.sampling.samples),
    };
    let s = Summary { labels, answer: answer.to_string(), thinking: thinking.to_string(), thinking_seconds, thinking_tokens, graded: None };
    state.history().record(id, s, expected)
}

impl Service {
    /// The grading history. A panic while it was held can at worst leave one summary out of the
    /// index, so a poisoned lock is taken over instead of failing every later request.
    pub(super) fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What `reasoning_effort: "auto"` decided for a request, and from what.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AutoDecision {
    /// `None`: nothing is measured well enough yet; the request thinks without a budget.
    pub choice: Option<crate::reasoning::auto::Choice>,
    /// Where the measurements came from: `history`, `table` or `table+history`.
    pub source: &'static str,
    pub reason: String,
}

/// Choose an `auto` request's setting and put it into its plan: the budget, and the samples it may
/// widen to (one with tools: calls are not voted on).
pub fn apply_auto(state: &Service, plan: &mut ReasoningPlan, tools: bool) -> AutoDecision {
    use crate::reasoning::auto::Budget;
    let mut d = auto_decision(state);
    if let (true, Some(c)) = (tools, d.choice.as_mut()) {
        if c.widen_to > 1 {
            c.setting.samples = 1;
            c.widen_to = 1;
            d.reason.push_str("; one sample, because tool calls are not voted on");
        }
    }
    if let Some(c) = &d.choice {
        match c.setting.budget {
            Budget::Plain | Budget::Tokens(0) => {
                plan.thinking = false;
                plan.max_thinking = Some(0);
            }
            Budget::Tokens(n) => plan.max_thinking = Some(n),
            Budget::Unlimited => plan.max_thinking = None,
        }
        plan.sampling.samples = c.widen_to;
    }
    d
}

/// The auto policy over the graded history (every label but `auto` itself, budget and sample
/// buckets as settings) together with the start-up table.
fn auto_decision(state: &Service) -> AutoDecision {
    use crate::reasoning::auto::{choose, Budget, Measured, Setting};
    let mut merged: Vec<Measured> = state.auto_table.to_vec();
    let mut live = false;
    {
        let h = state.history();
        for (l, obs) in h.cells.iter().filter(|(l, _)| l.effort != Effort::Auto) {
            let (Some(budget), Some(samples)) = (Budget::parse(l.budget.as_str()), l.samples.samples()) else { continue };
            let s = summarise(obs);
            let setting = Setting { budget, samples };
            live = true;
            match merged.iter_mut().find(|m| m.setting == setting) {
                Some(m) => {
                    let n = m.graded + s.graded;
                    m.mean_thinking_tokens =
                        (m.mean_thinking_tokens * m.graded as f64 + s.mean_thinking_tokens * s.graded as f64) / n as f64;
                    m.graded = n;
                    m.correct += s.correct;
                }
                None => {
                    merged.push(Measured { setting, graded: s.graded, correct: s.correct, mean_thinking_tokens: s.mean_thinking_tokens })
                }
            }
        }
    }
    let source = match (state.auto_table.is_empty(), live) {
        (false, true) => "table+history",
        (false, false) => "table",
        _ => "history",
    };
    let r = &state.cfg.reasoning;
    match choose(&merged, r.auto_margin, r.auto_min_graded) {
        Some(c) => AutoDecision { reason: c.reason.clone(), choice: Some(c), source },
        None => AutoDecision {
            choice: None,
            source,
            reason: format!(
                "no setting has {} graded requests yet (grade requests or start with reasoning.auto_table); thinking without a budget, one sample",
                r.auto_min_graded
            ),
        },
    }
}

/// The reference answer a request may carry: `metadata.expected_answer` (string or number).
pub fn expected_answer(obj: &serde_json::Map<String, Value>) -> Result<Option<String>, Invalid> {
    match obj.get("metadata").and_then(|m| m.get("expected_answer")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(Invalid::field("'metadata.expected_answer' must be a string", Some("metadata.expected_answer"))),
    }
}

/// What grading a request needs: its first choice is kept for /v1/feedback and graded when a
/// reference came with the request.
pub struct Grade {
    pub service: Service,
    pub id: String,
    pub plan: ReasoningPlan,
    pub expected: Option<String>,
}

impl Grade {
    pub fn record(&self, col: &super::pipeline::Collector) -> Option<bool> {
        let c = &col.choices[0];
        let secs = c.stats.thinking_ms / 1000.0;
        record_request(
            &self.service,
            &self.id,
            &self.plan,
            &c.answer,
            &c.thinking,
            secs,
            c.stats.thinking_tokens as f64,
            self.expected.as_deref(),
        )
    }

    /// A vote's: thinking time is the longest sample's (they run in parallel), thinking tokens
    /// are all samples' (the compute spent).
    pub fn record_vote(&self, samples: &[super::pipeline::ChoiceResult], answer: &str, thinking: &str) -> Option<bool> {
        let secs = samples.iter().map(|c| c.stats.thinking_ms).fold(0.0, f64::max) / 1000.0;
        let tokens: u32 = samples.iter().map(|c| c.stats.thinking_tokens).sum();
        record_request(&self.service, &self.id, &self.plan, answer, thinking, secs, tokens as f64, self.expected.as_deref())
    }
}

/// A client's word on a recent request (POST /v1/feedback): its verdict, or the reference answer
/// to grade it against.
pub enum Feedback {
    Correct(bool),
    Expected(String),
}

#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error("no recent request with id '{id}' (the server keeps the last {kept})")]
    Unknown { id: String, kept: usize },
    #[error("request '{0}' is already graded")]
    AlreadyGraded(String),
}

/// A request graded after the fact, under the labels it counts for in the scaling table.
#[derive(Debug, serde::Serialize)]
pub struct Graded {
    pub id: String,
    pub correct: bool,
    /// The answer read from the response, when it was graded against a reference.
    pub extracted_answer: Option<String>,
    pub labels: Labels,
}

/// Grade a recent request once: the outcome joins the accuracy-vs-compute table.
pub fn feedback(state: &Service, id: &str, verdict: Feedback) -> Result<Graded, FeedbackError> {
    let mut h = state.history();
    let Some(s) = h.by_id.get(id).cloned() else { return Err(FeedbackError::Unknown { id: id.to_string(), kept: h.cap }) };
    if s.graded.is_some() {
        return Err(FeedbackError::AlreadyGraded(id.to_string()));
    }
    let (extracted_answer, correct) = match verdict {
        Feedback::Correct(c) => (None, c),
        Feedback::Expected(exp) => grade(&s.answer, &s.thinking, &exp),
    };
    h.observe(&s.labels, Observation { correct, thinking_seconds: s.thinking_seconds, thinking_tokens: s.thinking_tokens });
    if let Some(entry) = h.by_id.get_mut(id) {
        entry.graded = Some(correct);
    }
    Ok(Graded { id: id.to_string(), correct, extracted_answer, labels: s.labels })
}

/// The accuracy-vs-compute table (GET /v1/scaling): one summarised cell per label set, cheapest
/// first, ties by sample count.
pub fn scaling_table(state: &Service) -> Vec<(Cell, Labels)> {
    let h = state.history();
    let mut rows: Vec<(Cell, Labels)> = h.cells.iter().map(|(l, obs)| (summarise(obs), l.clone())).collect();
    rows.sort_by(|(a, la), (b, lb)| a.mean_thinking_tokens.total_cmp(&b.mean_thinking_tokens).then_with(|| la.samples.cmp(&lb.samples)));
    rows
}

/// Observations a harness measured elsewhere (`thinkscale eval --post`), counted as if served here.
pub fn observe(state: &Service, observations: impl IntoIterator<Item = (Labels, Observation)>) -> usize {
    let mut h = state.history();
    let mut accepted = 0;
    for (labels, o) in observations {
        h.observe(&labels, o);
        accepted += 1;
    }
    accepted
}
