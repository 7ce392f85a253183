//! Any model output through the parsers that read it: tool calls (whole, and streamed in chunks of
//! any size, which must find the same calls and never show a call's tag), answer extraction,
//! normalisation and the arithmetic checker.
#![no_main]
use libfuzzer_sys::fuzz_target;
use thinkscale::reasoning::tools::{self, CallStream};
use thinkscale::reasoning::{extract, verify};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let known = ["add", "get_weather"];
    let whole = tools::parse(text, &known);
    let chars: Vec<char> = text.chars().collect();
    let mut stream = CallStream::default();
    let mut shown = String::new();
    for chunk in chars.chunks(usize::from(first % 8) + 1) {
        shown.push_str(&stream.push(&chunk.iter().collect::<String>()));
    }
    assert!(!shown.contains(tools::CALL_OPEN), "a call's tag was shown: {shown:?}");
    assert_eq!(stream.finish(&known).calls, whole.calls);
    let answer = extract::final_answer(text, text);
    let _ = extract::normalise(text);
    let _ = verify::arithmetic_score(text, answer.as_deref());
});
