//! How the generated rules name what they record and alert on, and the labels
//! and annotations every rule carries: the knobs of the config's `rules:`
//! section (`names`, `severities`, `labels`, `instance_label`,
//! `runbook_annotation`, `runbook_url`, `selector`) in one value, [`Naming`],
//! that every rule builder asks (through [`super::rules::Plan::naming`]) instead
//! of writing a name, a severity, a label or a raw selector itself.
//!
//! A name is a [`Name`]: its spelling under every [`NameScheme`] and an `id`,
//! the key it has in the mixin's `_config.names`. New rules (APDEX, …) add a
//! constructor here (or build a [`Name::new`]) and ask [`Naming::name`] for it,
//! take their labels from [`Naming::labels`], their runbook annotation from
//! [`Naming::runbook`], group by [`Naming::by_region`] / [`Naming::pooled`],
//! and pass raw per-run expressions through [`Naming::relabel`] with
//! [`Naming::selector`]; the mixin then follows without further work.
//!
//! **The mixin's template.** [`Naming::template`] answers every question with a
//! placeholder (`\u{1}key\u{2}`) instead of a value, and remembers the names it
//! was asked for. `generate::mixin` builds the rules once with it and turns each
//! placeholder into a Jsonnet format key (`%(key)s`) filled from `_config`: the
//! rules the mixin renders are, by construction, the rules `fediprobe rules`
//! writes with the same knobs.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use super::runbooks::AlertKind;
use super::slo::{Severity, Sli, prom_duration};
use crate::spec::config::{DEFAULT_INSTANCE_LABEL, NameScheme, RulesConfig};

/// One name the rules use, spelled under every scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    /// The key in the mixin's `_config.names` (letters, digits, `_`).
    pub id: String,
    pub fediprobe: String,
    pub mastodon: String,
}

impl Name {
    pub fn new(id: impl Into<String>, fediprobe: impl Into<String>, mastodon: impl Into<String>) -> Name {
        Name { id: id.into(), fediprobe: fediprobe.into(), mastodon: mastodon.into() }
    }

    pub fn in_scheme(&self, scheme: NameScheme) -> &str {
        match scheme {
            NameScheme::Fediprobe => &self.fediprobe,
            NameScheme::Mastodon => &self.mastodon,
        }
    }
}

/// `availability`, `latency`, `federation_delay`: an SLI as the `mastodon`
/// scheme spells it inside a record name.
fn mastodon_sli(sli: Sli) -> &'static str {
    match sli {
        Sli::Availability => "availability",
        Sli::Latency => "latency",
        Sli::Delay => "federation_delay",
    }
}

/// The per-region error ratio of `sli` over `w`.
pub fn region_ratio(sli: Sli, w: Duration) -> Name {
    let w = prom_duration(w);
    Name::new(
        format!("region_ratio_{}_{w}", sli.label()),
        format!("journey_region:fediprobe_slo_errors:ratio_{w}"),
        format!("mastodon:journey_{}_region:error_ratio_{w}", mastodon_sli(sli)),
    )
}

/// The error ratio of `sli` over `w`, all regions pooled.
pub fn ratio(sli: Sli, w: Duration) -> Name {
    let w = prom_duration(w);
    Name::new(
        format!("ratio_{}_{w}", sli.label()),
        format!("journey:fediprobe_slo_errors:ratio_{w}"),
        format!("mastodon:journey_{}:error_ratio_{w}", mastodon_sli(sli)),
    )
}

/// The burn rate of `sli` over `w` (error ratio ÷ error budget), all regions pooled.
pub fn burn_rate(sli: Sli, w: Duration) -> Name {
    let w = prom_duration(w);
    Name::new(
        format!("burn_rate_{}_{w}", sli.label()),
        format!("journey:fediprobe_slo_burn_rate:ratio_{w}"),
        format!("mastodon:journey_{}:burn_rate_{w}", mastodon_sli(sli)),
    )
}

/// A journey's objective of `sli` (e.g. 0.995).
pub fn objective(sli: Sli) -> Name {
    Name::new(
        format!("objective_{}", sli.label()),
        "journey:fediprobe_slo_objective:ratio",
        format!("mastodon:journey_{}:objective", mastodon_sli(sli)),
    )
}

/// A journey's latency or delay threshold in seconds.
pub fn threshold(sli: Sli) -> Name {
    Name::new(
        format!("threshold_{}", sli.label()),
        "journey:fediprobe_slo_threshold:seconds",
        format!("mastodon:journey_{}:threshold_seconds", mastodon_sli(sli)),
    )
}

