//! Cells derived offline from recorded chains (the usual way maj@k is reported): a run with
//! `--record --samples 8` keeps every chain of every question, and the 1-, 4- and 8-sample cells
//! under every vote rule are computed from them without generating again. The k-sample cell uses
//! each question's first k chains (sample seeds are consecutive, so they are the chains a k-sample
//! request would have drawn), and its cost is those k chains' tokens.

mod plot;
use plot::plot;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::report::budget_order;
use super::DeriveArgs;
use crate::reasoning::confidence::{keep_top, ChainScores};
use crate::reasoning::extract::{final_answer, normalise};
use crate::reasoning::grade::{frontier, mcnemar_p, wilson};
use crate::reasoning::plan::Aggregate;
use crate::reasoning::verify::arithmetic_score;
use crate::reasoning::vote::{decide, Ballot};

/// One generated chain as the server returned it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Chain {
    pub reasoning: String,
    pub content: String,
    pub thinking_tokens: f64,
    pub completion_tokens: f64,
    pub mean_logprob: Option<f64>,
    pub finish_reason: Option<String>,
    /// The chain's confidence scores, when the request measured them.
    #[serde(default)]
    pub confidence: Option<ChainScores>,
}

/// Every chain of one (budget, question) request: a line of chains.jsonl.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainRecord {
    pub budget: String,
    pub id: String,
    pub level: u32,
    pub expected: String,
    pub chains: Vec<Chain>,
}

/// A chat message's chain of thought, under either of the names servers give it.
pub fn message_reasoning(msg: &Value) -> &str {
    msg["reasoning_content"].as_str().or(msg["reasoning"].as_str()).unwrap_or("")
}

/// The chains of a chat response: a voted response lists its samples in the `thinkscale`
/// object; a single one is its message.
pub fn chains_of(v: &Value) -> Vec<Chain> {
    let choice = &v["choices"][0];
    let num = |x: &Value| x.as_f64().unwrap_or(0.0);
    if let Some(samples) = choice["thinkscale"]["samples"].as_array() {
        return samples
            .iter()
            .map(|s| Chain {
                reasoning: s["reasoning"].as_str().unwrap_or("").to_string(),
                content: s["content"].as_str().unwrap_or("").to_string(),
                thinking_tokens: num(&s["thinking_tokens"]),
                completion_tokens: num(&s["completion_tokens"]),
                mean_logprob: s["mean_logprob"].as_f64(),
                finish_reason: s["finish_reason"].as_str().map(str::to_string),
                confidence: serde_json::from_value(s["confidence"].clone()).ok(),
            })
            .collect();
    }
    let msg = &choice["message"];
    let usage = &v["usage"];
    vec![Chain {
        reasoning: message_reasoning(msg).to_string(),
        content: msg["content"].as_str().unwrap_or("").to_string(),
        thinking_tokens: num(&usage["completion_tokens_details"]["reasoning_tokens"]),
        completion_tokens: num(&usage["completion_tokens"]),
        mean_logprob: None,
        finish_reason: choice["finish_reason"].as_str().map(str::to_string),
        confidence: None,
    }]
}

/// How a derived cell chooses among its k chains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rule {
    /// One chain: no vote.
    Single,
    Majority,
    /// Arithmetic verifier, score-weighted vote.
    ArithmeticWeighted,
    /// Arithmetic verifier, best-scored chain.
    ArithmeticBest,
    /// Votes weighted by chain confidence (lowest group), among the most confident share of the
    /// chains in percent (DeepConf offline: 100 keeps all, 10 is DeepConf-low).
    Confidence(u8),
}

