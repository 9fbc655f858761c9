//! The bodies devhost answers with itself (the health check, empty error responses). Generic
//! over the body's error type, so this module needs no wasmtime type.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

/// A body of `bytes`, sent whole.
pub fn full<E: 'static>(bytes: impl Into<Bytes>) -> UnsyncBoxBody<Bytes, E> {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A response with `status` and an empty body, as Spin sends for a 404 or a failed component.
pub fn status_response<E: 'static>(status: StatusCode) -> Response<UnsyncBoxBody<Bytes, E>> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = status;
    response
}
