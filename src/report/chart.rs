//! Line charts of a daily SLI against its objective, drawn as inline SVG: no
//! script, no external asset, readable offline and on a phone (the SVG scales
//! with the page; the numbers are also in a table next to it).

use std::fmt::Write;

use super::words::{escape, percent};

/// The chart's coordinate system (the SVG scales to the page's width).
const WIDTH: f64 = 520.0;
const HEIGHT: f64 = 250.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 32.0;

/// How far below the objective the axis may reach, in budgets: a day at 0%
/// would otherwise flatten every other day against the top.
const MAX_BUDGETS_BELOW: f64 = 20.0;

/// How a line is drawn; the legend in the page uses the same.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: &'static str,
    /// An SVG `stroke-dasharray`, empty for a solid line.
    pub dash: &'static str,
    pub width: f64,
}

/// The pooled line: dark and thick.
pub const POOLED: Style = Style { color: "#1f2937", dash: "", width: 2.5 };
/// The objective: red, dashed.
pub const OBJECTIVE: Style = Style { color: "#b91c1c", dash: "6 4", width: 1.5 };

/// Region lines: colours told apart by most colour-blind readers, and dash
/// patterns for those who cannot.
const PALETTE: [(&str, &str); 6] = [
    ("#2563eb", "1 0"),
    ("#d97706", "8 3"),
    ("#059669", "2 3"),
    ("#9333ea", "8 3 2 3"),
    ("#0891b2", "4 4"),
    ("#be185d", "1 3"),
];

/// The style of the `i`-th region.
pub fn region_style(i: usize) -> Style {
    let (color, dash) = PALETTE[i % PALETTE.len()];
    Style { color, dash, width: 1.5 }
}

/// One line: a value per day (`None`: no runs that day).
pub struct Line<'a> {
    pub label: &'a str,
    pub values: Vec<Option<f64>>,
    pub style: Style,
}

/// A daily SLI chart.
pub struct Chart<'a> {
    /// Unique in the page: the `id` of the title and description.
    pub id: &'a str,
    pub title: String,
    pub description: String,
    /// One label per day.
    pub days: Vec<String>,
    /// Drawn in order: regions first, the pooled line last (on top).
    pub lines: Vec<Line<'a>>,
    pub objective: f64,
}

/// The lowest value on the axis and the distance between grid lines.
fn axis(chart: &Chart<'_>) -> (f64, f64) {
    let budget = 1.0 - chart.objective;
    let lowest =
        chart.lines.iter().flat_map(|l| l.values.iter().flatten()).fold(chart.objective - budget, |a, &v| a.min(v));
    let lowest = lowest.max(chart.objective - MAX_BUDGETS_BELOW * budget).max(0.0);
    let span = 1.0 - lowest;
    let step = [0.0005, 0.001, 0.002, 0.0025, 0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.2, 0.25]
        .into_iter()
        .find(|s| span / s <= 5.0 + 1e-9)
        .unwrap_or(0.25);
    let floor = ((lowest / step) + 1e-9).floor() * step;
    (floor.max(0.0), step)
}

/// A percentage with as many decimals as `step` needs.
fn tick_label(value: f64, step: f64) -> String {
    let decimals = (0..4).find(|d| ((step * 100.0 * 10f64.powi(*d)).fract()).abs() < 1e-6).unwrap_or(4) as usize;
    format!("{:.*}%", decimals, value * 100.0)
}

