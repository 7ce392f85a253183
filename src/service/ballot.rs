//! What a decided vote is made of — each choice's outcome and its ballot, as the response's
//! `thinkscale` object shows it — apart from how it is decided (`vote`), so that the updates a
//! request ends with (`pipeline::Update::Decided`) can carry it.

use serde::Serialize;

use crate::backend::FinishReason;
use crate::reasoning::confidence::ChainScores;

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
