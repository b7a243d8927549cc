//! Request bodies and query values: size-limited bodies (gzip and deflate accepted) with
//! JSON errors, timestamps.

use std::io::Read;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use leadscore_store::Millis;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
pub use leadscore_app::time::{format_time, parse_time};

/// The largest body a route takes, counted after decompression; [`Body`] reads it. Set with
/// [`body_limit`], which also sets axum's `DefaultBodyLimit` on the bytes as sent.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// axum's own default, for a route that was given no limit.
const UNSET_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Limits bodies to `bytes`, both as sent and once decompressed.
pub fn body_limit(
    bytes: usize,
) -> tower::ServiceBuilder<tower::layer::util::Stack<Extension<BodyLimit>, tower::layer::util::Stack<DefaultBodyLimit, tower::layer::util::Identity>>> {
    tower::ServiceBuilder::new().layer(DefaultBodyLimit::max(bytes)).layer(Extension(BodyLimit(bytes)))
}

/// `4 MiB`, `500 KiB`, `100 bytes`: a limit as people read it.
pub fn format_size(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// The raw request body, decompressed when it came with `Content-Encoding: gzip` or
/// `deflate` (SDKs compress by default). A body over the route's limit, as sent or once
/// inflated, is a 413 in the JSON error shape; an unknown encoding a 415.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().map_or(UNSET_BODY_LIMIT, |l| l.0);
        let encoding = Encoding::of(req.headers())?;
        let bytes = match Bytes::from_request(req, state).await {
            Ok(bytes) => bytes,
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                let limit = format_size(limit);
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the body is larger than {limit}, the most this route takes"),
                ));
            }
            Err(rejection) => {
                if let Some(timed_out) = crate::listen::body_timeout_in(&rejection) {
                    return Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", timed_out.to_string()));
                }
                return Err(ApiError::new(rejection.status(), "bad_request", rejection.body_text()));
            }
        };
        match encoding {
            Encoding::Identity => Ok(Body(bytes)),
            compressed => inflate(compressed, &bytes, limit).map(Body),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    Deflate,
}

impl Encoding {
    fn of(headers: &HeaderMap) -> Result<Encoding, ApiError> {
        let unsupported = |what: &str| {
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!("Content-Encoding {what:?} is not supported; send the body uncompressed, or compressed once with gzip or deflate"),
            )
        };
        let mut found = Encoding::Identity;
        for value in headers.get_all(header::CONTENT_ENCODING) {
            let text = value.to_str().map_err(|_| unsupported(&String::from_utf8_lossy(value.as_bytes())))?;
            for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                let encoding = match token.to_ascii_lowercase().as_str() {
                    "identity" => continue,
                    "gzip" | "x-gzip" => Encoding::Gzip,
                    "deflate" => Encoding::Deflate,
                    _ => return Err(unsupported(token)),
                };
                if found != Encoding::Identity {
                    return Err(unsupported(text));
                }
                found = encoding;
            }
        }
        Ok(found)
    }

    fn name(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
        }
    }
}

/// Inflates a compressed body as a stream that stops one byte past `limit`, so a small
/// body that would inflate to gigabytes (a "zip bomb") costs at most the limit in memory.
fn inflate(encoding: Encoding, compressed: &[u8], limit: usize) -> Result<Bytes, ApiError> {
    let decoder: Box<dyn Read + '_> = match encoding {
        Encoding::Identity => return Ok(Bytes::copy_from_slice(compressed)),
        // Multi-member: a gzip body may be several members back to back (RFC 1952).
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
        // HTTP's deflate is the zlib format (RFC 9110), but some clients send raw deflate.
        Encoding::Deflate if has_zlib_header(compressed) => Box::new(flate2::read::ZlibDecoder::new(compressed)),
        Encoding::Deflate => Box::new(flate2::read::DeflateDecoder::new(compressed)),
    };
    let mut inflated = Vec::new();
    let read_limit = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    decoder.take(read_limit).read_to_end(&mut inflated).map_err(|e| {
        let name = encoding.name();
        ApiError::bad_request(format!("the body is not valid {name} (it came with Content-Encoding: {name}): {e}"))
    })?;
    if inflated.len() > limit {
        let limit = format_size(limit);
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {limit} once decompressed; the limit of {limit} applies to the decompressed body"),
        ));
    }
    Ok(Bytes::from(inflated))
}

