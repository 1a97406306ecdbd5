//! The plots, each written as SVG and PNG.
//!
//! Text is laid out (SVG and PNG) and drawn (PNG) by plotters' `ab_glyph` font backend, which
//! knows no system font: the font file is read at run time and registered once per process.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

use crate::numbers::{short, thousands};
use crate::results::{Failover, Recovery, Results, WritePoint, Writes, blocks_label};

/// The font of Debian's `fonts-dejavu-core`.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const SIZE: (u32, u32) = (960, 600);
const FAMILY: &str = "sans-serif";

/// The font registered so far, if any: the first one loaded serves the whole process.
static FONT: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Reads the font at `path` and registers it for every plot drawn after.
pub fn load_font(path: &Path) -> Result<()> {
    let mut loaded = FONT.lock().unwrap_or_else(|e| e.into_inner());
    if loaded.is_some() {
        return Ok(());
    }
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read the plots' font {}: install the Debian package fonts-dejavu-core, or name another \
             TrueType font with --font",
            path.display()
        )
    })?;
    // plotters keeps the font for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    for family in [FAMILY, "serif", "monospace"] {
        register_font(family, FontStyle::Normal, bytes)
            .map_err(|_| anyhow!("{} is not a TrueType or OpenType font", path.display()))?;
    }
    *loaded = Some(path.to_path_buf());
    Ok(())
}

/// What writing the plots did.
#[derive(Debug, Default)]
pub struct Written {
    pub files: Vec<PathBuf>,
    /// The plots not written, and why.
    pub notes: Vec<String>,
}

/// Writes every plot the results have data for into `dir` (created if need be). The font must
/// have been loaded.
pub fn write_all(results: &Results, dir: &Path) -> Result<Written> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut w = Written::default();
    match &results.writes {
        Some(writes) if !writes.points.is_empty() => {
            w.files.extend(write_both(&Throughput(writes), dir)?);
            w.files.extend(write_both(&P99(writes), dir)?);
        }
        _ => w.notes.push("no write points: writes_throughput and writes_p99 not drawn".into()),
    }
    match &results.failover {
        Some(f) if !f.trials.is_empty() => w.files.extend(write_both(&FailoverFigure(f), dir)?),
        _ => w.notes.push("no failover trials: failover not drawn".into()),
    }
    match &results.recovery {
        Some(r) if !r.is_empty() => w.files.extend(write_both(&RecoveryFigure(r), dir)?),
        _ => w.notes.push("no recovery entries: recovery not drawn".into()),
    }
    Ok(w)
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// One plot, drawable on any backend.
trait Figure {
    /// The file name without its extension.
    const STEM: &'static str;
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

fn write_both<F: Figure>(figure: &F, dir: &Path) -> Result<[PathBuf; 2]> {
    let svg = dir.join(format!("{}.svg", F::STEM));
    let png = dir.join(format!("{}.png", F::STEM));
    render(SVGBackend::new(&svg, SIZE), figure, &svg)?;
    render(BitMapBackend::new(&png, SIZE), figure, &png)?;
    Ok([svg, png])
}

fn render<DB: DrawingBackend, F: Figure>(backend: DB, figure: &F, path: &Path) -> Result<()> {
    let root = backend.into_drawing_area();
    root.fill(&WHITE)
        .and_then(|()| figure.draw(&root))
        .and_then(|()| root.present())
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))
}

/// Colours of the known systems and failover kinds, then of the others in turn.
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Concurrency axis: log scale, 1..1024 (or further when measured further), ticks at powers of 2.
fn concurrency_axis(writes: &Writes) -> WithKeyPoints<LogCoord<f64>> {
    let top = writes.concurrencies().last().copied().unwrap_or(1).max(1024).next_power_of_two();
    let ticks = (0..=top.trailing_zeros()).map(|e| f64::from(1u32 << e)).collect();
    (1f64..f64::from(top)).log_scale().base(2.0).with_key_points(ticks)
}

fn caption_style() -> (&'static str, u32) {
    (FAMILY, 24)
}

/// What a plot of the write points shows on its y axis.
struct WritesAxis {
    caption: &'static str,
    desc: &'static str,
    label: fn(&f64) -> String,
    value: fn(&WritePoint) -> f64,
}

/// One line with dots per system of `writes` over the concurrency axis, `y` the y axis.
fn writes_figure<DB, Y>(root: &DrawingArea<DB, Shift>, writes: &Writes, y: Y, axis: &WritesAxis) -> DrawResult<DB>
where
    DB: DrawingBackend,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(axis.caption, caption_style())
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(concurrency_axis(writes), y)?;
    chart
        .configure_mesh()
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .max_light_lines(4)
        .x_desc("concurrent clients")
        .y_desc(axis.desc)
        .x_label_formatter(&|c| format!("{c:.0}"))
        .y_label_formatter(&axis.label)
        .draw()?;
    for (i, system) in writes.systems().into_iter().enumerate() {
        let points: Vec<(f64, f64)> =
            writes.series(system).iter().map(|p| (f64::from(p.concurrency), (axis.value)(p))).collect();
        line_and_dots(&mut chart, points.clone(), points, colour(i), system.to_string())?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// A line through `line` and a dot at each of `dots`, named `label` in the legend.
fn line_and_dots<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    line: Vec<(f64, f64)>,
    dots: Vec<(f64, f64)>,
    c: RGBColor,
    label: String,
) -> DrawResult<DB>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate<From = (f64, f64)>,
{
    chart
        .draw_series(LineSeries::new(line, c.stroke_width(2)))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    chart.draw_series(dots.into_iter().map(|p| Circle::new(p, 4, c.filled())))?;
    Ok(())
}

fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> DrawResult<DB> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

struct Throughput<'a>(&'a Writes);

impl Figure for Throughput<'_> {
    const STEM: &'static str = "writes_throughput";
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let top = self.0.points.iter().map(|p| p.ops_per_s).fold(0.0, f64::max).max(1.0) * 1.1;
        let axis = WritesAxis {
            caption: "Writes: throughput vs concurrency",
            desc: "ops/s",
            label: |v| thousands(*v),
            value: |p| p.ops_per_s,
        };
        writes_figure(root, self.0, 0f64..top, &axis)
    }
}

struct P99<'a>(&'a Writes);

impl Figure for P99<'_> {
    const STEM: &'static str = "writes_p99";
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let p99 = self.0.points.iter().map(|p| p.p99_ms).filter(|v| *v > 0.0);
        let (low, high) = p99.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (low, high) = if high > 0.0 { (low / 1.5, high * 1.5) } else { (0.01, 10.0) };
        let axis = WritesAxis {
            caption: "Writes: p99 latency vs concurrency",
            desc: "p99 latency (ms, log scale)",
            label: |v| short(*v),
            value: |p| p.p99_ms,
        };
        writes_figure(root, self.0, (low..high).log_scale(), &axis)
    }
}

/// The empirical distribution of each kind's trial times, with the lease duration marked.
struct FailoverFigure<'a>(&'a Failover);

impl Figure for FailoverFigure<'_> {
    const STEM: &'static str = "failover";
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let f = self.0;
        let longest = f.trials.iter().map(|t| t.seconds).fold(f.lease_duration_s, f64::max);
        let mut chart = ChartBuilder::on(root)
            .caption("Failover: time to the first acknowledged write, per trial", caption_style())
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..longest * 1.1, 0f64..1.05)?;
        chart
            .configure_mesh()
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .max_light_lines(4)
            .x_desc("seconds")
            .y_desc("fraction of trials done")
            .y_label_formatter(&|v| format!("{v:.1}"))
            .draw()?;
        let lease = f.lease_duration_s;
        chart
            .draw_series(DashedLineSeries::new([(lease, 0.0), (lease, 1.05)], 8, 6, BLACK.stroke_width(1)))?
            .label(format!("lease duration {} s", short(lease)))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(1)));
        for (i, kind) in f.kinds().into_iter().enumerate() {
            let mut seconds: Vec<f64> = f.of_kind(kind).map(|t| t.seconds).collect();
            seconds.sort_by(f64::total_cmp);
            let n = seconds.len() as f64;
            let dots: Vec<(f64, f64)> = seconds.iter().enumerate().map(|(k, &s)| (s, (k + 1) as f64 / n)).collect();
            // A step up at each trial: flat at the fraction below, then up to the fraction done.
            let mut steps = vec![(0.0, 0.0)];
            for (k, &(s, done)) in dots.iter().enumerate() {
                steps.push((s, k as f64 / n));
                steps.push((s, done));
            }
            line_and_dots(&mut chart, steps, dots, colour(i + 2), format!("{kind} ({} trials)", seconds.len()))?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    }
}

/// Restart time and bytes per block, a bar per block count.
struct RecoveryFigure<'a>(&'a [Recovery]);

impl Figure for RecoveryFigure<'_> {
    const STEM: &'static str = "recovery";
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let mut sorted: Vec<&Recovery> = self.0.iter().collect();
        sorted.sort_by_key(|r| r.blocks);
        let root = root.titled("Restart after kill -9, and memory, by number of blocks", caption_style())?;
        let (left, right) = root.split_horizontally(SIZE.0 / 2);
        bars(&left, &sorted, "restart to serving (s)", colour(0), |r| r.restart_to_serving_s, |v| format!("{v:.2} s"))?;
        bars(&right, &sorted, "bytes per block (RSS)", colour(1), |r| r.bytes_per_block, |v| format!("{v:.0} B"))
    }
}

fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[&Recovery],
    title: &str,
    c: RGBColor,
    value: fn(&Recovery) -> f64,
    label: fn(f64) -> String,
) -> DrawResult<DB> {
    let n = entries.len() as u32;
    let top = entries.iter().map(|r| value(r)).fold(0.0, f64::max).max(f64::MIN_POSITIVE) * 1.2;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 18))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d((0..n.max(1) - 1).into_segmented(), 0f64..top)?;
    let names: Vec<String> =
        entries.iter().map(|r| format!("{} blocks", blocks_label(r.blocks).to_uppercase())).collect();
    chart
        .configure_mesh()
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .max_light_lines(4)
        .disable_x_mesh()
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_formatter(&|v| short(*v))
        .draw()?;
    let slot = |i: usize| (SegmentValue::Exact(i as u32), SegmentValue::Exact(i as u32 + 1));
    let bar_margin = SIZE.0 / 16 / n.max(1);
    chart.draw_series(entries.iter().enumerate().map(|(i, r)| {
        let (from, to) = slot(i);
        let mut bar = Rectangle::new([(from, 0.0), (to, value(r))], c.filled());
        bar.set_margin(0, 0, bar_margin, bar_margin);
        bar
    }))?;
    chart.draw_series(entries.iter().enumerate().map(|(i, r)| {
        Text::new(
            label(value(r)),
            (SegmentValue::CenterOf(i as u32), value(r) + top * 0.06),
            TextStyle::from((FAMILY, 16).into_font()).pos(Pos::new(HPos::Center, VPos::Center)),
        )
    }))?;
    Ok(())
}
