//! What `check` says about the control target (`probe.control_url`), the host
//! that decides whether a network failure is the instance's or the probe's own.
//!
//! A good control target shares the instances' network path (the probe's way
//! out of its cluster to the internet) and not their fate. So `check` warns when
//! there is none (every network failure then counts against the instance), and
//! when it is in the cluster, on loopback or a private address (it answers while
//! the way out is down: an egress outage would be charged to the instances), a
//! placeholder name that never answers (every network failure would be excused
//! as the probe's), the metrics backend (its outage would change how instance
//! failures are classified), or an instance's own host (a joint outage would page
//! nobody). Warnings, not errors: only the operator knows their network.

use std::net::IpAddr;

use super::config::Config;
use super::diag::{Diagnostics, Severity};
use super::yaml::Source;

/// An example control target for hints: Android's connectivity check, a public
/// HTTPS host run for exactly this question ("is my own network up?").
pub const EXAMPLE_CONTROL_URL: &str = "https://connectivitycheck.gstatic.com";

/// Why `config`'s control target is missing or looks wrong, as warnings
/// pointing at `probe.control_url` (or at `probe:` when it is absent).
pub fn warnings(config: &Config) -> Diagnostics {
    let mut out = Diagnostics::default();
    let text = std::fs::read_to_string(&config.file).unwrap_or_default();
    let source = Source::new(&config.file, text);
    let pos = config.probe.control_url_pos;
    let width = source.line(pos.line).map_or(1, |l| l.chars().count().saturating_sub(pos.col - 1));
    let Some(url) = &config.probe.control_url else {
        let d = source
            .diagnostic(
                Severity::Warning,
                pos,
                width,
                "no control target: a failure of the probe's own network (its cluster's egress, its DNS) will count as the instances' `failure`",
            )
            .with_hint(format!(
                "set `probe.control_url` to a public HTTPS host outside the cluster that does not share the instances' hosting, e.g. `{EXAMPLE_CONTROL_URL}`"
            ));
        out.push(d);
        return out;
    };
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let mut problems: Vec<String> = Vec::new();
    if let Some(why) = unsuitable_host(&host) {
        problems.push(why);
    }
    if let Some(remote_write) = &config.remote_write
        && remote_write.url.host_str().is_some_and(|h| related(h, &host))
    {
        problems.push(
            "is the metrics backend's host: its outage would turn the instances' network failures into probe errors"
                .to_owned(),
        );
    }
    for instance in &config.instances {
        if instance.url.host_str().is_some_and(|h| related(h, &host)) {
            problems.push(format!(
                "is instance `{}`'s host: it shares the instance's fate, so an outage of both would page nobody",
                instance.name
            ));
        }
    }
    for why in problems {
        let d = source
            .diagnostic(Severity::Warning, pos, width, format!("the control target `{host}` {why}"))
            .with_hint(format!(
                "use a public HTTPS host outside the cluster that does not share the instances' hosting, e.g. `{EXAMPLE_CONTROL_URL}`"
            ));
        out.push(d);
    }
    out
}

/// Why `host` cannot tell whether the probe's way out works, if it can't.
fn unsuitable_host(host: &str) -> Option<String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return match ip {
            _ if ip.is_loopback() => Some("is a loopback address: it answers while the network is down".to_owned()),
            _ if ip.is_unspecified() => Some("is the unspecified address".to_owned()),
            IpAddr::V4(v4)
                if v4.is_private() || v4.is_link_local() || (v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64) =>
            {
                Some("is a private address: it does not share the instances' way out of the network".to_owned())
            }
            IpAddr::V6(v6) if (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80 => {
                Some("is a private address: it does not share the instances' way out of the network".to_owned())
            }
            _ => None,
        };
    }
    let under = |suffix: &str| host == suffix || host.ends_with(&format!(".{suffix}"));
    if under("localhost") {
        return Some("is loopback: it answers while the network is down".to_owned());
    }
    if ["example", "test", "invalid"].iter().any(|s| under(s))
        || ["example.com", "example.net", "example.org"].iter().any(|s| under(s))
    {
        return Some(
            "is a placeholder that never answers: every network failure would be excused as the probe's own".to_owned(),
        );
    }
    if !host.contains('.') || ["svc", "cluster.local", "local", "internal", "lan", "home.arpa"].iter().any(|s| under(s))
    {
        return Some(
            "looks like a name inside the cluster or the local network: it answers while the way out is down, so an egress outage would be charged to the instances"
                .to_owned(),
        );
    }
    None
}

/// The same host, or one a subdomain of the other (`mastodon.example` and
/// `static.mastodon.example` are most likely served together).
fn related(a: &str, b: &str) -> bool {
    let a = a.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let b = b.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings_for(probe: &str, remote_write: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fediprobe.yaml");
        let text = format!(
            "probe:\n  region: eu-west\n{probe}instances:\n  main: {{ url: https://mastodon.social, account: probe, token: {{ env: T }} }}\n{remote_write}"
        );
        std::fs::write(&path, &text).unwrap();
        let (config, diagnostics) = super::super::parse_config_str(&path, &text);
        let config = config.unwrap_or_else(|| panic!("{diagnostics}"));
        warnings(&config).0.into_iter().map(|d| d.title).collect()
    }

    #[test]
    fn a_public_host_of_its_own_is_fine() {
        let found = warnings_for(
            "  control_url: https://connectivitycheck.gstatic.com\n",
            "remote_write: { url: https://metrics.example.net/api/v1/write }\n",
        );
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn a_missing_control_target_is_named_with_what_it_means() {
        let found = warnings_for("", "remote_write: { url: https://metrics.example.net/api/v1/write }\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("no control target"), "{found:?}");
        assert!(found[0].contains("`failure`"), "{found:?}");
    }

    #[test]
    fn in_cluster_loopback_private_placeholder_backend_and_instance_hosts_are_each_named() {
        let cases = [
            ("http://vmagent-vmagent.monitoring.svc:8429", "inside the cluster"),
            ("http://victoria-metrics:8428", "inside the cluster"),
            ("http://127.0.0.1:8428", "loopback"),
            ("http://localhost:8428", "loopback"),
            ("https://[::1]:443", "loopback"),
            ("http://10.1.2.3", "private"),
            ("http://192.168.1.1", "private"),
            ("http://[fd00::1]", "private"),
            ("https://control.example", "placeholder"),
            ("https://www.example.com", "placeholder"),
            ("https://metrics.your.org", "metrics backend"),
            ("https://mastodon.social", "instance `main`"),
            ("https://static.mastodon.social", "instance `main`"),
        ];
        for (url, expected) in cases {
            let found = warnings_for(
                &format!("  control_url: {url}\n"),
                "remote_write: { url: https://metrics.your.org/api/v1/write }\n",
            );
            assert!(found.iter().any(|w| w.contains(expected)), "{url}: expected `{expected}` in {found:?}");
        }
    }
}
