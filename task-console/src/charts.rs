//! Per-minute charts drawn by the server as SVG, each with a text table for those who cannot
//! see it. No script, no inline style: colours come from classes in the stylesheet.

use maud::{Markup, html};

/// One line or one layer of bars: a value per minute (None: nothing measured).
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// What it measures, shown in the legend and the table.
    pub label: &'static str,
    /// Its colour class in the stylesheet.
    pub class: &'static str,
    /// A value per slot, oldest first.
    pub values: Vec<Option<f64>>,
}

/// How a chart draws its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Bars, the series stacked on one another (for counts).
    StackedBars,
    /// One line per series (for durations).
    Lines,
}

/// A chart's frame: its title, unit and the time labels of its slots.
pub(crate) struct Chart<'a> {
    /// The element id (for the title's `aria-labelledby`).
    pub id: &'a str,
    /// The heading.
    pub title: &'a str,
    /// How a value reads (`12`, `1.5 s`...).
    pub format: fn(f64) -> String,
    /// The label of each slot (e.g. `12:34`), as many as the series' values.
    pub slots: &'a [String],
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// One drawn bar.
struct Bar {
    class: &'static str,
    x: f64,
    width: f64,
    y: f64,
    height: f64,
    title: String,
}

/// The smallest of 1, 2, 5 × 10^k at or above `max` (at least 1).
fn nice_ceiling(max: f64) -> f64 {
    if !max.is_finite() || max <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * magnitude)
        .find(|candidate| *candidate >= max)
        .unwrap_or(10.0 * magnitude)
}

/// The chart: the SVG, a legend, and the data as a table in a disclosure.
pub(crate) fn chart(frame: &Chart<'_>, kind: Kind, series: &[Series]) -> Markup {
    let slots = frame.slots.len().max(1);
    let top_value = match kind {
        Kind::StackedBars => (0..slots)
            .map(|i| {
                series
                    .iter()
                    .filter_map(|s| s.values.get(i).copied().flatten())
                    .sum::<f64>()
            })
            .fold(0.0, f64::max),
        Kind::Lines => series
            .iter()
            .flat_map(|s| s.values.iter().copied().flatten())
            .fold(0.0, f64::max),
    };
    let ceiling = nice_ceiling(top_value);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot_w = plot_w / slots as f64;
    let y = |value: f64| TOP + plot_h - (value / ceiling) * plot_h;
    let x_mid = |i: usize| LEFT + slot_w * (i as f64 + 0.5);
    let title_id = format!("{}-title", frame.id);
    let has_data = top_value > 0.0;
    let mut bars = Vec::new();
    if kind == Kind::StackedBars {
        for i in 0..slots {
            let mut base = 0.0;
            for s in series {
                let value = s.values.get(i).copied().flatten().unwrap_or(0.0);
                if value > 0.0 {
                    let slot = frame.slots.get(i).map(String::as_str).unwrap_or("");
                    bars.push(Bar {
                        class: s.class,
                        x: LEFT + slot_w * i as f64 + 0.5,
                        width: (slot_w - 1.0).max(0.5),
                        y: y(base + value),
                        height: y(base) - y(base + value),
                        title: format!("{slot} {}: {}", s.label, (frame.format)(value)),
                    });
                }
                base += value;
            }
        }
    }
    let last = frame.slots.len().saturating_sub(1);
    let x_labels = [(0, "start"), (last / 2, "middle"), (last, "end")];
    html! {
        figure.chart id=(frame.id) {
            figcaption id=(title_id) { (frame.title) }
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-labelledby=(title_id) preserveAspectRatio="xMidYMid meet" {
                @for fraction in [0.0, 0.5, 1.0] {
                    line.grid x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(ceiling * fraction)) y2=(y(ceiling * fraction)) {}
                    text.axis x=(LEFT - 6.0) y=(y(ceiling * fraction) + 4.0) text-anchor="end" { ((frame.format)(ceiling * fraction)) }
                }
                @for (i, position) in x_labels {
                    @if let Some(label) = frame.slots.get(i) {
                        text.axis x=(x_mid(i)) y=(HEIGHT - 8.0)
                            text-anchor=(match position { "start" => "start", "end" => "end", _ => "middle" }) { (label) }
                    }
                }
                @match kind {
                    Kind::StackedBars => {
                        @for bar in &bars {
                            rect class=(bar.class) x=(bar.x) width=(bar.width) y=(bar.y) height=(bar.height) {
                                title { (bar.title) }
                            }
                        }
                    }
                    Kind::Lines => {
                        @for s in series {
                            path class=(format!("line {}", s.class)) d=(line_path(&s.values, &x_mid, &y)) {}
                            @for (i, value) in s.values.iter().enumerate() {
                                @if let Some(value) = value {
                                    circle class=(s.class) cx=(x_mid(i)) cy=(y(*value)) r="2.5" {
                                        title { (frame.slots.get(i).map(String::as_str).unwrap_or("")) " " (s.label) ": " ((frame.format)(*value)) }
                                    }
                                }
                            }
                        }
                    }
                }
                line.axis-line x1=(LEFT) x2=(LEFT) y1=(TOP) y2=(TOP + plot_h) {}
                line.axis-line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(TOP + plot_h) y2=(TOP + plot_h) {}
            }
            ul.legend {
                @for s in series { li { span class=(format!("swatch {}", s.class)) aria-hidden="true" {} (s.label) } }
            }
            @if !has_data { p.empty { "Nothing in this hour." } }
            details {
                summary { "Data table" }
                (table(frame, series))
            }
        }
    }
}

