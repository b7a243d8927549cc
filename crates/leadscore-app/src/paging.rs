//! Page cursors, the same on every paginated list: opaque to clients, refused with one
//! answer when no page gave them out.

use leadscore_store::Millis;

use crate::error::{AppError, AppResult};
use crate::time::{format_time, parse_time};

/// The one answer, on every paginated list, to a cursor that no page gave out.
pub fn bad_cursor() -> AppError {
    AppError::bad_request("the cursor is not one this list gave out: pass the next_cursor of the previous page as it came, or none for the first page")
}

/// A page cursor as sent: None when absent or empty (the first page). One with control
/// characters is refused: no cursor holds them, and PostgreSQL refuses a NUL in text.
pub fn page_cursor(cursor: Option<&str>) -> AppResult<Option<&str>> {
    match cursor {
        None | Some("") => Ok(None),
        Some(cursor) if cursor.chars().any(char::is_control) => Err(bad_cursor()),
        Some(cursor) => Ok(Some(cursor)),
    }
}

/// A `time,id` page cursor (newest-first lists of runs and deliveries): None when absent.
pub fn parse_time_cursor(cursor: Option<&str>) -> AppResult<Option<(Millis, String)>> {
    let Some(cursor) = page_cursor(cursor)? else { return Ok(None) };
    let (at, id) = cursor.split_once(',').ok_or_else(bad_cursor)?;
    Ok(Some((parse_time(at).map_err(|_| bad_cursor())?, id.to_string())))
}

/// The `time,id` cursor of the next page: the last item's, when the page is full.
pub fn next_time_cursor(len: usize, limit: usize, last: Option<(Millis, &str)>) -> Option<String> {
    (len == limit).then(|| last.map(|(at, id)| format!("{},{id}", format_time(at)))).flatten()
}
