//! How figures are spelled in summary lines and tables.

/// What a figure that could not be computed reads as.
pub const NA: &str = "n/a";

/// `value` with `decimals` digits after the point, or `n/a`.
pub fn fixed(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) => format!("{v:.decimals$}"),
        None => NA.to_string(),
    }
}

/// `value` with at most three decimals and no trailing zeros: `6.5`, `2`, `6.25`.
pub fn short(value: f64) -> String {
    let s = format!("{value:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `value` rounded to a whole number with thousands separators: `38,092`.
pub fn thousands(value: f64) -> String {
    let rounded = format!("{:.0}", value.abs());
    let mut out = String::with_capacity(rounded.len() + rounded.len() / 3 + 1);
    for (i, c) in rounded.chars().enumerate() {
        if i > 0 && (rounded.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 && rounded != "0" { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_decimals_or_na() {
        assert_eq!(fixed(Some(12.345), 2), "12.35");
        assert_eq!(fixed(Some(0.4), 3), "0.400");
        assert_eq!(fixed(Some(180.4), 0), "180");
        assert_eq!(fixed(None, 2), "n/a");
    }

    #[test]
    fn short_trims_zeros() {
        assert_eq!(short(2.0), "2");
        assert_eq!(short(3.3 + 1.5), "4.8");
        assert_eq!(short(6.25), "6.25");
        assert_eq!(short(10.0), "10");
        assert_eq!(short(0.0), "0");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(38091.67), "38,092");
        assert_eq!(thousands(2_354_714.0), "2,354,714");
        assert_eq!(thousands(-1234.0), "-1,234");
    }
}