/// The SVG path through the measured points; a gap starts a new segment.
fn line_path(values: &[Option<f64>], x: &dyn Fn(usize) -> f64, y: &dyn Fn(f64) -> f64) -> String {
    let mut path = String::new();
    let mut pen_down = false;
    for (i, value) in values.iter().enumerate() {
        match value {
            Some(value) => {
                let op = if pen_down { 'L' } else { 'M' };
                path.push_str(&format!("{op}{:.1},{:.1} ", x(i), y(*value)));
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    path.trim_end().to_owned()
}

/// The minutes with any value, as a table.
fn table(frame: &Chart<'_>, series: &[Series]) -> Markup {
    let rows: Vec<usize> = (0..frame.slots.len())
        .filter(|i| {
            series
                .iter()
                .any(|s| s.values.get(*i).copied().flatten().is_some_and(|v| v > 0.0))
        })
        .collect();
    html! {
        @if rows.is_empty() {
            p { "No data in this hour." }
        } @else {
            div.table-scroll {
                table {
                    thead {
                        tr {
                            th scope="col" { "Minute (UTC)" }
                            @for s in series { th scope="col" { (s.label) } }
                        }
                    }
                    tbody {
                        @for i in rows {
                            tr {
                                th scope="row" { (frame.slots[i]) }
                                @for s in series {
                                    td { (s.values.get(i).copied().flatten().map(frame.format).unwrap_or_else(|| "–".to_owned())) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_are_round_and_paths_break_at_gaps() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(12.0), 20.0);
        assert_eq!(nice_ceiling(5_001.0), 10_000.0);
        let path = line_path(
            &[Some(1.0), None, Some(2.0), Some(3.0)],
            &|i| i as f64,
            &|v| v,
        );
        assert_eq!(path, "M0.0,1.0 M2.0,2.0 L3.0,3.0");
    }

    #[test]
    fn a_chart_has_a_title_axis_labels_and_a_table() {
        let slots = vec!["12:00".to_owned(), "12:01".to_owned()];
        let frame = Chart {
            id: "c",
            title: "Done per minute",
            format: |v| format!("{v:.0}"),
            slots: &slots,
        };
        let series = [Series {
            label: "done",
            class: "s-done",
            values: vec![Some(3.0), None],
        }];
        let html = chart(&frame, Kind::StackedBars, &series).into_string();
        assert!(html.contains("aria-labelledby=\"c-title\""), "{html}");
        assert!(html.contains(">5</text>"), "the axis tops at 5: {html}");
        assert!(
            html.contains("<th scope=\"row\">12:00</th><td>3</td>"),
            "{html}"
        );
        assert!(
            !html.contains("12:01</th>"),
            "empty minutes are left out of the table"
        );
    }
}
