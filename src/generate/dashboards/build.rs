//! Building blocks shared by the four dashboards: the template variables, panel
//! constructors with fediprobe's defaults, and a layout that places panels left to
//! right on Grafana's 24-column grid.

use serde_json::json;

use super::model::*;
use crate::generate::naming::{Name, Naming};

/// A dashboard being assembled: panels get ids and grid positions in the order
/// they are added.
#[derive(Default)]
pub struct Board {
    panels: Vec<Panel>,
    x: u32,
    y: u32,
    row_height: u32,
}

impl Board {
    pub fn new() -> Board {
        Board::default()
    }

    /// A full-width row title; the panels after it go below.
    pub fn row(&mut self, title: &str) {
        self.newline();
        let panel = Panel { collapsed: Some(false), ..panel(PanelKind::Row, title, "", Vec::new()) };
        self.place(panel, 24, 1);
        self.newline();
    }

    /// Adds `panel`, `w` columns wide and `h` units high, after the previous one
    /// (or on a new line when it does not fit).
    pub fn add(&mut self, panel: Panel, w: u32, h: u32) {
        if self.x + w > 24 {
            self.newline();
        }
        self.place(panel, w, h);
    }

    fn place(&mut self, mut panel: Panel, w: u32, h: u32) {
        panel.id = self.panels.len() as u32 + 1;
        panel.grid_pos = GridPos { h, w, x: self.x, y: self.y };
        self.x += w;
        self.row_height = self.row_height.max(h);
        self.panels.push(panel);
    }

    fn newline(&mut self) {
        self.y += self.row_height;
        self.x = 0;
        self.row_height = 0;
    }

    pub fn finish(self) -> Vec<Panel> {
        self.panels
    }
}

/// A panel without a position yet (the [`Board`] sets `id` and `grid_pos`).
pub fn panel(kind: PanelKind, title: &str, description: &str, targets: Vec<Target>) -> Panel {
    Panel {
        id: 0,
        kind,
        title: title.to_owned(),
        description: description.to_owned(),
        grid_pos: GridPos { h: 0, w: 0, x: 0, y: 0 },
        datasource: (kind != PanelKind::Row).then(DataSourceRef::variable),
        interval: None,
        targets,
        field_config: None,
        options: None,
        transformations: Vec::new(),
        collapsed: None,
    }
}

/// A query drawn over time; `refId`s are given in order by [`with_ref_ids`].
pub fn series(expr: impl Into<String>, legend: &str) -> Target {
    Target {
        ref_id: String::new(),
        datasource: DataSourceRef::variable(),
        editor_mode: "code",
        expr: expr.into(),
        legend_format: legend.to_owned(),
        range: true,
        instant: false,
        format: "time_series",
    }
}

/// A query evaluated once, at the end of the time range, as table rows.
pub fn instant(expr: impl Into<String>) -> Target {
    Target { range: false, instant: true, format: "table", legend_format: "__auto".to_owned(), ..series(expr, "") }
}

fn with_ref_ids(mut targets: Vec<Target>) -> Vec<Target> {
    for (i, t) in targets.iter_mut().enumerate() {
        t.ref_id = ((b'A' + i as u8) as char).to_string();
    }
    targets
}

/// How a time series panel draws its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Lines,
    /// Stacked areas: parts of a whole (steps of a run).
    Stacked,
    /// Stacked to 100%: shares.
    Percent,
    /// Stacked bars: counts per interval.
    Bars,
}

/// A time series panel. `thresholds` are drawn as dashed lines.
pub fn timeseries(
    title: &str,
    description: &str,
    unit: &str,
    style: Style,
    thresholds: Option<Thresholds>,
    targets: Vec<Target>,
) -> Panel {
    let (draw, fill, stacking) = match style {
        Style::Lines => ("line", 0, "none"),
        Style::Stacked => ("line", 40, "normal"),
        Style::Percent => ("line", 60, "percent"),
        Style::Bars => ("bars", 80, "normal"),
    };
    let threshold_style = if thresholds.is_some() { "dashed" } else { "off" };
    let custom = json!({
        "drawStyle": draw,
        "lineWidth": 1,
        "fillOpacity": fill,
        "showPoints": "never",
        "spanNulls": false,
        "stacking": { "mode": stacking, "group": "A" },
        "thresholdsStyle": { "mode": threshold_style },
    });
    Panel {
        field_config: Some(FieldConfig {
            defaults: FieldDefaults {
                unit: Some(unit.to_owned()),
                // Ratios near 1 (99.5%) need room to show their dips: no floor for them.
                min: (unit == "s" || unit == "bytes" || style != Style::Lines).then_some(0.0),
                max: (unit == "percentunit" && style == Style::Lines).then_some(1.0),
                color: Some(ColorMode { mode: "palette-classic" }),
                thresholds,
                custom: Some(custom),
                ..FieldDefaults::default()
            },
            overrides: Vec::new(),
        }),
        options: Some(json!({
            "legend": { "displayMode": "table", "placement": "right", "showLegend": true, "calcs": ["lastNotNull", "max"] },
            "tooltip": { "mode": "multi", "sort": "desc" },
        })),
        ..panel(PanelKind::Timeseries, title, description, with_ref_ids(targets))
    }
}