impl Rule {
    fn as_str(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Majority => "majority",
            Self::ArithmeticWeighted => "arithmetic-weighted",
            Self::ArithmeticBest => "arithmetic-best",
            Self::Confidence(100) => "confidence-weighted",
            Self::Confidence(50) => "confidence-top50",
            Self::Confidence(_) => "confidence-top10",
        }
    }

    /// The chosen answer of the chains under this rule.
    fn choose(self, chains: &[Chain]) -> Option<String> {
        let conf = |c: &Chain| c.confidence.map(|s| s.lowest);
        let kept = match self {
            Self::Confidence(pct) => keep_top(&chains.iter().map(|c| conf(c).unwrap_or(0.0)).collect::<Vec<_>>(), pct as f64 / 100.0),
            _ => vec![true; chains.len()],
        };
        let ballots: Vec<Ballot> = chains
            .iter()
            .zip(kept)
            .filter(|(_, k)| *k)
            .map(|(c, _)| c)
            .map(|c| {
                let answer = final_answer(&c.content, &c.reasoning);
                let score = match self {
                    Self::Single | Self::Majority | Self::Confidence(_) => None,
                    // As the server scores it: a chain with no arithmetic claim is neutral.
                    Self::ArithmeticWeighted | Self::ArithmeticBest => {
                        Some(arithmetic_score(&format!("{}\n{}", c.reasoning, c.content), answer.as_deref()).unwrap_or(0.5))
                    }
                };
                Ballot { answer, score, mean_logprob: c.mean_logprob.unwrap_or(0.0), confidence: conf(c) }
            })
            .collect();
        let aggregate = match self {
            Self::Single | Self::Majority => Aggregate::Majority,
            Self::ArithmeticWeighted => Aggregate::Weighted,
            Self::ArithmeticBest => Aggregate::Best,
            Self::Confidence(_) => Aggregate::Confidence,
        };
        decide(&ballots, aggregate).answer
    }
}

/// One derived (budget, k, rule) cell over every question recorded at that budget.
struct Derived {
    budget: String,
    k: usize,
    rule: Rule,
    /// Correctness per question id (for paired tests between cells).
    outcomes: BTreeMap<String, bool>,
    /// Thinking tokens of the k chains, per question id.
    thinking: BTreeMap<String, f64>,
    mean_tokens: f64,
    mean_thinking_tokens: f64,
    accuracy: f64,
    ci: (f64, f64),
}

impl Derived {
    fn label(&self) -> String {
        format!("{} k={} {}", self.budget, self.k, self.rule.as_str())
    }
    /// Series a cell belongs to in the plot: `plain` answers apart from thinking budgets.
    fn series(&self) -> (bool, usize, Rule) {
        (self.budget == "plain", self.k, self.rule)
    }
}

/// Paired p-value that two cells are equally accurate, over the questions both graded.
fn paired_p(a: &Derived, b: &Derived) -> f64 {
    let (mut only_a, mut only_b) = (0, 0);
    for (id, &x) in &a.outcomes {
        match b.outcomes.get(id) {
            Some(&y) if x && !y => only_a += 1,
            Some(&y) if y && !x => only_b += 1,
            _ => {}
        }
    }
    mcnemar_p(only_a, only_b)
}

