//! Helpers shared by the integration tests.

pub mod rules;
pub mod tools;
pub mod victoria;
