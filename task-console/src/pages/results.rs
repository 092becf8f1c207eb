//! A product's latest result, drawn compactly on the asset page: marks and spans on a timeline
//! of the asset's duration, with the figures as text.
//!
//! The console does not depend on the analyzers' crates: it reads the stored JSON defensively
//! (a missing or mistyped field gives a plainer view, never an error). The fields read:
//! - `adbreaks` (or any product whose data has them): `duration_secs`, `candidates[].time`,
//!   `candidates[].score`.
//! - `scenes`: `duration_secs`, `shots[]` (`[start, end]`), `cuts[].time`, `cuts[].score`.
//! - `thumbnails`: `duration_secs`, `shots` (a count), `stills[].time_secs`, `.key`, `.url`,
//!   `.width`, `.height` (the images themselves are not served).
//! - `fingerprint`: `duration_secs`, `items`, `item_secs` (never the `fingerprint` itself).
//! - `markers`: `intro` and `credits` (`[start, end]` or null), `intro_shared_with[]`,
//!   `credits_shared_with[]`, `siblings_compared[]`; the asset's duration comes from the probe
//!   step's `duration_secs`, else the end of the credits.

use maud::{Markup, html};
use serde_json::Value;

/// A mark at one time: its height grows with `weight` (0 to 1).
struct Tick {
    at: f64,
    weight: f64,
    title: String,
}

/// A stretch of the asset.
struct Band {
    start: f64,
    end: f64,
    class: &'static str,
    title: String,
}

/// `secs` as `h:mm:ss`.
pub(crate) fn clock(secs: f64) -> String {
    let whole = secs.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", whole / 3600, whole / 60 % 60, whole % 60)
}

fn num(value: &Value, field: &str) -> Option<f64> {
    value.get(field).and_then(Value::as_f64)
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value.get(field).and_then(Value::as_str).unwrap_or("")
}

fn list<'a>(value: &'a Value, field: &str) -> &'a [Value] {
    value
        .get(field)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `[start, end]` in seconds, if `value` is one.
fn span(value: Option<&Value>) -> Option<(f64, f64)> {
    match value?.as_array()?.as_slice() {
        [start, end] => Some((start.as_f64()?, end.as_f64()?)),
        _ => None,
    }
}

fn strings(value: &Value, field: &str) -> Vec<String> {
    list(value, field)
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// What a chart draws: `ticks` (of class `tick_class`) and `bands`.
struct Marks<'a> {
    tick_class: &'static str,
    ticks: &'a [Tick],
    bands: &'a [Band],
}

/// A line as long as the asset with `marks` on it, then `inside` (a table, say) in the figure.
fn chart(
    id: &str,
    classes: &str,
    caption: Markup,
    duration: f64,
    marks: Marks<'_>,
    inside: Markup,
) -> Markup {
    let Marks {
        tick_class,
        ticks,
        bands,
    } = marks;
    let (left, width, base) = (16.0, 968.0, 70.0);
    let duration = duration.max(f64::EPSILON);
    let x = |secs: f64| left + (secs / duration).clamp(0.0, 1.0) * width;
    let title_id = format!("{id}-title");
    html! {
        figure class=(format!("chart timeline {classes}")) {
            figcaption id=(title_id) { (caption) }
            svg viewBox="0 0 1000 100" role="img" aria-labelledby=(title_id) {
                @for band in bands {
                    rect class=(band.class) x=(x(band.start)) width=((x(band.end) - x(band.start)).max(2.0)) y="10" height=(base - 10.0) {
                        title { (band.title) }
                    }
                }
                line.axis-line x1=(left) x2=(left + width) y1=(base) y2=(base) {}
                @for quarter in 0..=4 {
                    @let secs = duration * f64::from(quarter) / 4.0;
                    line.grid x1=(x(secs)) x2=(x(secs)) y1=(base) y2=(base + 6.0) {}
                    text.axis x=(x(secs)) y="92" text-anchor=(match quarter { 0 => "start", 4 => "end", _ => "middle" }) { (clock(secs)) }
                }
                @for tick in ticks {
                    @let height = 12.0 + 48.0 * tick.weight.clamp(0.0, 1.0);
                    rect class=(tick_class) x=(x(tick.at) - 1.5) width="3" y=(base - height) height=(height) {
                        title { (tick.title) }
                    }
                }
            }
            (inside)
        }
    }
}

