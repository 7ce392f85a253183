//! The flags of `thinkscale serve`, each also read from its `THINKSCALE_*` environment variable;
//! `Config::load` lays them over the file.

use std::path::PathBuf;

use clap::Args;

use super::{CacheType, CpuWait};

/// Flags of `thinkscale serve`. Every one may also come from its environment variable.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// GGUF model to serve [default: config `model`, i.e. models/qwen2.5-coder-0.5b-instruct.gguf]
    #[arg(long, short = 'm', env = "THINKSCALE_MODEL")]
    pub model: Option<PathBuf>,
    /// Model name clients use in requests and see in responses [default: the GGUF's file stem,
    /// or the remote engines' model]
    #[arg(long = "alias", short = 'a', env = "THINKSCALE_ALIAS")]
    pub model_alias: Option<String>,
    /// TOML configuration file [default: config/default.toml when present]
    #[arg(long, short = 'c', env = "THINKSCALE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to bind [default: 127.0.0.1]
    #[arg(long, env = "THINKSCALE_HOST")]
    pub host: Option<String>,
    /// Port to bind [default: 8080]
    #[arg(long, env = "THINKSCALE_PORT")]
    pub port: Option<u16>,
    /// Total KV cache in tokens, split evenly into one private stream per slot [default: 16384]
    #[arg(long, env = "THINKSCALE_CTX_SIZE")]
    pub ctx_size: Option<u32>,
    /// Sequence slots decoded together (n_seq_max) [default: 8]
    #[arg(long, short = 'p', env = "THINKSCALE_PARALLEL")]
    pub parallel: Option<u32>,
    /// Layers offloaded to the GPU [default: all when built with a GPU backend, else 0]
    #[arg(long, env = "THINKSCALE_GPU_LAYERS")]
    pub gpu_layers: Option<u32>,
    /// CPU threads for decoding [default: all cores]
    #[arg(long, short = 't', env = "THINKSCALE_THREADS")]
    pub threads: Option<i32>,
    /// Maximum tokens per decode batch (prefill chunk size) [default: 512]
    #[arg(long, env = "THINKSCALE_BATCH_SIZE")]
    pub batch_size: Option<u32>,
    /// Requests waiting for a slot before the server answers 429 [default: 64]
    #[arg(long, env = "THINKSCALE_QUEUE_SIZE")]
    pub queue_size: Option<usize>,
    /// Require `Authorization: Bearer KEY` on /v1 routes
    #[arg(long, env = "THINKSCALE_API_KEY")]
    pub api_key: Option<String>,
    /// Let browser pages from this origin call the API (repeat or comma-separate; `*` for any
    /// origin). Default: no CORS headers, so only same-origin pages can
    #[arg(long = "cors-origin", env = "THINKSCALE_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origins: Option<Vec<String>>,
    /// Server-wide thinking budget: -1 unlimited, 0 off, N tokens [default: -1]
    #[arg(long, env = "THINKSCALE_REASONING_BUDGET", allow_hyphen_values = true)]
    pub reasoning_budget: Option<i64>,
    /// Where thinking goes: auto|deepseek (reasoning_content) or none (inline in content)
    #[arg(long, env = "THINKSCALE_REASONING_FORMAT")]
    pub reasoning_format: Option<String>,
    /// Second GGUF model used by `verifier: "model"`
    #[arg(long, env = "THINKSCALE_VERIFIER_MODEL")]
    pub verifier_model: Option<PathBuf>,
    /// A harness run (its directory, derived.json or results.jsonl) that gives
    /// `reasoning_effort: "auto"` measured settings from the start
    #[arg(long, env = "THINKSCALE_AUTO_TABLE")]
    pub auto_table: Option<PathBuf>,
    /// How compute threads wait: auto (spin on cores of its own, one thread while the machine is
    /// shared), spin, or passive (always sleep) [default: auto]. OMP_WAIT_POLICY, when set, wins
    #[arg(long, env = "THINKSCALE_CPU_WAIT", value_enum)]
    pub cpu_wait: Option<CpuWait>,
    /// KV cache element type: q8_0 (batch-invariant greedy decoding) or f16 (llama-server's
    /// default) [default: q8_0]
    #[arg(long, env = "THINKSCALE_CACHE_TYPE", value_enum)]
    pub cache_type: Option<CacheType>,
    /// Run model-written programs in the sandbox for `verifier: "tests"` (needs bubblewrap)
    #[arg(long, env = "THINKSCALE_CODE_EXEC", value_enum)]
    pub code_exec: Option<crate::sandbox::Language>,
    /// Use llama.cpp's built-in template matcher instead of the model's Jinja chat template
    #[arg(long, env = "THINKSCALE_NO_JINJA")]
    pub no_jinja: bool,
    /// Routes that make the engine or a handler fail on purpose (tests only)
    #[arg(long, hide = true)]
    pub test_hooks: bool,
    /// Directory of ggml backend modules (libggml-cpu-<variant>.so, libggml-cuda.so); default: the
    /// binary's own directory, where the build puts them
    #[arg(long, env = "THINKSCALE_BACKENDS_DIR")]
    pub backends_dir: Option<PathBuf>,
    /// Run over this OpenAI-compatible engine (vLLM, SGLang, llama-server, thinkscale) instead of
    /// a local model; repeat (or comma-separate) for replicas. `--model` is then not needed
    #[arg(long = "backend", env = "THINKSCALE_BACKEND", value_delimiter = ',')]
    pub backends: Option<Vec<String>>,
    /// Model name to ask the remote engines for [default: their first /v1/models entry]
    #[arg(long, env = "THINKSCALE_BACKEND_MODEL")]
    pub backend_model: Option<String>,
    /// API key sent to the remote engines (`Authorization: Bearer`)
    #[arg(long, env = "THINKSCALE_BACKEND_API_KEY")]
    pub backend_api_key: Option<String>,
    /// Seconds a remote engine may stay silent on a stream before its replica counts as failed
    /// [default: 300]
    #[arg(long, env = "THINKSCALE_BACKEND_TIMEOUT")]
    pub backend_timeout: Option<u64>,
    /// Export each request's spans (job, queue, prefill, thinking, answer, verify) over OTLP/HTTP
    /// to this collector URL, e.g. http://127.0.0.1:4318/v1/traces [default: none]
    #[arg(long, env = "THINKSCALE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}
