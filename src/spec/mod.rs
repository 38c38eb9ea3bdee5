//! The journey spec: configuration and journey files, parsed and validated.
//!
//! This module owns everything between a YAML file on disk and the typed
//! [`Config`] and [`Journey`] values the runner executes: the YAML tree with
//! positions ([`yaml`]), the typed models ([`config`], [`journey`]), variable
//! templates ([`template`]), rustc-style diagnostics ([`diag`]), the check of
//! schedules (and the probes sharing an account or a token) against Mastodon's
//! rate limits ([`limits`]), which probe accounts each journey runs as
//! ([`accounts`]), and what `check` says about the control target ([`control`]).
//!
//! **Invariant: nothing here touches the network or reads the clock.** It reads
//! files, and nothing else, so `fediprobe check` is safe to run anywhere. Every
//! problem found is reported as a [`Diagnostic`] with file, line and column, and
//! parsing carries on after an error so that one run of `check` lists them all.

pub mod accounts;
pub mod bundled;
pub mod config;
pub mod control;
pub mod diag;
pub mod journey;
pub mod limits;
pub mod load;
mod read_journey;
pub mod template;
pub mod values;
pub mod yaml;

pub use config::{Config, InstanceConfig, RemoteWriteConfig, TokenSource};
pub use diag::{Diagnostic, Diagnostics, Severity};
pub use journey::{Journey, Step, StepKind};
pub use load::{Loaded, load_config, load_journey_paths, parse_config_str, parse_journey_str};