/// `1 − (errors over the SLO window ÷ budget)` of `sli`.
pub fn budget_remaining(sli: Sli) -> Name {
    Name::new(
        format!("budget_remaining_{}", sli.label()),
        "journey:fediprobe_slo_error_budget_remaining:ratio",
        format!("mastodon:journey_{}:error_budget_remaining", mastodon_sli(sli)),
    )
}

/// An alert's name: `FediprobeAvailabilityFastBurn`, or
/// `MastodonJourneyAvailabilityCritical` (burns are `Critical` when they page and
/// `Warning` when they open a ticket, as the stack names its own).
pub fn alert(kind: AlertKind) -> Name {
    let mastodon = match kind {
        AlertKind::AvailabilityFastBurn => "MastodonJourneyAvailabilityCritical",
        AlertKind::AvailabilitySlowBurn => "MastodonJourneyAvailabilityWarning",
        AlertKind::LatencyFastBurn => "MastodonJourneyLatencyCritical",
        AlertKind::LatencySlowBurn => "MastodonJourneyLatencyWarning",
        AlertKind::DelayFastBurn => "MastodonJourneyFederationDelayCritical",
        AlertKind::DelaySlowBurn => "MastodonJourneyFederationDelayWarning",
        AlertKind::InstanceUnavailable => "MastodonJourneyInstanceUnavailable",
        AlertKind::RegionOnlyBurn => "MastodonJourneyRegionOnlyBurn",
        AlertKind::JourneyAbsent => "MastodonJourneyAbsent",
        AlertKind::ProbeErrors => "MastodonJourneyProbeErrors",
        AlertKind::SamplesUndelivered => "MastodonJourneySamplesUndelivered",
        AlertKind::ApdexLow => "MastodonJourneyApdexWarning",
    };
    let fediprobe = kind.name();
    Name::new(format!("alert_{}", fediprobe.trim_start_matches("Fediprobe")), fediprobe, mastodon)
}

/// The mixin's format keys for the values that are not names.
pub const INSTANCE_LABEL_KEY: &str = "instanceLabel";
pub const SEVERITY_PAGE_KEY: &str = "severityPage";
pub const SEVERITY_TICKET_KEY: &str = "severityTicket";
pub const RUNBOOK_URL_KEY: &str = "runbookUrl";
pub const RUNBOOK_ANNOTATION_KEY: &str = "runbookAnnotation";
/// `{matchers}` or nothing, after a bare metric name.
pub const SELECTOR_BRACED_KEY: &str = "selectorBraced";
/// `,matchers` or nothing, inside a selector that has matchers of its own.
pub const SELECTOR_COMMA_KEY: &str = "selectorComma";

/// Where a placeholder starts and ends in a template's strings: control
/// characters no name, label or PromQL text contains.
pub const OPEN: char = '\u{1}';
pub const CLOSE: char = '\u{2}';

pub fn placeholder(key: &str) -> String {
    format!("{OPEN}{key}{CLOSE}")
}

/// [`Naming::any_of`]'s prefix for distinct, sorted names (what the mixin's
/// Jsonnet computes with `std.set`).
fn any_of_prefix(distinct: &[&str]) -> String {
    match distinct {
        [one] => format!("{one}{{"),
        many => format!("{{__name__=~\"{}\",", many.join("|")),
    }
}

enum Mode {
    Scheme(NameScheme),
    /// Placeholders, and every name asked for (by id).
    Template(RefCell<BTreeMap<String, Name>>, RefCell<BTreeMap<String, Vec<String>>>),
}

/// The names, severities, labels and runbook annotation the rules are written with.
pub struct Naming {
    mode: Mode,
    instance_label: String,
    /// Whether `instance_label` is copied from the samples' `instance` (it differs).
    relabel: bool,
    severity_page: String,
    severity_ticket: String,
    extra_labels: BTreeMap<String, String>,
    runbook_url: String,
    runbook_annotation: String,
    selector_braced: String,
    selector_comma: String,
}

impl Naming {
    /// The knobs of a config's `rules:` section.
    pub fn from_rules(rules: &RulesConfig) -> Naming {
        Naming {
            mode: Mode::Scheme(rules.names),
            instance_label: rules.instance_label.clone(),
            relabel: rules.instance_label != DEFAULT_INSTANCE_LABEL,
            severity_page: rules.severities.page.clone(),
            severity_ticket: rules.severities.ticket.clone(),
            extra_labels: rules.labels.clone(),
            runbook_url: rules.runbook_url.clone(),
            runbook_annotation: rules.runbook_annotation.clone(),
            selector_braced: if rules.selector.is_empty() { String::new() } else { format!("{{{}}}", rules.selector) },
            selector_comma: if rules.selector.is_empty() { String::new() } else { format!(",{}", rules.selector) },
        }
    }

