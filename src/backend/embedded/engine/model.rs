//! A loaded GGUF: its vocabulary (tokenizing, pieces, end-of-generation), grammars for schemas
//! and tool calls, its chat template (rendered by `template.rs`), and the context parameters.
//! Read-only after load, so handlers may share it; the contexts belong to the decode loop
//! (`scheduler/`, `sequence.rs`, `batch.rs`) and to the verifier's thread.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Context};
use llama_cpp_2::context::params::KvCacheType;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::cpu::CpuBackend;
use super::template::{Jinja, RenderError};
use crate::backend::{Grammar, GrammarError, Token};
use crate::config::CacheType;
use crate::reasoning::chat::Message;
use crate::reasoning::tools::{self, Tool};

static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
static CPU: OnceLock<CpuBackend> = OnceLock::new();

/// llama.cpp's backend may be initialised once per process; a verifier model shares it.
fn backend(backends_dir: Option<&Path>) -> anyhow::Result<&'static LlamaBackend> {
    if let Some(b) = BACKEND.get() {
        return Ok(b);
    }
    let searched = load_backend_modules(backends_dir)?;
    let cpu = CpuBackend::detect(&searched)?;
    tracing::info!(variant = %cpu.variant, features = %cpu.features.join(" "), "llama.cpp CPU backend");
    super::crash::install(&cpu.variant);
    let _ = CPU.set(cpu);
    let mut b = LlamaBackend::init().context("initialising llama.cpp")?;
    if std::env::var_os("THINKSCALE_LLAMA_LOG").is_none() {
        b.void_logs();
    }
    Ok(BACKEND.get_or_init(|| b))
}

/// The backend a loaded model was created with.
pub(crate) fn backend_ref() -> &'static LlamaBackend {
    BACKEND.get().expect("a model is loaded before any context")
}

/// The CPU kernels in use, once a model has loaded (for /health).
pub fn cpu_backend() -> Option<&'static CpuBackend> {
    CPU.get()
}

/// Load ggml's backends (the CPU variants, CUDA when built with it) from `--backends-dir`, else
/// from the binary's own directory, where build.rs puts them. Never from the build's OUT_DIR,
/// which also holds a variant the build does not ship. Returns the directory searched.
#[cfg(feature = "dynamic-backends")]
fn load_backend_modules(dir: Option<&Path>) -> anyhow::Result<std::path::PathBuf> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            let exe = std::env::current_exe().context("locating the thinkscale binary")?;
            exe.parent().context("the binary's directory")?.to_path_buf()
        }
    };
    anyhow::ensure!(dir.is_dir(), "--backends-dir {} is not a directory", dir.display());
    llama_cpp_2::llama_backend::load_backends_from_path(&dir);
    Ok(dir)
}

#[cfg(not(feature = "dynamic-backends"))]
fn load_backend_modules(dir: Option<&Path>) -> anyhow::Result<std::path::PathBuf> {
    anyhow::ensure!(dir.is_none(), "--backends-dir needs a build with `--features dynamic-backends`");
    Ok(std::path::PathBuf::from("the binary"))
}

/// llama.cpp's GBNF grammar for a JSON schema (no model needed).
fn schema_gbnf(schema: &str) -> Result<String, GrammarError> {
    llama_cpp_2::json_schema_to_grammar(schema).map_err(|e| GrammarError::Schema(e.to_string()))
}

/// Why a conversation could not be rendered into a prompt (the client's conversation, or the
/// template).
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The client's conversation broke the template's own rules (it raised).
    #[error("the model's chat template rejects these messages: {0}")]
    Rejected(String),
    #[error("chat template failed: {0}")]
    Failed(String),
    #[error("message content must not contain NUL characters")]
    Nul,
}

/// The devices llama.cpp found (CPU, CUDA, ...), for /health and the start-up log.
pub fn devices() -> Vec<String> {
    llama_cpp_2::list_llama_ggml_backend_devices().into_iter().map(|d| format!("{} ({}, {})", d.name, d.backend, d.description)).collect()
}

