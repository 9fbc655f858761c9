//! What event-fn and notify-fn have in common by nature, and nothing of their domains: the
//! entry of a request (authentication before the body, bounded bodies), RFC 9457 problems,
//! bearer tokens, ids, pages, time limits and database rows.
//!
//! Each component keeps its own resources, rules and SQL; this crate never names an event, a
//! subscription or a table.

pub mod auth;
pub mod db;
pub mod id;
pub mod incoming;
pub mod page;
pub mod problem;
pub mod route;
pub mod timer;

pub use auth::{API_TOKENS, Credentials, TokenVariable, check_token};
pub use db::{Row, Rows, Unavailable};
pub use id::parse_id;
pub use incoming::{Incoming, MAX_BODY_BYTES, json_body, send_response};
pub use page::Page;
pub use problem::{FieldError, Problem, Reply, respond};
pub use route::Route;
pub use timer::{sleep, with_timeout};

use spin_sdk::http::Response;

impl From<Unavailable> for Problem {
    fn from(_: Unavailable) -> Self {
        Problem::unavailable()
    }
}

/// Opens the request's PostgreSQL connection.
pub fn connect(url: &str) -> Result<spin_sdk::pg4::Connection, Unavailable> {
    Ok(spin_sdk::pg4::Connection::open(url)?)
}

/// A Spin variable of the component; the error names it.
pub fn variable(name: &str) -> Result<String, String> {
    spin_sdk::variables::get(name).map_err(|e| format!("variable {name}: {e}"))
}

/// A JSON response with `status`.
pub fn json_response(status: u16, body: &impl serde::Serialize) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap_or_default())
        .build()
}
