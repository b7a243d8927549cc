//! Page cursors, the same on every paginated list: opaque to clients, refused with one
//! answer when no page gave them out.

use leadscore_store::Millis;

use crate::error::AppError;
use crate::time::{format_time, parse_time};

/// Why a page cannot be read: a bad request (400) either way.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PageError {
    /// The one answer, on every paginated list, to a cursor that no page gave out.
    #[error("the cursor is not one this list gave out: pass the next_cursor of the previous page as it came, or none for the first page")]
    BadCursor,
    #[error("limit must be between 1 and {max}")]
    Limit { max: usize },
}

impl From<PageError> for AppError {
    fn from(err: PageError) -> Self {
        AppError::bad_request(err.to_string())
    }
}

/// The one answer, on every paginated list, to a cursor that no page gave out.
pub fn bad_cursor() -> PageError {
    PageError::BadCursor
}

/// A page cursor as sent: None when absent or empty (the first page). One with control
/// characters is refused: no cursor holds them, and PostgreSQL refuses a NUL in text.
pub fn page_cursor(cursor: Option<&str>) -> Result<Option<&str>, PageError> {
    match cursor {
        None | Some("") => Ok(None),
        Some(cursor) if cursor.chars().any(char::is_control) => Err(bad_cursor()),
        Some(cursor) => Ok(Some(cursor)),
    }
}

/// A `time,id` page cursor (newest-first lists of runs and deliveries): None when absent.
pub fn parse_time_cursor(cursor: Option<&str>) -> Result<Option<(Millis, String)>, PageError> {
    let Some(cursor) = page_cursor(cursor)? else { return Ok(None) };
    let (at, id) = cursor.split_once(',').ok_or_else(bad_cursor)?;
    Ok(Some((parse_time(at).map_err(|_| bad_cursor())?, id.to_string())))
}

/// The `time,id` cursor of the next page: the last item's, when the page is full.
pub fn next_time_cursor(len: usize, limit: usize, last: Option<(Millis, &str)>) -> Option<String> {
    (len == limit).then(|| last.map(|(at, id)| format!("{},{id}", format_time(at)))).flatten()
}

/// A page of a list derived anew for every request (a contact's history, its events):
/// the first page, or the one after the `n` entries earlier pages gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub offset: usize,
    pub limit: usize,
}

impl Window {
    /// Everything (front ends that show a whole list themselves).
    pub const ALL: Window = Window { offset: 0, limit: usize::MAX };

    /// The window a request asks for: `limit` (default `default`, at most `max`) entries
    /// after the cursor's position.
    pub fn of(cursor: Option<&str>, limit: Option<usize>, default: usize, max: usize) -> Result<Window, PageError> {
        let offset = match page_cursor(cursor)? {
            None => 0,
            Some(cursor) => cursor.strip_prefix("after:").and_then(|n| n.parse().ok()).ok_or_else(bad_cursor)?,
        };
        let limit = limit.unwrap_or(default);
        if limit == 0 || limit > max {
            return Err(PageError::Limit { max });
        }
        Ok(Window { offset, limit })
    }

    /// This window's part of `items`, and the cursor of the next page when there is one.
    pub fn take<T>(self, items: Vec<T>) -> (Vec<T>, Option<String>) {
        let total = items.len();
        let page: Vec<T> = items.into_iter().skip(self.offset).take(self.limit).collect();
        let end = self.offset.saturating_add(page.len());
        let next = (end < total).then(|| format!("after:{end}"));
        (page, next)
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;

    #[test]
    fn pages_walk_the_whole_list_once() {
        let items: Vec<u32> = (0..25).collect();
        let mut cursor: Option<String> = None;
        let mut seen = Vec::new();
        loop {
            let window = Window::of(cursor.as_deref(), Some(10), 100, 1000).unwrap();
            let (page, next) = window.take(items.clone());
            seen.extend(page);
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, items);
        assert!(Window::of(Some("after:x"), None, 100, 1000).is_err());
        assert!(Window::of(None, Some(0), 100, 1000).is_err());
        assert!(Window::of(None, Some(1001), 100, 1000).is_err());
    }
}
