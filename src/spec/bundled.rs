//! The journeys that ship with fediprobe, compiled into the binary so that
//! `fediprobe demo` works from anywhere. The files in `journeys/` are the source;
//! a test checks that this list and that folder agree.

use std::path::Path;

use super::diag::Diagnostics;
use super::journey::Journey;
use super::load::parse_journey_str;

/// (path as in the repository, contents).
pub const BUNDLED: &[(&str, &str)] = &[
    ("journeys/verify-credentials.yaml", include_str!("../../journeys/verify-credentials.yaml")),
    ("journeys/home-timeline.yaml", include_str!("../../journeys/home-timeline.yaml")),
    ("journeys/public-timeline.yaml", include_str!("../../journeys/public-timeline.yaml")),
    ("journeys/notifications.yaml", include_str!("../../journeys/notifications.yaml")),
    ("journeys/post-status.yaml", include_str!("../../journeys/post-status.yaml")),
    ("journeys/favourite.yaml", include_str!("../../journeys/favourite.yaml")),
    ("journeys/search.yaml", include_str!("../../journeys/search.yaml")),
    ("journeys/instance-health.yaml", include_str!("../../journeys/instance-health.yaml")),
    ("journeys/federation-main-to-peer.yaml", include_str!("../../journeys/federation-main-to-peer.yaml")),
    ("journeys/federation-peer-to-main.yaml", include_str!("../../journeys/federation-peer-to-main.yaml")),
    ("journeys/discovery.yaml", include_str!("../../journeys/discovery.yaml")),
    ("journeys/notification-delay.yaml", include_str!("../../journeys/notification-delay.yaml")),
    ("journeys/media.yaml", include_str!("../../journeys/media.yaml")),
    ("journeys/app-launch.yaml", include_str!("../../journeys/app-launch.yaml")),
];

/// The bundled journeys, parsed. They are tested to parse without errors.
pub fn journeys() -> Result<Vec<Journey>, Diagnostics> {
    let mut out = Vec::new();
    let mut all = Diagnostics::default();
    for (path, text) in BUNDLED {
        let (journey, diagnostics) = parse_journey_str(Path::new(path), text);
        all.extend(diagnostics);
        out.extend(journey);
    }
    if all.has_errors() { Err(all) } else { Ok(out) }
}
