//! The benchmark's plots, as SVG: throughput and p99 latency against batch
//! size.

use std::path::Path;

use plotters::prelude::*;
use serde_json::Value;

fn series(rows: &[Value], partitions: u64, field: &str) -> Vec<(f64, f64)> {
    rows.iter()
        .filter(|r| r["partitions"].as_u64() == Some(partitions))
        .filter_map(|r| Some(((r["batch"].as_f64()?).log10(), r[field].as_f64()?)))
        .collect()
}

/// Events/s of weir, native and the store alone against batch size.
pub fn throughput(path: &Path, rows: &[Value]) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (760, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = rows
        .iter()
        .flat_map(|r| {
            [
                r["store_eps"].as_f64(),
                r["native_eps"].as_f64(),
                r["weir_eps"].as_f64(),
            ]
        })
        .flatten()
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Throughput vs batch size (every batch flushed)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.2f64..3.2f64, 0f64..top * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("batch size")
        .y_desc("events/s")
        .y_label_formatter(&|y| format!("{:.0}k", y / 1000.0))
        .x_label_formatter(&|x| format!("{:.0}", 10f64.powf(*x)))
        .x_labels(4)
        .draw()?;
    let colours = [
        (&RED, "weir (sandbox)", "weir_eps"),
        (&BLUE, "native handler", "native_eps"),
        (&BLACK, "store alone", "store_eps"),
    ];
    for partitions in [1u64, 2] {
        for (colour, label, field) in colours {
            let data = series(rows, partitions, field);
            if data.is_empty() {
                continue;
            }
            let style = if partitions == 1 {
                colour.stroke_width(2)
            } else {
                colour.stroke_width(1)
            };
            chart
                .draw_series(LineSeries::new(data, style))?
                .label(format!("{label}, {partitions} partition(s)"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

/// p50 and p99 end-to-end latency against batch size.
pub fn latency(path: &Path, rows: &[Value]) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (760, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = rows
        .iter()
        .filter_map(|r| r["p99_ms"].as_f64())
        .fold(1.0, f64::max);
    let rate = rows.first().and_then(|r| r["rate"].as_u64()).unwrap_or(0);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("End-to-end latency at {rate} events/s offered"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.2f64..3.2f64, (0.1f64..top * 2.0).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("batch size (maximum)")
        .y_desc("ms (log scale)")
        .x_label_formatter(&|x| format!("{:.0}", 10f64.powf(*x)))
        .x_labels(4)
        .draw()?;
    for (colour, field) in [(&BLUE, "p50_ms"), (&RED, "p99_ms")] {
        let data: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| Some((r["batch"].as_f64()?.log10(), r[field].as_f64()?)))
            .collect();
        chart
            .draw_series(LineSeries::new(data, colour.stroke_width(2)))?
            .label(field.trim_end_matches("_ms"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}
