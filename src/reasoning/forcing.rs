//! Budget forcing: the per-sequence state machine that decides, token by token, whether the model is
//! thinking or answering, and when the server must inject text (the close at the budget, "Wait" when
//! the model closes before the minimum). Pure logic: the engine feeds it decoded pieces and turns its
//! decisions into forced tokens.

/// What the controller enforces for one sequence. Token counts come from the engine's tokenizer.
#[derive(Debug, Clone, PartialEq)]
pub struct ForcingSpec {
    /// Start inside a think block (false: answer straight away, budget 0 or thinking off).
    pub thinking: bool,
    pub min_thinking: u32,
    /// Effective ceiling on thinking tokens, already lowered so the close and the answer fit.
    pub max_thinking: u32,
    /// Text that ends thinking when the model writes it (`</think>` or the scaffold marker).
    pub close_marker: String,
    /// Tokens in the injected "Wait" text.
    pub wait_tokens: u32,
    pub max_extensions: u32,
    /// Cap on answer tokens after the close.
    pub answer_cap: u32,
}

impl ForcingSpec {
    /// No thinking: every token is answer, capped at `answer_cap`.
    pub fn answer_only(answer_cap: u32) -> Self {
        Self {
            thinking: false,
            min_thinking: 0,
            max_thinking: 0,
            close_marker: String::new(),
            wait_tokens: 0,
            max_extensions: 0,
            answer_cap,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Thinking,
    Answer,
    Done,
}

/// Text the engine must force into the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    /// Budget message + close marker + answer cue: thinking ends here.
    Cutoff,
    /// Close marker + answer cue, no budget message: the model stopped (end-of-generation) while
    /// thinking, above the minimum; the server closes the block so there is an answer.
    Close,
    /// The s1 extension text.
    Wait,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The model ended its answer (end-of-generation).
    Stop,
    /// The answer hit its cap.
    Length,
}

/// The controller's decision for one sampled token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Action {
    /// Text to show as thinking and as answer (either may be empty).
    pub thinking: String,
    pub answer: String,
    /// Feed the sampled token to the model (false for a replaced end-of-generation or close).
    pub feed_sampled: bool,
    /// Earlier tokens (already in the KV cache) to remove before injecting: the part of a close
    /// marker that the model wrote before the minimum.
    pub rollback: usize,
    pub inject: Option<Injection>,
    pub finish: Option<Ended>,
}

#[derive(Debug, Clone)]
pub struct Forcer {
    spec: ForcingSpec,
    phase: Phase,
    thinking_tokens: u32,
    answer_tokens: u32,
    extensions: u32,
    cut_off: bool,
    /// Thinking text not yet shown because it may be the start of the close marker, with the
    /// byte length of each token piece in it (to know how many tokens a rollback removes).
    held: String,
    held_pieces: Vec<usize>,
}

