//! The per-sequence controller both backends run: it sees each sampled token (or each token of a
//! remote engine's stream), turns bytes into text (UTF-8 assembly, thinking/answer split, stop
//! strings), and decides what the backend must do next: inject forced text, roll back tokens,
//! finish (stop, length, pruned). The backend only carries the decisions out (KV cells and
//! batches, or a continuation request).

use std::time::Instant;

use super::{FinishReason, ForcingRequest, SeqStats, Token};
use crate::reasoning::confidence::{token_confidence, ChainConfidence};
use crate::reasoning::forcing::{Ended, Forcer, ForcingSpec, Injection, Phase};
use crate::reasoning::plan::effective_max_thinking;

/// Holds bytes of a multi-byte character split across tokens until it is complete.
#[derive(Default, Debug)]
pub struct Utf8Buffer {
    pending: Vec<u8>,
}

impl Utf8Buffer {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let out = s.to_string();
                self.pending.clear();
                out
            }
            Err(e) => {
                // An incomplete tail waits for the next token; bytes that can never be valid are
                // replaced so one bad token cannot stall the stream.
                let valid = e.valid_up_to();
                let cut = match e.error_len() {
                    None => valid,
                    Some(bad) => valid + bad,
                };
                let out = String::from_utf8_lossy(&self.pending[..cut]).into_owned();
                self.pending.drain(..cut);
                if e.error_len().is_some() {
                    return out + &self.push(&[]);
                }
                out
            }
        }
    }

    pub fn flush(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

/// Cuts the answer at the first stop string, holding back any tail that could begin one.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        Self { stops: stops.into_iter().filter(|s| !s.is_empty()).collect(), held: String::new() }
    }

    /// Returns the text safe to emit and whether a stop string was hit.
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.held.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let out = self.held[..at].to_string();
            self.held.clear();
            return (out, true);
        }
        let keep = self.stops.iter().map(|s| crate::reasoning::forcing::partial_suffix(&self.held, s)).max().unwrap_or(0);
        let out = self.held[..self.held.len() - keep].to_string();
        self.held.drain(..self.held.len() - keep);
        (out, false)
    }

    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// One text the controller may force into a sequence: what is fed, its tokens (as the backend
/// tokenizes it) and what the client sees of it in the thinking.
#[derive(Debug, Clone)]
pub struct Forced {
    pub text: String,
    pub tokens: Vec<Token>,
    pub shown: String,
}

/// A job's budget forcing, prepared once for all its sequences.
#[derive(Debug, Clone)]
pub struct JobForcing {
    pub spec: ForcingSpec,
    pub cutoff: Forced,
    pub close: Forced,
    pub wait: Forced,
}

impl JobForcing {
    /// The texts the forcer may inject, tokenized by the backend's `tokenize`, and the effective
    /// thinking ceiling (lowered so the close and the answer's reserve fit in `max_tokens`).
    pub fn new<E>(f: &ForcingRequest, max_tokens: u32, mut tokenize: impl FnMut(&str) -> Result<Vec<Token>, E>) -> Result<Self, E> {
        let mut forced =
            |text: String, shown: &str| -> Result<Forced, E> { Ok(Forced { tokens: tokenize(&text)?, text, shown: shown.to_string() }) };
        let cutoff = forced(format!("{}{}{}", f.budget_message, f.close_text, f.answer_cue), &f.budget_message)?;
        let close = forced(format!("{}{}", f.close_text, f.answer_cue), "")?;
        let wait = forced(f.wait_text.clone(), &f.wait_text)?;
        let max = effective_max_thinking(f.max_thinking, max_tokens, f.answer_reserve, cutoff.tokens.len() as u32);
        let spec = ForcingSpec {
            thinking: max > 0,
            min_thinking: f.min_thinking.min(max),
            max_thinking: max,
            close_marker: f.close_marker.clone(),
            wait_tokens: wait.tokens.len() as u32,
            max_extensions: f.max_extensions,
            answer_cap: u32::MAX,
        };
        Ok(Self { spec, cutoff, close, wait })
    }

