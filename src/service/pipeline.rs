//! The request pipeline chat, text completions and voted responses share: submitting jobs to the
//! backend, folding their events into per-choice results, reading them whole (`collect`) or one
//! event at a time (`Reader`, which the HTTP streamer drives), and the one log line per job. A
//! request ends with `Update::Decided` when it voted: what a decided vote is made of (each
//! choice's outcome and its ballot, as the response's `thinkscale` object shows it) is defined
//! here, apart from how it is decided (`vote`).

use std::pin::Pin;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_stream::wrappers::UnboundedReceiverStream;

use serde::Serialize;

use crate::backend::{Backend, Event, JobError, JobHandle, JobSpec, SeqStats, SubmitError};
use crate::metrics::metrics;
use crate::reasoning::confidence::ChainScores;
use crate::reasoning::extract::final_answer;
use crate::reasoning::labels::{Effort, FinishReason};
use crate::reasoning::logprobs::LogprobEntry;

use super::trace::Trace;

/// Why a request could not be run or finished; the HTTP layer maps each to one OpenAI error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    /// Every slot is busy and the queue is full: retry later (429).
    #[error("every slot is busy and the queue is full")]
    Busy,
    /// No backend to run on: still loading, shutting down, or every replica down (503).
    #[error("{0}")]
    Unavailable(String),
    /// The backend failed the request after taking it (500; the engine's message).
    #[error("{0}")]
    Engine(String),
    /// The engine refused the request as sent (400; the engine's message, the field at fault).
    #[error("{message}")]
    Refused { message: String, param: Option<String> },
}

pub fn submit(backend: &dyn Backend, spec: JobSpec) -> Result<(UnboundedReceiver<Event>, JobHandle), Failure> {
    backend.submit(spec).map_err(|e| match e {
        SubmitError::QueueFull => Failure::Busy,
        SubmitError::ShuttingDown => Failure::Unavailable("The server is shutting down".into()),
        SubmitError::Unavailable(why) => Failure::Unavailable(why),
    })
}

/// The events of one response's jobs (completions submits one per prompt), each tagged with its job.
pub type Events = Pin<Box<dyn Stream<Item = (usize, Event)> + Send>>;

pub fn events(receivers: Vec<UnboundedReceiver<Event>>) -> Events {
    Box::pin(futures::stream::select_all(
        receivers.into_iter().enumerate().map(|(i, rx)| UnboundedReceiverStream::new(rx).map(move |e| (i, e))),
    ))
}

#[derive(Debug, Default, Clone)]
pub struct ChoiceResult {
    pub thinking: String,
    pub answer: String,
    pub logprobs: Vec<LogprobEntry>,
    pub finish: Option<FinishReason>,
    pub stats: SeqStats,
}

/// Per-job accumulation of engine events.
pub struct Collector {
    pub endpoint: &'static str,
    /// Effort label of the reasoning plan, for the thinking metrics (None: no thinking).
    pub effort: Option<Effort>,
    pub id: String,
    pub started: Instant,
    pub first_token: Option<Instant>,
    pub prompt_tokens: usize,
    pub cached_tokens: usize,
    pub prompt_ms: f64,
    pub choices: Vec<ChoiceResult>,
    pub error: Option<JobError>,
    /// Self-consistency: choices stopped early, and P(True) scores per (choice, answer).
    pub stopped: Vec<usize>,
    pub judged: Vec<(usize, String, f64)>,
    /// Online confidence filter thresholds per choice.
    pub calibrated: Vec<(usize, f64)>,
    /// The job's spans (queue, prefill, thinking, answer, verify).
    pub trace: Trace,
    /// Tokens the request spent beside its samples (judging their answers, writing tests for them).
    pub side: SideTokens,
}

/// A response's sequences by fate (`Collector::sequences`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct Sequences {
    pub requested: u32,
    /// Decoded, to their end or until cancelled.
    pub run: u32,
    /// Stopped early: cut while decoding, or never started.
    pub cancelled: u32,
}

/// Tokens a request spends outside its own samples: counted in its `usage`, not in the samples'
/// timings.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SideTokens {
    pub prompt: usize,
    pub cached: usize,
    pub completion: u32,
}

impl std::ops::AddAssign for SideTokens {
    fn add_assign(&mut self, o: Self) {
        self.prompt += o.prompt;
        self.cached += o.cached;
        self.completion += o.completion;
    }
}