impl Forcer {
    pub fn new(spec: ForcingSpec) -> Self {
        let phase = if spec.thinking && spec.max_thinking > 0 { Phase::Thinking } else { Phase::Answer };
        Self {
            spec,
            phase,
            thinking_tokens: 0,
            answer_tokens: 0,
            extensions: 0,
            cut_off: false,
            held: String::new(),
            held_pieces: Vec::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }
    pub fn thinking_tokens(&self) -> u32 {
        self.thinking_tokens
    }
    pub fn extensions(&self) -> u32 {
        self.extensions
    }
    pub fn cut_off(&self) -> bool {
        self.cut_off
    }

    /// Feed one sampled token: its decoded text (complete UTF-8) and whether it ends generation.
    pub fn on_token(&mut self, piece: &str, eog: bool) -> Action {
        match self.phase {
            Phase::Done => Action { finish: Some(Ended::Stop), ..Default::default() },
            Phase::Answer => self.answer_token(piece, eog),
            Phase::Thinking => self.thinking_token(piece, eog),
        }
    }

    fn answer_token(&mut self, piece: &str, eog: bool) -> Action {
        if eog {
            self.phase = Phase::Done;
            return Action { finish: Some(Ended::Stop), ..Default::default() };
        }
        self.answer_tokens += 1;
        let mut step = Action { answer: piece.to_string(), feed_sampled: true, ..Default::default() };
        if self.answer_tokens >= self.spec.answer_cap {
            self.phase = Phase::Done;
            step.finish = Some(Ended::Length);
        }
        step
    }

    fn thinking_token(&mut self, piece: &str, eog: bool) -> Action {
        if eog {
            let thinking = std::mem::take(&mut self.held);
            self.held_pieces.clear();
            return self.early_close(Action { thinking, ..Default::default() }, 0);
        }
        self.thinking_tokens += 1;
        self.held.push_str(piece);
        self.held_pieces.push(piece.len());

        let marker = &self.spec.close_marker;
        if let Some(at) = self.held.find(marker.as_str()).filter(|_| !marker.is_empty()) {
            let after = self.held[at + marker.len()..].to_string();
            if self.thinking_tokens < self.spec.min_thinking && self.can_extend() {
                // Undo the tokens that wrote the marker (the last one was never fed).
                let mut covered = 0usize;
                let mut tokens = 0usize;
                for len in self.held_pieces.iter().rev() {
                    covered += len;
                    tokens += 1;
                    if self.held.len() - covered <= at {
                        break;
                    }
                }
                let keep = self.held.len() - covered;
                let thinking = self.held[..keep].to_string();
                self.thinking_tokens -= tokens as u32;
                self.held.clear();
                self.held_pieces.clear();
                return self.early_close(Action { thinking, ..Default::default() }, tokens - 1);
            }
            // A natural close: text before the marker is thinking, text after it starts the answer.
            let thinking = self.held[..at].to_string();
            self.held.clear();
            self.held_pieces.clear();
            self.phase = Phase::Answer;
            let mut step = Action { thinking, feed_sampled: true, ..Default::default() };
            let answer = after.trim_start().to_string();
            if !answer.is_empty() {
                self.answer_tokens += 1;
                step.answer = answer;
            }
            return step;
        }

        // Show everything that cannot be the start of the marker.
        let keep = partial_suffix(&self.held, marker);
        let show = self.held.len() - keep;
        let thinking = self.held[..show].to_string();
        self.held.drain(..show);
        let mut left = keep;
        let mut kept = Vec::new();
        for len in self.held_pieces.iter().rev() {
            if left == 0 {
                break;
            }
            kept.push((*len).min(left));
            left -= (*len).min(left);
        }
        kept.reverse();
        self.held_pieces = kept;

        let mut step = Action { thinking, feed_sampled: true, ..Default::default() };
        if self.thinking_tokens >= self.spec.max_thinking {
            // Held text was a marker prefix that never completed: it is thinking after all.
            step.thinking.push_str(&std::mem::take(&mut self.held));
            self.held_pieces.clear();
            self.cut_off = true;
            self.phase = Phase::Answer;
            step.inject = Some(Injection::Cutoff);
        }
        step
    }

    fn can_extend(&self) -> bool {
        self.extensions < self.spec.max_extensions && self.thinking_tokens + self.spec.wait_tokens < self.spec.max_thinking
    }

    /// The model ended its thinking (by end-of-generation or by writing the marker too soon).
    fn early_close(&mut self, mut step: Action, rollback: usize) -> Action {
        step.feed_sampled = false;
        step.rollback = rollback;
        if self.thinking_tokens < self.spec.min_thinking && self.can_extend() {
            self.extensions += 1;
            self.thinking_tokens += self.spec.wait_tokens;
            step.inject = Some(Injection::Wait);
        } else {
            self.phase = Phase::Answer;
            step.inject = Some(Injection::Close);
        }
        step
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `pat` (0 when none).
pub fn partial_suffix(text: &str, pat: &str) -> usize {
    let max = pat.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && pat.as_bytes().starts_with(&text.as_bytes()[text.len() - n..]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min: u32, max: u32) -> ForcingSpec {
        ForcingSpec {
            thinking: true,
            min_thinking: min,
            max_thinking: max,
            close_marker: "Final answer:".into(),
            wait_tokens: 2,
            max_extensions: 2,
            answer_cap: 5,
        }
    }

    fn feed(f: &mut Forcer, pieces: &[&str]) -> Vec<Action> {
        pieces.iter().map(|p| f.on_token(p, false)).collect()
    }

    #[test]
    fn cuts_off_exactly_at_the_budget() {
        let mut f = Forcer::new(spec(0, 3));
        let steps = feed(&mut f, &["a", "b", "c"]);
        assert_eq!(steps[0].inject, None);
        assert_eq!(steps[2].inject, Some(Injection::Cutoff));
        assert!(steps[2].feed_sampled);
        assert_eq!(f.thinking_tokens(), 3);
        assert!(f.cut_off());
        assert_eq!(f.phase(), Phase::Answer);
        let s = f.on_token("42", false);
        assert_eq!(s.answer, "42");
    }

    #[test]
    fn natural_close_splits_thinking_and_answer() {
        let mut f = Forcer::new(spec(0, 100));
        let steps = feed(&mut f, &["2+2", " is 4.", " Final", " answer:", " 4"]);
        let thinking: String = steps.iter().map(|s| s.thinking.as_str()).collect();
        let answer: String = steps.iter().map(|s| s.answer.as_str()).collect();
        assert_eq!(thinking, "2+2 is 4. ");
        assert_eq!(answer.trim(), "4");
        assert!(steps.iter().all(|s| s.inject.is_none()));
        assert_eq!(f.phase(), Phase::Answer);
    }

    #[test]
    fn marker_prefix_is_held_then_released() {
        let mut f = Forcer::new(spec(0, 100));
        let s1 = f.on_token("x Final", false);
        assert_eq!(s1.thinking, "x ");
        let s2 = f.on_token(" thoughts", false);
        assert_eq!(s2.thinking, "Final thoughts");
    }

    #[test]
    fn end_of_generation_below_minimum_becomes_wait() {
        let mut f = Forcer::new(spec(8, 100));
        feed(&mut f, &["a", "b"]);
        let s = f.on_token("", true);
        assert_eq!(s.inject, Some(Injection::Wait));
        assert!(!s.feed_sampled);
        assert_eq!(f.thinking_tokens(), 4);
        assert_eq!(f.extensions(), 1);
        // Second early stop: one more extension allowed, then a plain close.
        f.on_token("c", false);
        assert_eq!(f.on_token("", true).inject, Some(Injection::Wait));
        assert_eq!(f.on_token("", true).inject, Some(Injection::Close));
        assert_eq!(f.phase(), Phase::Answer);
    }

    #[test]
    fn early_marker_is_rolled_back_and_extended() {
        let mut f = Forcer::new(spec(10, 100));
        feed(&mut f, &["a", "b", " Final"]);
        let s = f.on_token(" answer:", false);
        assert_eq!(s.inject, Some(Injection::Wait));
        // " Final" is in the KV cache and must go; " answer:" was never fed.
        assert_eq!(s.rollback, 1);
        assert!(!s.feed_sampled);
        assert_eq!(f.thinking_tokens(), 2 + 2);
    }

    #[test]
    fn extension_never_passes_the_maximum() {
        let mut f = Forcer::new(spec(50, 4));
        feed(&mut f, &["a", "b"]);
        // 2 + wait(2) would reach the max: close instead.
        assert_eq!(f.on_token("", true).inject, Some(Injection::Close));
    }

    #[test]
    fn end_of_generation_above_minimum_closes_for_an_answer() {
        let mut f = Forcer::new(spec(1, 100));
        feed(&mut f, &["a", "b"]);
        let s = f.on_token("", true);
        assert_eq!(s.inject, Some(Injection::Close));
        assert!(!s.feed_sampled);
    }

    #[test]
    fn answer_is_capped_and_ends_on_eog() {
        let mut f = Forcer::new(ForcingSpec::answer_only(2));
        assert_eq!(f.phase(), Phase::Answer);
        assert_eq!(f.on_token("a", false).finish, None);
        assert_eq!(f.on_token("b", false).finish, Some(Ended::Length));
        let mut g = Forcer::new(ForcingSpec::answer_only(9));
        assert_eq!(g.on_token("", true).finish, Some(Ended::Stop));
    }

    #[test]
    fn zero_budget_starts_in_the_answer() {
        let f = Forcer::new(spec(0, 0));
        assert_eq!(f.phase(), Phase::Answer);
    }

    #[test]
    fn partial_suffix_finds_marker_prefixes() {
        assert_eq!(partial_suffix("abc Fin", "Final answer:"), 3);
        assert_eq!(partial_suffix("abc", "Final"), 0);
        assert_eq!(partial_suffix("é", "éa"), 2);
    }
}
