//! A harness run read back as a scaling table, the `auto` policy's measurements before the server
//! has graded anything itself (`reasoning.auto_table`). It reads the files `thinkscale eval` writes
//! by their format alone: the server does not link the harness.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

use crate::reasoning::auto::{Budget, Measured, Setting};

/// The fields of a results.jsonl line (`eval::run::Record`) a table needs.
#[derive(Deserialize)]
struct Row {
    budget: String,
    samples: u32,
    correct: bool,
    thinking_tokens: f64,
    #[serde(default)]
    variant: String,
    error: Option<String>,
}

fn rows(path: &Path) -> anyhow::Result<Vec<Row>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // As the harness reads it: a run killed mid-write may leave a partial last line.
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// Settings measured by a run directory (or one of its files): `derived.json` cells voted by
/// majority (the vote an `auto` request uses), and `results.jsonl` cells of fixed settings that
/// derive did not cover. Effort-level cells are skipped: they are not settings of their own.
pub fn load(path: &Path) -> anyhow::Result<Vec<Measured>> {
    anyhow::ensure!(path.exists(), "{} does not exist", path.display());
    let (derived, results) = if path.is_dir() {
        (Some(path.join("derived.json")).filter(|p| p.exists()), Some(path.join("results.jsonl")).filter(|p| p.exists()))
    } else if path.extension().is_some_and(|e| e == "json") {
        (Some(path.to_path_buf()), None)
    } else {
        (None, Some(path.to_path_buf()))
    };
    anyhow::ensure!(derived.is_some() || results.is_some(), "{}: no derived.json or results.jsonl", path.display());
    let mut cells: BTreeMap<(String, u32), Measured> = BTreeMap::new();
    if let Some(p) = derived {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?)
            .with_context(|| format!("parsing {}", p.display()))?;
        for c in v["cells"].as_array().into_iter().flatten() {
            if !matches!(c["rule"].as_str(), Some("single" | "majority")) {
                continue;
            }
            let (Some(b), Some(k), Some(n), Some(acc), Some(tok)) = (
                c["budget"].as_str(),
                c["k"].as_u64(),
                c["questions"].as_u64(),
                c["accuracy"].as_f64(),
                c["mean_thinking_tokens"].as_f64(),
            ) else {
                continue;
            };
            let Some(budget) = Budget::parse(b) else { continue };
            let setting = Setting { budget, samples: k as u32 };
            let m = Measured { setting, graded: n, correct: (acc * n as f64).round() as u64, mean_thinking_tokens: tok };
            cells.insert((b.to_string(), k as u32), m);
        }
    }
    if let Some(p) = results {
        let mut sums: BTreeMap<(String, u32), (u64, u64, f64)> = BTreeMap::new();
        for r in rows(&p)?.into_iter().filter(|r| r.error.is_none() && r.variant.is_empty()) {
            let e = sums.entry((r.budget.clone(), r.samples)).or_default();
            e.0 += 1;
            e.1 += u64::from(r.correct);
            e.2 += r.thinking_tokens;
        }
        for ((b, k), (n, correct, tokens)) in sums {
            let Some(budget) = Budget::parse(&b) else { continue };
            cells.entry((b, k)).or_insert(Measured {
                setting: Setting { budget, samples: k },
                graded: n,
                correct,
                mean_thinking_tokens: tokens / n as f64,
            });
        }
    }
    anyhow::ensure!(!cells.is_empty(), "{}: no fixed (budget, samples) setting in it", path.display());
    Ok(cells.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_qwen_sweep_reads_as_a_table() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/runs/qwen-sweep");
        let cells = load(&dir).unwrap();
        let find = |b: Budget, k: u32| cells.iter().find(|c| c.setting == Setting { budget: b, samples: k }).unwrap();
        // docs/SCALING.md: one chain 63.0%, four by majority 78.0%, budget 128 52.0%.
        assert_eq!((find(Budget::Unlimited, 1).correct, find(Budget::Unlimited, 1).graded), (63, 100));
        assert_eq!(find(Budget::Unlimited, 4).correct, 78);
        assert_eq!(find(Budget::Tokens(128), 1).correct, 52);
        assert_eq!(find(Budget::Plain, 1).correct, 63);
        assert!(cells.iter().all(|c| c.graded == 100));
    }

    #[test]
    fn the_example_in_the_shipped_config_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let toml = std::fs::read_to_string(root.join("config/default.toml")).unwrap();
        let line = toml.lines().find_map(|l| l.strip_prefix("# auto_table = ")).expect("config/default.toml shows an auto_table");
        let path = line.split('"').nth(1).unwrap();
        assert!(!load(&root.join(path)).unwrap().is_empty(), "{path}");
    }

    #[test]
    fn a_missing_or_empty_table_is_an_error() {
        assert!(load(Path::new("/nonexistent/derived.json")).unwrap_err().to_string().contains("does not exist"));
        let dir = std::env::temp_dir().join(format!("thinkscale-table-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("results.jsonl"), "").unwrap();
        assert!(load(&dir).unwrap_err().to_string().contains("no fixed"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