// Long on purpose: builds one report top to bottom (cells, frontier, tests, files, plot).
pub fn derive(a: &DeriveArgs) -> anyhow::Result<()> {
    let path = a.dir.join("chains.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    // Latest record per (budget, question); a partial last line from a killed run is skipped.
    let mut latest: BTreeMap<(String, String), ChainRecord> = BTreeMap::new();
    for r in text.lines().filter_map(|l| serde_json::from_str::<ChainRecord>(l).ok()) {
        latest.insert((r.budget.clone(), r.id.clone()), r);
    }
    anyhow::ensure!(!latest.is_empty(), "no chains in {}", path.display());
    // Every cell is graded on the same questions (those recorded at every budget), so cells
    // compare, and paired tests pair, like with like; a run stopped early loses its last questions.
    let budgets: std::collections::BTreeSet<&str> = latest.keys().map(|(b, _)| b.as_str()).collect();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, id) in latest.keys() {
        *seen.entry(id.as_str()).or_default() += 1;
    }
    let common: std::collections::BTreeSet<String> =
        seen.into_iter().filter(|(_, n)| *n == budgets.len()).map(|(id, _)| id.to_string()).collect();
    let all_questions = latest.values().map(|r| r.id.as_str()).collect::<std::collections::BTreeSet<_>>().len();
    anyhow::ensure!(!common.is_empty(), "no question was recorded at every budget in {}", path.display());
    if common.len() < all_questions {
        println!("{} of {all_questions} questions were recorded at every budget; every cell is graded on those", common.len());
    }
    let mut by_budget: BTreeMap<String, Vec<&ChainRecord>> = BTreeMap::new();
    for r in latest.values().filter(|r| common.contains(&r.id)) {
        by_budget.entry(r.budget.clone()).or_default().push(r);
    }

    let mut cells: Vec<Derived> = Vec::new();
    for (budget, records) in &by_budget {
        let most = records.iter().map(|r| r.chains.len()).min().unwrap_or(0);
        for &k in a.k.iter().filter(|&&k| k >= 1 && k <= most) {
            let measured = records.iter().all(|r| r.chains[..k].iter().all(|c| c.confidence.is_some()));
            let mut rules = if k == 1 { vec![Rule::Single] } else { vec![Rule::Majority, Rule::ArithmeticWeighted, Rule::ArithmeticBest] };
            if k > 1 && measured {
                rules.extend([Rule::Confidence(100), Rule::Confidence(50), Rule::Confidence(10)]);
            }
            for rule in rules {
                let mut outcomes = BTreeMap::new();
                let mut per_question = BTreeMap::new();
                let mut tokens = 0.0;
                for r in records {
                    let chains = &r.chains[..k];
                    let want = normalise(r.expected.rsplit("####").next().unwrap_or(""));
                    let got = rule.choose(chains);
                    outcomes.insert(r.id.clone(), !want.is_empty() && got.as_deref() == Some(want.as_str()));
                    tokens += chains.iter().map(|c| c.completion_tokens).sum::<f64>();
                    per_question.insert(r.id.clone(), chains.iter().map(|c| c.thinking_tokens).sum::<f64>());
                }
                let thinking: f64 = per_question.values().sum();
                let n = outcomes.len() as u64;
                let correct = outcomes.values().filter(|c| **c).count() as u64;
                cells.push(Derived {
                    budget: budget.clone(),
                    k,
                    rule,
                    outcomes,
                    thinking: per_question,
                    mean_tokens: tokens / n as f64,
                    mean_thinking_tokens: thinking / n as f64,
                    accuracy: correct as f64 / n as f64,
                    ci: wilson(correct, n),
                });
            }
        }
    }
    cells.sort_by(|x, y| {
        (x.series(), budget_order(&x.budget)).partial_cmp(&(y.series(), budget_order(&y.budget))).unwrap_or(std::cmp::Ordering::Equal)
    });

    let points: Vec<(f64, f64)> = cells.iter().map(|c| (c.mean_tokens, c.accuracy)).collect();
    let on_frontier = frontier(&points);
    // The most accurate cell (the cheapest among equals) and the model's own single answer.
    let best = on_frontier.last().copied();
    let plain = cells.iter().position(|c| c.budget == "plain" && c.k == 1);

    let mut rows = Vec::new();
    let mut w = csv::Writer::from_path(a.dir.join("derived.csv"))?;
    w.write_record([
        "budget",
        "k",
        "rule",
        "questions",
        "accuracy",
        "ci_low",
        "ci_high",
        "mean_tokens",
        "mean_thinking_tokens",
        "frontier",
        "p_vs_best",
        "p_vs_plain",
    ])?;
    let mut md = String::from(
        "| budget | k | rule | questions | accuracy | 95% CI | tokens / question | thinking tokens | frontier | p vs best | p vs plain |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (i, c) in cells.iter().enumerate() {
        let p_best = best.map(|b| paired_p(c, &cells[b]));
        let p_plain = plain.map(|p| paired_p(c, &cells[p]));
        let fmt_p = |p: Option<f64>| p.map(|p| format!("{p:.3}")).unwrap_or_default();
        let on = on_frontier.contains(&i);
        w.write_record([
            c.budget.clone(),
            c.k.to_string(),
            c.rule.as_str().into(),
            c.outcomes.len().to_string(),
            format!("{:.4}", c.accuracy),
            format!("{:.4}", c.ci.0),
            format!("{:.4}", c.ci.1),
            format!("{:.1}", c.mean_tokens),
            format!("{:.1}", c.mean_thinking_tokens),
            on.to_string(),
            fmt_p(p_best),
            fmt_p(p_plain),
        ])?;
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.1}% | {:.1}–{:.1}% | {:.0} | {:.0} | {} | {} | {} |\n",
            c.budget,
            c.k,
            c.rule.as_str(),
            c.outcomes.len(),
            100.0 * c.accuracy,
            100.0 * c.ci.0,
            100.0 * c.ci.1,
            c.mean_tokens,
            c.mean_thinking_tokens,
            if on { "yes" } else { "" },
            fmt_p(p_best),
            fmt_p(p_plain),
        ));
        rows.push(json!({"budget": c.budget, "k": c.k, "rule": c.rule.as_str(), "questions": c.outcomes.len(), "accuracy": c.accuracy,
            "ci_low": c.ci.0, "ci_high": c.ci.1, "mean_tokens": c.mean_tokens, "mean_thinking_tokens": c.mean_thinking_tokens,
            "frontier": on, "p_vs_best": p_best, "p_vs_plain": p_plain}));
    }
    w.flush()?;
    let best_label = best.map(|b| cells[b].label());
    std::fs::write(a.dir.join("derived.json"), serde_json::to_string_pretty(&json!({"cells": rows, "best": best_label}))?)?;
    std::fs::write(a.dir.join("derived.md"), &md)?;
    plot(&a.dir.join("derived_accuracy_vs_tokens.svg"), &cells, &on_frontier)?;
    plot(&a.dir.join("derived_accuracy_vs_tokens.png"), &cells, &on_frontier)?;
    if let Some(url) = &a.post {
        post(url, &cells)?;
    }
    print!("{md}");
    if let Some(b) = best_label {
        println!("best: {b}; p vs best >= 0.05: not significantly different from it (exact McNemar, paired by question)");
    }
    println!("wrote {}/derived.{{csv,json,md}}, derived_accuracy_vs_tokens.{{svg,png}}", a.dir.display());
    Ok(())
}

