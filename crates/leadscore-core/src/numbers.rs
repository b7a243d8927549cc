//! Number rules every score follows.

/// Rounds to 2 decimals (scores are reported so), never returning -0.
pub fn round2(value: f64) -> f64 {
    let r = (value * 100.0).round() / 100.0;
    if r == 0.0 { 0.0 } else { r }
}
