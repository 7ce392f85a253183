//! A seeded generator of multi-step arithmetic word problems with exact answers, in GSM8K format
//! (`question`, `answer` ending in `#### N`), at difficulty levels a 135M model can sometimes solve.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Problem {
    pub id: String,
    pub question: String,
    /// Worked solution ending in `#### N`.
    pub answer: String,
    #[serde(default)]
    pub level: u32,
}

const NAMES: [&str; 10] = ["Tom", "Sara", "Ali", "Mia", "Ben", "Lena", "Omar", "Zoe", "Ravi", "Ana"];
const ITEMS: [&str; 8] = ["apples", "marbles", "stickers", "books", "cookies", "pencils", "coins", "cards"];

/// Level 1: a bare two-digit addition. Level 2: a one-step word problem (add or take away).
/// Level 3: two steps. Level 4: three steps including a multiplication.
pub fn problem(rng: &mut StdRng, level: u32, id: String) -> Problem {
    let name = NAMES[rng.gen_range(0..NAMES.len())];
    let item = ITEMS[rng.gen_range(0..ITEMS.len())];
    let a: i64 = rng.gen_range(10..60);
    let b: i64 = rng.gen_range(2..30);
    let (question, steps, result) = match level {
        1 => (format!("What is {a} + {b}?"), vec![format!("{a} + {b} = {}", a + b)], a + b),
        2 => {
            if rng.gen_bool(0.5) {
                (
                    format!("{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?"),
                    vec![format!("{a} + {b} = {}", a + b)],
                    a + b,
                )
            } else {
                let a = a + b;
                (
                    format!("{name} has {a} {item} and gives away {b}. How many {item} does {name} have left?"),
                    vec![format!("{a} - {b} = {}", a - b)],
                    a - b,
                )
            }
        }
        3 => {
            let c: i64 = rng.gen_range(2..a + b);
            let s1 = a + b;
            (
                format!("{name} has {a} {item}, buys {b} more, then gives {c} to a friend. How many {item} does {name} have now?"),
                vec![format!("{a} + {b} = {s1}"), format!("{s1} - {c} = {}", s1 - c)],
                s1 - c,
            )
        }
        _ => {
            let k: i64 = rng.gen_range(2..6);
            let per: i64 = rng.gen_range(3..12);
            let c: i64 = rng.gen_range(1..10);
            let boxes = k * per;
            (
                format!("{name} buys {k} boxes with {per} {item} in each box, already had {b} {item}, and then loses {c}. How many {item} does {name} have?"),
                vec![format!("{k} * {per} = {boxes}"), format!("{boxes} + {b} = {}", boxes + b), format!("{} - {c} = {}", boxes + b, boxes + b - c)],
                boxes + b - c,
            )
        }
    };
    Problem { id, question, answer: format!("{}\n#### {result}", steps.join("\n")), level }
}

/// `count` problems spread evenly over `levels`, reproducible from `seed`.
pub fn generate(count: usize, levels: &[u32], seed: u64) -> Vec<Problem> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let level = levels[i % levels.len()];
            problem(&mut rng, level, format!("gen-{seed}-{i:05}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reasoning::verify::claims;

    #[test]
    fn problems_are_reproducible_and_their_answers_exact() {
        let a = generate(40, &[1, 2, 3, 4], 7);
        assert_eq!(a, generate(40, &[1, 2, 3, 4], 7));
        assert_ne!(a, generate(40, &[1, 2, 3, 4], 8));
        for p in &a {
            // Every worked step is true arithmetic and the last one is the answer.
            let c = claims(&p.answer);
            assert_eq!(c.len() as u32, p.level.saturating_sub(1).max(1), "{p:?}");
            assert!(c.iter().all(|c| c.holds()), "{p:?}");
            let n: f64 = p.answer.rsplit("#### ").next().unwrap().parse().unwrap();
            assert_eq!(n, c.last().unwrap().stated);
            assert!(n >= 0.0);
        }
    }
}