    /// Placeholders for every knob, for the mixin. `relabel` chooses the shape of
    /// the expressions: with the instance label copied from `instance`
    /// (`label_replace`), or read as it is.
    pub fn template(relabel: bool) -> Naming {
        Naming {
            mode: Mode::Template(RefCell::default(), RefCell::default()),
            instance_label: if relabel { placeholder(INSTANCE_LABEL_KEY) } else { DEFAULT_INSTANCE_LABEL.to_owned() },
            relabel,
            severity_page: placeholder(SEVERITY_PAGE_KEY),
            severity_ticket: placeholder(SEVERITY_TICKET_KEY),
            // The mixin adds `_config.extraLabels` to every rule itself.
            extra_labels: BTreeMap::new(),
            runbook_url: placeholder(RUNBOOK_URL_KEY),
            runbook_annotation: placeholder(RUNBOOK_ANNOTATION_KEY),
            selector_braced: placeholder(SELECTOR_BRACED_KEY),
            selector_comma: placeholder(SELECTOR_COMMA_KEY),
        }
    }

    /// `name` as this naming spells it.
    pub fn name(&self, name: Name) -> String {
        match &self.mode {
            Mode::Scheme(scheme) => name.in_scheme(*scheme).to_owned(),
            Mode::Template(asked, _) => {
                let key = placeholder(&name.id);
                let mut asked = asked.borrow_mut();
                if let Some(known) = asked.get(&name.id) {
                    assert_eq!(known, &name, "two names share the mixin id `{}`", name.id);
                }
                asked.insert(name.id.clone(), name);
                key
            }
        }
    }

    /// Every name a template was asked for, by id (empty for a real scheme).
    pub fn names_asked(&self) -> BTreeMap<String, Name> {
        match &self.mode {
            Mode::Scheme(_) => BTreeMap::new(),
            Mode::Template(asked, _) => asked.borrow().clone(),
        }
    }

    /// The start of a selector that reads any of `names` (one series per SLI
    /// under the `mastodon` scheme, one name for all under `fediprobe`), up to
    /// and including the `{` or `,` the matchers follow: `name{` when the names
    /// are one, else `{__name__=~"a|b",`. The caller closes the braces.
    ///
    /// A template answers a placeholder whose key ([`Naming::any_of_asked`])
    /// the mixin computes the same way from `_config.names`.
    pub fn any_of(&self, mut names: Vec<Name>) -> String {
        if names.len() == 1 {
            return format!("{}{{", self.name(names.remove(0)));
        }
        match &self.mode {
            Mode::Scheme(scheme) => {
                let spelled: std::collections::BTreeSet<&str> = names.iter().map(|n| n.in_scheme(*scheme)).collect();
                any_of_prefix(&spelled.into_iter().collect::<Vec<_>>())
            }
            Mode::Template(_, derived) => {
                let ids: Vec<String> = names.iter().map(|n| n.id.clone()).collect();
                let key = format!("anyOf_{}", ids.join("__"));
                for name in names {
                    self.name(name);
                }
                derived.borrow_mut().insert(key.clone(), ids);
                placeholder(&key)
            }
        }
    }

    /// Every [`Naming::any_of`] key a template was asked for, with the name ids it reads.
    pub fn any_of_asked(&self) -> BTreeMap<String, Vec<String>> {
        match &self.mode {
            Mode::Scheme(_) => BTreeMap::new(),
            Mode::Template(_, derived) => derived.borrow().clone(),
        }
    }

    /// The label that carries the instance's name in the rules.
    pub fn instance_label(&self) -> &str {
        &self.instance_label
    }

    /// The labels a per-region condition keeps: `journey, instance, region`.
    pub fn by_region(&self) -> String {
        format!("journey, {}, region", self.instance_label)
    }

    /// The labels a pooled series keeps: `journey, instance`.
    pub fn pooled(&self) -> String {
        format!("journey, {}", self.instance_label)
    }

    /// The labels a journey-level condition keeps: `journey, instance, sli`.
    pub fn journey_key(&self) -> String {
        format!("journey, {}, sli", self.instance_label)
    }