/// The chart as an `<svg>` element.
pub fn render(chart: &Chart<'_>) -> String {
    let (low, step) = axis(chart);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let n = chart.days.len().max(1);
    let x = |i: usize| LEFT + (i as f64 + 0.5) * plot_w / n as f64;
    let y = |v: f64| TOP + (1.0 - (v.max(low) - low) / (1.0 - low)) * plot_h;
    let id = escape(chart.id);
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-labelledby=\"{id}-t {id}-d\" \
         xmlns=\"http://www.w3.org/2000/svg\">\n<title id=\"{id}-t\">{}</title>\n<desc id=\"{id}-d\">{}</desc>\n",
        escape(&chart.title),
        escape(&chart.description)
    );
    // Grid and y axis.
    let mut v = low;
    while v <= 1.0 + 1e-9 {
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"grid\"/><text x=\"{:.1}\" y=\"{:.1}\" \
             class=\"tick\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            tick_label(v, step),
            y = y(v),
        );
        v += step;
    }
    // Day labels, at most about eight.
    let every = n.div_ceil(8);
    for (i, label) in chart.days.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">{}</text>",
            x(i),
            HEIGHT - 10.0,
            escape(label)
        );
    }
    // The objective.
    let oy = y(chart.objective);
    let _ = writeln!(
        svg,
        "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{oy:.1}\" y2=\"{oy:.1}\" stroke=\"{}\" stroke-width=\"{}\" \
         stroke-dasharray=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"tick objective\" text-anchor=\"end\">objective \
         {}</text>",
        WIDTH - RIGHT,
        OBJECTIVE.color,
        OBJECTIVE.width,
        OBJECTIVE.dash,
        WIDTH - RIGHT - 2.0,
        // Below the line: the days that meet the objective are above it.
        oy + 13.0,
        escape(&percent(chart.objective)),
    );
    for line in &chart.lines {
        let mut d = String::new();
        let mut pen_down = false;
        for (i, value) in line.values.iter().enumerate() {
            match value {
                Some(v) => {
                    let _ = write!(d, "{}{:.1},{:.1} ", if pen_down { "L" } else { "M" }, x(i), y(*v));
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        let _ = writeln!(
            svg,
            "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\" stroke-dasharray=\"{}\" \
             stroke-linejoin=\"round\"><title>{}</title></path>",
            d.trim_end(),
            line.style.color,
            line.style.width,
            line.style.dash,
            escape(line.label)
        );
        for (i, value) in line.values.iter().enumerate() {
            if let Some(v) = value {
                // Below the objective: a red dot. Below the axis: pinned to it,
                // and said so: a downward triangle with the real value beside it
                // (and in its tooltip), never a silent point on the axis.
                let fill = if *v < chart.objective { OBJECTIVE.color } else { line.style.color };
                let r = if line.style.width > 2.0 { 3.0 } else { 2.0 };
                if *v < low {
                    let (cx, cy) = (x(i), y(*v));
                    let _ = writeln!(
                        svg,
                        "<path class=\"off-scale\" d=\"M{:.1},{:.1} L{:.1},{:.1} L{cx:.1},{:.1} Z\" fill=\"{fill}\">\
                         <title>{}: {} (off the scale)</title></path><text x=\"{:.1}\" y=\"{:.1}\" class=\"tick off-scale\" \
                         text-anchor=\"start\">↓ {}</text>",
                        cx - 4.0,
                        cy - 6.0,
                        cx + 4.0,
                        cy - 6.0,
                        cy + 1.0,
                        escape(line.label),
                        escape(&percent(*v)),
                        cx + 5.0,
                        cy - 2.0,
                        escape(&percent(*v)),
                    );
                } else {
                    let _ = writeln!(svg, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r}\" fill=\"{fill}\"/>", x(i), y(*v));
                }
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(values: Vec<Option<f64>>) -> Chart<'static> {
        Chart {
            id: "c",
            title: "t <&>".into(),
            description: "d".into(),
            days: (0..values.len()).map(|i| format!("d{i}")).collect(),
            lines: vec![Line { label: "all", values, style: POOLED }],
            objective: 0.995,
        }
    }

    #[test]
    fn the_axis_covers_the_objective_and_the_worst_day_within_twenty_budgets() {
        let (low, step) = axis(&chart(vec![Some(1.0), Some(0.999)]));
        assert!((low - 0.99).abs() < 1e-9 && step == 0.002, "{low} {step}");
        let (low, step) = axis(&chart(vec![Some(0.0)]));
        assert!((low - 0.875).abs() < 1e-9 && step == 0.025, "{low} {step}");
        assert_eq!(tick_label(0.9925, 0.0025), "99.25%");
        assert_eq!(tick_label(0.99, 0.01), "99%");
    }

    #[test]
    fn the_svg_is_labelled_escaped_and_breaks_lines_at_missing_days() {
        let svg = render(&chart(vec![Some(1.0), None, Some(0.99)]));
        assert!(svg.contains("role=\"img\"") && svg.contains("<title id=\"c-t\">t &lt;&amp;&gt;</title>"));
        assert_eq!(svg.matches('M').count(), 2, "{svg}");
    }

    #[test]
    fn a_value_below_the_axis_is_marked_off_scale_with_its_real_value() {
        let svg = render(&chart(vec![Some(1.0), Some(0.5)]));
        assert!(svg.contains("all: 50% (off the scale)") && svg.contains("↓ 50%"), "{svg}");
        assert!(!render(&chart(vec![Some(1.0), Some(0.999)])).contains("off-scale"));
    }
}
