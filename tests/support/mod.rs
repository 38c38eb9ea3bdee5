//! Helpers shared by the integration tests, one file a job: `fediprobe run` as a
//! process (`agent`), the sandbox and a
//! client for it (`sandbox`), its streaming API (`stream`), journeys written in a
//! test or taken from the bundled ones (`journeys`), the vendored OpenAPI document
//! and its validators (`openapi`), rule files (`rules`), the Debian tools
//! (`tools`), a real VictoriaMetrics (`victoria`), a receiver in front of it
//! that answers after the push timeout (`slow_backend`), and vmalert's replay of
//! rules over backfilled history (`vmalert`).

pub mod agent;
pub mod journeys;
pub mod openapi;
pub mod rules;
pub mod sandbox;
pub mod slow_backend;
pub mod spool;
pub mod stream;
pub mod tools;
pub mod victoria;
pub mod vmalert;