/// Ticks at `(time, score)`, taller for higher scores.
fn scored(points: &[(f64, f64)]) -> Vec<Tick> {
    let best = points.iter().map(|p| p.1).fold(0.0, f64::max);
    points
        .iter()
        .map(|&(at, score)| Tick {
            at,
            weight: if best > 0.0 { score / best } else { 0.4 },
            title: format!("{}, score {score:.2}", clock(at)),
        })
        .collect()
}

fn adbreaks(id: &str, data: &Value) -> Option<Markup> {
    let duration = num(data, "duration_secs")?;
    let mut points: Vec<(f64, f64)> = list(data, "candidates")
        .iter()
        .filter_map(|c| Some((num(c, "time")?, num(c, "score").unwrap_or(0.0))))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let caption = html! { (points.len()) " adbreak candidates over " (clock(duration)) };
    let inside = html! {
        details {
            summary { "Candidates as a table" }
            div.table-scroll {
                table {
                    thead { tr { th scope="col" { "Time" } th scope="col" { "Seconds" } th scope="col" { "Score" } } }
                    tbody {
                        @for (time, score) in &points {
                            tr {
                                th scope="row" { (clock(*time)) }
                                td { (format!("{time:.2}")) }
                                td { (format!("{score:.2}")) }
                            }
                        }
                    }
                }
            }
        }
    };
    let marks = Marks {
        tick_class: "s-break",
        ticks: &scored(&points),
        bands: &[],
    };
    Some(chart(id, "breaks", caption, duration, marks, inside))
}

fn scenes(id: &str, data: &Value) -> Option<Markup> {
    let duration = num(data, "duration_secs")?;
    let shots: Vec<(f64, f64)> = list(data, "shots")
        .iter()
        .filter_map(|s| span(Some(s)))
        .collect();
    let cuts: Vec<(f64, f64)> = list(data, "cuts")
        .iter()
        .filter_map(|c| Some((num(c, "time")?, num(c, "score").unwrap_or(0.0))))
        .collect();
    let caption = html! { (shots.len()) " shots over " (clock(duration)) ", cut at the marks" };
    let inside = html! {
        details {
            summary { "Shots as a table" }
            div.table-scroll {
                table {
                    thead { tr { th scope="col" { "Shot" } th scope="col" { "Start" } th scope="col" { "End" } th scope="col" { "Seconds" } } }
                    tbody {
                        @for (n, (start, end)) in shots.iter().enumerate() {
                            tr {
                                th scope="row" { (n + 1) }
                                td { (format!("{start:.2}")) }
                                td { (format!("{end:.2}")) }
                                td { (format!("{:.2}", end - start)) }
                            }
                        }
                    }
                }
            }
        }
    };
    let marks = Marks {
        tick_class: "s-cut",
        ticks: &scored(&cuts),
        bands: &[],
    };
    Some(chart(id, "scenes", caption, duration, marks, inside))
}

