//! One decoding sequence of the embedded engine: its place in the KV cache, its sampler (and
//! grammar), and the shared per-sequence controller that turns its tokens into text and decisions.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;

use super::Model;
use crate::backend::controller::Controller;
use crate::backend::{LogprobEntry, SamplingParams};

pub struct Sequence {
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
    pub ctl: Controller,
    /// Log-probs to report (`Some(k)`: with k alternatives), or to measure for the verifier.
    pub logprobs: Option<u32>,
    pub pending_logprobs: Vec<LogprobEntry>,
}

impl Sequence {
    pub fn new(seq_id: i32, pos: i32, first: LlamaToken, sampling: &SamplingParams, model: &Model, ctl: Controller) -> Self {
        Self {
            seq_id,
            pos,
            input: vec![first],
            fed: Vec::new(),
            sampler: build_sampler(sampling, model.n_vocab),
            // The API compiled this grammar against the same vocabulary, so it loads here too.
            grammar: sampling.grammar.as_ref().and_then(|g| {
                LlamaSampler::grammar(&model.model, &g.gbnf, g.root).inspect_err(|e| tracing::error!("grammar failed to load: {e}")).ok()
            }),
            ctl,
            logprobs: sampling.logprobs,
            pending_logprobs: Vec::new(),
        }
    }

    /// Sample (and accept) the next token from output `idx`. With a grammar this is
    /// llama-server's shortcut: sample unconstrained, and only when the grammar rejects that
    /// token run it over the whole vocabulary and sample again; checking all 49k candidates at
    /// every step costs more than the model itself on a small one.
    /// The grammar covers the answer only: thinking and forced text are never sampled under it.
    pub fn sample(&mut self, ctx: &LlamaContext, idx: i32) -> LlamaToken {
        let answering = self.ctl.answering();
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
