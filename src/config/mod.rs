//! Server configuration: defaults < TOML file (`config/default.toml`) < environment < CLI flags.
//! clap reads both the flags and their `THINKSCALE_*` environment variables, so the merge here is
//! only "file value unless the flag/env gave one".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod args;
pub use args::ServeArgs;

/// Everything `serve` needs. Field names are the TOML keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub model: PathBuf,
    pub model_alias: Option<String>,
    pub host: String,
    pub port: u16,
    pub ctx_size: u32,
    pub parallel: u32,
    pub batch_size: u32,
    pub gpu_layers: Option<u32>,
    pub threads: Option<i32>,
    pub queue_size: usize,
    pub api_key: Option<String>,
    /// Origins a browser page may call the API from (`*` for any); empty: no CORS headers.
    pub cors_origins: Vec<String>,
    pub max_body_bytes: usize,
    pub max_stop_sequences: usize,
    pub default_max_tokens: u32,
    /// Jinja-free template used when the GGUF carries none (e.g. Gemma 3 270M base): a llama.cpp
    /// built-in template name such as "chatml" or "gemma".
    pub chat_template_fallback: String,
    /// Render the GGUF's own Jinja chat template (tools, system-prompt rules); false: llama.cpp's
    /// built-in template matcher, which knows no tools.
    pub jinja: bool,
    pub backends_dir: Option<PathBuf>,
    /// OpenAI-compatible engines (base URLs) to run over instead of a local model; empty: the
    /// embedded engine serves `model`.
    pub backends: Vec<String>,
    /// The model name sent to the remote engines [default: their first `/v1/models` entry].
    pub backend_model: Option<String>,
    pub backend_api_key: Option<String>,
    /// Seconds a remote engine may stay silent on a stream (prefill included) before its replica
    /// is taken for failed and the sequence moves on.
    pub backend_timeout: u64,
    /// Where request spans go over OTLP/HTTP (e.g. http://collector:4318/v1/traces); none when unset.
    pub otlp_endpoint: Option<String>,
    pub cpu_wait: CpuWait,
    pub cache_type: CacheType,
    pub reasoning: ReasoningConfig,
    /// Run model-written programs for `verifier: "tests"` (off unless set: it executes model
    /// output, inside the sandbox).
    pub code_exec: Option<crate::sandbox::Language>,
    /// What one sandboxed run may use, and how many run at once.
    pub sandbox: crate::sandbox::Limits,
    /// Seconds a verifier that takes time (tests, HTTP checkers) has for a whole sample group;
    /// past it every sample scores 0 and the request still answers.
    pub verifier_timeout: f64,
    /// Operator-configured HTTP checkers, chosen by name in a request: `[verifiers.NAME]`.
    pub verifiers: BTreeMap<String, HttpChecker>,
    /// `serve --test-hooks` only (never from a file): routes that make the engine or a handler
    /// fail on purpose, for the supervision tests.
    #[serde(skip)]
    pub test_hooks: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            model: PathBuf::from("models/qwen2.5-coder-0.5b-instruct.gguf"),
            model_alias: None,
            host: "127.0.0.1".into(),
            port: 8080,
            ctx_size: 16384,
            parallel: 8,
            batch_size: 512,
            gpu_layers: None,
            threads: None,
            queue_size: 64,
            api_key: None,
            cors_origins: Vec::new(),
            max_body_bytes: 2 * 1024 * 1024,
            max_stop_sequences: 16,
            default_max_tokens: 512,
            chat_template_fallback: "chatml".into(),
            jinja: true,
            backends_dir: None,
            backends: Vec::new(),
            backend_model: None,
            backend_api_key: None,
            backend_timeout: 300,
            otlp_endpoint: None,
            cpu_wait: CpuWait::Auto,
            cache_type: CacheType::Q8_0,
            reasoning: ReasoningConfig::default(),
            code_exec: None,
            sandbox: Default::default(),
            verifier_timeout: 60.0,
            verifiers: BTreeMap::new(),
            test_hooks: false,
        }
    }
}

/// An HTTP checker (`[verifiers.NAME] url = ..., kind = "score" | "sandbox_fusion"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpChecker {
    pub url: String,
    #[serde(default)]
    pub kind: HttpKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpKind {
    /// POST `{"prompt", "answer", "reasoning"}`, answered `{"score": 0..1}`.
    #[default]
    Score,
    /// SandboxFusion's `POST /run_code`: the answer's program (with `reasoning.tests` appended)
    /// as `{"code", "language": "python"}`; 1 when it ran to exit code 0.
    SandboxFusion,
}

