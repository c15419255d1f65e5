//! The rank-accuracy plot: rank on a log2 axis against the test accuracy (the
//! report's AURAC metric), one line
//! per report.

use crate::report::Report;
use crate::train::MethodSummary;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Nothing to plot.
    #[error("no reports to plot")]
    Empty,
    /// Unsupported extension.
    #[error("plot path {0} must end in .png or .svg")]
    Extension(String),
    /// Drawing failed.
    #[error("drawing {path}: {reason}")]
    Draw {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One line of a rank plot: values at ranks, and optionally a band of
/// `± band` around them.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// The legend label.
    pub label: String,
    /// The ranks (x, drawn on a log2 axis).
    pub ranks: Vec<usize>,
    /// The values at those ranks.
    pub values: Vec<f64>,
    /// Half-widths of a shaded band around the values (e.g. one standard
    /// deviation over seeds).
    pub band: Option<Vec<f64>>,
    /// Drawn dashed, in black: a reference (the rank grid search).
    pub dashed: bool,
}

/// Draws `reports` to `path` (`.png` or `.svg`), one line per report.
pub fn plot_reports(reports: &[Report], path: &Path) -> Result<(), PlotError> {
    let curves: Vec<Curve> = reports
        .iter()
        .map(|r| Curve {
            label: format!("{} ({}, AURAC {:.1})", r.method, r.head_mode, r.aurac_log2),
            ranks: r.ranks.clone(),
            values: r.curve().to_vec(),
            band: None,
            dashed: false,
        })
        .collect();
    let metric = reports
        .first()
        .map(|r| r.aurac_metric.clone())
        .unwrap_or_default();
    plot_curves(&curves, &metric, path)
}

/// Draws the mean curve of each summary of a comparison with a band of ±1
/// standard deviation over its seeds, to `path` (`.png` or `.svg`).
pub fn plot_summary(summary: &[MethodSummary], path: &Path) -> Result<(), PlotError> {
    let curves: Vec<Curve> = summary
        .iter()
        .map(|m| Curve {
            label: format!(
                "{} (AURAC {:.1} ± {:.1}, {} seeds)",
                m.label(),
                m.aurac_log2_mean,
                m.aurac_log2_std,
                m.seeds.len()
            ),
            ranks: m.ranks.clone(),
            values: m.accuracy_mean.clone(),
            band: Some(m.accuracy_std.clone()),
            dashed: m.method.is_grid(),
        })
        .collect();
    let metric = summary
        .first()
        .map(|m| m.metric.clone())
        .unwrap_or_default();
    plot_curves(&curves, &metric, path)
}

/// The image's width and the chart's height, in pixels; the legend goes
/// below the chart, two entries a row, so that it never covers a curve.
const WIDTH: u32 = 800;
const CHART_HEIGHT: u32 = 520;
const LEGEND_ROW: u32 = 22;

/// The legend's height for `n` curves.
fn legend_height(n: usize) -> u32 {
    n.div_ceil(2) as u32 * LEGEND_ROW + 14
}

