//! The alert kinds and the runbook each one links to. The runbooks themselves
//! are hand-written Markdown in the repository's `runbooks/` folder; a test
//! fails when a file linked here is missing.

use super::slo::{Severity, Sli};

/// Every alert the generator writes is one of these; the alert name and the
/// runbook file follow from the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    AvailabilityFastBurn,
    AvailabilitySlowBurn,
    LatencyFastBurn,
    LatencySlowBurn,
    DelayFastBurn,
    DelaySlowBurn,
    /// At least half of an instance's journeys burn availability at page level:
    /// one page for a whole-instance outage.
    InstanceUnavailable,
    /// One region sees a fast burn that fewer than `page_quorum` regions see.
    RegionOnlyBurn,
    /// A region stopped reporting a journey.
    JourneyAbsent,
    /// Too many runs ended in `probe_error`.
    ProbeErrors,
    /// A long-running agent holds samples it cannot deliver, or lost some.
    SamplesUndelivered,
    /// A journey's APDEX stays under its objective (`generate::apdex`).
    ApdexLow,
}

impl AlertKind {
    pub const ALL: [AlertKind; 12] = [
        AlertKind::InstanceUnavailable,
        AlertKind::AvailabilityFastBurn,
        AlertKind::AvailabilitySlowBurn,
        AlertKind::LatencyFastBurn,
        AlertKind::LatencySlowBurn,
        AlertKind::DelayFastBurn,
        AlertKind::DelaySlowBurn,
        AlertKind::RegionOnlyBurn,
        AlertKind::JourneyAbsent,
        AlertKind::ProbeErrors,
        AlertKind::SamplesUndelivered,
        AlertKind::ApdexLow,
    ];

    /// The burn alert for an SLI at a severity.
    pub fn burn(sli: Sli, severity: Severity) -> AlertKind {
        match (sli, severity) {
            (Sli::Availability, Severity::Page) => AlertKind::AvailabilityFastBurn,
            (Sli::Availability, Severity::Ticket) => AlertKind::AvailabilitySlowBurn,
            (Sli::Latency, Severity::Page) => AlertKind::LatencyFastBurn,
            (Sli::Latency, Severity::Ticket) => AlertKind::LatencySlowBurn,
            (Sli::Delay, Severity::Page) => AlertKind::DelayFastBurn,
            (Sli::Delay, Severity::Ticket) => AlertKind::DelaySlowBurn,
        }
    }

    /// The `alert:` name.
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::AvailabilityFastBurn => "FediprobeAvailabilityFastBurn",
            AlertKind::AvailabilitySlowBurn => "FediprobeAvailabilitySlowBurn",
            AlertKind::LatencyFastBurn => "FediprobeLatencyFastBurn",
            AlertKind::LatencySlowBurn => "FediprobeLatencySlowBurn",
            AlertKind::DelayFastBurn => "FediprobeFederationDelayFastBurn",
            AlertKind::DelaySlowBurn => "FediprobeFederationDelaySlowBurn",
            AlertKind::InstanceUnavailable => "FediprobeInstanceUnavailable",
            AlertKind::RegionOnlyBurn => "FediprobeRegionOnlyBurn",
            AlertKind::JourneyAbsent => "FediprobeJourneyAbsent",
            AlertKind::ProbeErrors => "FediprobeProbeErrors",
            AlertKind::SamplesUndelivered => "FediprobeSamplesUndelivered",
            AlertKind::ApdexLow => "FediprobeApdexLow",
        }
    }

    /// The runbook's file name inside `runbooks/`.
    pub fn runbook(self) -> &'static str {
        match self {
            AlertKind::AvailabilityFastBurn => "availability-fast-burn.md",
            AlertKind::AvailabilitySlowBurn => "availability-slow-burn.md",
            AlertKind::LatencyFastBurn => "latency-fast-burn.md",
            AlertKind::LatencySlowBurn => "latency-slow-burn.md",
            AlertKind::DelayFastBurn => "federation-delay-fast-burn.md",
            AlertKind::DelaySlowBurn => "federation-delay-slow-burn.md",
            AlertKind::InstanceUnavailable => "instance-unavailable.md",
            AlertKind::RegionOnlyBurn => "region-only-burn.md",
            AlertKind::JourneyAbsent => "journey-absent.md",
            AlertKind::ProbeErrors => "probe-errors.md",
            AlertKind::SamplesUndelivered => "samples-undelivered.md",
            AlertKind::ApdexLow => "apdex-low.md",
        }
    }

    /// The full link: the configured base URL (ending in `/`) and the file.
    pub fn runbook_url(self, base: &str) -> String {
        format!("{base}{}", self.runbook())
    }
}