/// How llama.cpp's compute threads (OpenMP) wait for each other between steps of a decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CpuWait {
    /// Spin while the cores are the server's own; decode on one thread while measured contention
    /// says the others would only wait (engine/threads.rs, docs/bench/2026-12-03-cpu-wait.md).
    Auto,
    /// libgomp's default: spin before sleeping, faster alone, collapses beside other busy processes.
    Spin,
    /// Sleep at once: keeps a fair share beside other work, costs 2-5x on an idle machine.
    Passive,
}

impl CpuWait {
    /// The OpenMP environment this policy needs (libgomp reads it once, when it loads).
    pub fn omp_env(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Passive => Some(("OMP_WAIT_POLICY", "PASSIVE")),
            Self::Spin | Self::Auto => None,
        }
    }
}

/// The KV cache's element type (llama-server's `--cache-type-k/-v`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum CacheType {
    /// Half the memory of f16, and attention always takes ggml's per-row kernel: a greedy
    /// request decodes to the same tokens alone or batched with others.
    #[default]
    #[value(name = "q8_0")]
    Q8_0,
    /// llama-server's default: ggml picks split-KV or tiled attention kernels by batch and cache
    /// size, so batched greedy text can differ from the same request alone.
    F16,
}

/// Test-time-compute defaults: effort levels, the scaffold for models without think tokens, forcing text.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReasoningConfig {
    /// Server-wide thinking budget when a request names none: -1 unlimited (within max tokens), 0 off.
    pub budget: i64,
    /// `auto`/`deepseek`: thinking in `reasoning_content`; `none`: thinking left inline in `content`.
    pub format: String,
    /// Effort level -> thinking-token budget.
    pub effort_budgets: BTreeMap<String, i64>,
    /// Effort level -> samples (self-consistency); levels not listed use 1.
    pub effort_samples: BTreeMap<String, u32>,
    /// Effort level -> verifier name; levels not listed use none.
    pub effort_verifier: BTreeMap<String, String>,
    /// Think markers for thinking models; empty = detect from the vocabulary.
    pub think_open: Option<String>,
    pub think_close: Option<String>,
    /// How models without think tokens are made to think: `natural` (their own answer is the
    /// chain) or `instruct` (the instruction below asks for a chain and the marker).
    pub scaffold: crate::reasoning::plan::Scaffold,
    /// Marker that ends the scaffolded chain of thought on models without think tokens.
    pub scaffold_marker: String,
    /// Instruction appended to the system prompt by the `instruct` scaffold.
    pub scaffold_instruction: String,
    /// Text injected before the close marker when the budget runs out.
    pub budget_message: String,
    /// Cue injected after the close marker so the model writes the answer.
    pub answer_cue: String,
    /// Replaces an early close while below `min_thinking_tokens` (s1 extension).
    pub wait_text: String,
    pub max_extensions: u32,
    /// Tokens kept back for the answer when the request caps all tokens (`max_completion_tokens`).
    pub answer_reserve: u32,
    /// Cap on answer tokens once thinking is closed.
    pub answer_max_tokens: u32,
    /// Adaptive stopping: the Beta-rule threshold and the wave size.
    pub confidence: f64,
    pub wave_size: u32,
    /// `verifier: "tests"` with `adaptive`: samples per wave (each wave's programs are tested
    /// before the next starts), and how many programs that pass every test and behave alike end
    /// the choice.
    pub tests_wave: u32,
    pub tests_agree: u32,
    /// ... and the choice's first sample decoded greedily, alone, before the waves.
    pub tests_greedy_first: bool,
    /// ... and no wave starts once this many programs failed (0: every sample may run).
    pub tests_give_up: u32,
    /// The question the `self` verifier asks after a proposed answer (P(True) of "Yes").
    pub self_verifier_prompt: String,
    /// Second GGUF used as `verifier: "model"`.
    pub verifier_model: Option<PathBuf>,
    /// Recent request summaries kept for `/v1/feedback`.
    pub history_size: usize,
    /// Chain confidence (DeepConf): candidates per token, tokens per group, and the chain score
    /// (`lowest` group, `tail` group or `mean`) that prunes, keeps and weighs.
    pub confidence_top_k: usize,
    pub confidence_window: usize,
    pub confidence_score: crate::reasoning::confidence::ChainScore,
    /// `reasoning.prune: "confidence"` without `keep_top`: the share of first-wave chains the
    /// online threshold would keep (0.1 is DeepConf-low, 0.9 DeepConf-high).
    pub prune_keep_top: f64,
    /// `reasoning.prune: "confidence"` without `warmup`: chains in the calibrating first wave.
    pub prune_warmup: u32,
    /// `reasoning_effort: "auto"`: the cheapest setting whose accuracy is within this margin of
    /// the best measured one, among settings with at least `auto_min_graded` graded requests.
    pub auto_margin: f64,
    pub auto_min_graded: u64,
    /// A harness run (`results.jsonl`, or its directory) that gives `auto` a policy before the
    /// server has graded history of its own.
    pub auto_table: Option<PathBuf>,
}

