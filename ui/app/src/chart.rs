//! Charts drawn as SVG text on the server: no chart library, nothing loaded from elsewhere.

/// One bar: its label (shown on hover and to screen readers) and its value.
pub struct Bar {
    pub label: String,
    pub value: f64,
}

const W: f64 = 640.0;
const H: f64 = 160.0;

/// A bar chart scaled to its largest value; `unit` formats the values in titles.
pub fn bars(title: &str, bars: &[Bar], unit: impl Fn(f64) -> String) -> String {
    let max = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
    let mut s = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{}\">",
        escape(title)
    );
    if bars.is_empty() || max <= 0.0 {
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"empty\">No data in this period</text></svg>",
            W / 2.0,
            H / 2.0
        ));
        return s;
    }
    let step = W / bars.len() as f64;
    let width = (step * 0.8).max(1.0);
    for (i, b) in bars.iter().enumerate() {
        let h = (b.value / max * (H - 4.0)).max(if b.value > 0.0 { 1.0 } else { 0.0 });
        s.push_str(&format!(
            "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{:.2}\"><title>{}: {}</title></rect>",
            i as f64 * step + (step - width) / 2.0,
            H - h,
            width,
            h,
            escape(&b.label),
            escape(&unit(b.value)),
        ));
    }
    s.push_str("</svg>");
    s
}

/// Stacked bars, one per bucket: each series' share of the bucket's total is a segment of its
/// own colour (classes `s0`, `s1`, …), with the series named on hover. Heights scale to the
/// largest bucket total.
pub fn stacked(title: &str, buckets: &[String], series: &[(String, Vec<f64>)]) -> String {
    let total = |i: usize| {
        series
            .iter()
            .map(|(_, v)| v.get(i).copied().unwrap_or(0.0))
            .sum::<f64>()
    };
    let max = (0..buckets.len()).map(total).fold(0.0_f64, f64::max);
    let mut s = format!(
        "<svg class=\"chart stacked\" viewBox=\"0 0 {W} {H}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{}\">",
        escape(title)
    );
    if buckets.is_empty() || max <= 0.0 {
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"empty\">No data in this period</text></svg>",
            W / 2.0,
            H / 2.0
        ));
        return s;
    }
    let step = W / buckets.len() as f64;
    let width = (step * 0.8).max(1.0);
    for (i, b) in buckets.iter().enumerate() {
        let mut y = H;
        for (k, (name, values)) in series.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(0.0);
            if v <= 0.0 {
                continue;
            }
            let h = (v / max * (H - 4.0)).max(1.0);
            y -= h;
            s.push_str(&format!(
                "<rect class=\"s{}\" x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{:.2}\"><title>{}: {} {}</title></rect>",
                k % 6,
                i as f64 * step + (step - width) / 2.0,
                y,
                width,
                h,
                escape(b),
                v,
                escape(name),
            ));
        }
    }
    s.push_str("</svg>");
    s
}

/// Escapes text for SVG (XML) content and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_escape_labels() {
        let svg = bars(
            "spend",
            &[
                Bar {
                    label: "a<b".into(),
                    value: 1.0,
                },
                Bar {
                    label: "c".into(),
                    value: 4.0,
                },
            ],
            |v| format!("{v}"),
        );
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("a&lt;b: 1"));
        // The largest bar fills the height but the margin; the other is a quarter of it.
        assert!(svg.contains("height=\"156.00\""));
        assert!(svg.contains("height=\"39.00\""));
    }

    #[test]
    fn stacked_bars_add_up_per_bucket() {
        let buckets = vec!["d1".to_string(), "d2".to_string()];
        let series = vec![
            ("cheap".to_string(), vec![3.0, 1.0]),
            ("strong".to_string(), vec![1.0, 0.0]),
        ];
        let svg = stacked("mix", &buckets, &series);
        // Three segments (the empty one is left out); the tallest bucket fills the height.
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("height=\"117.00\"") && svg.contains("height=\"39.00\""));
        assert!(svg.contains("class=\"s1\"") && svg.contains("d1: 1 strong"));
        assert!(stacked("mix", &buckets, &[]).contains("No data"));
    }

    #[test]
    fn empty_chart_says_so() {
        assert!(bars("x", &[], |v| v.to_string()).contains("No data"));
        assert!(bars(
            "x",
            &[Bar {
                label: "a".into(),
                value: 0.0
            }],
            |v| v.to_string()
        )
        .contains("No data"));
    }
}