pub struct Model {
    pub model: LlamaModel,
    /// llama.cpp's built-in template matcher: used with `jinja = false`, for GGUFs without a
    /// template, and when the Jinja template fails on a plain conversation.
    template: LlamaChatTemplate,
    jinja: Option<Jinja>,
    /// Think-block markers when the model has them (vocabulary tokens or configured).
    pub think_markers: Option<(String, String)>,
    pub n_vocab: i32,
    /// End-of-generation token ids.
    pub eog: Vec<i32>,
    pub n_layer: u32,
    pub gpu_layers: u32,
}

impl Model {
    pub fn load(
        path: &Path,
        gpu_layers: Option<u32>,
        template_fallback: &str,
        use_jinja: bool,
        think_override: Option<(String, String)>,
        backends_dir: Option<&Path>,
    ) -> anyhow::Result<Self> {
        if !path.exists() {
            return Err(anyhow!(
                "model file {} not found; fetch the default model with `models/fetch.sh` (or pass --model PATH)",
                path.display()
            ));
        }
        let backend = backend(backends_dir)?;
        let gpu_layers = gpu_layers.unwrap_or(if backend.supports_gpu_offload() { 999 } else { 0 });
        let params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
        let model = LlamaModel::load_from_file(backend, path, &params).map_err(|e| anyhow!("loading {}: {e}", path.display()))?;
        let template = match model.chat_template(None) {
            Ok(t) => t,
            Err(_) => LlamaChatTemplate::new(template_fallback).context("fallback chat template")?,
        };
        let jinja = if use_jinja { Self::jinja(&model) } else { None };
        let n_vocab = model.n_vocab();
        let n_layer = model.n_layer();
        let mut m = Self {
            model,
            template,
            jinja,
            think_markers: None,
            n_vocab,
            eog: Vec::new(),
            n_layer,
            gpu_layers: gpu_layers.min(n_layer + 1),
        };
        m.think_markers = think_override.or_else(|| m.detect_think_markers());
        m.eog = m.eog_tokens();
        Ok(m)
    }

    /// The GGUF's Jinja template, if it has one that compiles.
    fn jinja(model: &LlamaModel) -> Option<Jinja> {
        let source = model.meta_val_str("tokenizer.chat_template").ok()?;
        let vocab = model.vocab();
        let text = |t: LlamaToken| vocab.text(t).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Jinja::new(&source, text(vocab.bos()), text(vocab.eos()))
            .inspect_err(|e| tracing::warn!("the model's chat template does not compile ({e}); using llama.cpp's matcher"))
            .ok()
    }

    /// A thinking model has `<think>`/`</think>` as single vocabulary tokens.
    fn detect_think_markers(&self) -> Option<(String, String)> {
        let single = |t: &str| self.tokenize(t, false).len() == 1;
        (single("<think>") && single("</think>")).then(|| ("<think>".to_string(), "</think>".to_string()))
    }

    pub fn tokenize(&self, text: &str, add_bos: bool) -> Vec<LlamaToken> {
        self.model.vocab().tokenize(text.as_bytes(), add_bos, true)
    }

    /// `tokenize` as the backend contract's ids.
    pub fn tokens(&self, text: &str, add_bos: bool) -> Vec<Token> {
        self.tokenize(text, add_bos).into_iter().map(Token::from).collect()
    }