fn thumbnails(id: &str, data: &Value) -> Option<Markup> {
    let duration = num(data, "duration_secs")?;
    let stills = list(data, "stills");
    let ticks: Vec<Tick> = stills
        .iter()
        .filter_map(|s| {
            let at = num(s, "time_secs")?;
            Some(Tick {
                at,
                weight: 0.6,
                title: format!("{} {}", clock(at), text(s, "key")),
            })
        })
        .collect();
    let shots = data.get("shots").and_then(Value::as_u64);
    let caption = html! {
        (stills.len()) " stills"
        @if let Some(shots) = shots { " from " (shots) " shots" }
        " over " (clock(duration))
    };
    let inside = html! {
        div.table-scroll {
            table {
                caption { "Stills (stored objects; not shown here)" }
                thead { tr { th scope="col" { "Time" } th scope="col" { "Size" } th scope="col" { "Key" } th scope="col" { "URL" } } }
                tbody {
                    @for still in stills {
                        tr {
                            th scope="row" { (num(still, "time_secs").map(|t| format!("{t:.2}")).unwrap_or_default()) }
                            td { (num(still, "width").unwrap_or(0.0)) "×" (num(still, "height").unwrap_or(0.0)) }
                            td.mono { (text(still, "key")) }
                            td.mono { (text(still, "url")) }
                        }
                    }
                }
            }
        }
    };
    let marks = Marks {
        tick_class: "s-still",
        ticks: &ticks,
        bands: &[],
    };
    Some(chart(id, "thumbnails", caption, duration, marks, inside))
}

fn fingerprint(data: &Value) -> Option<Markup> {
    let items = data.get("items").and_then(Value::as_u64)?;
    let item_secs = num(data, "item_secs")?;
    Some(html! {
        dl.facts {
            dt { "Seconds covered" } dd { (format!("{:.1}", items as f64 * item_secs)) }
            dt { "Items" } dd { (items) " (one every " (format!("{item_secs:.4}")) " s)" }
            @if let Some(duration) = num(data, "duration_secs") {
                dt { "Asset duration" } dd { (clock(duration)) }
            }
        }
    })
}

fn markers(
    id: &str,
    data: &Value,
    probed: Option<f64>,
    asset_href: &dyn Fn(&str) -> String,
) -> Option<Markup> {
    let intro = span(data.get("intro"));
    let credits = span(data.get("credits"));
    if data.get("intro").is_none() && data.get("credits").is_none() {
        return None;
    }
    let duration = probed
        .or(credits.map(|c| c.1))
        .or(intro.map(|i| i.1))
        .unwrap_or(1.0);
    let mut bands = Vec::new();
    for (found, class, name) in [
        (intro, "s-intro", "Intro"),
        (credits, "s-credits", "Credits"),
    ] {
        if let Some((start, end)) = found {
            bands.push(Band {
                start,
                end,
                class,
                title: format!("{name} {} to {}", clock(start), clock(end)),
            });
        }
    }
    let compared = strings(data, "siblings_compared");
    let row = |name: &str, found: Option<(f64, f64)>, shared: Vec<String>| {
        html! {
            dt { (name) }
            dd {
                @if let Some((start, end)) = found {
                    (format!("{start:.1}–{end:.1} s")) " (" (clock(start)) " to " (clock(end)) ")"
                    @if !shared.is_empty() {
                        ", shared with "
                        @for (n, sibling) in shared.iter().enumerate() {
                            @if n > 0 { ", " }
                            a.mono href=(asset_href(sibling)) { (sibling) }
                        }
                    }
                } @else { "none found" }
            }
        }
    };
    let caption = html! { "Intro and credits over " (clock(duration)) };
    let inside = html! {
        dl.facts {
            (row("Intro", intro, strings(data, "intro_shared_with")))
            (row("Credits", credits, strings(data, "credits_shared_with")))
            dt { "Siblings compared" } dd { (compared.len()) }
        }
    };
    let marks = Marks {
        tick_class: "s-cut",
        ticks: &[],
        bands: &bands,
    };
    Some(chart(id, "markers", caption, duration, marks, inside))
}

/// The view of `data`, a result of `product`, if its shape is known; `id` makes the figure's
/// ids unique, `probed` is the asset's duration from the probe step if known, `asset_href`
/// links another catalog item.
pub(crate) fn view(
    id: &str,
    product: &str,
    data: &Value,
    probed: Option<f64>,
    asset_href: &dyn Fn(&str) -> String,
) -> Option<Markup> {
    match product {
        "scenes" => scenes(id, data),
        "thumbnails" => thumbnails(id, data),
        "fingerprint" => fingerprint(data),
        "markers" => markers(id, data, probed, asset_href),
        _ => adbreaks(id, data),
    }
}