impl ReasoningConfig {
    /// The plain values a request's plan starts from.
    pub fn policy(&self) -> crate::reasoning::plan::Policy {
        crate::reasoning::plan::Policy {
            budget: self.budget,
            format: self.format.clone(),
            effort_budgets: self.effort_budgets.clone(),
            effort_samples: self.effort_samples.clone(),
            effort_verifier: self.effort_verifier.clone(),
            scaffold: self.scaffold,
            confidence: self.confidence,
        }
    }
}

impl Default for ReasoningConfig {
    fn default() -> Self {
        let p = crate::reasoning::plan::Policy::default();
        Self {
            budget: p.budget,
            format: p.format,
            effort_budgets: p.effort_budgets,
            effort_samples: p.effort_samples,
            effort_verifier: p.effort_verifier,
            think_open: None,
            think_close: None,
            scaffold: p.scaffold,
            scaffold_marker: "Final answer:".into(),
            scaffold_instruction: "Think step by step. When you are done thinking, write \"Final answer:\" followed by the answer.".into(),
            budget_message: "\nI have to give the answer now.\n".into(),
            answer_cue: " ".into(),
            wait_text: "\nWait,".into(),
            max_extensions: 6,
            answer_reserve: 32,
            answer_max_tokens: 64,
            confidence: p.confidence,
            wave_size: 4,
            tests_wave: 2,
            tests_agree: 1,
            tests_greedy_first: true,
            tests_give_up: 7,
            self_verifier_prompt: "Is that final answer correct? Answer Yes or No.".into(),
            verifier_model: None,
            history_size: 10_000,
            confidence_top_k: 20,
            confidence_window: 32,
            confidence_score: Default::default(),
            prune_keep_top: 0.1,
            prune_warmup: 2,
            auto_margin: 0.03,
            auto_min_graded: 20,
            auto_table: None,
        }
    }
}