impl Collector {
    pub fn new(endpoint: &'static str, id: String, n: usize, started: Instant) -> Self {
        Self {
            endpoint,
            effort: None,
            started,
            first_token: None,
            prompt_tokens: 0,
            cached_tokens: 0,
            prompt_ms: 0.0,
            choices: vec![ChoiceResult::default(); n],
            error: None,
            stopped: Vec::new(),
            judged: Vec::new(),
            calibrated: Vec::new(),
            trace: Trace::new(endpoint, &id, n),
            side: SideTokens::default(),
            id,
        }
    }

    pub fn absorb(&mut self, event: &Event) {
        self.trace.observe(event);
        match event {
            Event::Prefilled { prompt_tokens, cached_tokens, prompt_ms } => {
                self.prompt_tokens = *prompt_tokens;
                self.cached_tokens = *cached_tokens;
                self.prompt_ms = *prompt_ms;
            }
            Event::Delta { index, thinking, answer, logprobs } => {
                if self.first_token.is_none() {
                    let now = Instant::now();
                    self.first_token = Some(now);
                    metrics().ttft.with_label_values(&[self.endpoint]).observe((now - self.started).as_secs_f64());
                }
                let c = &mut self.choices[*index];
                c.thinking.push_str(thinking);
                c.answer.push_str(answer);
                c.logprobs.extend(logprobs.iter().cloned());
            }
            Event::Finished { index, reason, stats } => {
                if let Some(effort) = self.effort.map(Effort::as_str) {
                    let m = metrics();
                    m.thinking_tokens.with_label_values(&[effort]).observe(stats.thinking_tokens as f64);
                    m.thinking_seconds.with_label_values(&[effort]).observe(stats.thinking_ms / 1000.0);
                    m.forced_cutoffs.with_label_values(&[effort]).inc_by(u64::from(stats.cut_off));
                    m.wait_extensions.with_label_values(&[effort]).inc_by(stats.extensions as u64);
                }
                let c = &mut self.choices[*index];
                c.finish = Some(*reason);
                c.stats = stats.clone();
            }
            Event::Error(e) => self.error = Some(e.clone()),
            Event::Stopped { choice } => self.stopped.push(*choice),
            Event::Judged { choice, answer, score, tokens } => {
                self.judged.push((*choice, answer.clone(), *score));
                self.side.prompt += *tokens as usize;
            }
            Event::Calibrated { choice, threshold } => self.calibrated.push((*choice, *threshold)),
            Event::Admitted => {}
        }
    }

    pub fn done(&self) -> bool {
        self.error.is_some() || self.choices.iter().all(|c| c.finish.is_some())
    }

    pub fn completion_tokens(&self) -> u32 {
        self.choices.iter().map(|c| c.stats.completion_tokens).sum()
    }

    pub fn reasoning_tokens(&self) -> u32 {
        self.choices.iter().map(|c| c.stats.thinking_tokens).sum()
    }

    /// Sequences of several (samples, or `n`): how many decoded, and how many an early stop
    /// cancelled (while decoding, or before they started). None for a single sequence.
    pub fn sequences(&self) -> Option<Sequences> {
        (self.choices.len() > 1).then(|| {
            let cancelled = |c: &&ChoiceResult| c.finish == Some(FinishReason::Cancelled);
            Sequences {
                requested: self.choices.len() as u32,
                run: self.choices.iter().filter(|c| !cancelled(c) || c.stats.completion_tokens > 0).count() as u32,
                cancelled: self.choices.iter().filter(cancelled).count() as u32,
            }
        })
    }

    /// The one structured log line per job, plus the latency histogram.
    pub fn log(&self) {
        let total = self.started.elapsed().as_secs_f64();
        metrics().request_latency.with_label_values(&[self.endpoint]).observe(total);
        let finish: Vec<&str> = self.choices.iter().map(|c| c.finish.map_or("none", FinishReason::as_str)).collect();
        tracing::info!(
            id = %self.id,
            endpoint = self.endpoint,
            prompt_tokens = self.prompt_tokens,
            completion_tokens = self.completion_tokens(),
            reasoning_tokens = self.reasoning_tokens(),
            prompt_ms = self.prompt_ms as u64,
            ttft_ms = self.first_token.map_or(0, |t| (t - self.started).as_millis() as u64),
            total_ms = (total * 1000.0) as u64,
            finish = ?finish,
            error = %self.error.as_ref().map(JobError::to_string).unwrap_or_default(),
            "request done"
        );
    }
}

