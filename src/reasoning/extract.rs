//! Final-answer extraction and normalisation, so that answers written differently vote together.

/// Extractors in the order they are tried; the first that finds something wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extractor {
    /// GSM8K gold format: `#### 42`.
    Gsm8k,
    /// "The answer is 42."
    AnswerIs,
    /// Last `\boxed{...}`, brace-matched.
    Boxed,
    /// "Final answer: 42" (our scaffold marker).
    FinalAnswer,
    /// A multiple-choice letter A–E after "answer".
    Choice,
    /// The last number in the text.
    LastNumber,
}

pub const DEFAULT_CHAIN: [Extractor; 6] =
    [Extractor::Gsm8k, Extractor::AnswerIs, Extractor::Boxed, Extractor::FinalAnswer, Extractor::Choice, Extractor::LastNumber];

impl Extractor {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "gsm8k" => Self::Gsm8k,
            "answer_is" => Self::AnswerIs,
            "boxed" => Self::Boxed,
            "final_answer" => Self::FinalAnswer,
            "choice" => Self::Choice,
            "last_number" => Self::LastNumber,
            _ => return None,
        })
    }

    fn apply(self, text: &str) -> Option<String> {
        match self {
            Self::Gsm8k => after_last(text, "####").and_then(first_number_or_line),
            Self::AnswerIs => after_last_ci(text, "the answer is").and_then(first_number_or_line),
            Self::Boxed => last_boxed(text),
            Self::FinalAnswer => {
                after_last_ci(text, "final answer").map(|r| r.trim_start_matches([':', ' ', '*'])).and_then(first_number_or_line)
            }
            Self::Choice => choice_letter(text),
            Self::LastNumber => numbers(text).last().cloned(),
        }
    }
}

/// A chain's final answer. After a thinking phase the answer text is what followed the close
/// marker, so it is read as "Final answer: <text>"; without one the whole reply is searched.
/// Falls back to the thinking when the answer holds nothing extractable.
pub fn final_answer(answer: &str, thinking: &str) -> Option<String> {
    let direct = if thinking.trim().is_empty() {
        extract(answer, &DEFAULT_CHAIN)
    } else {
        extract(&format!("Final answer: {answer}"), &DEFAULT_CHAIN)
    };
    direct.or_else(|| extract(&format!("{thinking}\n{answer}"), &DEFAULT_CHAIN))
}

/// Run the chain over `text` and return the normalised answer.
pub fn extract(text: &str, chain: &[Extractor]) -> Option<String> {
    chain.iter().find_map(|e| e.apply(text)).map(|a| normalise(&a)).filter(|a| !a.is_empty())
}

fn after_last<'a>(text: &'a str, pat: &str) -> Option<&'a str> {
    text.rfind(pat).map(|i| &text[i + pat.len()..])
}

fn after_last_ci<'a>(text: &'a str, pat: &str) -> Option<&'a str> {
    // ASCII lowercasing keeps byte offsets valid.
    let lower = text.to_ascii_lowercase();
    lower.rfind(pat).map(|i| &text[i + pat.len()..])
}

/// The first number in `rest` if it starts within its first line, else that line's text.
/// A line that works the result out ("23 + 12 = 35") answers with what follows its last `=`, and
/// a line that is only arithmetic ("54 + 26 - 5", as a model cut short writes) with its value.
fn first_number_or_line(rest: &str) -> Option<String> {
    let line = rest.trim_start().lines().next().unwrap_or("").trim();
    let bare = line.trim_end_matches(['.', ' ']);
    let is_sum = bare.char_indices().skip(1).any(|(_, c)| "+-*/×÷".contains(c));
    if let Some(v) = is_sum.then(|| super::verify::eval(bare)).flatten() {
        return Some(normalise(&v.to_string()));
    }
    let result = line.rfind('=').map_or(line, |i| &line[i + 1..]);
    if let Some(n) = numbers(result).into_iter().next().or_else(|| numbers(line).into_iter().next()) {
        return Some(n);
    }
    let line = line.trim_matches(|c: char| c == '.' || c == '*' || c == ':' || c.is_whitespace());
    (!line.is_empty() && line.len() <= 64).then(|| line.to_string())
}

/// Numbers as written: optional minus, digits with thousands commas, optional decimals.
pub fn numbers(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = if i > 0 && b[i - 1] == b'-' && (i < 2 || !b[i - 2].is_ascii_alphanumeric()) { i - 1 } else { i };
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_digit() || ((b[j] == b',' || b[j] == b'.') && j + 1 < b.len() && b[j + 1].is_ascii_digit()))
            {
                j += 1;
            }
            out.push(text[start..j].to_string());
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