impl Config {
    pub fn load(args: &ServeArgs) -> anyhow::Result<Self> {
        let mut cfg = match &args.config {
            Some(path) => Self::from_file(path)?,
            None if Path::new("config/default.toml").exists() => Self::from_file(Path::new("config/default.toml"))?,
            None => Self::default(),
        };
        macro_rules! take {
            ($($field:ident),*) => { $( if let Some(v) = &args.$field { cfg.$field = v.clone().into(); } )* };
        }
        take!(
            model,
            model_alias,
            host,
            port,
            ctx_size,
            parallel,
            threads,
            batch_size,
            queue_size,
            api_key,
            backends_dir,
            cors_origins,
            backends
        );
        if args.backend_model.is_some() {
            cfg.backend_model = args.backend_model.clone();
        }
        if args.otlp_endpoint.is_some() {
            cfg.otlp_endpoint = args.otlp_endpoint.clone();
        }
        if let Some(t) = args.backend_timeout {
            cfg.backend_timeout = t;
        }
        if args.backend_api_key.is_some() {
            cfg.backend_api_key = args.backend_api_key.clone();
        }
        if args.gpu_layers.is_some() {
            cfg.gpu_layers = args.gpu_layers;
        }
        if let Some(b) = args.reasoning_budget {
            cfg.reasoning.budget = b;
        }
        cfg.test_hooks = args.test_hooks;
        if args.code_exec.is_some() {
            cfg.code_exec = args.code_exec;
        }
        if let Some(w) = args.cpu_wait {
            cfg.cpu_wait = w;
        }
        if let Some(c) = args.cache_type {
            cfg.cache_type = c;
        }
        if args.no_jinja {
            cfg.jinja = false;
        }
        if let Some(f) = &args.reasoning_format {
            cfg.reasoning.format = f.clone();
        }
        if args.auto_table.is_some() {
            cfg.reasoning.auto_table = args.auto_table.clone();
        }
        if args.verifier_model.is_some() {
            cfg.reasoning.verifier_model = args.verifier_model.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.parallel >= 1 && self.parallel <= 256, "parallel must be in 1..=256");
        anyhow::ensure!(self.ctx_size / self.parallel >= 256, "ctx_size must give every slot at least 256 tokens");
        anyhow::ensure!(self.batch_size >= 32, "batch_size must be at least 32");
        anyhow::ensure!(self.queue_size >= 1, "queue_size must be at least 1");
        anyhow::ensure!(
            matches!(self.reasoning.format.as_str(), "auto" | "deepseek" | "none"),
            "reasoning_format must be auto, deepseek or none"
        );
        anyhow::ensure!(self.reasoning.budget >= -1, "reasoning budget must be -1, 0 or positive");
        // The config's verifier names and sample counts are checked here, so a typo stops the
        // server at start-up instead of failing every request that names that effort level.
        for (level, name) in &self.reasoning.effort_verifier {
            crate::reasoning::plan::parse_verifier(name, "verifier")
                .map_err(|e| anyhow::anyhow!("reasoning.effort_verifier.{level}: {}", e.message))?;
        }
        for (level, n) in &self.reasoning.effort_samples {
            let r = crate::reasoning::params::SAMPLES;
            anyhow::ensure!((r.min..=r.max).contains(&i64::from(*n)), "reasoning.effort_samples.{level} must be in {}..={}", r.min, r.max);
        }
        let r = &self.reasoning;
        anyhow::ensure!(r.confidence_top_k >= 1, "reasoning.confidence_top_k must be at least 1");
        anyhow::ensure!(r.confidence_window >= 1, "reasoning.confidence_window must be at least 1");
        anyhow::ensure!(r.prune_keep_top > 0.0 && r.prune_keep_top <= 1.0, "reasoning.prune_keep_top must be in (0, 1]");
        anyhow::ensure!(r.prune_warmup >= 1, "reasoning.prune_warmup must be at least 1");
        anyhow::ensure!(r.tests_wave >= 1 && r.tests_agree >= 1, "reasoning.tests_wave and tests_agree must be at least 1");
        anyhow::ensure!((0.0..1.0).contains(&r.auto_margin), "reasoning.auto_margin must be in [0, 1)");
        anyhow::ensure!(self.verifier_timeout > 0.0, "verifier_timeout must be positive");
        let sb = &self.sandbox;
        anyhow::ensure!(
            sb.cpu_seconds >= 1 && sb.memory_mb >= 64 && sb.processes >= 1 && sb.open_files >= 16 && sb.concurrency >= 1,
            "sandbox limits: cpu_seconds and processes at least 1, memory_mb at least 64, open_files at least 16, concurrency at least 1"
        );
        anyhow::ensure!(
            sb.wall_seconds > 0.0 && sb.output_bytes >= 1024,
            "sandbox.wall_seconds must be positive and output_bytes at least 1024"
        );
        for (name, v) in &self.verifiers {
            anyhow::ensure!(v.url.starts_with("http://") || v.url.starts_with("https://"), "verifiers.{name}.url must be an http(s) URL");
        }
        for o in self.cors_origins.iter().filter(|o| *o != "*") {
            anyhow::ensure!(
                axum::http::HeaderValue::from_str(o).is_ok() && (o.starts_with("http://") || o.starts_with("https://")),
                "cors origin '{o}' must be '*' or a scheme and host such as http://localhost:3000"
            );
        }
        Ok(())
    }

    /// The id `/v1/models` reports and requests may name.
    pub fn model_id(&self) -> String {
        self.model_alias
            .clone()
            .unwrap_or_else(|| self.model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_parses_and_flags_override_it() {
        let args = ServeArgs {
            config: Some(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"))),
            port: Some(9999),
            reasoning_budget: Some(0),
            ..Default::default()
        };
        let cfg = Config::load(&args).unwrap();
        assert_eq!(cfg.port, 9999);
        assert_eq!(cfg.reasoning.budget, 0);
        assert_eq!(cfg.parallel, 8);
        assert_eq!(cfg.reasoning.effort_budgets["low"], 256);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<Config>("prot = 1").is_err());
    }

    #[test]
    fn a_config_typo_is_a_start_up_error_naming_the_key() {
        let mut cfg = Config::default();
        cfg.reasoning.effort_verifier.insert("high".into(), "arithmetc".into());
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("reasoning.effort_verifier.high") && e.contains("arithmetc"), "{e}");
        let mut cfg = Config::default();
        cfg.reasoning.effort_samples.insert("low".into(), 0);
        assert!(cfg.validate().unwrap_err().to_string().contains("reasoning.effort_samples.low"));
        let mut cfg = Config { cors_origins: vec!["localhost:3000".into()], ..Config::default() };
        assert!(cfg.validate().is_err());
        cfg.cors_origins = vec!["http://localhost:3000".into(), "*".into()];
        assert!(cfg.validate().is_ok());
    }
}