    pub fn forced(&self, injection: Injection) -> &Forced {
        match injection {
            Injection::Cutoff => &self.cutoff,
            Injection::Close => &self.close,
            Injection::Wait => &self.wait,
        }
    }
}

/// What the backend must do after one token.
#[derive(Debug, Default)]
pub struct Step {
    /// Text to send (either may be empty).
    pub thinking: String,
    pub answer: String,
    pub finish: Option<FinishReason>,
    /// Forced text to feed next.
    pub inject: Option<Injection>,
    /// Feed the sampled token to the model (false for a replaced end-of-generation or close).
    pub feed_sampled: bool,
    /// Tokens already fed to remove first (a close marker written before the minimum).
    pub rollback: usize,
}

pub struct Controller {
    /// Index of the sequence inside its job.
    pub index: usize,
    forcer: Forcer,
    utf8: Utf8Buffer,
    stop: StopMatcher,
    /// Tokens added after the prompt (sampled and forced), checked against the cap.
    pub generated: u32,
    max_tokens: u32,
    sampled: u32,
    sum_logprob: f64,
    thinking_text: String,
    answer_text: String,
    first_token_at: Option<Instant>,
    thinking_ended_at: Option<Instant>,
    confidence: Option<ChainConfidence>,
}

impl Controller {
    /// `stops`: the request's stop strings; `confidence_window`: measure the chain's confidence.
    pub fn new(
        index: usize,
        forcing: Option<&JobForcing>,
        mut stops: Vec<String>,
        max_tokens: u32,
        confidence_window: Option<usize>,
    ) -> Self {
        let forcer = match forcing {
            Some(f) => {
                // The close marker ends thinking once; a model that writes it again in the answer
                // has started over, so the answer stops there.
                if f.spec.thinking {
                    stops.push(f.spec.close_marker.clone());
                }
                Forcer::new(f.spec.clone())
            }
            None => Forcer::new(ForcingSpec::answer_only(u32::MAX)),
        };
        Self {
            index,
            forcer,
            utf8: Utf8Buffer::default(),
            stop: StopMatcher::new(stops),
            generated: 0,
            max_tokens,
            sampled: 0,
            sum_logprob: 0.0,
            thinking_text: String::new(),
            answer_text: String::new(),
            first_token_at: None,
            thinking_ended_at: None,
            confidence: confidence_window.map(ChainConfidence::new),
        }
    }

    pub fn thinking(&self) -> bool {
        self.forcer.phase() == Phase::Thinking
    }

    pub fn answering(&self) -> bool {
        self.forcer.phase() == Phase::Answer
    }

    /// Thinking was closed (maybe by force) and nothing is answered yet: an end-of-generation
    /// now must be replaced by the most likely other token.
    pub fn must_answer(&self) -> bool {
        self.forcer.thinking_tokens() > 0 && self.answering() && self.answer_text.trim().is_empty()
    }

    /// A sampled token's log-prob (for the mean) and its top candidates' (for confidence).
    pub fn observe(&mut self, logprob: Option<f32>, top: impl IntoIterator<Item = f32>) {
        self.sampled += 1;
        self.first_token_at.get_or_insert_with(Instant::now);
        if let Some(lp) = logprob {
            self.sum_logprob += lp as f64;
        }
        if let Some(c) = self.confidence.as_mut() {
            c.push(token_confidence(top));
        }
    }

