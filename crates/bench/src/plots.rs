//! SVG plots of a results file, drawn with plotters.

use std::path::Path;

use anyhow::{anyhow, Context};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::results::{MemSample, Report};
use crate::stats::{cdf, percentile};

const ORCA: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const PODMAN: RGBColor = RGBColor(0xd6, 0x5f, 0x0e);
const THIRD: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (860, 480);

/// plotters measures text to lay out axes; it needs a real font for that.
fn register_font() -> anyhow::Result<()> {
    let candidates = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    ];
    let path = candidates
        .iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| {
            anyhow!("no TrueType font found for the plots: install fonts-dejavu-core")
        })?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(path)?.into_boxed_slice());
    plotters::style::register_font(FONT, FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{path} is not a usable font"))?;
    Ok(())
}

fn e<E: std::fmt::Debug>(err: E) -> anyhow::Error {
    anyhow!("drawing a plot: {err:?}")
}

/// Draws every plot the results allow into `dir`; returns the files written.
pub fn render(report: &Report, dir: &Path) -> anyhow::Result<Vec<String>> {
    register_font()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    let mut out = |name: &str| {
        written.push(name.to_string());
        dir.join(name)
    };
    if let Some(st) = &report.startup {
        startup_cdf(&out("startup_cdf.svg"), &st.orca_ms, &st.podman_ms)?;
    }
    if !report.batches.is_empty() {
        let mut groups = Vec::new();
        if let Some(st) = &report.startup {
            groups.push((
                "1 pod (p50)".to_string(),
                vec![
                    percentile(&st.orca_ms, 50.0),
                    percentile(&st.podman_ms, 50.0),
                ],
            ));
        }
        for b in &report.batches {
            let med = |runs: &[crate::results::BatchRun]| {
                let v: Vec<f64> = runs.iter().map(|r| r.all_ready_ms).collect();
                percentile(&v, 50.0)
            };
            groups.push((
                format!("{} pods", b.pods),
                vec![med(&b.orca), med(&b.podman)],
            ));
        }
        let groups: Vec<Group> = groups
            .into_iter()
            .map(|(n, v)| (n, v.into_iter().map(|x| x.map(|ms| ms / 1000.0)).collect()))
            .collect();
        bars(
            &out("batches.svg"),
            "Create → all Ready (median)",
            "seconds",
            &TWO,
            &groups,
            None,
        )?;
    }
    if let Some(d) = &report.deletion {
        let med = |runs: &[crate::results::DeleteRun]| {
            let v: Vec<f64> = runs.iter().map(|r| r.gone_ms / 1000.0).collect();
            percentile(&v, 50.0)
        };
        let pair = |p: &crate::results::DeletionPair| {
            vec![med(&p.orca), med(&p.podman), med(&p.podman_stop)]
        };
        let groups = vec![
            ("exits on SIGTERM".to_string(), pair(&d.cooperative)),
            (
                format!("ignores SIGTERM (grace {} s)", d.grace_seconds),
                pair(&d.ignoring),
            ),
        ];
        bars(
            &out("deletion.svg"),
            "Delete → pod gone (median)",
            "seconds",
            &[
                ("Orca: DELETE", ORCA),
                ("podman kube down", PODMAN),
                ("podman pod stop + rm", THIRD),
            ],
            &groups,
            Some(f64::from(d.grace_seconds)),
        )?;
    }
    if let Some(sc) = &report.scale {
        scale_timeline(&out("scale_timeline.svg"), sc)?;
    }
    if let Some(m) = &report.memory {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let podman_total = m.podman_pod_overhead.as_ref().map(|p| mib(p.total.pss_kib));
        let groups: Vec<Group> = vec![
            (
                "control plane idle".to_string(),
                vec![Some(mib(m.orca_idle.pss_kib)), Some(0.0)],
            ),
            (
                format!("{} pods: per-pod helpers", m.real_pods),
                vec![Some(mib(m.orca_pod_overhead.total.pss_kib)), podman_total],
            ),
            (
                format!("{} pods: control plane + helpers", m.real_pods),
                vec![
                    Some(mib(
                        m.orca_with_pods.pss_kib + m.orca_pod_overhead.total.pss_kib
                    )),
                    podman_total,
                ],
            ),
        ];
        bars(
            &out("memory.svg"),
            "Memory (PSS)",
            "MiB",
            &TWO,
            &groups,
            None,
        )?;
        memory_timeline(
            &out("memory_timeline.svg"),
            &m.timeline_real,
            &m.timeline_virtual,
            m.virtual_nodes,
        )?;
    }
    Ok(written)
}

