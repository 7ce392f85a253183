//! A job's spans, opened and closed as its events arrive (never on the decode thread): `job`, and
//! beneath it `queue` (submitted, not yet admitted), `prefill`, and per sequence `thinking` and
//! `answer`; the vote's `verify` span hangs under `job` too. They go to the log under the target
//! `spans`, off by default: `RUST_LOG=info,spans=info` prints each span as it closes, its
//! duration as `time.idle` (`time.busy` for `verify`, which runs inside its span).

use tracing::{field::Empty, Span};

use crate::backend::{Event, FinishReason};

/// The target every span here is logged under.
pub const TARGET: &str = "spans";

pub struct Trace {
    job: Span,
    /// `queue`, then `prefill`, then nothing.
    phase: Option<Span>,
    /// Per sequence: its open span, and whether that span is `answer`.
    seqs: Vec<Option<(Span, bool)>>,
}

impl Trace {
    pub fn new(endpoint: &'static str, id: &str, sequences: usize) -> Self {
        let job = tracing::info_span!(target: TARGET, "job", id, endpoint, sequences);
        let queue = tracing::info_span!(target: TARGET, parent: &job, "queue");
        Self { job, phase: Some(queue), seqs: (0..sequences).map(|_| None).collect() }
    }

    pub fn observe(&mut self, event: &Event) {
        match event {
            Event::Admitted => {
                self.phase =
                    Some(tracing::info_span!(target: TARGET, parent: &self.job, "prefill", prompt_tokens = Empty, cached_tokens = Empty));
            }
            Event::Prefilled { prompt_tokens, cached_tokens, .. } => {
                if let Some(p) = self.phase.take() {
                    p.record("prompt_tokens", prompt_tokens).record("cached_tokens", cached_tokens);
                }
            }
            Event::Delta { index, thinking, answer, .. } => {
                let Some(seq) = self.seqs.get_mut(*index) else { return };
                let answering = !answer.is_empty();
                let open = match seq {
                    Some((_, true)) => false,
                    Some((_, false)) => answering,
                    None => answering || !thinking.is_empty(),
                };
                if open {
                    let span = if answering {
                        tracing::info_span!(target: TARGET, parent: &self.job, "answer", sequence = index, finish = Empty, tokens = Empty)
                    } else {
                        tracing::info_span!(target: TARGET, parent: &self.job, "thinking", sequence = index, finish = Empty, tokens = Empty)
                    };
                    *seq = Some((span, answering));
                }
            }
            Event::Finished { index, reason, stats } => {
                if let Some((span, _)) = self.seqs.get_mut(*index).and_then(Option::take) {
                    span.record("finish", reason.as_str()).record("tokens", stats.completion_tokens);
                }
                if *reason == FinishReason::Cancelled {
                    self.phase = None;
                }
            }
            Event::Error(_) => {
                self.phase = None;
                self.seqs.iter_mut().for_each(|s| *s = None);
            }
            _ => {}
        }
    }

    /// The span a vote's verifier runs in.
    pub fn verify(&self, verifier: &'static str, choice: usize) -> Span {
        tracing::info_span!(target: TARGET, parent: &self.job, "verify", verifier, choice)
    }
}
