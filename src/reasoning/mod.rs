//! Test-time-compute policy: pure logic, unit-tested without a model.

pub mod extract;
pub mod forcing;
pub mod grade;
pub mod plan;
pub mod verify;
pub mod vote;
