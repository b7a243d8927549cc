//! Request bodies and query values: size-limited bodies with JSON errors, timestamps.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use leadscore_store::Millis;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The raw request body; a body over the route's limit is a 413 in the JSON error shape.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(Body(bytes)),
            Err(rejection) => {
                let status = rejection.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "payload_too_large" } else { "bad_request" };
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
    }
}

impl Body {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_json(&self.0)
    }
    pub fn text(&self) -> Result<&str, ApiError> {
        std::str::from_utf8(&self.0).map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty; send JSON"));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let code = if e.is_data() { "invalid" } else { "malformed_json" };
        let status = if e.is_data() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::BAD_REQUEST };
        ApiError::new(status, code, format!("invalid JSON body: {e}"))
    })
}

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

/// A `time,id` page cursor (newest-first lists of runs and deliveries): None when absent.
pub fn parse_time_cursor(cursor: Option<&str>) -> Result<Option<(Millis, String)>, crate::error::ApiError> {
    use crate::error::ApiError;
    match cursor {
        None | Some("") => Ok(None),
        Some(cursor) => {
            let (at, id) = cursor.split_once(',').ok_or_else(|| ApiError::invalid("cursor must be the next_cursor of the previous page"))?;
            Ok(Some((parse_time(at).map_err(ApiError::invalid)?, id.to_string())))
        }
    }
}

/// The `time,id` cursor of the next page: the last item's, when the page is full.
pub fn next_time_cursor(len: usize, limit: usize, last: Option<(Millis, &str)>) -> Option<String> {
    (len == limit).then(|| last.map(|(at, id)| format!("{},{id}", format_time(at)))).flatten()
}

pub fn format_time(millis: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(millis).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)).unwrap_or_else(|| millis.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_need_a_zone() {
        assert_eq!(parse_time("2026-01-01T00:00:00Z").unwrap(), 1_767_225_600_000);
        assert_eq!(parse_time("2026-01-01T02:00:00+02:00").unwrap(), 1_767_225_600_000);
        assert!(parse_time("2026-01-01T00:00:00").unwrap_err().contains("no time zone"));
        assert!(parse_time("yesterday").unwrap_err().contains("not RFC 3339"));
        assert!(parse_time("0001-01-01T00:00:00Z").unwrap_err().contains("outside"));
        // A date alone is midnight UTC.
        assert_eq!(parse_time("2026-01-01").unwrap(), 1_767_225_600_000);
        assert_eq!(parse_time(" 2026-11-01 ").unwrap(), parse_time("2026-11-01T00:00:00Z").unwrap());
        assert!(parse_time("2026-13-01").unwrap_err().contains("not RFC 3339"));
        assert!(parse_time("0001-01-01").unwrap_err().contains("outside"));
        assert_eq!(format_time(1_767_225_600_000), "2026-01-01T00:00:00.000Z");
    }
}
