//! RFC 9457 problem details: every error either component answers is one of these, as
//! `application/problem+json`, naming the offending fields.

use serde::Serialize;
use spin_sdk::http::Response;

/// Seconds a client should wait before retrying when the database is unavailable.
pub const RETRY_AFTER_SECONDS: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The body field, query parameter or header; empty for the body as a whole.
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
    /// A problem of type `about:blank`: the status says it all.
    pub fn new(status: u16, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title,
            status,
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// A problem of a type of this API's own (`/problems/...`).
    pub fn with_type(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn invalid(detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self {
            errors,
            ..Self::new(400, "Invalid request", detail).with_type("/problems/validation")
        }
    }

    pub fn invalid_field(field: &str, detail: &str) -> Self {
        Self::invalid(format!("{field}: {detail}"), vec![FieldError::new(field, detail)])
    }

    /// No credential (`invalid_token` false), or one that is not valid, for `realm`.
    pub fn unauthorized(realm: &str, detail: &str, invalid_token: bool) -> Self {
        let error = if invalid_token {
            r#", error="invalid_token""#
        } else {
            ""
        };
        Self::new(401, "Unauthorized", detail)
            .with_header("www-authenticate", format!(r#"Bearer realm="{realm}"{error}"#))
    }

    /// A valid credential that does not allow this request.
    pub fn forbidden(detail: &str) -> Self {
        Self::new(403, "Forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "Not Found", detail)
    }

    pub fn method_not_allowed(allow: &str) -> Self {
        Self::new(405, "Method Not Allowed", format!("this resource allows {allow}"))
            .with_header("allow", allow)
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
    }

    pub fn unavailable() -> Self {
        Self::new(
            503,
            "Service Unavailable",
            "the database is unavailable; retry later",
        )
        .with_header("retry-after", RETRY_AFTER_SECONDS.to_string())
    }

    /// The component's own configuration is broken (a Spin variable is missing or invalid):
    /// the operator's problem, not the client's.
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

/// A handler's answer: the response, or the problem that stopped it.
pub type Reply = Result<Response, Problem>;

/// The response of a reply either way.
pub fn respond(reply: Reply) -> Response {
    reply.unwrap_or_else(Response::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
        response.header(name).and_then(|value| value.as_str())
    }

    #[test]
    fn problems_render_as_rfc_9457() {
        let response = Response::from(Problem::invalid_field("date", "is not a date"));
        assert_eq!(*response.status(), 400);
        assert_eq!(
            header(&response, "content-type"),
            Some("application/problem+json")
        );
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["type"], "/problems/validation");
        assert_eq!(body["errors"][0]["field"], "date");
        let body: serde_json::Value =
            serde_json::from_slice(Response::from(Problem::not_found("no")).body()).unwrap();
        assert_eq!(body["type"], "about:blank");
        assert!(body.get("errors").is_none());
    }

    #[test]
    fn headers_of_problems() {
        let unavailable = Response::from(Problem::unavailable());
        assert_eq!(header(&unavailable, "retry-after"), Some("5"));
        let not_allowed = Response::from(Problem::method_not_allowed("GET, POST"));
        assert_eq!(header(&not_allowed, "allow"), Some("GET, POST"));
        let anonymous = Response::from(Problem::unauthorized("events", "send a token", false));
        assert_eq!(
            header(&anonymous, "www-authenticate"),
            Some(r#"Bearer realm="events""#)
        );
        let wrong = Response::from(Problem::unauthorized("events", "wrong", true));
        assert_eq!(
            header(&wrong, "www-authenticate"),
            Some(r#"Bearer realm="events", error="invalid_token""#)
        );
    }
}