fn startup_cdf(path: &Path, orca: &[f64], podman: &[f64]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let xmax = orca.iter().chain(podman).copied().fold(1.0, f64::max) * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption("One pod: create → Ready (CDF)", (FONT, 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..xmax, 0f64..1.0)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("milliseconds")
        .y_desc("fraction of runs")
        .label_style((FONT, 14))
        .draw()
        .map_err(e)?;
    for (name, samples, color) in [("Orca", orca, ORCA), ("podman kube play", podman, PODMAN)] {
        if samples.is_empty() {
            continue;
        }
        // A step function: each sample raises the curve by 1/n.
        let mut points = vec![(0.0, 0.0)];
        let mut last = 0.0;
        for (x, y) in cdf(samples) {
            points.push((x, last));
            points.push((x, y));
            last = y;
        }
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(e)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    legend(&mut chart)?;
    root.present().map_err(e)?;
    Ok(())
}

fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 15))
        .draw()
        .map_err(e)?;
    Ok(())
}

/// Grouped bars, Orca beside podman, with the value written on each bar
/// and an optional dashed reference line (e.g. the grace period).
type Group = (String, Vec<Option<f64>>);

const TWO: [(&str, RGBColor); 2] = [("Orca", ORCA), ("podman kube play", PODMAN)];

