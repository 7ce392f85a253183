//! Any request body through every check that runs before the model: JSON parsing, the typed
//! sampling fields, the reasoning planner (with and without think tokens), the chat conversation
//! (messages, tools, tool_choice) and the Responses-to-chat mapping. Errors are fine; panics are not.
#![no_main]
use libfuzzer_sys::fuzz_target;
use thinkscale::api::{chat, responses, types};
use thinkscale::config::Config;
use thinkscale::reasoning::plan;

fuzz_target!(|data: &[u8]| {
    let Ok(obj) = types::parse_object(data) else { return };
    let cfg = Config::default();
    for thinking_model in [false, true] {
        let _ = plan::normalise(&obj, &cfg.reasoning.policy(), thinking_model);
    }
    if let Ok(common) = types::typed::<types::Common>(&obj) {
        let _ = common.validate(&cfg, Some(5), 1000, &[2]);
    }
    let _ = chat::conversation(&obj);
    if let Ok(mapped) = responses::to_chat(&obj) {
        let _ = chat::conversation(&mapped);
        let _ = plan::normalise(&mapped, &cfg.reasoning.policy(), false);
    }
});
