//! Request extractors that turn every kind of bad input into a problem with the field named:
//! bodies (content type, size, syntax, unknown fields, types), query strings and path ids.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::problem::Problem;
use crate::strict_json::Strict;

/// Most bytes a request body may have: every body of this API is a small JSON object.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A JSON body, parsed with the path of the first offending field kept for the problem.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json")
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the body may have at most {BODY_LIMIT} bytes"),
                )
            } else {
                Problem::bad_request("unreadable_body", "the request body could not be read")
            }
        })?;
        parse_json(&bytes).map(Body)
    }
}

/// An optional JSON body: an empty body and a JSON `null` are both `T::default()`, as the
/// document declares (`oneOf: [null, T]`, not required).
#[derive(Debug)]
pub struct OptionalBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalBody<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let has_body = request.headers().contains_key(header::TRANSFER_ENCODING)
            || request
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|length| length.trim() != "0");
        if has_body {
            Body::<Option<T>>::from_request(request, state).await.map(|Body(value)| Self(value.unwrap_or_default()))
        } else {
            Ok(Self(T::default()))
        }
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(Strict(&mut deserializer)).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let (code, status) = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ("malformed_json", StatusCode::BAD_REQUEST)
            }
            _ => ("invalid_field", StatusCode::UNPROCESSABLE_ENTITY),
        };
        let message = strip_position(&inner.to_string());
        let problem = Problem::new(status, code, message.clone());
        if code == "malformed_json" {
            return problem;
        }
        match field_path(&path, &message) {
            Some(field) => problem.with_field(field),
            None => problem,
        }
    })?;
    deserializer
        .end()
        .map_err(|_| Problem::bad_request("malformed_json", "trailing characters after the JSON value"))?;
    Ok(value)
}

/// The offending field: serde reports a missing or repeated field at its parent's path, with
/// the field's name only in the message.
fn field_path(path: &str, message: &str) -> Option<String> {
    let named = ["missing field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    match (path, named) {
        (".", Some(name)) => Some(name.to_owned()),
        (".", None) => None,
        (parent, Some(name)) => Some(format!("{parent}.{name}")),
        (path, None) => Some(path.to_owned()),
    }
}

/// serde_json appends " at line 1 column 7"; the field path says more to a client.
fn strip_position(message: &str) -> String {
    message.split(" at line ").next().unwrap_or(message).to_owned()
}

/// A query string parsed into `T`, refusing unknown parameters and naming the bad one.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer).map(Query).map_err(|error| {
            let path = error.path().to_string();
            let message = error.into_inner().to_string();
            let problem = Problem::bad_request("invalid_query", message.clone());
            match field_path(&path, &message) {
                Some(field) => problem.with_field(field),
                None => problem,
            }
        })
    }
}

/// Most items a page of a list holds.
pub const MAX_PAGE: usize = 500;

/// A list's `limit`: absent is `default`; outside 1..=[`MAX_PAGE`] is refused on every list
/// alike (400 `invalid_query` naming `limit`), never silently clamped.
pub fn page_limit(limit: Option<usize>, default: usize) -> Result<usize, Problem> {
    match limit.unwrap_or(default) {
        limit @ 1..=MAX_PAGE => Ok(limit),
        _ => {
            Err(Problem::bad_request("invalid_query", format!("`limit` is between 1 and {MAX_PAGE}"))
                .with_field("limit"))
        }
    }
}

/// A log position as a query names it: decimal digits only (no sign), at most 20 of them, of a
/// value that fits 64 bits — exactly what the document's pattern for a position admits (up to 19
/// digits, or 20 up to 18446744073709551615).
pub fn position(input: &str) -> Option<u64> {
    let digits = (1..=20).contains(&input.len()) && input.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| input.parse().ok()).flatten()
}

/// Parses a path segment as an id, or answers 400 naming the segment.
pub fn path_id<T: std::str::FromStr>(field: &str, input: &str) -> Result<T, Problem> {
    input.parse().map_err(|_| Problem::bad_request("invalid_id", format!("`{field}` must be a UUID")).with_field(field))
}

#[cfg(test)]
mod tests {
    use super::position;

    #[test]
    fn a_position_is_digits_of_a_64_bit_value() {
        assert_eq!(position("0"), Some(0));
        assert_eq!(position("00000000000000000042"), Some(42));
        assert_eq!(position("18446744073709551615"), Some(u64::MAX));
        for refused in ["", "+5", "-1", " 5", "18446744073709551616", "000000000000000000042", "1e3"] {
            assert_eq!(position(refused), None, "{refused:?}");
        }
    }
}
