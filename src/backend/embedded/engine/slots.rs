//! The slot allocator: which KV streams are free, and what prompt tokens a free stream still holds
//! from its last job (as llama-server's `cache_prompt`), so a later prompt sharing a prefix reuses
//! them instead of prefilling. Bookkeeping only: the scheduler moves the cells.

use std::collections::BTreeSet;

use crate::backend::Token;

pub struct Slots {
    /// Free slot ids, lowest first: llama.cpp splits a multi-stream batch into one pass per run of
    /// consecutive sequence ids, so the live ids are kept packed at the bottom.
    free: BTreeSet<i32>,
    retained: Vec<Vec<Token>>,
}

impl Slots {
    pub fn new(n: i32) -> Self {
        Self { free: (0..n).collect(), retained: (0..n).map(|_| Vec::new()).collect() }
    }

    pub fn lowest_free(&self) -> Option<i32> {
        self.free.first().copied()
    }

    /// A free slot goes to a job: what its stream held is now the job's to overwrite or keep.
    pub fn take(&mut self, id: i32) {
        self.free.remove(&id);
        self.retained[id as usize].clear();
    }

    /// The slot is free again; its stream holds `kept` (the first tokens of a prompt).
    pub fn release(&mut self, id: i32, kept: Vec<Token>) {
        self.free.insert(id);
        self.retained[id as usize] = kept;
    }

    /// Where the longest prefix of `prompt` (all but its last token, which every sequence is fed
    /// itself) is held: a live job's prefilled prompt (`live`: tokens, slot) or a free slot's
    /// retained tokens. Returns (tokens in common, slot); ties go to `anchor`, which needs no copy.
    pub fn best_prefix<'a>(
        &'a self,
        prompt: &[Token],
        anchor: i32,
        live: impl Iterator<Item = (&'a [Token], i32)>,
    ) -> Option<(usize, i32)> {
        let target = &prompt[..prompt.len().saturating_sub(1)];
        let kept = self.free.iter().map(|&id| (&self.retained[id as usize][..], id));
        live.chain(kept)
            .map(|(held, src)| (target.iter().zip(held).take_while(|(a, b)| a == b).count(), src == anchor, src))
            .max()
            .filter(|(common, _, _)| *common > 0)
            .map(|(common, _, src)| (common, src))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ids: &[i32]) -> Vec<Token> {
        ids.iter().map(|&i| Token(i)).collect()
    }

    #[test]
    fn the_lowest_free_slot_goes_first_and_comes_back() {
        let mut s = Slots::new(3);
        assert_eq!(s.lowest_free(), Some(0));
        s.take(0);
        s.take(1);
        assert_eq!(s.lowest_free(), Some(2));
        s.release(0, Vec::new());
        assert_eq!(s.lowest_free(), Some(0));
        s.take(0);
        s.take(2);
        assert_eq!(s.lowest_free(), None);
    }

    #[test]
    fn the_longest_held_prefix_wins_and_ties_stay_on_the_anchor() {
        let mut s = Slots::new(4);
        s.take(1);
        s.release(1, t(&[1, 2, 3]));
        s.take(2);
        s.release(2, t(&[1, 2]));
        let prompt = t(&[1, 2, 3, 4, 5]);
        let live = t(&[1, 2, 3, 4]);
        // A live job holding more of it beats the retained streams.
        assert_eq!(s.best_prefix(&prompt, 0, [(&live[..], 3)].into_iter()), Some((4, 3)));
        assert_eq!(s.best_prefix(&prompt, 0, std::iter::empty()), Some((3, 1)));
        // The prompt's last token never counts: every sequence is fed it.
        assert_eq!(s.best_prefix(&t(&[1, 2, 3]), 0, std::iter::empty()), Some((2, 2)));
        // Equal prefixes: the anchor itself.
        assert_eq!(s.best_prefix(&prompt, 2, std::iter::empty()).map(|b| b.0), Some(3));
        assert_eq!(s.best_prefix(&t(&[1, 2, 9]), 2, std::iter::empty()), Some((2, 2)));
        // Taking a slot forgets what it held.
        s.take(1);
        assert_eq!(s.best_prefix(&prompt, 0, std::iter::empty()), Some((2, 2)));
        assert_eq!(s.best_prefix(&t(&[7, 8]), 0, std::iter::empty()), None);
    }
}
