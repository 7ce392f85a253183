//! A program run against a test suite in the sandbox (`harness.py` does the Python side): how
//! many cases it passed, and what it gave on every case and probe input (its behaviour).

use serde::Serialize;
use serde_json::{json, Value};

use super::{Program, RunStatus, Sandbox, SandboxError};
use crate::reasoning::code::Suite;

const DRIVER: &str = include_str!("harness.py");

/// Probe inputs per program: enough to tell apart programs that pass the same examples.
pub const PROBES: usize = 16;

/// How a program did on a suite.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Cases in the suite (examples, asserts, or one `check`).
    pub cases: usize,
    pub passed: usize,
    /// Each case's outcome, in order (cases a cut-short run never reached count as failed).
    pub outcomes: Vec<bool>,
    /// The program loaded (parsed, ran its top level, defined the entry point).
    pub loaded: bool,
    /// Why it did not load, or how the run ended when not normally.
    pub error: Option<String>,
    /// Outputs on every case and probe, joined: equal keys, equal behaviour.
    #[serde(skip)]
    pub behaviour: String,
}

/// Runs `program` against `suite`; `probes` extra inputs derived from the cases' calls.
pub async fn run(sb: &Sandbox, program: &str, suite: &Suite, probes: usize) -> Result<Report, SandboxError> {
    run_with(sb, program, suite, probes, false).await
}

/// `run`, where `lenient` keeps the test statements that parse when the whole does not (tests a
/// model wrote, often cut short by its token cap).
pub async fn run_with(sb: &Sandbox, program: &str, suite: &Suite, probes: usize, lenient: bool) -> Result<Report, SandboxError> {
    let spec = json!({
        "program": program,
        "entry_point": suite.entry_point,
        "examples": suite.examples,
        "tests": suite.tests,
        "prelude": suite.prelude,
        "definitions_only": suite.definitions_only,
        "case_seconds": (sb.limits.wall_seconds / 4.0).clamp(0.5, 3.0),
        "probe_seconds": 0.5,
        "probes": probes,
        "lenient": lenient,
    });
    let p = Program { files: vec![("harness.py".into(), DRIVER.into())], main: "harness.py".into(), stdin: spec.to_string() };
    let run = sb.run(&p).await?;
    let mut r =
        Report { cases: suite.examples.len(), passed: 0, outcomes: Vec::new(), loaded: false, error: None, behaviour: String::new() };
    for line in run.stdout.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        if let Some(n) = v.get("cases").and_then(Value::as_u64) {
            r.cases = n as usize;
        } else if let Some(ok) = v.get("load").and_then(Value::as_bool) {
            r.loaded = ok;
            r.error = v.get("error").and_then(Value::as_str).map(str::to_string);
        } else if let Some(out) = v.get("output").and_then(Value::as_str) {
            if let Some(ok) = v.get("passed").and_then(Value::as_bool) {
                r.passed += usize::from(ok);
                r.outcomes.push(ok);
            }
            r.behaviour.push_str(out);
            r.behaviour.push('\u{1f}');
        }
    }
    r.outcomes.resize(r.cases, false);
    if r.error.is_none() && run.status != RunStatus::Exited(0) {
        r.error = Some(match run.status {
            RunStatus::TimedOut => "timed out".into(),
            RunStatus::OutputLimit => "wrote past the output limit".into(),
            RunStatus::Signalled(s) => format!("killed by signal {s}"),
            RunStatus::Exited(c) => format!("exited {c}: {}", run.stderr.lines().last().unwrap_or("")),
        });
    }
    Ok(r)
}
