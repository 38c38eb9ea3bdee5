//! The Grafana dashboard JSON model (schema version 39: Grafana 10.4 and 11),
//! as far as fediprobe's dashboards use it. Field order here is the order in the
//! written JSON; optional fields are left out when unset, so the files stay short
//! and Grafana fills in its own defaults.

use std::collections::BTreeMap;

use serde::Serialize;

/// The schema version Grafana 10.4 and 11.x write; both import it unchanged.
pub const SCHEMA_VERSION: u32 = 39;

/// Every query goes to the data source the `datasource` variable names.
pub const DATASOURCE_VARIABLE: &str = "${datasource}";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dashboard {
    pub uid: String,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub timezone: &'static str,
    pub editable: bool,
    /// 1: a shared crosshair across panels.
    pub graph_tooltip: u8,
    pub schema_version: u32,
    pub version: u32,
    pub refresh: &'static str,
    pub time: TimeRange,
    pub links: Vec<DashboardLink>,
    pub templating: Templating,
    pub annotations: Annotations,
    pub panels: Vec<Panel>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimeRange {
    pub from: String,
    pub to: &'static str,
}

/// A drop-down of the dashboards tagged `fediprobe`, keeping time and variables.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DashboardLink {
    pub title: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub tags: Vec<String>,
    pub as_dropdown: bool,
    pub include_vars: bool,
    pub keep_time: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Templating {
    pub list: Vec<Variable>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Annotations {
    pub list: Vec<serde_json::Value>,
}

/// A template variable: the data source, a `label_values(…)` query, or a fixed list.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Variable {
    pub name: String,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datasource: Option<DataSourceRef>,
    pub query: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    /// 0: never, 1: on load, 2: on time range change.
    pub refresh: u8,
    pub include_all: bool,
    pub multi: bool,
    /// The value of "All": `.*` for a regex over every value, or `None` for the
    /// list of the values found (a narrower regex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_value: Option<&'static str>,
    pub current: Current,
    pub options: Vec<VariableOption>,
    /// 1: alphabetical.
    pub sort: u8,
    pub regex: &'static str,
    /// 0: shown.
    pub hide: u8,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Current {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<Selection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Selection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selected: Option<bool>,
}

/// A variable's selected value: one, or a list for a multi-value variable.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Selection {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Serialize)]
pub struct VariableOption {
    pub text: String,
    pub value: String,
    pub selected: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DataSourceRef {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub uid: &'static str,
}

impl DataSourceRef {
    /// The Prometheus-type data source chosen in the `datasource` variable
    /// (VictoriaMetrics is added to Grafana as a Prometheus data source).
    pub fn variable() -> DataSourceRef {
        DataSourceRef { kind: "prometheus", uid: DATASOURCE_VARIABLE }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct GridPos {
    pub h: u32,
    pub w: u32,
    pub x: u32,
    pub y: u32,
}

/// One panel, or a row (`type: row`) that titles the panels below it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Panel {
    pub id: u32,
    #[serde(rename = "type")]
    pub kind: PanelKind,
    pub title: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub grid_pos: GridPos,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datasource: Option<DataSourceRef>,
    /// The panel's smallest `$__interval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Target>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_config: Option<FieldConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transformations: Vec<Transformation>,
    /// Rows only: whether the row starts folded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collapsed: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PanelKind {
    Row,
    Timeseries,
    Stat,
    Table,
    Heatmap,
}

/// One PromQL query of a panel.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub ref_id: String,
    pub datasource: DataSourceRef,
    pub editor_mode: &'static str,
    pub expr: String,
    pub legend_format: String,
    pub range: bool,
    pub instant: bool,
    /// `time_series` or `table`.
    pub format: &'static str,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FieldConfig {
    pub defaults: FieldDefaults,
    pub overrides: Vec<Override>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FieldDefaults {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decimals: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<ColorMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Thresholds>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mappings: Vec<ValueMapping>,
    /// Panel-type specific settings (line style, stacking, cell colouring).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom: Option<serde_json::Value>,
    /// What a panel shows instead of Grafana's "No data" when its queries find
    /// nothing, e.g. for a journey without an APDEX objective.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_value: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColorMode {
    /// `thresholds`, `palette-classic`, or `fixed`.
    pub mode: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Thresholds {
    pub mode: &'static str,
    pub steps: Vec<Step>,
}

impl Thresholds {
    /// `base` below the first step, then each `(value, colour)`.
    pub fn absolute(base: &'static str, steps: &[(f64, &'static str)]) -> Thresholds {
        let mut out = vec![Step { color: base, value: None }];
        out.extend(steps.iter().map(|&(value, color)| Step { color, value: Some(value) }));
        Thresholds { mode: "absolute", steps: out }
    }
}

/// A threshold step; the first has no value (it starts at minus infinity).
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub color: &'static str,
    pub value: Option<f64>,
}

/// Maps exact values to a text and a colour (`0` → `OK`, green).
#[derive(Debug, Clone, Serialize)]
pub struct ValueMapping {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub options: BTreeMap<String, MappingResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MappingResult {
    pub text: &'static str,
    pub color: &'static str,
    pub index: u32,
}

/// Settings for the fields a matcher selects, e.g. one table column.
#[derive(Debug, Clone, Serialize)]
pub struct Override {
    pub matcher: Matcher,
    pub properties: Vec<Property>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Matcher {
    pub id: &'static str,
    pub options: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Property {
    pub id: &'static str,
    pub value: serde_json::Value,
}

impl Override {
    /// Settings for the field (column) named `name`.
    pub fn by_name(name: &str, properties: Vec<Property>) -> Override {
        Override { matcher: Matcher { id: "byName", options: name.to_owned() }, properties }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Transformation {
    pub id: &'static str,
    pub options: serde_json::Value,
}
