//! The rule file's shape, as Prometheus and vmalert read it: groups of
//! recording and alerting rules. Serialised as is by [`super::output`].

use std::collections::BTreeMap;

use serde::Serialize;

/// A whole rule file: `groups:` and nothing else.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

impl RuleFile {
    /// Every alerting rule, in file order.
    pub fn alerts(&self) -> impl Iterator<Item = &AlertingRule> {
        self.groups.iter().flat_map(|g| &g.rules).filter_map(|r| match r {
            Rule::Alert(a) => Some(a),
            Rule::Record(_) => None,
        })
    }

    /// Every recording rule, in file order.
    pub fn records(&self) -> impl Iterator<Item = &RecordingRule> {
        self.groups.iter().flat_map(|g| &g.rules).filter_map(|r| match r {
            Rule::Record(r) => Some(r),
            Rule::Alert(_) => None,
        })
    }
}

/// Rules evaluated together, in order, every `interval`: a rule can use what an
/// earlier rule of the same group recorded in the same evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleGroup {
    pub name: String,
    /// A Prometheus duration such as `1m`.
    pub interval: String,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Rule {
    Record(RecordingRule),
    Alert(AlertingRule),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordingRule {
    pub record: String,
    pub expr: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertingRule {
    pub alert: String,
    pub expr: String,
    /// How long the condition must hold before the alert fires; `None` fires at once.
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}
