//! Reading what an events request sent beyond the token: its JSON body, entity tags and the
//! idempotency key.

use http_kit::{Problem, json_body};
use serde_json::Value;
use spin_sdk::http::Request;

/// The media types a body may be sent as.
#[derive(Clone, Copy)]
pub enum Accepts {
    Json,
    JsonOrMergePatch,
}

/// What `PATCH` takes, announced with every 415 of this API (RFC 5789).
const ACCEPT_PATCH: &str = "application/merge-patch+json, application/json";

/// The body as JSON (400 when absent or malformed, 415 for another media type).
pub fn json(request: &Request, accepts: Accepts) -> Result<Value, Problem> {
    let body = match accepts {
        Accepts::Json => json_body(request, &["application/json"], "application/json"),
        Accepts::JsonOrMergePatch => json_body(
            request,
            &["application/json", "application/merge-patch+json"],
            "application/merge-patch+json or application/json",
        ),
    };
    body.map_err(|problem| match problem.status() {
        415 => problem.with_header("accept-patch", ACCEPT_PATCH),
        _ => problem,
    })
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

/// `If-None-Match` (its value, if sent) against a strong `etag`, compared weakly as RFC 9110
/// asks: whether it names that tag or is `*`.
pub fn none_match(header: Option<&str>, etag: &str) -> bool {
    header.is_some_and(|header| {
        header.trim() == "*"
            || header
                .split(',')
                .map(str::trim)
                .any(|tag| tag.strip_prefix("W/").unwrap_or(tag) == etag)
    })
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
    fn unsupported_media_types_announce_what_patch_takes() {
        let text = request(&[("content-type", "text/plain")], "{}");
        for accepts in [Accepts::Json, Accepts::JsonOrMergePatch] {
            let response = spin_sdk::http::Response::from(json(&text, accepts).unwrap_err());
            assert_eq!(*response.status(), 415);
            assert_eq!(
                response.header("accept-patch").and_then(|h| h.as_str()),
                Some(ACCEPT_PATCH)
            );
        }
        let merge = request(&[("content-type", "application/merge-patch+json")], "{}");
        assert!(json(&merge, Accepts::Json).is_err());
        assert!(json(&merge, Accepts::JsonOrMergePatch).is_ok());
        let empty = request(&[("content-type", "application/json")], "");
        let response = spin_sdk::http::Response::from(json(&empty, Accepts::Json).unwrap_err());
        assert_eq!(*response.status(), 400);
        assert!(response.header("accept-patch").is_none());
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
    fn none_match_compares_weakly() {
        assert!(none_match(Some("\"abc\""), "\"abc\""));
        assert!(none_match(Some("\"x\", W/\"abc\""), "\"abc\""));
        assert!(none_match(Some(" * "), "\"abc\""));
        assert!(!none_match(Some("\"abd\""), "\"abc\""));
        assert!(!none_match(None, "\"abc\""));
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