fn last_boxed(text: &str) -> Option<String> {
    let start = text.rfind("\\boxed{")? + "\\boxed{".len();
    let mut depth = 1;
    for (i, c) in text[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(text[start..start + i].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

fn choice_letter(text: &str) -> Option<String> {
    let rest = after_last_ci(text, "answer")?;
    let rest = rest.trim_start_matches(|c: char| c.is_whitespace() || ":*(is".contains(c));
    let mut chars = rest.chars();
    let c = chars.next()?;
    let next = chars.next();
    (('A'..='E').contains(&c) && next.is_none_or(|n| !n.is_alphanumeric())).then(|| c.to_string())
}

/// Canonical form: no `$`, commas in numbers, trailing period or spaces; numbers compare by value
/// (`12`, `12.0`, `12.00` are one answer).
pub fn normalise(answer: &str) -> String {
    let a = answer.trim().trim_end_matches('.').trim().trim_start_matches('$').trim();
    let plain: String = a.chars().filter(|c| *c != ',' && *c != '$').collect();
    if let Ok(x) = plain.parse::<f64>() {
        if x.is_finite() {
            if x.fract() == 0.0 && x.abs() < 1e15 {
                return format!("{}", x as i64);
            }
            return format!("{x}");
        }
    }
    a.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(text: &str) -> Option<String> {
        extract(text, &DEFAULT_CHAIN)
    }

    #[test]
    fn real_looking_outputs() {
        let table = [
            ("Natalia sold 48/2 = 24 clips in May.\nAltogether 48+24 = 72 clips.\n#### 72", "72"),
            ("So the total is $1,234.50. The answer is $1,234.50.", "1234.5"),
            ("We get \\boxed{\\frac{1}{2}} in the end", "\\frac{1}{2}"),
            ("x = \\boxed{12} and then \\boxed{14}", "14"),
            ("12 + 7 = 19 apples\nFinal answer: 19", "19"),
            ("Final answer: 19 apples.", "19"),
            ("Final Answer: Paris", "paris"),
            ("Let me think. The correct answer is (B) because", "b"),
            ("She has 3 cats and 4 dogs, so 7 pets", "7"),
            ("The temperature dropped to -5 degrees", "-5"),
            ("no digits here", ""),
        ];
        for (text, want) in table {
            assert_eq!(x(text).unwrap_or_default(), want, "{text}");
        }
    }

    #[test]
    fn a_worked_line_answers_with_its_result() {
        assert_eq!(x("Final answer: 23 + 12 = 35 apples"), Some("35".into()));
        assert_eq!(x("The answer is 4 * 5 = 20."), Some("20".into()));
        assert_eq!(x("Final answer: 54 + 26 - 5\n```output\n91"), Some("75".into()));
        assert_eq!(x("Final answer: 3 * 7 + 12 - 5."), Some("28".into()));
        assert_eq!(x("Final answer: -5"), Some("-5".into()));
        // Nothing after the sign: the line's first number still answers.
        assert_eq!(x("Final answer: 35 =\nnext"), Some("35".into()));
    }

    #[test]
    fn answers_after_thinking_are_read_from_their_start() {
        assert_eq!(final_answer("12\nTom has 23 apples, 23 - 12 = 10.", "23 + 12 = 35").as_deref(), Some("12"));
        assert_eq!(final_answer("To add 2 and 3 we get 5", "").as_deref(), Some("5"));
        assert_eq!(final_answer(" ", "so 4 + 4 = 8").as_deref(), Some("8"));
    }

    #[test]
    fn multiple_choice_letter() {
        assert_eq!(choice_letter("Answer: C"), Some("C".into()));
        assert_eq!(choice_letter("answer is D."), Some("D".into()));
        assert_eq!(choice_letter("answer: Dog"), None);
    }

    #[test]
    fn normalisation_makes_equal_numbers_vote_together() {
        for v in ["12", "12.0", "12.00", "$12", "12.", " 12 ", "1,2"] {
            assert_eq!(normalise(v), "12", "{v}");
        }
        assert_eq!(normalise("1,000,000"), "1000000");
        assert_eq!(normalise("0.50"), "0.5");
        assert_eq!(normalise("Paris."), "paris");
    }

    #[test]
    fn numbers_skip_hyphenated_words() {
        assert_eq!(numbers("covid-19 and -3 and 4.5, 6"), vec!["19", "-3", "4.5", "6"]);
        assert_eq!(numbers("1,234 and 5."), vec!["1,234", "5"]);
    }
}
