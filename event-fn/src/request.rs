//! Reading what the client sent: the bearer token, JSON bodies, entity tags and headers.

use serde_json::Value;
use spin_sdk::http::Request;

use crate::problem::Problem;

/// Bodies larger than this are refused (413) before they are parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Checks `Authorization: Bearer <token>` against the configured token in constant time.
pub fn authenticate(request: &Request, expected: &str) -> Result<(), Problem> {
    let Some(header) = request.header("authorization").and_then(|h| h.as_str()) else {
        return Err(Problem::unauthorized("send Authorization: Bearer <token>", false));
    };
    let token = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => {
            return Err(Problem::unauthorized(
                "the Authorization scheme must be Bearer",
                true,
            ));
        }
    };
    if constant_time_eq(token.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(Problem::unauthorized("the bearer token is not valid", true))
    }
}

/// Compares without an early exit, so the time taken does not reveal how much of a guess was
/// right (only whether the lengths differ).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The media types a body may be sent as.
#[derive(Clone, Copy)]
pub enum Accepts {
    Json,
    JsonOrMergePatch,
}

/// The body as JSON: size first (413), then presence (400), media type (415) and syntax (400).
pub fn json_body(request: &Request, accepts: Accepts) -> Result<Value, Problem> {
    let declared_length = request
        .header("content-length")
        .and_then(|h| h.as_str())
        .and_then(|h| h.parse::<usize>().ok());
    if declared_length.unwrap_or(0) > MAX_BODY_BYTES || request.body().len() > MAX_BODY_BYTES {
        return Err(Problem::payload_too_large(MAX_BODY_BYTES));
    }
    if request.body().iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::invalid_field("", "a JSON body is required"));
    }
    let media_type = request
        .header("content-type")
        .and_then(|h| h.as_str())
        .map(|h| {
            h.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let allowed = match accepts {
        Accepts::Json => media_type == "application/json",
        Accepts::JsonOrMergePatch => {
            media_type == "application/json" || media_type == "application/merge-patch+json"
        }
    };
    if !allowed {
        return Err(Problem::unsupported_media_type(match accepts {
            Accepts::Json => "application/json",
            Accepts::JsonOrMergePatch => "application/merge-patch+json or application/json",
        }));
    }
    serde_json::from_slice(request.body())
        .map_err(|e| Problem::invalid_field("", &format!("the body is not valid JSON: {e}")))
}

/// The strong entity tag of an event version.
pub fn etag(id: i64, version: i64) -> String {
    format!("\"e{id}v{version}\"")
}

/// `If-Match`: `None` when absent or `*` (any version), else the versions of this event it names
/// (possibly none, which then never matches). Weak tags never match, as RFC 9110 requires.
pub fn if_match(request: &Request, id: i64) -> Option<Vec<i64>> {
    let header = request.header("if-match").and_then(|h| h.as_str())?;
    if header.trim() == "*" {
        return None;
    }
    Some(
        header
            .split(',')
            .filter_map(|tag| version_in_tag(tag.trim(), id))
            .collect(),
    )
}

/// `If-None-Match` with weak comparison: whether it names the current version (or is `*`).
pub fn if_none_match(request: &Request, id: i64, version: i64) -> bool {
    let Some(header) = request.header("if-none-match").and_then(|h| h.as_str()) else {
        return false;
    };
    header.trim() == "*"
        || header
            .split(',')
            .map(str::trim)
            .any(|tag| version_in_tag(tag.strip_prefix("W/").unwrap_or(tag), id) == Some(version))
}

fn version_in_tag(tag: &str, id: i64) -> Option<i64> {
    tag.strip_prefix(&format!("\"e{id}v"))?
        .strip_suffix('"')?
        .parse()
        .ok()
}

/// `Idempotency-Key`: 1 to 255 visible ASCII characters.
pub fn idempotency_key(request: &Request) -> Result<Option<String>, Problem> {
    let Some(value) = request.header("idempotency-key") else {
        return Ok(None);
    };
    match value.as_str() {
        Some(key) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(key.to_owned()))
        }
        _ => Err(Problem::invalid_field(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        )),
    }
}