/// Whether `bytes` start with a zlib header (RFC 1950: deflate method, check bits).
fn has_zlib_header(bytes: &[u8]) -> bool {
    match bytes {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
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

/// The query parameters of a JSON route, parsed into `T` (a struct of optional fields). One
/// rule for every route: a parameter `T` does not name is refused (a typo such as
/// `/deliveries?contact=` would otherwise quietly list every row), and so is a query string
/// that does not parse; both are 400s in the JSON error shape.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let unreadable = |rejection: QueryRejection| ApiError::bad_request(rejection.body_text());
        if let Some(allowed) = struct_fields::<T>() {
            let axum::extract::Query(pairs) = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map_err(unreadable)?;
            if let Some((unknown, _)) = pairs.iter().find(|(name, _)| !allowed.contains(&name.as_str())) {
                return Err(ApiError::bad_request(format!("unknown query parameter `{unknown}`; this route takes {}", allowed.join(", ")))
                    .with_details(serde_json::json!({ "parameter": unknown, "allowed": allowed })));
            }
        }
        let axum::extract::Query(value) = axum::extract::Query::<T>::try_from_uri(&parts.uri).map_err(unreadable)?;
        Ok(Query(value))
    }
}

/// A route's path parameters, with axum's refusal (a segment that is not UTF-8 once
/// percent-decoded, say) answered in the JSON error shape instead of plain text.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(ApiError::new(rejection.status(), "bad_request", rejection.body_text())),
        }
    }
}

/// The field names a derived `Deserialize` struct accepts: serde hands them to
/// `deserialize_struct`, so a deserializer that only records them reads them without any
/// input. None when `T` is not a struct.
fn struct_fields<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    use serde::de::{Deserializer, Error, Visitor, value};

    struct FieldNames<'a>(&'a mut Option<&'static [&'static str]>);

    impl<'de> Deserializer<'de> for FieldNames<'_> {
        type Error = value::Error;

        fn deserialize_struct<V: Visitor<'de>>(self, _name: &'static str, fields: &'static [&'static str], _visitor: V) -> Result<V::Value, Self::Error> {
            *self.0 = Some(fields);
            Err(value::Error::custom("only the field names were wanted"))
        }

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(value::Error::custom("not a struct"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields = None;
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
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

/// The one answer, on every paginated route, to a cursor that no page gave out.
pub fn bad_cursor() -> ApiError {
    leadscore_app::paging::bad_cursor().into()
}

/// A page cursor as sent: see [`leadscore_app::paging::page_cursor`].
pub fn page_cursor(cursor: Option<&str>) -> Result<Option<&str>, ApiError> {
    Ok(leadscore_app::paging::page_cursor(cursor)?)
}

pub use leadscore_app::paging::next_time_cursor;

/// A `time,id` page cursor: see [`leadscore_app::paging::parse_time_cursor`].
pub fn parse_time_cursor(cursor: Option<&str>) -> Result<Option<(Millis, String)>, ApiError> {
    Ok(leadscore_app::paging::parse_time_cursor(cursor)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(format_size(4 * 1024 * 1024), "4 MiB");
        assert_eq!(format_size(500 * 1024), "500 KiB");
        assert_eq!(format_size(1000), "1000 bytes");
    }

    #[test]
    fn inflates_up_to_the_limit_only() {
        use std::io::Write;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(&[b'0'; 10_000]).unwrap();
        let gzip = gzip.finish().unwrap();
        assert_eq!(inflate(Encoding::Gzip, &gzip, 10_000).unwrap().len(), 10_000);
        let refused = inflate(Encoding::Gzip, &gzip, 9_999).unwrap_err();
        assert_eq!((refused.status, refused.code), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(b"{}").unwrap();
        assert_eq!(&inflate(Encoding::Deflate, &raw.finish().unwrap(), 10).unwrap()[..], b"{}");
        assert_eq!(inflate(Encoding::Gzip, b"{}", 10).unwrap_err().status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn reads_the_content_encoding() {
        let encoding = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(header::CONTENT_ENCODING, value.parse().unwrap());
            }
            Encoding::of(&headers).map_err(|e| e.status)
        };
        assert_eq!(encoding(&[]), Ok(Encoding::Identity));
        assert_eq!(encoding(&["identity"]), Ok(Encoding::Identity));
        assert_eq!(encoding(&["GZIP"]), Ok(Encoding::Gzip));
        assert_eq!(encoding(&["x-gzip"]), Ok(Encoding::Gzip));
        assert_eq!(encoding(&["deflate, identity"]), Ok(Encoding::Deflate));
        assert_eq!(encoding(&["br"]), Err(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        assert_eq!(encoding(&["gzip, gzip"]), Err(StatusCode::UNSUPPORTED_MEDIA_TYPE), "compressed twice");
        assert_eq!(encoding(&["gzip", "deflate"]), Err(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }

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
