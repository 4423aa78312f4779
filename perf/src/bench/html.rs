//! The report as one self-contained HTML page: a summary table, latency
//! and throughput over time, and the latency percentile curve, drawn as
//! inline SVG (no scripts, nothing fetched).

use std::fmt::Write;

use super::report::{Latency, Report};

const W: f64 = 760.0;
const H: f64 = 260.0;
const PAD: f64 = 56.0;

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line chart; `x_ticks` are placed at their x values.
fn chart(title: &str, y_unit: &str, series: &[Series], x_ticks: &[(f64, String)]) -> String {
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return format!("<h2>{}</h2><p>no samples</p>", esc(title));
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let y1 = if y1 <= 0.0 { 1.0 } else { y1 * 1.1 };
    let sx = |x: f64| PAD + (x - x0) / (x1 - x0) * (W - 2.0 * PAD);
    let sy = |y: f64| H - PAD / 2.0 - y / y1 * (H - PAD);
    let mut svg = format!(
        "<h2>{}</h2><svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\">",
        esc(title)
    );
    for i in 0..=4 {
        let y = y1 * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            "<line x1=\"{PAD}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\">{:.0} {}</text>",
            W - PAD,
            sy(y),
            sy(y),
            PAD - 4.0,
            sy(y) + 4.0,
            y,
            esc(y_unit)
        );
    }
    for (x, label) in x_ticks {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\">{}</text>",
            sx(*x),
            H - 6.0,
            esc(label)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let path: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/><text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"{}\">{}</text>",
            s.color,
            path.join(" "),
            PAD + 8.0 + 90.0 * i as f64,
            14,
            s.color,
            esc(s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn row(name: &str, l: &Option<Latency>) -> String {
    match l {
        Some(l) => format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            l.p50_us,
            l.p90_us,
            l.p99_us,
            l.p999_us,
            l.max_us
        ),
        None => String::new(),
    }
}

pub fn render(r: &Report) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>sluice-bench report</title>\
         <style>body{font-family:sans-serif;margin:2em;max-width:820px}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}</style>\
         </head><body><h1>sluice-bench report</h1>",
    );
    let _ = write!(
        out,
        "<p>{} · {} · {} loop{} · {} connections × {} · {:.1} s measured</p>\
         <p><b>{:.0} requests/s</b>, {} requests, {} ok, errors {}{}</p>",
        esc(&r.shape.url),
        r.shape.protocol,
        r.shape.mode,
        r.shape
            .arrivals
            .map(|a| format!(" ({a} arrivals)"))
            .unwrap_or_default(),
        r.shape.connections,
        r.shape.streams_per_connection,
        r.seconds,
        r.rps,
        r.requests,
        r.ok,
        esc(&format!("{:?}", r.errors)),
        if r.output_tokens > 0 {
            format!(", {:.0} output tokens/s", r.output_tokens_per_s)
        } else {
            String::new()
        }
    );
    out.push_str(
        "<table><tr><th>µs</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>",
    );
    out.push_str(&row("latency", &r.latency));
    out.push_str(&row("time to first byte", &r.ttfb));
    out.push_str(&row("generator send lag", &r.send_lag));
    out.push_str(&row("time to first token", &r.ttft));
    out.push_str(&row("time to first token, from the send", &r.ttft_sent));
    out.push_str(&row("inter-token latency", &r.itl));
    out.push_str("</table>");
    let secs: Vec<(f64, String)> = r
        .timeline
        .iter()
        .filter(|s| s.t % 5 == 0)
        .map(|s| (s.t as f64, format!("{}s", s.t)))
        .collect();
    // Seconds in which nothing was sent have no latency to plot.
    let over = |f: fn(&super::report::Second) -> f64| -> Vec<(f64, f64)> {
        r.timeline
            .iter()
            .filter(|s| s.requests > 0)
            .map(|s| (s.t as f64, f(s)))
            .collect()
    };
    let line = |name, color, f| Series {
        name,
        color,
        points: over(f),
    };
    out.push_str(&chart(
        "Latency over time",
        "µs",
        &[
            line("p50", "#1f77b4", |s| s.p50_us as f64),
            line("p99", "#d62728", |s| s.p99_us as f64),
        ],
        &secs,
    ));
    out.push_str(&chart(
        "Requests per second (by when each was due)",
        "/s",
        &[
            line("requests", "#2ca02c", |s| s.requests as f64),
            line("errors", "#d62728", |s| s.errors as f64),
        ],
        &secs,
    ));
    // x: the number of nines, so the tail gets the room it deserves.
    let nines = |p: f64| -(1.0 - p / 100.0).max(1e-6).log10();
    let ticks = [50.0, 90.0, 99.0, 99.9, 99.99]
        .iter()
        .map(|&p| (nines(p), format!("p{p}")))
        .collect::<Vec<_>>();
    out.push_str(&chart(
        "Latency by percentile",
        "µs",
        &[Series {
            name: "latency",
            color: "#9467bd",
            points: r
                .percentiles
                .iter()
                .map(|&(p, us)| (nines(p), us as f64))
                .collect(),
        }],
        &ticks,
    ));
    out.push_str("</body></html>\n");
    out
}
