//! Durations as written in models and automations: `30s`, `15m`, `4h`, `1d`, `7d`, `90d`, `1w`.

use std::fmt;

/// A span of time in whole milliseconds. Models only use whole seconds and up, but the
/// scorer works in milliseconds so event timestamps keep their precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    millis: i64,
}

pub const SECOND_MS: i64 = 1_000;
pub const MINUTE_MS: i64 = 60 * SECOND_MS;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;
pub const WEEK_MS: i64 = 7 * DAY_MS;

impl Span {
    pub const fn from_millis(millis: i64) -> Self {
        Self { millis }
    }
    pub const fn millis(self) -> i64 {
        self.millis
    }

    /// Parses `<positive integer><unit>` with unit one of `s m h d w`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| format!("duration {text:?} has no unit (use s, m, h, d or w, e.g. \"7d\")"))?;
        let (digits, unit) = text.split_at(split);
        if digits.is_empty() {
            return Err(format!("duration {text:?} must start with a whole number, e.g. \"30d\""));
        }
        let amount: i64 = digits.parse().map_err(|_| format!("duration {text:?} is too large"))?;
        let unit_ms = match unit {
            "s" => SECOND_MS,
            "m" => MINUTE_MS,
            "h" => HOUR_MS,
            "d" => DAY_MS,
            "w" => WEEK_MS,
            other => {
                return Err(format!("duration {text:?} has unknown unit {other:?} (use s, m, h, d or w)"));
            }
        };
        if amount == 0 {
            return Err(format!("duration {text:?} must be greater than zero"));
        }
        let millis =
            amount.checked_mul(unit_ms).filter(|ms| *ms <= 1_000 * 365 * DAY_MS).ok_or_else(|| format!("duration {text:?} is longer than 1000 years"))?;
        Ok(Self { millis })
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.millis;
        for (unit, size) in [("w", WEEK_MS), ("d", DAY_MS), ("h", HOUR_MS), ("m", MINUTE_MS), ("s", SECOND_MS)] {
            if ms % size == 0 {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(Span::parse("30s").unwrap().millis(), 30_000);
        assert_eq!(Span::parse("15m").unwrap().millis(), 15 * 60_000);
        assert_eq!(Span::parse("4h").unwrap().millis(), 4 * 3_600_000);
        assert_eq!(Span::parse("1d").unwrap().millis(), DAY_MS);
        assert_eq!(Span::parse("90d").unwrap().millis(), 90 * DAY_MS);
        assert_eq!(Span::parse("1w").unwrap(), Span::parse("7d").unwrap());
    }

    #[test]
    fn rejects_bad_durations_with_reasons() {
        for bad in ["", "d", "7", "7x", "-1d", "0d", "1.5d", "99999999999999999999d", "100000w"] {
            assert!(Span::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn displays_in_largest_whole_unit() {
        assert_eq!(Span::parse("14d").unwrap().to_string(), "2w");
        assert_eq!(Span::parse("90d").unwrap().to_string(), "90d");
        assert_eq!(Span::parse("120m").unwrap().to_string(), "2h");
    }
}
