//! RFC 9457 problem details for notify-fn's API (the same shape event-fn answers).

use serde::Serialize;
use spin_sdk::http::Response;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
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
            r#"Bearer realm="notifications", error="invalid_token""#
        } else {
            r#"Bearer realm="notifications""#
        };
        let mut problem = Self::new(401, "Unauthorized", detail);
        problem.headers.push(("www-authenticate", challenge.to_owned()));
        problem
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "Not Found", detail)
    }

    pub fn method_not_allowed(allow: &str) -> Self {
        let mut problem = Self::new(405, "Method Not Allowed", format!("this resource allows {allow}"));
        problem.headers.push(("allow", allow.to_owned()));
        problem
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            413,
            "Content Too Large",
            format!("the body must be at most {limit} bytes"),
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(415, "Unsupported Media Type", "send the body as application/json")
    }

    pub fn unavailable() -> Self {
        let mut problem = Self::new(
            503,
            "Service Unavailable",
            "the database is unavailable; retry later",
        );
        problem.headers.push(("retry-after", "5".to_owned()));
        problem
    }

    pub fn misconfigured() -> Self {
        Self::new(
            500,
            "Internal Server Error",
            "the service is misconfigured; see its log",
        )
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
