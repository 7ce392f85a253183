//! A sampled token's log-probability and its alternatives: what an engine reports, the API
//! returns, and confidence is measured from.

#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct LogprobEntry {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
    /// Sampled while thinking: not part of `content` when thinking is returned apart.
    #[serde(skip)]
    pub thinking: bool,
}
