//! Verifier scores in [0, 1]: the programmatic arithmetic checker, mean log-probability, and
//! P(True) read from Yes/No logits.

/// An arithmetic claim found in a chain, e.g. `48 + 23 = 71`.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub expr: String,
    pub stated: f64,
    pub actual: f64,
}

impl Claim {
    pub fn holds(&self) -> bool {
        (self.actual - self.stated).abs() <= 1e-6 * self.stated.abs().max(1.0)
    }
}

/// Every `expression = number` in the text whose expression has at least one operator.
/// Chains (`2 + 3 = 5 + 4 = 9`) give one claim per `=`.
pub fn claims(text: &str) -> Vec<Claim> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    for (i, c) in chars.iter().enumerate() {
        if *c != '=' {
            continue;
        }
        let mut start = i;
        while start > 0 && is_expr_char(chars[start - 1]) {
            start -= 1;
        }
        let left: String = chars[start..i].iter().collect();
        let Some(stated) = number_after(&chars[i + 1..]) else { continue };
        // Drop leading words or symbols until what is left parses.
        let mut expr = left.trim();
        while !expr.is_empty() {
            if let Some(actual) = eval(expr).filter(|_| has_operator(expr)) {
                out.push(Claim { expr: expr.to_string(), stated, actual });
                break;
            }
            let mut it = expr.char_indices();
            it.next();
            expr = it.next().map_or("", |(k, _)| &expr[k..]).trim_start();
        }
    }
    out
}

fn is_expr_char(c: char) -> bool {
    c.is_ascii_digit() || " .,+-*/()×x÷$".contains(c)
}

fn has_operator(expr: &str) -> bool {
    let t = expr.trim_start_matches(['-', ' ', '(']);
    t.contains(['+', '*', '/', '×', 'x', '÷']) || t.contains('-')
}

fn number_after(rest: &[char]) -> Option<f64> {
    let s: String = rest.iter().take(40).collect();
    let s = s.trim_start().trim_start_matches('$').trim_start();
    let mut end = 0;
    for (k, c) in s.char_indices() {
        let ok =
            c.is_ascii_digit() || (k == 0 && c == '-') || ((c == '.' || c == ',') && s[k + 1..].starts_with(|d: char| d.is_ascii_digit()));
        if !ok {
            break;
        }
        end = k + c.len_utf8();
    }
    s[..end].replace(',', "").parse().ok()
}

/// Evaluate + - × / with precedence and parentheses; None when the text is not such an expression.
pub fn eval(expr: &str) -> Option<f64> {
    let tokens = lex(expr)?;
    let mut p = Parser { t: &tokens, i: 0 };
    let v = p.sum()?;
    (p.i == tokens.len() && v.is_finite()).then_some(v)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Num(f64),
    Op(char),
    Open,
    Close,
}

fn lex(s: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        match c {
            ' ' | '$' => i += 1,
            '0'..='9' | '.' => {
                let mut j = i;
                let mut num = String::new();
                while j < cs.len()
                    && (cs[j].is_ascii_digit() || cs[j] == '.' || (cs[j] == ',' && j + 1 < cs.len() && cs[j + 1].is_ascii_digit()))
                {
                    if cs[j] != ',' {
                        num.push(cs[j]);
                    }
                    j += 1;
                }
                out.push(Tok::Num(num.parse().ok()?));
                i = j;
            }
            '+' | '-' => {
                out.push(Tok::Op(c));
                i += 1;
            }
            '*' | '×' | 'x' => {
                out.push(Tok::Op('*'));
                i += 1;
            }
            '/' | '÷' => {
                out.push(Tok::Op('/'));
                i += 1;
            }
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

struct Parser<'a> {
    t: &'a [Tok],
    i: usize,
}

impl Parser<'_> {
    fn sum(&mut self) -> Option<f64> {
        let mut v = self.product()?;
        while let Some(Tok::Op(op @ ('+' | '-'))) = self.t.get(self.i).copied() {
            self.i += 1;
            let r = self.product()?;
            v = if op == '+' { v + r } else { v - r };
        }
        Some(v)
    }
    fn product(&mut self) -> Option<f64> {
        let mut v = self.atom()?;
        while let Some(Tok::Op(op @ ('*' | '/'))) = self.t.get(self.i).copied() {
            self.i += 1;
            let r = self.atom()?;
            v = if op == '*' { v * r } else { v / r };
        }
        Some(v)
    }
    fn atom(&mut self) -> Option<f64> {
        match self.t.get(self.i).copied()? {
            Tok::Num(n) => {
                self.i += 1;
                Some(n)
            }
            Tok::Op('-') => {
                self.i += 1;
                Some(-self.atom()?)
            }
            Tok::Open => {
                self.i += 1;
                let v = self.sum()?;
                (self.t.get(self.i) == Some(&Tok::Close)).then(|| self.i += 1)?;
                Some(v)
            }
            _ => None,
        }
    }
}

