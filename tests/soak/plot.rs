//! The soak run's plot: one panel per sampled quantity against time.

use std::path::Path;

use plotters::prelude::*;

use crate::Metric;

/// Draw every metric's samples, stacked, into an SVG at `path`.
pub fn metrics(
    path: &Path,
    metrics: &[Metric],
    minutes: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (760, 170 * metrics.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((metrics.len(), 1));
    for (panel, m) in panels.iter().zip(metrics) {
        let top = m.max().max(1.0) * 1.15;
        let caption = if m.unit.is_empty() {
            m.name.to_string()
        } else {
            format!("{} ({})", m.name, m.unit)
        };
        let mut chart = ChartBuilder::on(panel)
            .caption(caption, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..minutes * 60.0, 0f64..top)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .x_labels(8)
            .y_labels(4)
            .draw()?;
        chart.draw_series(LineSeries::new(
            m.samples.iter().copied(),
            BLUE.stroke_width(2),
        ))?;
    }
    root.present()?;
    Ok(())
}