    /// `expr` (an instant vector of raw samples, labelled `instance`) with the
    /// instance label copied from `instance` when the rules use another one; the
    /// aggregation around it then drops `instance`.
    pub fn relabel(&self, expr: &str) -> String {
        if self.relabel {
            format!("label_replace({expr}, \"{}\", \"$1\", \"instance\", \"(.*)\")", self.instance_label)
        } else {
            expr.to_owned()
        }
    }

    /// The configured matchers as a selector after a bare metric name
    /// (`fediprobe_journey_success{cluster="eu"}`), or nothing.
    pub fn selector(&self) -> &str {
        &self.selector_braced
    }

    /// The configured matchers to append inside a selector with matchers of its
    /// own (`{journey="a",cluster="eu"}`), or nothing.
    pub fn more_matchers(&self) -> &str {
        &self.selector_comma
    }

    pub fn severity(&self, severity: Severity) -> &str {
        match severity {
            Severity::Page => &self.severity_page,
            Severity::Ticket => &self.severity_ticket,
        }
    }

    /// A rule's labels: its own, the configured static labels, and the severity
    /// for an alert.
    pub fn labels(&self, severity: Option<Severity>, own: &[(&str, String)]) -> BTreeMap<String, String> {
        let mut labels = self.extra_labels.clone();
        labels.extend(own.iter().map(|(k, v)| (k.to_string(), v.clone())));
        if let Some(s) = severity {
            labels.insert("severity".to_owned(), self.severity(s).to_owned());
        }
        labels
    }

    /// The runbook annotation of an alert of `kind`: its key and the link.
    pub fn runbook(&self, kind: AlertKind) -> (String, String) {
        (self.runbook_annotation.clone(), kind.runbook_url(&self.runbook_url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_has_a_distinct_id_and_distinct_spellings_where_the_id_differs() {
        let mut all = Vec::new();
        for sli in Sli::ALL {
            for w in [Duration::from_secs(300), Duration::from_secs(30 * 86_400)] {
                all.extend([region_ratio(sli, w), ratio(sli, w), burn_rate(sli, w)]);
            }
            all.extend([objective(sli), threshold(sli), budget_remaining(sli)]);
        }
        all.extend(AlertKind::ALL.map(alert));
        for w in [Duration::from_secs(300), Duration::from_secs(30 * 86_400)] {
            all.extend([super::super::apdex::region_name(w), super::super::apdex::pooled_name(w)]);
        }
        all.extend([super::super::apdex::objective_name(), super::super::apdex::threshold_name()]);
        let mut ids: Vec<&str> = all.iter().map(|n| n.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all.len());
        // The mastodon scheme names one series per SLI, so its names are all distinct.
        let mut mastodon: Vec<&str> = all.iter().map(|n| n.mastodon.as_str()).collect();
        mastodon.sort();
        mastodon.dedup();
        assert_eq!(mastodon.len(), all.len());
        assert!(all.iter().all(|n| n.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')));
    }

    #[test]
    fn a_template_answers_placeholders_and_remembers_what_it_was_asked() {
        let naming = Naming::template(true);
        let text = naming.name(ratio(Sli::Latency, Duration::from_secs(300)));
        assert_eq!(text, "\u{1}ratio_latency_5m\u{2}");
        assert!(naming.relabel("x").starts_with("label_replace(x, \"\u{1}instanceLabel\u{2}\""));
        assert_eq!(naming.names_asked()["ratio_latency_5m"].mastodon, "mastodon:journey_latency:error_ratio_5m");
    }

    #[test]
    fn any_of_reads_one_name_as_it_is_and_several_by_a_name_regex() {
        let five = Duration::from_secs(300);
        let both = || vec![ratio(Sli::Availability, five), ratio(Sli::Latency, five)];
        let rules = |names| RulesConfig { names, ..RulesConfig::defaults_for("a") };
        assert_eq!(
            Naming::from_rules(&rules(NameScheme::Fediprobe)).any_of(both()),
            "journey:fediprobe_slo_errors:ratio_5m{"
        );
        assert_eq!(
            Naming::from_rules(&rules(NameScheme::Mastodon)).any_of(both()),
            "{__name__=~\"mastodon:journey_availability:error_ratio_5m|mastodon:journey_latency:error_ratio_5m\","
        );
        let template = Naming::template(false);
        assert_eq!(template.any_of(both()), "\u{1}anyOf_ratio_availability_5m__ratio_latency_5m\u{2}");
        assert_eq!(template.any_of_asked().values().next().unwrap(), &["ratio_availability_5m", "ratio_latency_5m"]);
        assert!(template.names_asked().contains_key("ratio_latency_5m"), "the mixin's names file has them");
    }
}
