//! Test-time-compute policy: pure logic, unit-tested without a model.

pub mod auto;
pub mod chat;
pub mod code;
pub mod confidence;
pub mod extract;
pub mod forcing;
pub mod grade;
pub mod labels;
pub mod logprobs;
pub mod params;
pub mod plan;
pub mod schema;
pub mod tools;
pub mod verify;
pub mod vote;
