//! The embedded backend: the llama.cpp engine in this process (`engine/`, the only code that calls
//! llama.cpp), and its model as the request pipeline's vocabulary.

pub mod engine;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::mpsc;

use super::{
    Backend, Capabilities, EngineFault, Event, Grammar, GrammarError, Health, JobHandle, JobSpec, SubmitError, TextError, Token, Unhealthy,
    Vocabulary,
};
use crate::reasoning::chat::Message;
use crate::reasoning::tools::Tool;
use engine::{Engine, Model};

impl Vocabulary for Model {
    fn render_chat(&self, messages: &[Message], tools: &[Tool]) -> Result<String, TextError> {
        Model::render_chat(self, messages, tools).map_err(|e| TextError::Invalid(e.to_string()))
    }
    fn tokenize(&self, text: &str, add_bos: bool) -> Result<Vec<Token>, TextError> {
        Ok(Model::tokens(self, text, add_bos))
    }
    fn n_vocab(&self) -> Option<i32> {
        Some(self.n_vocab)
    }
    fn eog(&self) -> &[i32] {
        &self.eog
    }
    fn think_markers(&self) -> Option<(String, String)> {
        self.think_markers.clone()
    }
    fn json_grammar(&self, schema: &str) -> Result<Grammar, GrammarError> {
        Model::json_grammar(self, schema)
    }
    fn tool_grammar(&self, schema: &str, parallel: bool) -> Result<Grammar, GrammarError> {
        Model::tool_grammar(self, schema, parallel)
    }
}

impl Backend for Engine {
    fn submit(&self, spec: JobSpec) -> Result<(mpsc::UnboundedReceiver<Event>, JobHandle), SubmitError> {
        Engine::submit(self, spec)
    }
    fn vocabulary(&self) -> Arc<dyn Vocabulary> {
        self.model.clone()
    }
    fn slot_ctx(&self) -> u32 {
        self.slot_ctx
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities { grammar: true, json_schema: true, verifier_model: self.has_verifier }
    }
    fn meta(&self) -> serde_json::Value {
        let m = &self.model;
        json!({"backend": "embedded", "n_ctx": self.n_ctx, "slot_ctx": self.slot_ctx, "n_ctx_train": m.n_ctx_train(), "n_vocab": m.n_vocab,
               "thinking_markers": m.think_markers, "parallel": self.parallel, "eog_token_ids": m.eog})
    }
    fn health(&self) -> Result<Health, Unhealthy> {
        Ok(Health::Embedded {
            slots_total: self.parallel,
            slots_busy: self.stats.active_sequences.load(Ordering::Relaxed),
            queue_depth: self.queue_depth(),
            kv_cells_used: self.stats.kv_cells_used.load(Ordering::Relaxed),
            n_ctx: self.n_ctx,
            slot_ctx: self.slot_ctx,
            gpu_layers: self.model.gpu_layers,
            n_layer: self.model.n_layer,
            devices: engine::model::devices(),
            cpu: engine::model::cpu_backend().cloned(),
        })
    }
    fn fail_for_test(&self, how: EngineFault) {
        let flag = match how {
            EngineFault::Panic => &self.stats.panic_requested,
            EngineFault::Signal => &self.stats.signal_requested,
        };
        flag.store(true, Ordering::Relaxed);
    }
}
