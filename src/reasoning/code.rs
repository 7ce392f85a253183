//! Code answers checked by execution: the program in an answer, the examples in a prompt's
//! docstring, and choosing among sampled programs by what they do (AlphaCode's filter on the
//! problem's examples, then the largest group with identical behaviour, as in MBR-exec).

use serde::Serialize;

/// One docstring example: a call and the value it should give, both Python expressions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    pub call: String,
    pub expected: String,
}

/// What a program is run against.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Suite {
    /// The function the tests call (HumanEval's `check(candidate)` receives it).
    pub entry_point: Option<String>,
    pub examples: Vec<Example>,
    /// Python source: top-level asserts (each one case) and what they need, or a `check` function.
    pub tests: Option<String>,
    /// Source run before the program: the prompt's own imports, which a model completing a
    /// function often leaves out (`from typing import List`).
    pub prelude: String,
    /// Run only the program's imports, definitions and assignments, as EvalPlus's sanitizer does:
    /// a model's own example calls or asserts at top level do not sink the function it wrote.
    pub definitions_only: bool,
}

impl Suite {
    /// What `verifier: "tests"` runs a program of this prompt against: the client's `tests`, else
    /// the prompt's docstring examples; the prompt's imports first, and the program's definitions
    /// only (the model's own top-level example calls are not what is tested).
    pub fn for_prompt(prompt: &str, entry_point: Option<String>, tests: Option<String>) -> Self {
        let examples = if tests.is_some() { Vec::new() } else { examples(prompt, entry_point.as_deref()) };
        Self { entry_point, examples, tests, prelude: imports(prompt), definitions_only: true }
    }

    pub fn is_empty(&self) -> bool {
        self.examples.is_empty() && self.tests.is_none()
    }
}

/// The program in an answer: the last fenced block tagged python (or untagged), else the whole
/// text when it reads as code (starts with `def`, `import`, `from` or `class`).
pub fn program(answer: &str) -> Option<String> {
    let mut blocks = Vec::new();
    let mut rest = answer;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let (tag, body) = after.split_once('\n').unwrap_or((after, ""));
        let Some(end) = body.find("```") else {
            // An unclosed block (cut by max_tokens) is still the program so far.
            blocks.push((tag.trim().to_lowercase(), body.to_string()));
            break;
        };
        blocks.push((tag.trim().to_lowercase(), body[..end].to_string()));
        rest = &body[end + 3..];
    }
    let code = blocks.iter().rev().find(|(tag, _)| matches!(tag.as_str(), "python" | "py" | "python3" | "")).map(|(_, b)| b.clone());
    match code {
        Some(c) if !c.trim().is_empty() => Some(c),
        _ => {
            let t = answer.trim_start();
            ["def ", "import ", "from ", "class "].iter().any(|k| t.starts_with(k)).then(|| answer.to_string())
        }
    }
}

/// The prompt's import lines, for `Suite::prelude`.
pub fn imports(prompt: &str) -> String {
    prompt.lines().filter(|l| l.starts_with("import ") || l.starts_with("from ")).collect::<Vec<_>>().join("\n")
}

/// The function a prompt asks for: the last `def NAME(` in it.
pub fn entry_point(prompt: &str) -> Option<String> {
    prompt
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("def "))
        .filter_map(|r| r.split_once('(').map(|(n, _)| n.trim().to_string()))
        .rfind(|n| is_identifier(n))
}

fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_alphabetic() || f == '_') && c.all(|x| x.is_alphanumeric() || x == '_')
}