/// What a response shows of its jobs' events, as the handlers read them (the rest — prefill,
/// admission, calibration, errors — only goes into the collectors).
#[derive(Debug, Clone)]
pub enum Update {
    /// New text of choice `index`: thinking, then answer, with the tokens' log-probabilities.
    Text { index: usize, thinking: String, answer: String, logprobs: Vec<LogprobEntry> },
    /// Choice `index` ended; `answer` is its final answer as a vote reads it.
    Finished { index: usize, reason: FinishReason, completion_tokens: u32, thinking_tokens: u32, answer: Option<String> },
    /// A self-consistency choice stopped early.
    Stopped { choice: usize },
    /// P(True) of one proposed answer of a choice.
    Judged { choice: usize, answer: String, score: f64 },
    /// The last update of a chat request that read without failure: each choice decided from its
    /// sample group (empty when it sampled none), and the grade when it carried a reference.
    Decided { outcomes: Vec<Outcome>, graded: Option<bool> },
}

impl Update {
    fn of(event: Event) -> Option<Self> {
        Some(match event {
            Event::Delta { index, thinking, answer, logprobs } => Self::Text { index, thinking, answer, logprobs },
            Event::Finished { index, reason, stats } => Self::Finished {
                index,
                reason,
                completion_tokens: stats.completion_tokens,
                thinking_tokens: stats.thinking_tokens,
                answer: final_answer(&stats.answer, &stats.thinking),
            },
            Event::Stopped { choice } => Self::Stopped { choice },
            Event::Judged { choice, answer, score, .. } => Self::Judged { choice, answer, score },
            Event::Admitted | Event::Prefilled { .. } | Event::Calibrated { .. } | Event::Error(_) => return None,
        })
    }
}

/// One response's events read into its collectors: until every choice finished, or, with
/// `drain`, until the backend closes the channel (a vote's judgements follow its finishes).
pub struct Reader {
    pub cols: Vec<Collector>,
    events: Events,
    drain: bool,
    watch: Option<Watch>,
    finish: Option<Box<dyn Finish>>,
}

/// Sees every event of a one-job response as it is read (`verify::live` checks finished samples).
pub type Watch = Box<dyn FnMut(&Event) + Send>;

/// What a request does once its jobs are read without failure (`infer`: vote, then grade); its
/// update is the last one read.
pub trait Finish: Send {
    fn finish(self: Box<Self>, cols: &mut [Collector]) -> BoxFuture<'_, Update>;
}

impl Reader {
    pub fn new(cols: Vec<Collector>, events: Events, drain: bool) -> Self {
        Self { cols, events, drain, watch: None, finish: None }
    }

    pub fn watching(self, watch: Watch) -> Self {
        Self { watch: Some(watch), ..self }
    }

    pub fn finishing(self, finish: Box<dyn Finish>) -> Self {
        Self { finish: Some(finish), ..self }
    }

    /// The next update and its job, its event already absorbed into the job's collector.
    pub async fn next(&mut self) -> Option<(usize, Update)> {
        loop {
            let read = match !self.drain && self.cols.iter().all(Collector::done) {
                true => None,
                false => self.events.next().await,
            };
            let Some((i, event)) = read else {
                let finish = self.finish.take().filter(|_| self.failure().is_none())?;
                return Some((0, finish.finish(&mut self.cols).await));
            };
            if let Some(w) = &mut self.watch {
                w(&event);
            }
            self.cols[i].absorb(&event);
            if let Some(u) = Update::of(event) {
                return Some((i, u));
            }
        }
    }

    /// The first failure once reading stopped, or a channel closed before every choice finished.
    pub fn failure(&self) -> Option<Failure> {
        match self.cols.iter().find_map(|c| c.error.clone()) {
            Some(JobError::Failed(m)) => Some(Failure::Engine(m)),
            Some(JobError::Refused { message, param }) => Some(Failure::Refused { message, param }),
            None if !self.cols.iter().all(Collector::done) => Some(Failure::Engine("the engine dropped the request".into())),
            None => None,
        }
    }
}

impl Reader {
    /// A whole (non-streamed) answer: every event read, each job logged.
    pub async fn collect(mut self) -> Result<Vec<Collector>, Failure> {
        while self.next().await.is_some() {}
        self.cols.iter().for_each(Collector::log);
        match self.failure() {
            Some(e) => Err(e),
            None => Ok(self.cols),
        }
    }
}

// What a decided vote holds.