fn bars(
    path: &Path,
    title: &str,
    unit: &str,
    series: &[(&str, RGBColor)],
    groups: &[Group],
    reference: Option<f64>,
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let ymax = groups
        .iter()
        .flat_map(|(_, values)| values.iter().copied())
        .flatten()
        .chain(reference)
        .fold(0.001, f64::max)
        * 1.15;
    let n = groups.len();
    let names: Vec<String> = groups.iter().map(|g| g.0.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        // An integer range 0..k has k + 1 values, hence k + 1 segments.
        .build_cartesian_2d((0..n.saturating_sub(1)).into_segmented(), 0f64..ymax)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_desc(unit)
        .label_style((FONT, 14))
        .draw()
        .map_err(e)?;
    let plotting = chart.plotting_area();
    let width = plotting.get_pixel_range().0;
    let seg = (width.end - width.start) as f64 / n.max(1) as f64;
    let k = series.len().max(1) as f64;
    for (i, (_, values)) in groups.iter().enumerate() {
        for (slot, (value, (_, color))) in values.iter().zip(series).enumerate() {
            let Some(v) = value else { continue };
            // The bars share the middle 80% of the segment, in pixels from its left.
            let left = seg * (0.1 + 0.8 * slot as f64 / k);
            let right = left + seg * 0.8 / k - 3.0;
            let x0 = plotting.get_pixel_range().0.start + (seg * i as f64 + left) as i32;
            let x1 = plotting.get_pixel_range().0.start + (seg * i as f64 + right) as i32;
            let (_, ytop) = plotting.map_coordinate(&(SegmentValue::CenterOf(i), *v));
            let (_, ybase) = plotting.map_coordinate(&(SegmentValue::CenterOf(i), 0.0));
            root.draw(&Rectangle::new([(x0, ytop), (x1, ybase)], color.filled()))
                .map_err(e)?;
            root.draw(&Text::new(
                format_value(*v),
                (x0, ytop - 18),
                (FONT, 13).into_font().color(&BLACK),
            ))
            .map_err(e)?;
        }
    }
    if let Some(r) = reference {
        let (xl, xr) = (
            plotting.get_pixel_range().0.start,
            plotting.get_pixel_range().0.end,
        );
        let (_, y) = plotting.map_coordinate(&(SegmentValue::CenterOf(0), r));
        let mut x = xl;
        while x < xr {
            root.draw(&PathElement::new(
                vec![(x, y), ((x + 8).min(xr), y)],
                BLACK.stroke_width(1),
            ))
            .map_err(e)?;
            x += 14;
        }
        root.draw(&Text::new(
            format!("grace period {r} s"),
            (xr - 140, y - 18),
            (FONT, 13).into_font().color(&BLACK),
        ))
        .map_err(e)?;
    }
    // Legend by hand: the bars are drawn in pixels, outside the chart's series.
    let (lx, ly) = (
        plotting.get_pixel_range().0.start + 10,
        plotting.get_pixel_range().1.start + 5,
    );
    for (k, (name, color)) in [("Orca", ORCA), ("podman kube play", PODMAN)]
        .iter()
        .enumerate()
    {
        let y = ly + 20 * k as i32;
        root.draw(&Rectangle::new(
            [(lx, y + 3), (lx + 14, y + 15)],
            color.filled(),
        ))
        .map_err(e)?;
        root.draw(&Text::new(
            name.to_string(),
            (lx + 20, y),
            (FONT, 14).into_font().color(&BLACK),
        ))
        .map_err(e)?;
    }
    root.present().map_err(e)?;
    Ok(())
}

fn format_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn scale_timeline(path: &Path, sc: &crate::results::Scale) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let tmax = sc.timeline.last().map(|t| t.0).unwrap_or(1.0).max(0.5);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{} pods onto {} virtual nodes", sc.pods, sc.virtual_nodes),
            (FONT, 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..tmax, 0f64..(sc.pods as f64 * 1.05))
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first create")
        .y_desc("pods")
        .label_style((FONT, 14))
        .draw()
        .map_err(e)?;
    type Pick = fn(&(f64, usize, usize, usize)) -> usize;
    let series: [(&str, RGBColor, Pick); 3] = [
        ("created (API answered)", ORCA, |t| t.1),
        ("bound by the scheduler", PODMAN, |t| t.2),
        ("Running (virtual node)", THIRD, |t| t.3),
    ];
    for (name, color, pick) in series {
        chart
            .draw_series(LineSeries::new(
                sc.timeline.iter().map(|t| (t.0, pick(t) as f64)),
                color.stroke_width(2),
            ))
            .map_err(e)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    legend(&mut chart)?;
    root.present().map_err(e)?;
    Ok(())
}

fn memory_timeline(
    path: &Path,
    real: &[MemSample],
    virt: &[MemSample],
    virtual_nodes: usize,
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let tmax = real.iter().chain(virt).map(|s| s.t).fold(1.0, f64::max);
    let ymax = real
        .iter()
        .chain(virt)
        .map(|s| s.mem.rss_kib as f64 / 1024.0)
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption("`orca server` RSS over the run", (FONT, 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..tmax, 0f64..ymax)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the server started")
        .y_desc("MiB")
        .label_style((FONT, 14))
        .draw()
        .map_err(e)?;
    let virt_name = format!("--virtual-nodes {virtual_nodes} (scenarios 4, 5)");
    for (name, samples, color) in [
        ("with node agent (scenarios 1-3, real pods)", real, ORCA),
        (virt_name.as_str(), virt, THIRD),
    ] {
        if samples.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(
                samples.iter().map(|s| (s.t, s.mem.rss_kib as f64 / 1024.0)),
                color.stroke_width(2),
            ))
            .map_err(e)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    legend(&mut chart)?;
    root.present().map_err(e)?;
    Ok(())
}