/// Examples in a prompt's docstrings: `>>> call` followed by its expected line, or `>>> call == value`; lines such as
/// `entry(args) == value`, `➞ value`, `-> value`, `=> value`, `# returns value` or `= value`;
/// `Input: args` followed by `Output: value`; and `For x = args the output should be value`.
/// The arguments of the last two are passed as written (`arr = [1], k = 2` becomes keywords).
pub fn examples(prompt: &str, entry: Option<&str>) -> Vec<Example> {
    let lines: Vec<&str> = prompt.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if let Some(call) = line.strip_prefix(">>>") {
            let call = call.trim();
            let expected =
                lines.get(i + 1).map(|l| l.trim()).filter(|l| !l.is_empty() && !l.starts_with(">>>") && !l.starts_with("\"\"\""));
            // `>>> f(x) == y` on one line, with or without a `True` line after it.
            if let Some(ex) = entry.and_then(|name| arrow_example(call, name)) {
                out.push(ex);
                i += if expected == Some("True") { 2 } else { 1 };
                continue;
            }
            if let Some(e) = expected {
                if is_call(call) {
                    out.push(Example { call: call.to_string(), expected: e.to_string() });
                }
                i += 2;
                continue;
            }
        } else if let Some(name) = entry.filter(|_| !line.starts_with("def ")) {
            if let Some(ex) = arrow_example(line, name).or_else(|| for_example(line, name)) {
                out.push(ex);
            } else if let Some(args) = strip_label(line, "input") {
                let output = lines.get(i + 1).and_then(|l| strip_label(l.trim(), "output"));
                if let (false, Some(value)) = (args.is_empty(), output) {
                    out.push(Example { call: format!("{name}({args})"), expected: value_text(value) });
                    i += 2;
                    continue;
                }
            }
        }
        i += 1;
    }
    out.dedup();
    out
}

fn is_call(s: &str) -> bool {
    s.contains('(') && s.ends_with(')') && !s.starts_with("import") && !s.contains(" = ")
}

/// `Label: text` (any case), the text trimmed.
fn strip_label<'a>(line: &'a str, label: &str) -> Option<&'a str> {
    let (head, rest) = line.split_once(':')?;
    head.trim().eq_ignore_ascii_case(label).then(|| rest.trim())
}

/// An expected value as written, without a trailing comment or full stop.
fn value_text(v: &str) -> String {
    let v = v.split(" #").next().unwrap_or(v).trim();
    v.trim_end_matches(['.', ',', ';']).trim().to_string()
}

/// `For x = args the output should be value` (HumanEval's other phrasing).
fn for_example(line: &str, name: &str) -> Option<Example> {
    let rest = line.strip_prefix("For ").or_else(|| line.strip_prefix("for "))?;
    let (args, value) = rest.split_once(" the output should be ")?;
    let args = args.split(", the ").next().unwrap_or(args).trim().trim_end_matches(',');
    let value = value_text(value);
    (args.contains('=') && !value.is_empty()).then(|| Example { call: format!("{name}({args})"), expected: value })
}

/// `name(args) SEP value` with SEP one of `==`, `➞`, `->`, `=>`, `returns`, `should return`, `=`.
fn arrow_example(line: &str, name: &str) -> Option<Example> {
    let start = line.find(&format!("{name}("))?;
    if start > 0 && line[..start].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
        return None;
    }
    let text = &line[start..];
    let close = matching_paren(text)?;
    let call = &text[..=close];
    let rest = text[close + 1..].trim_start().trim_start_matches('#').trim_start();
    let value = ["==>", "==", "➞", "->", "=>", "should return", "returns", "="].iter().find_map(|sep| rest.strip_prefix(sep))?.trim();
    let value = value.trim_end_matches(['.', ',', ';']).trim();
    (!value.is_empty()).then(|| Example { call: call.to_string(), expected: value.to_string() })
}