/// A stat panel: one tile per series, coloured by `thresholds` or `mappings`.
pub fn stat(
    title: &str,
    description: &str,
    unit: &str,
    thresholds: Thresholds,
    mappings: Vec<ValueMapping>,
    targets: Vec<Target>,
) -> Panel {
    Panel {
        field_config: Some(FieldConfig {
            defaults: FieldDefaults {
                unit: Some(unit.to_owned()),
                color: Some(ColorMode { mode: "thresholds" }),
                thresholds: Some(thresholds),
                mappings,
                ..FieldDefaults::default()
            },
            overrides: Vec::new(),
        }),
        options: Some(json!({
            "reduceOptions": { "calcs": ["lastNotNull"], "fields": "", "values": false },
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "value_and_name",
            "justifyMode": "auto",
            "orientation": "auto",
            "wideLayout": true,
            "showPercentChange": false,
        })),
        ..panel(PanelKind::Stat, title, description, with_ref_ids(targets))
    }
}

/// A table of instant queries joined on their labels: one row per label set,
/// one column per query, renamed to `columns[i]` (in the order of `targets`).
pub fn table(
    title: &str,
    description: &str,
    targets: Vec<Target>,
    columns: &[&str],
    hidden: &[&str],
    overrides: Vec<Override>,
) -> Panel {
    let targets = with_ref_ids(targets);
    let mut rename = serde_json::Map::new();
    for (t, name) in targets.iter().zip(columns) {
        rename.insert(format!("Value #{}", t.ref_id), json!(name));
    }
    let mut exclude = serde_json::Map::new();
    exclude.insert("Time".to_owned(), json!(true));
    for h in hidden {
        exclude.insert((*h).to_owned(), json!(true));
    }
    Panel {
        field_config: Some(FieldConfig {
            defaults: FieldDefaults {
                custom: Some(json!({ "align": "auto", "cellOptions": { "type": "auto" } })),
                ..FieldDefaults::default()
            },
            overrides,
        }),
        options: Some(json!({ "showHeader": true, "cellHeight": "sm", "footer": { "show": false } })),
        transformations: vec![
            Transformation { id: "merge", options: json!({}) },
            Transformation {
                id: "organize",
                options: json!({ "excludeByName": exclude, "renameByName": rename, "indexByName": {} }),
            },
        ],
        ..panel(PanelKind::Table, title, description, targets)
    }
}

/// The properties of a column shown as `unit`, its cell coloured by `thresholds`.
pub fn column(unit: &str, decimals: Option<u8>, thresholds: Option<Thresholds>) -> Vec<Property> {
    let mut props = vec![Property { id: "unit", value: json!(unit) }];
    if let Some(d) = decimals {
        props.push(Property { id: "decimals", value: json!(d) });
    }
    if let Some(t) = thresholds {
        props.push(Property { id: "thresholds", value: serde_json::to_value(t).expect("thresholds serialise") });
        props
            .push(Property { id: "custom.cellOptions", value: json!({ "type": "color-background", "mode": "basic" }) });
    }
    props
}

/// A heatmap of raw values, bucketed by Grafana on a log scale (per-run samples
/// are not a Prometheus histogram).
pub fn heatmap(title: &str, description: &str, unit: &str, targets: Vec<Target>) -> Panel {
    Panel {
        options: Some(json!({
            "calculate": true,
            "calculation": { "yBuckets": { "mode": "size", "scale": { "type": "log", "log": 2 } } },
            "cellGap": 1,
            "color": { "mode": "scheme", "scheme": "Oranges", "fill": "dark-orange", "scale": "exponential", "exponent": 0.5, "steps": 64, "reverse": false },
            "yAxis": { "axisPlacement": "left", "unit": unit },
            "rowsFrame": { "layout": "auto" },
            "tooltip": { "mode": "single", "yHistogram": true, "showColorScale": false },
            "legend": { "show": true },
            "exemplars": { "color": "rgba(255,0,255,0.7)" },
            "filterValues": { "le": 1e-9 },
        })),
        field_config: Some(FieldConfig::default()),
        ..panel(PanelKind::Heatmap, title, description, with_ref_ids(targets))
    }
}

