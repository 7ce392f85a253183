//! Batch packing: which sequences' pending tokens and which prompt chunks go into the next decode,
//! within the batch's capacity. Pure: the scheduler fills the llama.cpp batch from the plan.

/// Something that wants a place in the next batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A live sequence (slot `id`) with `pending` tokens to feed (its last sample, or forced text).
    Decode { id: i32, pending: usize },
    /// Job `job` prefilling its prompt on slot `anchor`, `remaining` tokens to go.
    Prefill { anchor: i32, job: usize, remaining: usize },
}

/// A place in the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Feed `tokens` of slot `id`'s pending tokens; `logits`: they were all of them, so sample after.
    Decode {
        id: i32,
        tokens: usize,
        logits: bool,
    },
    Prefill {
        job: usize,
        tokens: usize,
    },
}

/// Pack by increasing slot id (llama.cpp runs one pass per run of consecutive ids). llama.cpp
/// gives every sequence of a multi-stream pass the same token count, so when several sequences
/// have tokens to feed, forced text goes in one token per step (one pass per step instead of one
/// per extra token); a sequence feeding alone puts all of it in at once. Prefill takes what room
/// is left.
pub fn pack(mut wants: Vec<Want>, cap: usize) -> Vec<Take> {
    let slot = |w: &Want| match *w {
        Want::Decode { id, .. } => id,
        Want::Prefill { anchor, .. } => anchor,
    };
    wants.sort_by_key(slot);
    let feeding = wants.iter().filter(|w| matches!(w, Want::Decode { pending, .. } if *pending > 0)).count();
    let mut used = 0;
    let mut plan = Vec::new();
    for w in wants {
        let room = cap - used;
        match w {
            Want::Decode { id, pending } => {
                let tokens = if feeding > 1 { 1 } else { pending };
                if pending == 0 || tokens > room {
                    continue;
                }
                used += tokens;
                plan.push(Take::Decode { id, tokens, logits: tokens == pending });
            }
            Want::Prefill { job, remaining, .. } => {
                let tokens = remaining.min(room);
                if tokens == 0 {
                    continue;
                }
                used += tokens;
                plan.push(Take::Prefill { job, tokens });
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_go_by_slot_and_forced_text_one_token_at_a_time_when_shared() {
        let plan =
            pack(vec![Want::Decode { id: 2, pending: 1 }, Want::Decode { id: 0, pending: 5 }, Want::Decode { id: 1, pending: 0 }], 512);
        assert_eq!(plan, vec![Take::Decode { id: 0, tokens: 1, logits: false }, Take::Decode { id: 2, tokens: 1, logits: true }]);
        // Alone, a sequence feeds all its forced text at once.
        assert_eq!(pack(vec![Want::Decode { id: 3, pending: 5 }], 512), vec![Take::Decode { id: 3, tokens: 5, logits: true }]);
    }

    #[test]
    fn prefill_takes_the_room_left_and_the_cap_holds() {
        let wants = vec![
            Want::Prefill { anchor: 1, job: 7, remaining: 1000 },
            Want::Decode { id: 0, pending: 1 },
            Want::Decode { id: 2, pending: 1 },
        ];
        let plan = pack(wants, 512);
        assert_eq!(plan, vec![Take::Decode { id: 0, tokens: 1, logits: true }, Take::Prefill { job: 7, tokens: 511 }]);
        // The prefill filled the batch: slot 2 waits for the next step.
        let total: usize = plan
            .iter()
            .map(|t| match t {
                Take::Decode { tokens, .. } | Take::Prefill { tokens, .. } => *tokens,
            })
            .sum();
        assert_eq!(total, 512);
        assert_eq!(pack(vec![Want::Prefill { anchor: 0, job: 1, remaining: 10 }], 512), vec![Take::Prefill { job: 1, tokens: 10 }]);
        assert!(pack(vec![Want::Decode { id: 0, pending: 600 }], 512).is_empty());
    }
}