/// Post every question of the single-chain and majority cells to a server's scaling table, under
/// the labels that server gives such a request (its table has no verifier dimension).
fn post(url: &str, cells: &[Derived]) -> anyhow::Result<()> {
    use crate::reasoning::labels::SamplesBucket;
    let client = reqwest::blocking::Client::new();
    let mut sent = 0;
    for c in cells.iter().filter(|c| matches!(c.rule, Rule::Single | Rule::Majority)) {
        let (effort, budget) = super::run::server_labels(&c.budget);
        let observations: Vec<Value> = c
            .outcomes
            .iter()
            .map(|(id, ok)| {
                json!({"effort": effort, "budget": budget, "samples": SamplesBucket::of(c.k as u32), "correct": ok,
                                   "thinking_seconds": 0.0, "thinking_tokens": c.thinking[id]})
            })
            .collect();
        let r = client
            .post(format!("{}/v1/scaling/observations", url.trim_end_matches('/')))
            .json(&json!({"observations": observations}))
            .send()?;
        anyhow::ensure!(r.status().is_success(), "posting to {url}: {} {}", r.status(), r.text().unwrap_or_default());
        sent += observations.len();
    }
    println!("posted {sent} observations to {url}/v1/scaling");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(reasoning: &str, content: &str) -> Chain {
        Chain {
            reasoning: reasoning.into(),
            content: content.into(),
            thinking_tokens: 10.0,
            completion_tokens: 12.0,
            mean_logprob: Some(-0.5),
            finish_reason: Some("stop".into()),
            confidence: None,
        }
    }

    fn confident(answer: &str, lowest: f64) -> Chain {
        Chain { confidence: Some(ChainScores { lowest, ..Default::default() }), ..chain("", answer) }
    }

    #[test]
    fn vote_rules_choose_as_the_server_does() {
        // Three chains agree on a slip; one gets the arithmetic right.
        let chains = [chain("2 + 2 = 5", "5"), chain("2 + 2 = 5", "5"), chain("2 + 2 = 5", "5"), chain("2 + 2 = 4", "4")];
        assert_eq!(Rule::Single.choose(&chains[..1]).as_deref(), Some("5"));
        assert_eq!(Rule::Majority.choose(&chains).as_deref(), Some("5"));
        assert_eq!(Rule::ArithmeticWeighted.choose(&chains).as_deref(), Some("4"));
        assert_eq!(Rule::ArithmeticBest.choose(&chains).as_deref(), Some("4"));
        // Confidence: three unsure chains against one sure one, weighted, then only the top share.
        let chains = [confident("5", 2.0), confident("5", 2.0), confident("5", 2.0), confident("4", 9.0)];
        assert_eq!(Rule::Confidence(100).choose(&chains).as_deref(), Some("4"));
        let chains = [confident("5", 2.0), confident("5", 3.0), confident("5", 2.0), confident("4", 7.0)];
        assert_eq!(Rule::Confidence(100).choose(&chains).as_deref(), Some("5"));
        assert_eq!(Rule::Confidence(10).choose(&chains).as_deref(), Some("4"));
        assert_eq!(Rule::Confidence(50).choose(&chains).as_deref(), Some("4"));
    }

    #[test]
    fn cells_come_from_the_first_k_chains_of_every_question() {
        let dir = std::env::temp_dir().join(format!("thinkscale-derive-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let right = || chain("3 + 4 = 7", "7");
        let wrong = || chain("3 + 4 = 8", "8");
        let records = [
            ChainRecord {
                budget: "64".into(),
                id: "a".into(),
                level: 1,
                expected: "3 + 4 = 7\n#### 7".into(),
                chains: vec![wrong(), right(), right(), right()],
            },
            ChainRecord {
                budget: "64".into(),
                id: "b".into(),
                level: 1,
                expected: "#### 7".into(),
                chains: vec![right(), wrong(), wrong(), wrong()],
            },
        ];
        // A second budget holds questions a and b only: question c (a run stopped before its
        // second budget) is left out of every cell, or the 64-token cells would lose accuracy.
        let short =
            |id: &str, c: Chain| ChainRecord { budget: "16".into(), id: id.into(), level: 1, expected: "#### 7".into(), chains: vec![c] };
        let extra = [
            ChainRecord {
                budget: "64".into(),
                id: "c".into(),
                level: 1,
                expected: "#### 7".into(),
                chains: vec![wrong(), wrong(), wrong(), wrong()],
            },
            short("a", right()),
            short("b", wrong()),
        ];
        let text: String = records.iter().chain(&extra).map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
        std::fs::write(dir.join("chains.jsonl"), text + "{partial").unwrap();
        derive(&DeriveArgs { dir: dir.clone(), k: vec![1, 4], post: None }).unwrap();
        let out: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("derived.json")).unwrap()).unwrap();
        let cell = |k: u64, rule: &str| {
            out["cells"].as_array().unwrap().iter().find(|c| c["budget"] == "64" && c["k"] == k && c["rule"] == rule).unwrap().clone()
        };
        // k = 1: the first chains (wrong, right); k = 4 majority: right, wrong; the verifier
        // finds the true claim in both questions.
        assert_eq!(cell(1, "single")["accuracy"], 0.5);
        assert_eq!(cell(4, "majority")["accuracy"], 0.5);
        assert_eq!(cell(4, "arithmetic-best")["accuracy"], 1.0);
        assert_eq!(cell(1, "single")["mean_tokens"], 12.0);
        assert_eq!(cell(4, "majority")["mean_tokens"], 48.0);
        assert_eq!(out["best"], "64 k=4 arithmetic-weighted");
        assert_eq!(cell(1, "single")["questions"], 2);
        assert!(dir.join("derived_accuracy_vs_tokens.png").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