/// Draws `curves` of `metric` (a percentage) against rank to `path`, the
/// legend below the chart.
pub fn plot_curves(curves: &[Curve], metric: &str, path: &Path) -> Result<(), PlotError> {
    if curves.is_empty() {
        return Err(PlotError::Empty);
    }
    REGISTER.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
    let name = path.display().to_string();
    let draw_err = |e: String| PlotError::Draw {
        path: name.clone(),
        reason: e,
    };
    let size = (WIDTH, CHART_HEIGHT + legend_height(curves.len()));
    match path.extension().and_then(|e| e.to_str()) {
        Some("png") => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            draw(root, curves, metric).map_err(draw_err)
        }
        Some("svg") => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            draw(root, curves, metric).map_err(draw_err)
        }
        _ => Err(PlotError::Extension(name.clone())),
    }
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    curves: &[Curve],
    metric: &str,
) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (plot_area, legend_area) = root.split_vertically(CHART_HEIGHT);
    // the dashed reference in black, the others in turn
    let mut next_color = 0;
    let colors: Vec<RGBColor> = curves
        .iter()
        .map(|c| {
            if c.dashed {
                BLACK
            } else {
                next_color += 1;
                COLORS[(next_color - 1) % COLORS.len()]
            }
        })
        .collect();
    let max_rank = curves
        .iter()
        .flat_map(|c| c.ranks.iter().copied())
        .max()
        .unwrap_or(1)
        .max(2);
    let x_max = (max_rank as f64).log2();
    let spread = |c: &Curve, i: usize| {
        c.band
            .as_ref()
            .and_then(|b| b.get(i))
            .copied()
            .unwrap_or(0.0)
    };
    let ys: Vec<f64> = curves
        .iter()
        .flat_map(|c| {
            c.values
                .iter()
                .enumerate()
                .flat_map(move |(i, &v)| [v - spread(c, i), v + spread(c, i)])
        })
        .filter(|a| a.is_finite())
        .collect();
    let lo = ys.iter().copied().fold(f64::INFINITY, f64::min).min(100.0);
    let hi = ys
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max)
        .max(0.0);
    let (y0, y1) = ((lo - 2.0).floor().max(0.0), (hi + 2.0).ceil().min(100.0));
    // The metric AURAC integrates (accuracy for classification).
    let metric = if metric.is_empty() { "score" } else { metric }.replace('_', " ");
    let mut first = metric.chars();
    let caption = match first.next() {
        Some(c) => format!("{}{} at each nested rank", c.to_uppercase(), first.as_str()),
        None => "Score at each nested rank".to_string(),
    };
    let y_desc = format!("test {metric} (%)");
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(caption, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.2..x_max + 0.2, y0..y1.max(y0 + 1.0))
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("rank k (log2 axis)")
        .y_desc(y_desc)
        .x_labels((x_max as usize) + 2)
        .x_label_formatter(&|x| format!("{}", 2f64.powf(*x).round() as usize))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|x| e(&x))?;
    for (c, &color) in curves.iter().zip(&colors) {
        let x = |k: usize| (k as f64).log2();
        if let Some(band) = &c.band {
            // The band: upper edge left to right, lower edge back.
            let upper = c
                .ranks
                .iter()
                .zip(&c.values)
                .zip(band)
                .map(|((&k, &v), &b)| (x(k), v + b));
            let lower = c
                .ranks
                .iter()
                .zip(&c.values)
                .zip(band)
                .rev()
                .map(|((&k, &v), &b)| (x(k), v - b));
            let outline: Vec<(f64, f64)> = upper.chain(lower).collect();
            chart
                .draw_series(std::iter::once(Polygon::new(
                    outline,
                    color.mix(0.18).filled(),
                )))
                .map_err(|x| e(&x))?;
        }
        let points: Vec<(f64, f64)> = c
            .ranks
            .iter()
            .zip(&c.values)
            .map(|(&k, &a)| (x(k), a))
            .collect();
        if c.dashed {
            chart
                .draw_series(DashedLineSeries::new(
                    points.clone(),
                    8,
                    5,
                    color.stroke_width(2),
                ))
                .map_err(|x| e(&x))?;
        } else {
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|x| e(&x))?;
        }
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )
            .map_err(|x| e(&x))?;
    }
    draw_legend(&legend_area, curves, &colors).map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}

/// The legend, below the chart: two entries a row, each a sample of its
/// curve's line (dashed for the reference) and its label.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    curves: &[Curve],
    colors: &[RGBColor],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let column = (WIDTH as i32 - 80) / 2;
    for (i, (c, &color)) in curves.iter().zip(colors).enumerate() {
        let x = 60 + (i as i32 % 2) * column;
        let y = 6 + (i as i32 / 2) * LEGEND_ROW as i32 + LEGEND_ROW as i32 / 2;
        let style = color.stroke_width(2);
        if c.dashed {
            area.draw(&PathElement::new(vec![(x, y), (x + 10, y)], style))?;
            area.draw(&PathElement::new(vec![(x + 18, y), (x + 28, y)], style))?;
        } else {
            area.draw(&PathElement::new(vec![(x, y), (x + 28, y)], style))?;
        }
        area.draw(&Circle::new((x + 14, y), 4, color.filled()))?;
        area.draw(&Text::new(
            c.label.clone(),
            (x + 36, y - 8),
            ("sans-serif", 14).into_font().color(&BLACK),
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `y` of the SVG text element whose content is `label` (plotters
    /// writes it on a line of its own).
    fn text_y(svg: &str, label: &str) -> f64 {
        let end = svg
            .find(&format!(">\n{label}\n</text>"))
            .unwrap_or_else(|| panic!("no text {label:?}"));
        let start = svg[..end].rfind("<text").unwrap();
        let tag = &svg[start..end];
        let y = tag.find(" y=\"").unwrap() + 4;
        tag[y..y + tag[y..].find('"').unwrap()].parse().unwrap()
    }

    #[test]
    fn the_legend_lies_below_the_chart_and_names_every_curve() {
        let curve = |label: &str, dashed| Curve {
            label: label.into(),
            ranks: vec![1, 2, 4, 8],
            values: vec![10.0, 40.0, 60.0, 90.0],
            band: Some(vec![2.0; 4]),
            dashed,
        };
        let curves: Vec<Curve> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|l| curve(&format!("method {l}"), false))
            .chain([curve("the grid", true)])
            .collect();
        let dir = std::env::temp_dir().join(format!("mlora-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("curve.svg");
        plot_curves(&curves, "exact_match", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        // six curves: three legend rows under the 520-pixel chart
        let height = CHART_HEIGHT + legend_height(6);
        assert_eq!(height, 520 + 3 * 22 + 14);
        assert!(
            svg.contains(&format!("height=\"{height}\"")),
            "{}",
            &svg[..200]
        );
        for c in &curves {
            let y = text_y(&svg, &c.label);
            assert!(
                y > CHART_HEIGHT as f64 && y < height as f64,
                "{}: {y}",
                c.label
            );
        }
        assert!(svg.contains("Exact match at each nested rank"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