    /// Run one sampled token through the pipeline and decide what follows. `prune_below`: the
    /// online confidence filter's threshold for this chain, once calibrated.
    pub fn on_token(&mut self, bytes: &[u8], eog: bool, forcing: Option<&JobForcing>, prune_below: Option<f64>) -> Step {
        let piece = if eog { self.utf8.flush() } else { self.utf8.push(bytes) };
        let was_thinking = self.thinking();
        let f = self.forcer.on_token(&piece, eog);
        if was_thinking && !self.thinking() {
            self.thinking_ended_at = Some(Instant::now());
        }
        let (mut answer, stopped) = self.stop.push(&f.answer);
        let mut finish = match f.finish {
            _ if stopped => Some(FinishReason::Stop),
            Some(Ended::Stop) => Some(FinishReason::Stop),
            Some(Ended::Length) => Some(FinishReason::Length),
            None => None,
        };
        if finish.is_some() && !stopped {
            answer.push_str(&self.stop.flush());
        }
        let mut thinking = f.thinking;
        self.generated += u32::from(f.feed_sampled);
        self.generated -= f.rollback as u32;
        if let Some(forced) = f.inject.and_then(|i| forcing.map(|jf| jf.forced(i))) {
            thinking.push_str(&forced.shown);
            self.generated += forced.tokens.len() as u32;
        }
        if finish.is_none() && self.generated >= self.max_tokens {
            answer.push_str(&self.flush());
            finish = Some(FinishReason::Length);
        }
        if finish.is_none() && prune_below.is_some_and(|t| self.confidence.as_ref().is_some_and(|c| c.below(t))) {
            finish = Some(FinishReason::Pruned);
        }
        self.thinking_text.push_str(&thinking);
        self.answer_text.push_str(&answer);
        Step { thinking, answer, finish, inject: f.inject, feed_sampled: f.feed_sampled, rollback: f.rollback }
    }

    /// The engine reports the token cap reached (it counts tokens this controller may have seen
    /// merged into fewer pieces): end here, with the text still held back.
    pub fn end_at_cap(&mut self) -> Step {
        self.generated = self.generated.max(self.max_tokens);
        let answer = self.flush();
        self.answer_text.push_str(&answer);
        Step { answer, finish: Some(FinishReason::Length), ..Default::default() }
    }

    /// Text still held back when the sequence is cut by the token cap.
    fn flush(&mut self) -> String {
        let tail = self.utf8.flush();
        let (mut out, _) = self.stop.push(&tail);
        out.push_str(&self.stop.flush());
        out
    }

