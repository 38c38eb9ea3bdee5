//! Helpers shared by the integration tests, one file a job: the sandbox and a
//! client for it (`sandbox`), its streaming API (`stream`), journeys written in a
//! test or taken from the bundled ones (`journeys`), the vendored OpenAPI document
//! and its validators (`openapi`), rule files (`rules`), the
//! Debian tools (`tools`) and a real VictoriaMetrics (`victoria`).

pub mod journeys;
pub mod openapi;
pub mod rules;
pub mod sandbox;
pub mod stream;
pub mod tools;
pub mod victoria;
