//! One decoding sequence: its sampler, its forcing controller, and the text pipeline
//! (bytes -> complete UTF-8 -> thinking/answer split -> stop strings) that turns tokens into deltas.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;

use crate::reasoning::forcing::{Finish, Forcer, Injection, Phase, Step};

use super::{LogprobEntry, Model, SamplingParams};

/// Holds bytes of a multi-byte character split across tokens until it is complete.
#[derive(Default, Debug)]
pub struct Utf8Buffer {
    pending: Vec<u8>,
}

impl Utf8Buffer {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let out = s.to_string();
                self.pending.clear();
                out
            }
            Err(e) => {
                // An incomplete tail waits for the next token; bytes that can never be valid are
                // replaced so one bad token cannot stall the stream.
                let valid = e.valid_up_to();
                let cut = match e.error_len() {
                    None => valid,
                    Some(bad) => valid + bad,
                };
                let out = String::from_utf8_lossy(&self.pending[..cut]).into_owned();
                self.pending.drain(..cut);
                if e.error_len().is_some() {
                    return out + &self.push(&[]);
                }
                out
            }
        }
    }

    pub fn flush(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

/// Cuts the answer at the first stop string, holding back any tail that could begin one.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        Self { stops: stops.into_iter().filter(|s| !s.is_empty()).collect(), held: String::new() }
    }

    /// Returns the text safe to emit and whether a stop string was hit.
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.held.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let out = self.held[..at].to_string();
            self.held.clear();
            return (out, true);
        }
        let keep = self
            .stops
            .iter()
            .map(|s| crate::reasoning::forcing::partial_suffix(&self.held, s))
            .max()
            .unwrap_or(0);
        let out = self.held[..self.held.len() - keep].to_string();
        self.held.drain(..self.held.len() - keep);
        (out, false)
    }

    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    Cancelled,
    /// Stopped by the online confidence filter: excluded from the vote.
    Pruned,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Cancelled => "cancelled",
            Self::Pruned => "pruned",
        }
    }
}

/// Text produced by one token, ready to send.
#[derive(Debug, Default)]
pub struct Delta {
    pub thinking: String,
    pub answer: String,
    pub finish: Option<FinishReason>,
    pub inject: Option<Injection>,
    pub feed_sampled: bool,
    pub rollback: usize,
}

pub struct Sequence {
    /// Index of the choice (or sample) inside its job.
    pub index: usize,
    pub seq_id: i32,
    /// Position of the next token to feed.
    pub pos: i32,
    /// Tokens to feed at the next decode step (the last sampled one, or forced text).
    pub input: Vec<LlamaToken>,
    /// Tokens already in this sequence's stream from position `pos` of its start on (the
    /// prompt's last token first): what a finished request leaves for the next turn's prompt.
    pub fed: Vec<LlamaToken>,
    sampler: LlamaSampler,
    /// Structured output: checked apart from the chain (see `sample`).
    grammar: Option<LlamaSampler>,
    pub forcer: Forcer,
    utf8: Utf8Buffer,
    stop: StopMatcher,
    /// Tokens fed after the prompt (sampled and forced), checked against the request's cap.
    pub generated: u32,
    pub max_tokens: u32,
    pub logprobs: Option<u32>,
    pub sum_logprob: f64,
    pub sampled: u32,
    pub pending_logprobs: Vec<LogprobEntry>,
    pub thinking_text: String,
    pub answer_text: String,
    pub first_token_at: Option<std::time::Instant>,
    pub thinking_ended_at: Option<std::time::Instant>,
    /// Running confidence, when the job measures it.
    pub confidence: Option<crate::reasoning::confidence::ChainConfidence>,
}

impl Sequence {
    pub fn new(index: usize, seq_id: i32, pos: i32, first: LlamaToken, sampling: &SamplingParams, model: &Model, forcer: Forcer, max_tokens: u32) -> Self {
        Self {
            index,
            seq_id,
            pos,
            input: vec![first],
            fed: Vec::new(),
            sampler: build_sampler(sampling, model.n_vocab),
            // The API compiled this grammar against the same vocabulary, so it loads here too.
            grammar: sampling.grammar.as_ref().and_then(|g| {
                LlamaSampler::grammar(&model.model, &g.gbnf, g.root).inspect_err(|e| tracing::error!("grammar failed to load: {e}")).ok()
            }),
            forcer,
            utf8: Utf8Buffer::default(),
            stop: StopMatcher::new(sampling.stop.clone()),
            generated: 0,
            max_tokens,
            logprobs: sampling.logprobs,
            sum_logprob: 0.0,
            sampled: 0,
            pending_logprobs: Vec::new(),
            thinking_text: String::new(),
            answer_text: String::new(),
            first_token_at: None,
            thinking_ended_at: None,
            confidence: None,
        }
    }

