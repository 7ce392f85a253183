//! Test-time-compute policy: pure logic, unit-tested without a model.

pub mod forcing;
pub mod plan;
