//! thinkscale library: the server's layers, exposed for the binary, benches and tests.

pub mod api;
pub mod backend;
pub mod config;
pub mod eval;
pub mod metrics;
pub mod reasoning;
pub mod sandbox;
pub mod service;
pub mod telemetry;
