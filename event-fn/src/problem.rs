//! RFC 9457 problem details: every error the API answers is one of these, as
//! `application/problem+json`, naming the offending fields.

use serde::Serialize;
use spin_sdk::http::Response;

/// Seconds a client should wait before retrying when the database is unavailable.
const RETRY_AFTER_SECONDS: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The body field or query parameter, empty for the body as a whole.
    pub field: String,
    pub detail: String,
}

impl FieldError {
    pub fn new(field: &str, detail: &str) -> Self {
        Self {
            field: field.to_owned(),
            detail: detail.to_owned(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
    #[serde(skip)]
    headers: Vec<(&'static str, String)>,
}

impl Problem {
    fn new(status: u16, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title,
            status,
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn invalid(detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self {
            kind: "/problems/validation",
            errors,
            ..Self::new(400, "Invalid request", detail)
        }
    }

    pub fn invalid_field(field: &str, detail: &str) -> Self {
        Self::invalid(format!("{field}: {detail}"), vec![FieldError::new(field, detail)])
    }

    pub fn unauthorized(detail: &str, invalid_token: bool) -> Self {
        let challenge = if invalid_token {
            r#"Bearer realm="events", error="invalid_token""#
        } else {
            r#"Bearer realm="events""#
        };
        Self::new(401, "Unauthorized", detail).with_header("www-authenticate", challenge)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "Not Found", detail)
    }

    pub fn method_not_allowed(allow: &str) -> Self {
        Self::new(405, "Method Not Allowed", format!("this resource allows {allow}"))
            .with_header("allow", allow)
    }

    pub fn precondition_failed() -> Self {
        Self::new(
            412,
            "Precondition Failed",
            "the event has changed since the ETag in If-Match was issued: fetch it again",
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            413,
            "Content Too Large",
            format!("the body must be at most {limit} bytes"),
        )
    }

    pub fn unsupported_media_type(expected: &str) -> Self {
        Self::new(
            415,
            "Unsupported Media Type",
            format!("send the body as {expected}"),
        )
        .with_header("accept-patch", "application/merge-patch+json, application/json")
    }

    pub fn idempotency_key_reused() -> Self {
        Self {
            kind: "/problems/idempotency-key-reused",
            ..Self::new(
                422,
                "Idempotency-Key reused",
                "this Idempotency-Key was already used with a different request body",
            )
        }
    }

    pub fn unavailable() -> Self {
        Self::new(
            503,
            "Service Unavailable",
            "the database is unavailable; retry later",
        )
        .with_header("retry-after", &RETRY_AFTER_SECONDS.to_string())
    }

    /// The component's own configuration is broken (a Spin variable is missing): the operator's
    /// problem, not the client's.
    pub fn misconfigured() -> Self {
        Self::new(
            500,
            "Internal Server Error",
            "the service is misconfigured; see its log",
        )
    }

    fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub fn status(&self) -> u16 {
        self.status
    }
}

impl From<Problem> for Response {
    fn from(problem: Problem) -> Self {
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut builder = Response::builder();
        builder
            .status(problem.status)
            .header("content-type", "application/problem+json");
        for (name, value) in problem.headers {
            builder.header(name, value);
        }
        builder.body(body).build()
    }
}