    /// Sample (and accept) the next token from output `idx`. With a grammar this is
    /// llama-server's shortcut: sample unconstrained, and only when the grammar rejects that
    /// token run it over the whole vocabulary and sample again; checking all 49k candidates at
    /// every step costs more than the model itself on a small one.
    /// The grammar covers the answer only: thinking and forced text are never sampled under it.
    pub fn sample(&mut self, ctx: &LlamaContext, idx: i32) -> LlamaToken {
        let answering = self.forcer.phase() == Phase::Answer;
        let Some(grammar) = self.grammar.as_mut().filter(|_| answering) else { return self.sampler.sample(ctx, idx) };
        let pick = |sampler: &mut LlamaSampler, grammar: Option<&mut LlamaSampler>| {
            let mut cur = ctx.token_data_array_ith(idx);
            if let Some(g) = grammar {
                g.apply(&mut cur);
            }
            sampler.apply(&mut cur);
            cur.selected_token()
        };
        let allowed = |grammar: &mut LlamaSampler, token: LlamaToken| {
            let mut one = LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, 0.0, 0.0)], false);
            grammar.apply(&mut one);
            one.data[0].logit().is_finite()
        };
        let token = match pick(&mut self.sampler, None) {
            Some(t) if allowed(grammar, t) => t,
            _ => pick(&mut self.sampler, Some(grammar)).unwrap_or(LlamaToken(0)),
        };
        self.sampler.accept(token);
        // try_accept inside: a token the grammar cannot take is an error, not a C++ exception
        // that would abort the process.
        grammar.accept(token);
        token
    }

    /// Run a sampled token's bytes through the pipeline.
    pub fn on_token(&mut self, bytes: &[u8], eog: bool) -> Delta {
        let piece = if eog { self.utf8.flush() } else { self.utf8.push(bytes) };
        let was_thinking = self.forcer.phase() == Phase::Thinking;
        let step: Step = self.forcer.on_token(&piece, eog);
        if was_thinking && self.forcer.phase() != Phase::Thinking {
            self.thinking_ended_at = Some(std::time::Instant::now());
        }
        let (answer, stopped) = self.stop.push(&step.answer);
        let mut finish = match step.finish {
            Some(Finish::Stop) => Some(FinishReason::Stop),
            Some(Finish::Length) => Some(FinishReason::Length),
            None => None,
        };
        if stopped {
            finish = Some(FinishReason::Stop);
        }
        let mut answer = answer;
        if finish.is_some() && !stopped {
            answer.push_str(&self.stop.flush());
        }
        self.thinking_text.push_str(&step.thinking);
        self.answer_text.push_str(&answer);
        Delta { thinking: step.thinking, answer, finish, inject: step.inject, feed_sampled: step.feed_sampled, rollback: step.rollback }
    }

    /// Text still held back when the sequence is cut by the token cap.
    pub fn flush(&mut self) -> String {
        let tail = self.utf8.flush();
        let (mut out, _) = self.stop.push(&tail);
        out.push_str(&self.stop.flush());
        self.answer_text.push_str(&out);
        out
    }

    pub fn mean_logprob(&self) -> f64 {
        if self.sampled == 0 { 0.0 } else { self.sum_logprob / self.sampled as f64 }
    }
}

/// The sampler chain llama-server uses, in its order. Each sequence gets its own `dist(seed)`
/// because cloned samplers share RNG state.
fn build_sampler(p: &SamplingParams, n_vocab: i32) -> LlamaSampler {
    let mut chain = Vec::new();
    if !p.logit_bias.is_empty() {
        let biases: Vec<LlamaLogitBias> = p.logit_bias.iter().map(|(t, b)| LlamaLogitBias::new(LlamaToken(*t), *b)).collect();
        chain.push(LlamaSampler::logit_bias(n_vocab, &biases));
    }
    if p.frequency_penalty != 0.0 || p.presence_penalty != 0.0 || p.repeat_penalty != 1.0 {
        chain.push(LlamaSampler::penalties(n_vocab, 64, p.repeat_penalty, p.frequency_penalty, p.presence_penalty));
    }
    if p.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if p.top_k > 0 {
            chain.push(LlamaSampler::top_k(p.top_k));
        }
        if p.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(p.top_p, 1));
        }
        if p.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(p.min_p, 1));
        }
        chain.push(LlamaSampler::temp(p.temperature));
        chain.push(LlamaSampler::dist(p.seed));
    }
    LlamaSampler::chain_simple(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_characters_are_held_until_complete() {
        let mut b = Utf8Buffer::default();
        let bytes = "é✓".as_bytes();
        assert_eq!(b.push(&bytes[..1]), "");
        assert_eq!(b.push(&bytes[1..3]), "é");
        assert_eq!(b.push(&bytes[3..]), "✓");
        assert_eq!(b.push(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn stop_strings_cut_and_hold_partial_matches() {
        let mut m = StopMatcher::new(vec!["STOP".into(), "\n\n".into()]);
        assert_eq!(m.push("hello ST"), ("hello ".into(), false));
        assert_eq!(m.push("OP there"), ("".into(), true));
        let mut m = StopMatcher::new(vec!["STOP".into()]);
        assert_eq!(m.push("ST"), ("".into(), false));
        assert_eq!(m.push("ar"), ("STar".into(), false));
        assert_eq!(m.push("x\n"), ("x\n".into(), false));
    }
}