/// Index of the parenthesis closing the first one opened, skipping quoted text.
fn matching_paren(s: &str) -> Option<usize> {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The top-level `assert` statements in a model's answer (its program's, or the whole text's):
/// the tests it wrote, one per line, continuation lines kept with their assert.
pub fn asserts(answer: &str) -> String {
    let text = program(answer).unwrap_or_else(|| answer.to_string());
    let mut out: Vec<String> = Vec::new();
    let mut open = false;
    for line in text.lines() {
        if line.starts_with("assert ") {
            out.push(line.to_string());
            open = line.matches(['(', '[', '{']).count() > line.matches([')', ']', '}']).count();
        } else if open && line.starts_with([' ', '\t', ')', ']', '}']) {
            if let Some(last) = out.last_mut() {
                last.push('\n');
                last.push_str(line);
                open = last.matches(['(', '[', '{']).count() > last.matches([')', ']', '}']).count();
            }
        } else {
            open = false;
        }
    }
    out.join("\n")
}

/// CodeT's dual execution agreement: samples that pass exactly the same generated tests form a
/// consensus set, scored by its size times the tests it passes; the best set wins, equal scores
/// by their most confident sample. `outcomes[i]`: which tests sample i passed (None: no program).
pub fn dual_agreement(outcomes: &[Option<Vec<bool>>], confidence: &[f64]) -> Selection {
    let mut keys: Vec<&Vec<bool>> = Vec::new();
    let groups: Vec<Option<usize>> = outcomes
        .iter()
        .map(|o| {
            o.as_ref().map(|v| match keys.iter().position(|k| *k == v) {
                Some(g) => g,
                None => {
                    keys.push(v);
                    keys.len() - 1
                }
            })
        })
        .collect();
    let score = |g: usize| {
        let size = groups.iter().filter(|x| **x == Some(g)).count();
        (size, keys[g].iter().filter(|p| **p).count())
    };
    let best_conf =
        |g: usize| (0..outcomes.len()).filter(|&i| groups[i] == Some(g)).map(|i| confidence[i]).fold(f64::NEG_INFINITY, f64::max);
    let Some(best) = (0..keys.len()).max_by(|&a, &b| {
        let (sa, sb) = (score(a), score(b));
        (sa.0 * sa.1).cmp(&(sb.0 * sb.1)).then(best_conf(a).total_cmp(&best_conf(b))).then(b.cmp(&a))
    }) else {
        return Selection { chosen: None, groups, reason: "no sample wrote a program".into() };
    };
    let chosen =
        (0..outcomes.len()).filter(|&i| groups[i] == Some(best)).max_by(|&a, &b| confidence[a].total_cmp(&confidence[b]).then(b.cmp(&a)));
    let (size, passed) = score(best);
    let reason = format!(
        "dual execution agreement: its set of {size} samples passes the same {passed}/{} generated tests (score {}), the best of {} sets",
        keys[best].len(),
        size * passed,
        keys.len()
    );
    Selection { chosen, groups, reason }
}

/// One sample's execution, as selection reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    /// The answer held a program.
    pub has_program: bool,
    pub passed: usize,
    /// What the program gave on every case, as one key: equal keys, equal behaviour.
    pub behaviour: String,
    /// The chain's confidence (or mean log-prob): breaks ties between equal groups.
    pub confidence: f64,
}

/// The choice among executed samples, with each sample's behaviour group (numbered by first
/// appearance) and why the winner won.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selection {
    pub chosen: Option<usize>,
    pub groups: Vec<Option<usize>>,
    pub reason: String,
}