/// The variables every fediprobe dashboard has: the data source, then region,
/// journey and instance, each filtered by the ones before it. `metric` is the
/// series the values are read from; `all_journeys` says whether "All" means any
/// journey (`.*`) or only the ones `metric` has.
pub fn standard_variables(naming: &Naming, metric: &str, journey_multi: bool, all_journeys: bool) -> Vec<Variable> {
    let (braced, comma) = (naming.selector(), naming.more_matchers());
    let datasource = Variable {
        name: "datasource".to_owned(),
        label: "Data source".to_owned(),
        kind: "datasource",
        datasource: None,
        query: "prometheus".to_owned(),
        definition: None,
        refresh: 1,
        include_all: false,
        multi: false,
        all_value: None,
        current: Current::default(),
        options: Vec::new(),
        sort: 0,
        regex: "",
        hide: 0,
    };
    let query = |name: &str, label: &str, q: String, multi: bool, all: Option<&'static str>| Variable {
        name: name.to_owned(),
        label: label.to_owned(),
        kind: "query",
        datasource: Some(DataSourceRef::variable()),
        definition: Some(q.clone()),
        query: q,
        refresh: 2,
        include_all: multi,
        multi,
        all_value: all,
        current: if multi {
            Current {
                text: Some(Selection::Many(vec!["All".to_owned()])),
                value: Some(Selection::Many(vec!["$__all".to_owned()])),
                selected: Some(true),
            }
        } else {
            Current::default()
        },
        options: Vec::new(),
        sort: 1,
        regex: "",
        hide: 0,
    };
    vec![
        datasource,
        query("region", "Region", format!("label_values({metric}{braced}, region)"), true, Some(".*")),
        query(
            "journey",
            "Journey",
            format!("label_values({metric}{{region=~\"$region\"{comma}}}, journey)"),
            journey_multi,
            if all_journeys { Some(".*") } else { None },
        ),
        query(
            "instance",
            "Instance",
            format!("label_values({metric}{{region=~\"$region\",journey=~\"$journey\"{comma}}}, instance)"),
            true,
            Some(".*"),
        ),
    ]
}

/// A fixed-choice variable, e.g. the span percentiles are taken over.
pub fn custom_variable(name: &str, label: &str, choices: &[&str], default: &str) -> Variable {
    Variable {
        name: name.to_owned(),
        label: label.to_owned(),
        kind: "custom",
        datasource: None,
        query: choices.join(","),
        definition: None,
        refresh: 0,
        include_all: false,
        multi: false,
        all_value: None,
        current: Current {
            text: Some(Selection::One(default.to_owned())),
            value: Some(Selection::One(default.to_owned())),
            selected: Some(true),
        },
        options: choices
            .iter()
            .map(|c| VariableOption { text: (*c).to_owned(), value: (*c).to_owned(), selected: *c == default })
            .collect(),
        sort: 0,
        regex: "",
        hide: 0,
    }
}

/// `journey=~"$journey",instance=~"$instance",region=~"$region"`, `extra`
/// matchers, and the config's `rules.selector`: the matchers of a raw per-run series.
fn raw_matchers(naming: &Naming, extra: &str) -> String {
    let base = "journey=~\"$journey\",instance=~\"$instance\",region=~\"$region\"";
    let extra = if extra.is_empty() { String::new() } else { format!(",{extra}") };
    format!("{base}{extra}{}", naming.more_matchers())
}

/// `{…}` of a raw per-run series (`instance` as the probes label it, and the
/// config's `rules.selector`), plus `extra` matchers.
pub fn selector(naming: &Naming, extra: &str) -> String {
    format!("{{{}}}", raw_matchers(naming, extra))
}

/// The matchers of a recorded per-region series: the rules' instance label
/// (the `instance` variable's values, copied), no `rules.selector` (the rules
/// applied it when they read the samples), plus `extra`.
pub fn region_matchers(naming: &Naming, extra: &str) -> String {
    let base = format!("journey=~\"$journey\",{}=~\"$instance\",region=~\"$region\"", naming.instance_label());
    if extra.is_empty() { base } else { format!("{base},{extra}") }
}

/// The same without `region`, for recorded series pooled over every region.
pub fn pooled_matchers(naming: &Naming, extra: &str) -> String {
    let base = format!("journey=~\"$journey\",{}=~\"$instance\"", naming.instance_label());
    if extra.is_empty() { base } else { format!("{base},{extra}") }
}

/// A recorded series that has one of `names` (one per SLI under the `mastodon`
/// scheme), selected by `matchers`.
pub fn recorded(naming: &Naming, names: Vec<Name>, matchers: &str) -> String {
    format!("{}{matchers}}}", naming.any_of(names))
}

/// A dashboard with fediprobe's common settings.
pub fn dashboard(
    uid: &str,
    title: &str,
    description: &str,
    from: &str,
    variables: Vec<Variable>,
    board: Board,
) -> Dashboard {
    Dashboard {
        uid: uid.to_owned(),
        title: title.to_owned(),
        description: description.to_owned(),
        tags: vec!["fediprobe".to_owned()],
        timezone: "utc",
        editable: true,
        graph_tooltip: 1,
        schema_version: SCHEMA_VERSION,
        version: 1,
        refresh: "1m",
        time: TimeRange { from: from.to_owned(), to: "now" },
        links: vec![DashboardLink {
            title: "fediprobe",
            kind: "dashboards",
            tags: vec!["fediprobe".to_owned()],
            as_dropdown: true,
            include_vars: true,
            keep_time: true,
        }],
        templating: Templating { list: variables },
        annotations: Annotations { list: Vec::new() },
        panels: board.finish(),
    }
}