    /// What the finished sequence reports (its texts move out).
    pub fn stats(&mut self) -> SeqStats {
        let now = Instant::now();
        let first = self.first_token_at.unwrap_or(now);
        let thinking_tokens = self.forcer.thinking_tokens();
        let think_end = self.thinking_ended_at.unwrap_or(if thinking_tokens > 0 { now } else { first });
        SeqStats {
            completion_tokens: self.generated,
            thinking_tokens,
            answer_tokens: self.generated.saturating_sub(thinking_tokens),
            extensions: self.forcer.extensions(),
            cut_off: self.forcer.cut_off(),
            mean_logprob: if self.sampled == 0 { 0.0 } else { self.sum_logprob / self.sampled as f64 },
            thinking_ms: (think_end - first).as_secs_f64() * 1000.0,
            answer_ms: (now - think_end).as_secs_f64() * 1000.0,
            thinking: std::mem::take(&mut self.thinking_text),
            answer: std::mem::take(&mut self.answer_text),
            confidence: self.confidence.as_ref().map(|c| c.scores()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_characters_are_held_until_complete() {
        let mut b = Utf8Buffer::default();
        let bytes = "é✓".as_bytes();
        assert_eq!(b.push(&bytes[..1]), "");
        assert_eq!(b.push(&bytes[1..3]), "é");
        assert_eq!(b.push(&bytes[3..]), "✓");
        assert_eq!(b.push(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn stop_strings_cut_and_hold_partial_matches() {
        let mut m = StopMatcher::new(vec!["STOP".into(), "\n\n".into()]);
        assert_eq!(m.push("hello ST"), ("hello ".into(), false));
        assert_eq!(m.push("OP there"), ("".into(), true));
        let mut m = StopMatcher::new(vec!["STOP".into()]);
        assert_eq!(m.push("ST"), ("".into(), false));
        assert_eq!(m.push("ar"), ("STar".into(), false));
        assert_eq!(m.push("x\n"), ("x\n".into(), false));
    }

    /// One "token" per character: the tokenizer the tests below force with.
    fn chars(s: &str) -> Result<Vec<Token>, ()> {
        Ok(s.chars().map(|c| Token(c as i32)).collect())
    }

    fn forcing(min: u32, max: Option<u32>) -> JobForcing {
        let f = ForcingRequest {
            min_thinking: min,
            max_thinking: max,
            close_marker: "</t>".into(),
            close_text: "</t>".into(),
            budget_message: "!".into(),
            answer_cue: "\n".into(),
            wait_text: "W".into(),
            max_extensions: 2,
            answer_reserve: 4,
        };
        JobForcing::new(&f, 100, chars).unwrap()
    }

    #[test]
    fn the_budget_cuts_thinking_and_counts_the_forced_text() {
        let jf = forcing(0, Some(3));
        let mut c = Controller::new(0, Some(&jf), vec![], 100, None);
        for t in ["a", "b"] {
            assert!(c.on_token(t.as_bytes(), false, Some(&jf), None).inject.is_none());
        }
        let s = c.on_token(b"c", false, Some(&jf), None);
        assert_eq!(s.inject, Some(Injection::Cutoff));
        // Three sampled tokens and the six of "!</t>\n".
        assert_eq!(c.generated, 3 + 6);
        assert_eq!(s.thinking, "c!");
        assert!(c.answering());
        assert!(c.must_answer());
        let s = c.on_token(b"42", false, Some(&jf), None);
        assert_eq!(s.answer, "42");
        let s = c.on_token(b"", true, Some(&jf), None);
        assert_eq!(s.finish, Some(FinishReason::Stop));
        let st = c.stats();
        assert_eq!((st.thinking_tokens, st.answer, st.cut_off), (3, "42".into(), true));
    }

    #[test]
    fn an_early_close_is_rolled_back_and_extended() {
        let jf = forcing(5, Some(50));
        let mut c = Controller::new(0, Some(&jf), vec![], 100, None);
        c.on_token(b"x", false, Some(&jf), None);
        c.on_token(b"</", false, Some(&jf), None);
        let s = c.on_token(b"t>", false, Some(&jf), None);
        assert_eq!(s.inject, Some(Injection::Wait));
        // "</" was fed and is undone; "t>" never was.
        assert_eq!((s.rollback, s.feed_sampled), (1, false));
        assert_eq!(c.generated, 1 + 1);
        assert!(c.thinking());
    }

    #[test]
    fn the_cap_and_the_pruning_threshold_finish_a_chain() {
        let mut c = Controller::new(0, None, vec!["END".into()], 2, None);
        assert!(c.on_token(b"a", false, None, None).finish.is_none());
        assert_eq!(c.on_token(b"b", false, None, None).finish, Some(FinishReason::Length));
        let mut c = Controller::new(0, None, vec![], 100, Some(2));
        c.observe(Some(-0.1), [-0.1f32, -5.0]);
        c.observe(Some(-0.1), [-0.1f32, -5.0]);
        // Confidence = -mean(top log-probs) = 2.55 per token: below 3, above 2.
        assert!(c.on_token(b"a", false, None, Some(2.0)).finish.is_none());
        assert_eq!(c.on_token(b"b", false, None, Some(3.0)).finish, Some(FinishReason::Pruned));
        let mut c = Controller::new(0, None, vec!["END".into()], 100, None);
        let s = c.on_token(b"okEN", false, None, None);
        assert_eq!(s.answer, "ok");
        assert_eq!(c.on_token(b"D", false, None, None).finish, Some(FinishReason::Stop));
    }
}