/// Among the samples that pass the most cases, the largest group with identical behaviour wins;
/// equal groups by their best confidence; within the group, its most confident sample.
pub fn select(runs: &[Executed], cases: usize) -> Selection {
    let mut keys: Vec<&str> = Vec::new();
    let groups: Vec<Option<usize>> = runs
        .iter()
        .map(|r| {
            r.has_program.then(|| match keys.iter().position(|k| *k == r.behaviour) {
                Some(g) => g,
                None => {
                    keys.push(&r.behaviour);
                    keys.len() - 1
                }
            })
        })
        .collect();
    let with_program: Vec<usize> = (0..runs.len()).filter(|&i| runs[i].has_program).collect();
    let Some(best) = with_program.iter().map(|&i| runs[i].passed).max() else {
        return Selection { chosen: None, groups, reason: "no sample wrote a program".into() };
    };
    let top: Vec<usize> = with_program.into_iter().filter(|&i| runs[i].passed == best).collect();
    let mut tally: Vec<(usize, usize, f64)> = Vec::new(); // (group, size, best confidence)
    for &i in &top {
        let g = groups[i].unwrap_or(0);
        match tally.iter_mut().find(|t| t.0 == g) {
            Some(t) => {
                t.1 += 1;
                t.2 = t.2.max(runs[i].confidence);
            }
            None => tally.push((g, 1, runs[i].confidence)),
        }
    }
    let &(group, size, _) = tally.iter().max_by(|a, b| a.1.cmp(&b.1).then(a.2.total_cmp(&b.2)).then(b.0.cmp(&a.0))).unwrap_or(&(0, 0, 0.0));
    let chosen = top
        .iter()
        .copied()
        .filter(|&i| groups[i] == Some(group))
        .max_by(|&a, &b| runs[a].confidence.total_cmp(&runs[b].confidence).then(b.cmp(&a)));
    let groups_at_top = tally.len();
    let reason = format!(
        "passed {best}/{cases} cases, as {} of {} samples did; its behaviour group holds {size} of them{}",
        top.len(),
        runs.len(),
        if groups_at_top > 1 { format!(" (largest of {groups_at_top} groups)") } else { String::new() }
    );
    Selection { chosen, groups, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMPT: &str = "from typing import List\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n    \"\"\" Check if ...\n    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)\n    False\n    >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)\n    True\n    \"\"\"\n";

    #[test]
    fn docstring_examples_and_entry_point() {
        assert_eq!(entry_point(PROMPT).as_deref(), Some("has_close_elements"));
        let ex = examples(PROMPT, Some("has_close_elements"));
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[0], Example { call: "has_close_elements([1.0, 2.0, 3.0], 0.5)".into(), expected: "False".into() });
        assert_eq!(ex[1].expected, "True");
        assert_eq!(imports(PROMPT), "from typing import List");
    }

    #[test]
    fn one_line_doctest_equalities() {
        // Made-up docstrings in the phrasings HumanEval uses (none of its prompts is quoted).
        let p = "def odd_count(xs):\n    \"\"\"\n    >>> odd_count([]) == 0\n    >>> odd_count([3, 4, -5]) == 2\n    >>> odd_count([7]) == 1\n    True\n    >>> odd_count([8])\n    0\n    \"\"\"";
        let ex = examples(p, Some("odd_count"));
        let got: Vec<(&str, &str)> = ex.iter().map(|e| (e.call.as_str(), e.expected.as_str())).collect();
        assert_eq!(got, [("odd_count([])", "0"), ("odd_count([3, 4, -5])", "2"), ("odd_count([7])", "1"), ("odd_count([8])", "0")]);
    }

    #[test]
    fn arrow_and_equality_examples() {
        let p = "def f(x):\n    \"\"\"\n    f(3) ➞ 9\n    f('a, b') == 'A'\n    f([1, (2)]) -> [1]\n    g(2) == 4\n    notf(2) == 3\n    \"\"\"";
        let ex = examples(p, Some("f"));
        let calls: Vec<&str> = ex.iter().map(|e| e.call.as_str()).collect();
        assert_eq!(calls, ["f(3)", "f('a, b')", "f([1, (2)])"]);
        assert_eq!(ex[1].expected, "'A'");
    }

    #[test]
    fn input_output_and_for_phrasings() {
        let p = "def top(nums, n):\n    Example 1:\n        Input: nums = [7, -2, 9], n = 2\n        Output: [9, 7]\n\n    Example 2:\n        Input: [5,1,6]\n        Output: [6, 2] # value and index\n    For xs = [2,4] the output should be 20\n    For k = 250, the digits add up to 7 the output should be \"111\".\n    last_gap([3,1,2]) = 1\n    g(6)   # returns \"ab110ab\"";
        let ex = examples(p, Some("top"));
        assert_eq!(ex[0], Example { call: "top(nums = [7, -2, 9], n = 2)".into(), expected: "[9, 7]".into() });
        assert_eq!(ex[1], Example { call: "top([5,1,6])".into(), expected: "[6, 2]".into() });
        assert_eq!(ex[2], Example { call: "top(xs = [2,4])".into(), expected: "20".into() });
        assert_eq!(ex[3], Example { call: "top(k = 250)".into(), expected: "\"111\"".into() });
        assert_eq!(ex.len(), 4);
        assert_eq!(examples("    last_gap([3,1,2]) = 1", Some("last_gap"))[0].expected, "1");
        assert_eq!(examples("    g(6)   # returns \"ab110ab\"", Some("g"))[0].expected, "\"ab110ab\"");
    }

    #[test]
    fn program_is_the_last_python_block() {
        let a = "Here:\n```python\ndef a(): pass\n```\nand\n```python\ndef b(): return 1\n```\nDone.";
        assert_eq!(program(a).as_deref(), Some("def b(): return 1\n"));
        assert_eq!(program("```\nx = 1\n```").as_deref(), Some("x = 1\n"));
        assert_eq!(program("def f():\n    return 2").as_deref(), Some("def f():\n    return 2"));
        assert_eq!(program("```python\ndef f():\n    return"), Some("def f():\n    return".into()));
        assert_eq!(program("The answer is 4."), None);
        assert_eq!(program("```text\nhello\n```"), None);
    }

    fn ex(has: bool, passed: usize, b: &str, c: f64) -> Executed {
        Executed { has_program: has, passed, behaviour: b.into(), confidence: c }
    }

    #[test]
    fn most_passed_then_largest_group_then_confidence() {
        // Two pass everything with different behaviour on hidden inputs; three pass less but agree.
        let runs = [
            ex(true, 2, "a", 0.1),
            ex(true, 3, "b", 0.2),
            ex(true, 3, "c", 0.9),
            ex(true, 2, "a", 0.3),
            ex(true, 3, "b", 0.5),
            ex(false, 0, "", 1.0),
        ];
        let s = select(&runs, 3);
        assert_eq!(s.chosen, Some(4), "group b (2 samples) beats c (1); its most confident member");
        assert_eq!(s.groups, vec![Some(0), Some(1), Some(2), Some(0), Some(1), None]);
        assert!(s.reason.contains("passed 3/3"), "{}", s.reason);
        // Equal groups: the one holding the most confident sample.
        let s = select(&[ex(true, 1, "x", 0.2), ex(true, 1, "y", 0.8)], 1);
        assert_eq!(s.chosen, Some(1));
        assert_eq!(select(&[ex(false, 0, "", 0.0)], 2).chosen, None);
    }

    #[test]
    fn asserts_are_read_from_the_models_tests() {
        let a = "Tests:\n```python\nfrom m import f\nassert f(1) == 2\nassert f(\n    2) == 3\nprint('x')\n    assert nested\n```";
        assert_eq!(asserts(a), "assert f(1) == 2\nassert f(\n    2) == 3");
        assert_eq!(asserts("no tests here"), "");
    }

    #[test]
    fn dual_agreement_weighs_set_size_by_tests_passed() {
        let t = |v: &[bool]| Some(v.to_vec());
        // Three agree on passing 2 of 3 (score 6); one passes all 3 alone (score 3).
        let runs = [t(&[true, true, false]), t(&[true, true, true]), t(&[true, true, false]), None, t(&[true, true, false])];
        let s = dual_agreement(&runs, &[0.1, 0.9, 0.3, 1.0, 0.2]);
        assert_eq!(s.chosen, Some(2));
        assert_eq!(s.groups, vec![Some(0), Some(1), Some(0), None, Some(0)]);
        assert!(s.reason.contains("score 6"), "{}", s.reason);
        assert_eq!(dual_agreement(&[None], &[0.0]).chosen, None);
    }

    proptest::proptest! {
        #[test]
        fn the_chosen_sample_passes_the_most(runs in proptest::collection::vec((proptest::bool::ANY, 0usize..4, 0u8..3, 0.0f64..1.0), 1..10)) {
            let runs: Vec<Executed> = runs.into_iter().map(|(h, p, b, c)| ex(h, p, &b.to_string(), c)).collect();
            let s = select(&runs, 3);
            match s.chosen {
                Some(i) => {
                    proptest::prop_assert!(runs[i].has_program);
                    let best = runs.iter().filter(|r| r.has_program).map(|r| r.passed).max().unwrap();
                    proptest::prop_assert_eq!(runs[i].passed, best);
                }
                None => proptest::prop_assert!(runs.iter().all(|r| !r.has_program)),
            }
        }
    }
}
