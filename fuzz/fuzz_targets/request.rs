//! Any request body through every check that runs before the model: JSON parsing, the typed
//! sampling fields, the reasoning planner (with and without think tokens), the chat conversation
//! (messages, tools, tool_choice) and the Responses-to-chat mapping. Errors are fine; panics are not.
#![no_main]
use libfuzzer_sys::fuzz_target;
use thinkscale::api::responses::to_chat;
use thinkscale::config::Config;
use thinkscale::reasoning::plan;
use thinkscale::service::{conversation, parse_object, typed, Common};

fuzz_target!(|data: &[u8]| {
    let Ok(obj) = parse_object(data) else { return };
    let cfg = Config::default();
    let policy = cfg.reasoning.policy();
    for thinking_model in [false, true] {
        let _ = plan::normalise(&obj, &policy, thinking_model);
    }
    if let Ok(common) = typed::<Common>(&obj) {
        let _ = common.validate(&cfg, Some(5), Some(1000), &[2], 2048);
    }
    let _ = conversation(&obj);
    if let Ok(mapped) = to_chat(&obj) {
        let _ = conversation(&mapped);
        let _ = plan::normalise(&mapped, &policy, false);
    }
});