/// A self-consistency choice's ballot.
#[derive(Debug, Clone, Serialize)]
pub struct VoteDetail {
    pub answer: Option<String>,
    pub samples_requested: usize,
    /// Chains decoded (pruned and dropped ones included: their tokens were spent), and voting.
    pub samples_used: usize,
    pub samples_voted: usize,
    pub stopped_early: bool,
    pub aggregate: &'static str,
    pub verifier: &'static str,
    pub adaptive: bool,
    pub prune: &'static str,
    pub keep_top: Option<f64>,
    pub prune_threshold: Option<f64>,
    pub pruned: usize,
    pub votes: Vec<VoteRow>,
    pub chosen_sample: Option<usize>,
    /// Why the chosen sample won, when a verifier chose by itself (`tests`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    pub samples: Vec<SampleDetail>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VoteRow {
    pub answer: String,
    pub votes: usize,
    pub weight: f64,
    pub confidence: f64,
    pub mean_logprob: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SampleDetail {
    pub index: usize,
    pub answer: Option<String>,
    pub thinking_tokens: u32,
    pub completion_tokens: u32,
    pub mean_logprob: f64,
    pub score: Option<f64>,
    pub finish_reason: Option<&'static str>,
    pub confidence: Option<ChainScores>,
    pub voted: bool,
    /// `verifier: "tests"`: cases run and passed, behaviour group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestsVerdict>,
    /// Why a checking verifier could not score this sample (it scored 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verifier_error: Option<String>,
    pub reasoning: String,
    pub content: String,
}

/// One choice decided from its samples.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub thinking: String,
    pub answer: String,
    pub finish: Option<FinishReason>,
    pub ext: VoteDetail,
    pub stopped_early: bool,
    pub used: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct TestsVerdict {
    pub run: usize,
    pub passed: usize,
    /// Samples with equal outputs on every case and probe input share a group; None: no program.
    pub group: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::unbounded_channel;

    fn delta(index: usize, answer: &str) -> Event {
        Event::Delta { index, thinking: String::new(), answer: answer.into(), logprobs: Vec::new() }
    }

    fn finished(index: usize, completion_tokens: u32) -> Event {
        Event::Finished { index, reason: FinishReason::Stop, stats: SeqStats { completion_tokens, ..SeqStats::default() } }
    }

    fn job(n: usize) -> Collector {
        Collector::new("test", "t".into(), n, Instant::now())
    }

    #[tokio::test]
    async fn two_jobs_are_folded_by_their_tags() {
        let (tx0, rx0) = unbounded_channel();
        let (tx1, rx1) = unbounded_channel();
        tx0.send(Event::Prefilled { prompt_tokens: 5, cached_tokens: 2, prompt_ms: 1.0 }).unwrap();
        tx1.send(delta(0, "b")).unwrap();
        tx0.send(delta(1, "a")).unwrap();
        for e in [finished(0, 1), finished(1, 3)] {
            tx0.send(e).unwrap();
        }
        tx1.send(finished(0, 4)).unwrap();
        let cols = Reader::new(vec![job(2), job(1)], events(vec![rx0, rx1]), false).collect().await.unwrap();
        assert_eq!((cols[0].choices[1].answer.as_str(), cols[1].choices[0].answer.as_str()), ("a", "b"));
        assert_eq!((cols[0].prompt_tokens, cols[0].cached_tokens), (5, 2));
        assert_eq!((cols[0].completion_tokens(), cols[1].completion_tokens()), (4, 4));
    }

    #[tokio::test]
    async fn a_channel_closed_before_every_choice_finished_is_a_failure() {
        let (tx, rx) = unbounded_channel();
        tx.send(delta(0, "x")).unwrap();
        tx.send(finished(0, 1)).unwrap();
        drop(tx);
        let r = Reader::new(vec![job(2)], events(vec![rx]), false).collect().await;
        assert_eq!(r.err(), Some(Failure::Engine("the engine dropped the request".into())));
    }

    #[tokio::test]
    async fn an_engine_error_ends_the_read_with_its_message() {
        let (tx, rx) = unbounded_channel();
        tx.send(Event::Error(JobError::Failed("decode failed".into()))).unwrap();
        // Not closed: the error alone ends the read.
        let r = Reader::new(vec![job(1)], events(vec![rx]), false).collect().await;
        assert_eq!(r.err(), Some(Failure::Engine("decode failed".into())));
        drop(tx);
    }

    #[tokio::test]
    async fn draining_reads_what_follows_the_last_finish() {
        let judged = || Event::Judged { choice: 0, answer: "4".into(), score: 0.9, tokens: 12 };
        let (tx, rx) = unbounded_channel();
        for e in [finished(0, 1), judged()] {
            tx.send(e).unwrap();
        }
        drop(tx);
        let cols = Reader::new(vec![job(1)], events(vec![rx]), true).collect().await.unwrap();
        assert_eq!(cols[0].judged, vec![(0, "4".to_string(), 0.9)]);
        // Without draining, the read stops at the last finish (the channel may stay open).
        let (tx, rx) = unbounded_channel();
        for e in [finished(0, 1), judged()] {
            tx.send(e).unwrap();
        }
        let cols = Reader::new(vec![job(1)], events(vec![rx]), false).collect().await.unwrap();
        assert!(cols[0].judged.is_empty());
        drop(tx);
    }
}
