//! The service layer between HTTP and the backends. `infer` is the one entry handlers call;
//! `validate` is the only gate (a raw body becomes
//! a validated job or an `Invalid`, the one enum of its refusals); `pipeline` submits jobs and
//! reads their events into the `Update`s handlers see; `vote` turns a sample group into one answer; `grading`
//! keeps what requests answered and the accuracy-vs-compute table `reasoning_effort: "auto"` reads;
//! `trace` turns a job's events into its spans. Nothing here knows HTTP or OpenAI's wire types: `api/` maps results and errors onto them.

mod auto_table;
mod grading;
pub mod infer;
mod invalid;
mod pipeline;
mod request;
mod trace;
mod validate;
mod verify;
mod vote;

// The one door beside `infer`: what `api/` (and the fuzz targets) see of the service.
pub use grading::{feedback as record_feedback, observe, scaling_table, AutoDecision, Feedback, FeedbackError};
pub use invalid::Invalid;
pub use pipeline::{Collector, Failure, Reader, Sequences, Update};
pub use pipeline::{Outcome, VoteDetail};
pub use request::{parse_object, typed, Common};
pub use trace::TARGET as TRACE_TARGET;
pub use validate::{chat_request_schema, completion_request_schema, conversation, Body};

use std::sync::{Arc, OnceLock};

use crate::backend::Backend;
pub use crate::backend::EngineFault;
use crate::config::Config;

/// What every request is served with: the configuration, the backend once it is up, the grading
/// history and the measured settings for `auto`.
#[derive(Clone)]
pub struct Service {
    pub cfg: Arc<Config>,
    /// Set once the model is loaded (or the remote engines answered); until then generation
    /// answers 503 and /health says loading.
    pub backend: Arc<OnceLock<Arc<dyn Backend>>>,
    pub history: Arc<std::sync::Mutex<grading::History>>,
    /// Why the engine thread stopped, once it has failed: /health answers 503 with it.
    pub engine_failure: Arc<OnceLock<String>>,
    /// Settings measured by a harness run (`reasoning.auto_table`), for `reasoning_effort: "auto"`.
    pub auto_table: Arc<Vec<crate::reasoning::auto::Measured>>,
    /// The reasoning defaults every request's plan starts from (built once from the config).
    pub policy: Arc<crate::reasoning::plan::Policy>,
    /// Where `verifier: "tests"` runs programs; None unless `code_exec` is set.
    pub sandbox: Option<Arc<crate::sandbox::Sandbox>>,
    /// For operator-configured HTTP checkers.
    pub http: reqwest::Client,
}

impl Service {
    /// Fails when the configured `auto_table` cannot be read.
    pub fn new(cfg: Arc<Config>) -> anyhow::Result<Self> {
        let history = Arc::new(grading::History::new(cfg.reasoning.history_size));
        let table = match &cfg.reasoning.auto_table {
            Some(p) => auto_table::load(p).map_err(|e| anyhow::anyhow!("reasoning.auto_table: {e:#}"))?,
            None => Vec::new(),
        };
        Ok(Self {
            policy: Arc::new(cfg.reasoning.policy()),
            cfg,
            backend: Arc::new(OnceLock::new()),
            history,
            engine_failure: Arc::new(OnceLock::new()),
            auto_table: Arc::new(table),
            sandbox: None,
            http: reqwest::Client::new(),
        })
    }

    /// With `code_exec` set, starts the sandbox (and proves it isolates) or fails naming what is
    /// missing.
    pub async fn with_code_exec(mut self) -> anyhow::Result<Self> {
        if let Some(lang) = self.cfg.code_exec {
            let sb = crate::sandbox::Sandbox::new(lang, self.cfg.sandbox.clone())
                .await
                .map_err(|e| anyhow::anyhow!("--code-exec {}: {e}", lang.as_str()))?;
            tracing::info!(language = lang.as_str(), guards = %sb.guards(), limits = ?sb.limits, "code execution enabled in the sandbox");
            self.sandbox = Some(Arc::new(sb));
        }
        Ok(self)
    }

    pub fn backend(&self) -> Result<Arc<dyn Backend>, Failure> {
        self.backend.get().cloned().ok_or_else(|| Failure::Unavailable("The model is still loading".into()))
    }

    /// What /health reports: loading, failed (the engine's reason), or the backend's state.
    pub fn readiness(&self) -> Readiness {
        if let Some(reason) = self.engine_failure.get() {
            return Readiness::Failed(reason.clone());
        }
        match self.backend.get().map(|b| b.health()) {
            None => Readiness::Loading,
            Some(Err(reason)) => Readiness::Failed(reason.to_string()),
            Some(Ok(h)) => Readiness::Ready(h),
        }
    }

    /// The model's metadata for /v1/models, once loaded.
    pub fn model_meta(&self) -> Option<serde_json::Value> {
        self.backend.get().map(|b| b.meta())
    }

    /// Tokens of context each slot holds, once loaded.
    pub fn slot_ctx(&self) -> Option<u32> {
        self.backend.get().map(|b| b.slot_ctx())
    }

    /// Test hook: the engine fails at its next step.
    pub fn fail_engine_for_test(&self, how: EngineFault) -> Result<(), Failure> {
        self.backend().map(|b| b.fail_for_test(how))
    }
}

/// Whether the server can answer, for /health.
pub enum Readiness {
    Loading,
    Failed(String),
    Ready(crate::backend::Health),
}