#[cfg(test)]
mod tests {
    use spin_sdk::http::Method;

    use super::*;

    fn request(headers: &[(&str, &str)], body: &str) -> Request {
        let mut builder = Request::builder();
        builder.method(Method::Post).uri("/events");
        for (name, value) in headers {
            builder.header(*name, *value);
        }
        builder.body(body.as_bytes().to_vec()).build()
    }

    #[test]
    fn bearer_tokens() {
        assert!(authenticate(&request(&[("authorization", "Bearer s3cret")], ""), "s3cret").is_ok());
        assert!(authenticate(&request(&[("authorization", "bearer s3cret")], ""), "s3cret").is_ok());
        for bad in [
            "Bearer s3cre",
            "Bearer s3cretx",
            "Basic s3cret",
            "s3cret",
            "Bearer ",
        ] {
            let problem = authenticate(&request(&[("authorization", bad)], ""), "s3cret").unwrap_err();
            assert_eq!(problem.status(), 401, "{bad}");
        }
        assert_eq!(
            authenticate(&request(&[], ""), "s3cret").unwrap_err().status(),
            401
        );
    }

    #[test]
    fn bodies() {
        let json = [("content-type", "application/json; charset=utf-8")];
        assert!(json_body(&request(&json, "{\"a\":1}"), Accepts::Json).is_ok());
        assert_eq!(
            json_body(&request(&json, ""), Accepts::Json)
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            json_body(&request(&json, "{"), Accepts::Json)
                .unwrap_err()
                .status(),
            400
        );
        let big = format!("\"{}\"", "x".repeat(MAX_BODY_BYTES));
        assert_eq!(
            json_body(&request(&json, &big), Accepts::Json)
                .unwrap_err()
                .status(),
            413
        );
        let text = [("content-type", "text/plain")];
        assert_eq!(
            json_body(&request(&text, "{}"), Accepts::Json)
                .unwrap_err()
                .status(),
            415
        );
        assert_eq!(
            json_body(&request(&[], "{}"), Accepts::Json)
                .unwrap_err()
                .status(),
            415
        );
        let merge = [("content-type", "application/merge-patch+json")];
        assert_eq!(
            json_body(&request(&merge, "{}"), Accepts::Json)
                .unwrap_err()
                .status(),
            415
        );
        assert!(json_body(&request(&merge, "{}"), Accepts::JsonOrMergePatch).is_ok());
    }

    #[test]
    fn entity_tags() {
        assert_eq!(etag(4, 2), "\"e4v2\"");
        let with = |h: &str| request(&[("if-match", h)], "");
        assert_eq!(if_match(&with("\"e4v2\""), 4), Some(vec![2]));
        assert_eq!(if_match(&with("\"e4v2\", \"e4v3\""), 4), Some(vec![2, 3]));
        assert_eq!(if_match(&with("\"e5v2\""), 4), Some(vec![]));
        assert_eq!(if_match(&with("W/\"e4v2\""), 4), Some(vec![]));
        assert_eq!(if_match(&with("*"), 4), None);
        assert_eq!(if_match(&request(&[], ""), 4), None);
        let none = |h: &str| request(&[("if-none-match", h)], "");
        assert!(if_none_match(&none("\"e4v2\""), 4, 2));
        assert!(if_none_match(&none("W/\"e4v2\""), 4, 2));
        assert!(if_none_match(&none("*"), 4, 2));
        assert!(!if_none_match(&none("\"e4v1\""), 4, 2));
    }

    #[test]
    fn idempotency_keys() {
        let with = |k: &str| request(&[("idempotency-key", k)], "");
        assert_eq!(
            idempotency_key(&with("abc-123")).unwrap().as_deref(),
            Some("abc-123")
        );
        assert_eq!(idempotency_key(&request(&[], "")).unwrap(), None);
        assert!(idempotency_key(&with(&"k".repeat(256))).is_err());
        assert!(idempotency_key(&with("has space")).is_err());
    }
}