/// Share of true claims in the chain; a final answer that contradicts the last claim's result
/// halves the score. None when the chain makes no arithmetic claim.
pub fn arithmetic_score(chain: &str, answer: Option<&str>) -> Option<f64> {
    let found = claims(chain);
    let last = found.last()?;
    let mut score = found.iter().filter(|c| c.holds()).count() as f64 / found.len() as f64;
    if let Some(a) = answer.and_then(|a| a.parse::<f64>().ok()) {
        if (a - last.stated).abs() > 1e-6 * a.abs().max(1.0) {
            score *= 0.5;
        }
    }
    Some(score)
}

/// The log-prob verifier: geometric-mean token probability of the chain.
pub fn logprob_score(mean_logprob: f64) -> f64 {
    mean_logprob.exp().clamp(0.0, 1.0)
}

/// P(True): the probability of "Yes" against "No" from raw logits of their token variants.
pub fn p_true(logits: &[f32], yes: &[usize], no: &[usize]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mass = |ids: &[usize]| ids.iter().filter_map(|&i| logits.get(i)).map(|&l| (l as f64 - max).exp()).sum::<f64>();
    let (y, n) = (mass(yes), mass(no));
    if y + n == 0.0 {
        0.5
    } else {
        y / (y + n)
    }
}

/// P(True) from an engine's top log-probs of the first judging token (token text, log-prob): the
/// probability mass of the "Yes" spellings against the "No" spellings (0.5 when neither is there).
pub fn p_true_from_top(top: &[(String, f32)], yes: &[&str], no: &[&str]) -> f64 {
    let mass = |words: &[&str]| top.iter().filter(|(t, _)| words.contains(&t.as_str())).map(|(_, lp)| (*lp as f64).exp()).sum::<f64>();
    let (y, n) = (mass(yes), mass(no));
    if y + n == 0.0 {
        0.5
    } else {
        y / (y + n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_true_from_an_engines_top_logprobs() {
        let top = vec![("Yes".to_string(), -0.5f32), (" No".to_string(), -1.5), ("Maybe".to_string(), -0.1)];
        let p = p_true_from_top(&top, &["Yes", " Yes"], &["No", " No"]);
        assert!((p - 1.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-6);
        assert_eq!(p_true_from_top(&top[2..], &["Yes"], &["No"]), 0.5);
    }

    #[test]
    fn finds_and_checks_claims() {
        let c = claims("First 48 + 23 = 71, then 7 × 5 = 35 and 10 - 4 = 5.");
        assert_eq!(c.len(), 3);
        assert!(c[0].holds() && c[1].holds() && !c[2].holds());
        assert_eq!(c[2].actual, 6.0);
    }

    #[test]
    fn chained_and_precedence() {
        let c = claims("2 + 3 = 5 + 4 = 9, and 2 + 3 * 4 = 14, (2 + 3) * 4 = 20, 1,200 / 4 = 300");
        assert_eq!(c.iter().map(|c| c.holds()).collect::<Vec<_>>(), vec![true, true, true, true, true]);
    }

    #[test]
    fn ignores_non_claims() {
        assert!(claims("x = 5 and the total = 12").is_empty());
        assert!(claims("Tom has 3 apples = good").is_empty());
        assert_eq!(claims("He pays $12 x 3 = $36").len(), 1);
    }

    #[test]
    fn scores_share_of_true_claims_and_penalises_contradiction() {
        assert_eq!(arithmetic_score("48 + 23 = 71. 7 * 5 = 36.", None), Some(0.5));
        assert_eq!(arithmetic_score("48 + 23 = 71", Some("71")), Some(1.0));
        assert_eq!(arithmetic_score("48 + 23 = 71", Some("70")), Some(0.5));
        assert_eq!(arithmetic_score("no arithmetic", Some("1")), None);
    }

    #[test]
    fn eval_rejects_garbage() {
        assert_eq!(eval("2 +"), None);
        assert_eq!(eval("(1 + 2"), None);
        assert_eq!(eval("1 / 0"), None);
        assert_eq!(eval("-3 * -2"), Some(6.0));
    }

    #[test]
    fn p_true_is_a_probability() {
        let logits = [0.0f32, 2.0, 0.0, 1.0];
        let p = p_true(&logits, &[1], &[3]);
        assert!((p - 1.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-9);
        assert_eq!(p_true(&logits, &[], &[]), 0.5);
        assert!((0.0..=1.0).contains(&logprob_score(-0.3)));
    }
}
