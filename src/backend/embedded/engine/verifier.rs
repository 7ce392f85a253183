//! `verifier: "model"`: a second GGUF judging proposed answers on its own thread and context, so
//! its prefills never stall the decode loop. The scheduler sends judging conversations and picks
//! the verdicts up between steps.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;

use super::Model;
use crate::backend::{JUDGE_NO, JUDGE_YES};
use crate::reasoning::chat::{judging_conversation, Message};

/// A judging conversation for one proposed answer of a job's choice.
pub struct Ask {
    pub job: u64,
    pub choice: usize,
    pub answer: String,
    /// The user's messages and the judging question (`judging_conversation` puts the answer between).
    pub messages: Vec<Message>,
    pub question: String,
}

/// P(True) of the answer (0.5 when the conversation could not be judged: too long, or failed).
pub struct Judgement {
    pub job: u64,
    pub choice: usize,
    pub answer: String,
    pub score: f64,
    /// The judging conversation's tokens (the verifier model reads it whole).
    pub tokens: u32,
}

/// The name of the thread that owns the verifier's context.
pub const THREAD: &str = "verifier";

pub struct VerifierModel {
    asks: Sender<Ask>,
    pub verdicts: Receiver<Judgement>,
}

impl VerifierModel {
    /// Create the verifier's context (`n_ctx` cells) on its own thread; fails as start-up does.
    pub fn start(
        model: Arc<Model>,
        n_ctx: u32,
        n_batch: u32,
        threads: i32,
        cache: crate::config::CacheType,
        governor: Option<Arc<super::threads::Governor>>,
    ) -> anyhow::Result<Self> {
        let (asks, ask_rx) = channel::<Ask>();
        let (verdict_tx, verdicts) = channel();
        let (ready_tx, ready_rx) = channel();
        std::thread::Builder::new().name(THREAD.into()).spawn(move || {
            let params = Model::context_params(n_ctx, 1, n_batch, threads, cache);
            let ctx = match model.model.new_context(super::model::backend_ref(), params) {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow::anyhow!("creating the verifier context: {e}")));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            let mut j = Judge {
                model: &model,
                ctx,
                yes: model.token_ids(&JUDGE_YES),
                no: model.token_ids(&JUDGE_NO),
                n_batch: n_batch as usize,
                threads: super::threads::Decoding::new(governor),
            };
            // Ends when the scheduler (the only sender) is gone.
            for ask in ask_rx {
                let (score, tokens) = j.score(&judging_conversation(&ask.messages, &ask.answer, &ask.question)).unwrap_or((0.5, 0));
                if verdict_tx.send(Judgement { job: ask.job, choice: ask.choice, answer: ask.answer, score, tokens }).is_err() {
                    break;
                }
            }
        })?;
        ready_rx.recv().map_err(|_| anyhow::anyhow!("the verifier thread exited during start-up"))??;
        Ok(Self { asks, verdicts })
    }

    pub fn ask(&self, ask: Ask) {
        let _ = self.asks.send(ask);
    }
}

struct Judge<'v> {
    model: &'v Model,
    ctx: LlamaContext<'v>,
    yes: Vec<usize>,
    no: Vec<usize>,
    n_batch: usize,
    threads: super::threads::Decoding,
}

impl Judge<'_> {
    /// Prefill the conversation in chunks, read the last logits: P(True) and the tokens read.
    fn score(&mut self, conversation: &[Message]) -> Option<(f64, u32)> {
        let text = self.model.render_chat(conversation, &[]).ok()?;
        let tokens = self.model.tokenize(&text, true);
        if tokens.is_empty() || tokens.len() >= self.ctx.n_ctx() as usize {
            return None;
        }
        let mut batch = LlamaBatch::new(self.n_batch, 1);
        for (c, chunk) in tokens.chunks(self.n_batch).enumerate() {
            batch.clear();
            let last_chunk = (c + 1) * self.n_batch >= tokens.len();
            for (k, t) in chunk.iter().enumerate() {
                batch.add(*t, (c * self.n_batch + k) as i32, &[0], last_chunk && k + 1 == chunk.len()).ok()?;
            }
            self.threads.apply();
            self.ctx.decode(&mut batch).ok()?;
        }
        let score = crate::reasoning::verify::p_true(self.ctx.get_logits_ith(batch.n_tokens() - 1), &self.yes, &self.no);
        self.ctx.clear_kv_cache();
        Some((score, tokens.len() as u32))
    }
}
