//! The engine's ceiling: a bare llama-cpp-2 decode loop (no HTTP, no scheduler) with the same
//! context settings as the server, for `thinkscale bench-ceiling`.

use std::path::Path;
use std::time::Instant;

use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;
use serde::Serialize;

use super::Model;
use crate::reasoning::chat::Message;

#[derive(Debug, Serialize)]
pub struct CeilingRow {
    pub sequences: usize,
    pub tokens_per_sequence: usize,
    pub prompt_tokens: usize,
    /// Generated tokens / seconds, prefill included (what a client of the server sees).
    pub tokens_per_second: f64,
    /// Generated tokens / seconds of the decode steps alone.
    pub decode_tokens_per_second: f64,
}

pub struct CeilingArgs<'a> {
    pub model: &'a Path,
    pub gpu_layers: Option<u32>,
    pub prompt: &'a str,
    pub seqs: &'a [usize],
    pub tokens: usize,
    pub ctx_size: u32,
    pub parallel: u32,
    pub threads: i32,
    pub n_batch: u32,
    pub cache: crate::config::CacheType,
}

pub fn run(a: &CeilingArgs) -> anyhow::Result<Vec<CeilingRow>> {
    let model = Model::load(a.model, a.gpu_layers, "chatml", true, None, None)?;
    let text = model.render_chat(&[Message::new("user", a.prompt)], &[])?;
    let prompt = model.tokenize(&text, true);
    let p = prompt.len();
    let banned: Vec<LlamaLogitBias> = model.eog.iter().map(|t| LlamaLogitBias::new(LlamaToken(*t), f32::NEG_INFINITY)).collect();
    let mut rows = Vec::new();
    // The first level runs twice and its first result is dropped: the server under test is warmed
    // up the same way (weights paged in, buffers allocated) before it is measured.
    for (i, &n) in a.seqs.first().into_iter().chain(a.seqs).enumerate() {
        anyhow::ensure!(n as u32 <= a.parallel, "{n} sequences need --parallel >= {n}");
        let params = Model::context_params(a.ctx_size, a.parallel, a.n_batch, a.threads, a.cache);
        let mut ctx = model.model.new_context(super::model::backend_ref(), params)?;
        let mut batch = LlamaBatch::new(a.n_batch as usize, a.parallel as i32);
        let mut samplers: Vec<LlamaSampler> = (0..n)
            .map(|_| LlamaSampler::chain_simple([LlamaSampler::logit_bias(model.n_vocab, &banned), LlamaSampler::greedy()]))
            .collect();
        let start = Instant::now();
        // Prefill once on sequence 0, fork to the others, feed each the last prompt token.
        for (c, chunk) in prompt[..p - 1].chunks(a.n_batch as usize).enumerate() {
            batch.clear();
            for (k, t) in chunk.iter().enumerate() {
                batch.add(*t, (c * a.n_batch as usize + k) as i32, &[0], false)?;
            }
            ctx.decode(&mut batch)?;
        }
        for s in 1..n {
            ctx.copy_kv_cache_seq(0, s as i32, None, None)?;
        }
        let mut next: Vec<LlamaToken> = vec![prompt[p - 1]; n];
        let decode_start = Instant::now();
        for step in 0..a.tokens {
            batch.clear();
            for (s, t) in next.iter().enumerate() {
                batch.add(*t, (p - 1 + step) as i32, &[s as i32], true)?;
            }
            ctx.decode(&mut batch)?;
            for (s, sampler) in samplers.iter_mut().enumerate() {
                next[s] = sampler.sample(&ctx, s as i32);
            }
        }
        let total = start.elapsed().as_secs_f64();
        let decode = decode_start.elapsed().as_secs_f64();
        let generated = (n * a.tokens) as f64;
        if i == 0 {
            continue;
        }
        rows.push(CeilingRow {
            sequences: n,
            tokens_per_sequence: a.tokens,
            prompt_tokens: p,
            tokens_per_second: generated / total,
            decode_tokens_per_second: generated / decode,
        });
    }
    Ok(rows)
}
