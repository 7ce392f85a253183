//! Test-time-compute policy: pure logic, unit-tested without a model.

pub mod chat;
pub mod extract;
pub mod forcing;
pub mod grade;
pub mod plan;
pub mod tools;
pub mod verify;
pub mod vote;
