//! Instants as the API, the CLI and imports write them: RFC 3339 with a zone, or a date.

use leadscore_store::Millis;

/// Parses an RFC 3339 timestamp with a zone (`2026-05-01T10:00:00Z`, `…+02:00`) to
/// milliseconds, or a date alone (`2026-05-01`) as that day's midnight UTC. A time of day
/// without a zone is refused: its instant would be a guess, where a bare date is how
/// spreadsheets and CRMs export a day and midnight UTC is what people mean by it.
pub fn parse_time(text: &str) -> Result<Millis, String> {
    let parsed = chrono::DateTime::parse_from_rfc3339(text.trim()).map(|t| t.timestamp_millis()).or_else(|e| {
        chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp_millis()).map_err(|_| e)
    });
    match parsed {
        Ok(t) if (EARLIEST..=LATEST).contains(&t) => Ok(t),
        Ok(_) => Err(format!("timestamp {text:?} is outside 1970-01-01 .. 2200-01-01")),
        Err(_) => {
            let naive = chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S%.f"));
            if naive.is_ok() {
                Err(format!("timestamp {text:?} has no time zone; add one, e.g. \"{}Z\" for UTC", text.trim()))
            } else {
                Err(format!("timestamp {text:?} is not RFC 3339 (e.g. \"2026-05-01T10:00:00Z\")"))
            }
        }
    }
}

/// 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z: instants outside are input mistakes.
const EARLIEST: Millis = 0;
const LATEST: Millis = 7_258_118_400_000;

/// An instant as every answer writes it: RFC 3339 UTC with milliseconds.
pub fn format_time(millis: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(millis).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)).unwrap_or_else(|| millis.to_string())
}
