//! One line chart as an SVG document, drawn with plotters' SVG backend
//! (text as SVG `<text>`, so no font files are read and the page needs
//! nothing from the network).

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use super::curves::Line;

/// Size of every chart, pixels.
const SIZE: (u32, u32) = (760, 420);

/// The x and y ranges holding every point (y from 0), never empty.
fn bounds(lines: &[Line]) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
    let points = lines.iter().flat_map(|l| l.points.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= 0.0 {
        y1 = 1.0;
    }
    (x0..x1, 0.0..y1 * 1.05)
}

/// Draws `lines` (distinct colours, a legend) under `title`.
pub fn svg(title: &str, x_desc: &str, y_desc: &str, lines: &[Line]) -> Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        let failed = |e: &dyn std::fmt::Display| anyhow!("drawing chart {title:?}: {e}");
        root.fill(&WHITE).map_err(|e| failed(&e))?;
        let (xs, ys) = bounds(lines);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(78)
            .build_cartesian_2d(xs, ys)
            .map_err(|e| failed(&e))?;
        chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw().map_err(|e| failed(&e))?;
        for (i, line) in lines.iter().enumerate() {
            let style = Palette99::pick(i).stroke_width(2);
            chart
                .draw_series(LineSeries::new(line.points.iter().copied(), style))
                .map_err(|e| failed(&e))?
                .label(line.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| failed(&e))?;
        root.present().map_err(|e| failed(&e))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_line_with_its_legend() {
        let lines = vec![
            Line { name: "alpha line".into(), points: vec![(0.0, 1.0), (1.0, 3.0), (2.0, 2.0)] },
            Line { name: "beta line".into(), points: vec![(0.0, 0.0), (2.0, 5.0)] },
        ];
        let svg = svg("A title", "x", "y", &lines).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60.min(svg.len())]);
        assert!(svg.contains("A title") && svg.contains("alpha line") && svg.contains("beta line"));
        assert!(svg.matches("<polyline").count() >= 2, "one polyline per line at least");
    }

    #[test]
    fn degenerate_data_still_draws() {
        let lines = vec![Line { name: "one point".into(), points: vec![(3.0, 0.0)] }];
        assert!(svg("t", "x", "y", &lines).unwrap().contains("one point"));
        assert!(svg("empty", "x", "y", &[]).unwrap().contains("empty"));
    }
}