    /// First token id of each word, deduplicated (e.g. the spellings of "Yes").
    pub fn token_ids(&self, words: &[&str]) -> Vec<usize> {
        let mut ids: Vec<usize> = words.iter().filter_map(|w| self.tokenize(w, false).first().map(|t| t.0 as usize)).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    pub fn piece(&self, token: LlamaToken) -> Vec<u8> {
        self.model.vocab().token_to_piece(token, true, None)
    }

    /// Every end-of-generation token id (for `ignore_eos`).
    pub fn eog_tokens(&self) -> Vec<i32> {
        (0..self.n_vocab).filter(|t| self.is_eog(LlamaToken(*t))).collect()
    }

    pub fn is_eog(&self, token: LlamaToken) -> bool {
        self.model.vocab().is_eog(token)
    }

    /// llama.cpp's grammar for a JSON schema, checked to load against this vocabulary.
    pub fn json_grammar(&self, schema: &str) -> Result<Grammar, GrammarError> {
        let gbnf = schema_gbnf(schema)?;
        self.checked(Grammar { gbnf, root: "root" })
    }

    /// A grammar for calls in the Hermes format (`<tool_call>` JSON `</tool_call>`), each call's
    /// JSON following `schema`; one call, or several on separate lines when `parallel`.
    pub fn tool_grammar(&self, schema: &str, parallel: bool) -> Result<Grammar, GrammarError> {
        let json = schema_gbnf(schema)?;
        let more = if parallel { r#" ("\n" thinkscale-call)*"# } else { "" };
        let gbnf = format!(
            "{json}\nthinkscale-calls ::= thinkscale-call{more}\nthinkscale-call ::= {:?} root {:?}\n",
            format!("{}\n", tools::CALL_OPEN),
            format!("\n{}", tools::CALL_CLOSE)
        );
        self.checked(Grammar { gbnf, root: "thinkscale-calls" })
    }

    /// The grammar, once it has loaded against this vocabulary.
    fn checked(&self, g: Grammar) -> Result<Grammar, GrammarError> {
        LlamaSampler::grammar(&self.model, &g.gbnf, g.root).map_err(|e| GrammarError::Load(e.to_string()))?;
        Ok(g)
    }

    pub fn n_ctx_train(&self) -> u32 {
        self.model.n_ctx_train()
    }

    /// Render a conversation (and the tools it may call) with the model's template and open the
    /// assistant's turn. Templates that know no tools get them, the calls and the results as text.
    pub fn render_chat(&self, messages: &[Message], tools: &[Tool]) -> Result<String, TemplateError> {
        let structured = !tools.is_empty() || messages.iter().any(|m| m.role == "tool" || !m.tool_calls.is_empty());
        if let Some(j) = &self.jinja {
            let rendered = if j.knows_tools || !structured {
                let raw: Vec<serde_json::Value> = tools.iter().map(|t| t.raw.clone()).collect();
                j.render(messages, (!raw.is_empty()).then_some(&raw[..]))
            } else {
                j.render(&tools::flatten(messages, tools), None)
            };
            match rendered {
                Ok(text) => return Ok(text),
                // The client's conversation broke the template's own rules (it raised): say so.
                Err(e @ RenderError::Rejected(_)) => return Err(TemplateError::Rejected(e.to_string())),
                Err(e) if structured => return Err(TemplateError::Failed(e.to_string())),
                Err(e) => tracing::warn!("the model's chat template failed ({e}); using llama.cpp's matcher"),
            }
        }
        let flat;
        let messages = if structured {
            flat = tools::flatten(messages, tools);
            &flat
        } else {
            messages
        };
        let chat = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| TemplateError::Nul)?;
        self.model.apply_chat_template(&self.template, &chat, true).map_err(|e| TemplateError::Failed(e.to_string()))
    }

    pub fn context_params(
        n_ctx: u32,
        parallel: u32,
        n_batch: u32,
        threads: i32,
        cache: CacheType,
    ) -> llama_cpp_2::context::params::LlamaContextParams {
        let kv = match cache {
            CacheType::Q8_0 => KvCacheType::Q8_0,
            CacheType::F16 => KvCacheType::F16,
        };
        llama_cpp_2::context::params::LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_seq_max(parallel)
            // One KV stream per slot, and flash attention over a Q8_0 cache (the default), which
            // always takes ggml's per-row kernel (F16 caches switch to split-KV or tiled kernels
            // by batch and cache size). That kernel visits a sequence's cells in cell order; in a
            // private stream that is position order, whatever else runs or shares the batch. So a
            // request decodes to the same tokens alone or batched with others. A unified cache
            // would share a forked prompt's cells, but reuses freed cells out of order and breaks
            // that.
            .with_kv_unified(false)
            .with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED)
            .with_type_k(kv)
            .with_type_v(kv)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
    }
}
