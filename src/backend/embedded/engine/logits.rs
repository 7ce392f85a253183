//! Reading a decode step's raw logits: the log-probabilities a request reports, the top-k a chain's
//! confidence is measured from, and the best token that does not end generation.

use llama_cpp_2::token::LlamaToken;

use super::Model;
use crate::backend::{LogprobEntry, TopLogprob};

pub(super) fn best_non_eog(model: &Model, logits: &[f32]) -> LlamaToken {
    let mut best = (f32::NEG_INFINITY, 0usize);
    for (i, l) in logits.iter().enumerate() {
        if *l > best.0 && !model.eog.contains(&(i as i32)) {
            best = (*l, i);
        }
    }
    LlamaToken(best.1 as i32)
}

/// The log-softmax normaliser of raw logits, and the `k` most likely token ids with their
/// log-probabilities, most likely first.
pub(super) fn top_logprobs(logits: &[f32], k: usize) -> (f32, Vec<(usize, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
    let k = k.min(logits.len());
    if k == 0 {
        return (lse, Vec::new());
    }
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.select_nth_unstable_by(k - 1, |a, b| logits[*b].total_cmp(&logits[*a]));
    idx.truncate(k);
    idx.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
    (lse, idx.into_iter().map(|i| (i, logits[i] - lse)).collect())
}

/// Log-probability of `token` (and the `top` best alternatives) from raw logits.
pub(super) fn logprob_entry(model: &Model, logits: &[f32], token: LlamaToken, top: u32, thinking: bool) -> LogprobEntry {
    let text = |t: LlamaToken| {
        let b = model.piece(t);
        (String::from_utf8_lossy(&b).into_owned(), b)
    };
    let (lse, top) = top_logprobs(logits, top as usize);
    let top_logprobs = top
        .into_iter()
        .map(|(i, logprob)| {
            let (token, bytes) = text(LlamaToken(i as i32));
            TopLogprob { token, logprob, bytes }
        })
        .collect();
    let (t, bytes) = text(token);
    LogprobEntry { token: t, logprob: logits[token.0 as usize] - lse, bytes, top_logprobs, thinking }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_logprobs_are_normalised_and_best_first() {
        // Probabilities 1/2, 1/4, 1/4.
        let logits = [0.0f32, 1.0, 0.0].map(|x: f32| x * std::f32::consts::LN_2);
        let (lse, top) = top_logprobs(&logits, 2);
        assert!((lse - 4f32.ln()).abs() < 1e-6);
        assert_eq!(top[0].0, 1);
        assert!((top[0].1 - 0.5f32.ln()).abs() < 1e-6 && (top[1].1 - 0.25f32.ln()).abs() < 1e-6);
        assert_eq!(top_logprobs(&logits, 9).1.len(), 3);
        assert!(top_logprobs(&logits, 0).1.is_empty());
    }
}
