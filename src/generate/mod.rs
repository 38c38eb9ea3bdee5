//! The generators: what the journeys' SLO blocks turn into outside the probe.
//! Today the Prometheus/vmalert rules ([`rules`]) with the runbook each alert
//! links to ([`runbooks`]), the Grafana dashboards ([`dashboards`]), and the
//! Kubernetes CronJobs of the schedule groups ([`cronjobs`]).
//!
//! **Invariant: generation is a pure function of the config and the journeys.**
//! No clock, no network, no file I/O: the same input gives byte-identical output
//! (journeys sorted by name, labels in sorted maps, fields in declaration order),
//! so the files committed under `deploy/rules/` diff cleanly and a test can tell
//! when they are stale.
//!
//! The YAML is built by serialising typed structs ([`model`]) with serde into a
//! `serde_json::Value` (whose maps keep insertion order) and emitting that with
//! `saphyr`'s emitter ([`output`]). `saphyr` is already the crate's YAML parser;
//! `serde-saphyr` 2.x (serde straight to YAML) needs Rust 1.89, above this
//! crate's `rust-version`. Multi-line strings (PromQL) come out as literal
//! blocks, so the expressions in the committed files read like hand-written ones.

pub mod alerts;
pub mod apdex;
pub mod cronjobs;
pub mod dashboards;
pub mod mixin;
pub mod model;
pub mod naming;
pub mod output;
pub mod rules;
pub mod runbooks;
pub mod slo;

pub use model::{AlertingRule, RecordingRule, Rule, RuleFile, RuleGroup};
pub use output::{Format, render};
pub use rules::generate;
