//! The entry of a component: a request as it arrives, checked before its body is read.
//!
//! Spin hands a component the request with its body still streaming. The method, path and
//! headers are read first; the body only once the caller is authenticated, and at most
//! `MAX_BODY_BYTES` of it: a declared larger `Content-Length` is refused before reading, and a
//! body without one stops at the first byte over the limit. So no unauthenticated or oversized
//! request makes an instance buffer more than the limit.

use std::pin::pin;

use futures::{Stream, StreamExt};
use serde_json::Value;
use spin_sdk::http::{
    Fields, IncomingRequest, Method, OutgoingResponse, Request, Response, ResponseOutparam,
};

use crate::auth::Credentials;
use crate::problem::Problem;

/// The largest request body either component reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A request whose body has not been read yet.
pub struct Incoming {
    request: IncomingRequest,
    method: Method,
    uri: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
}

impl Incoming {
    pub fn new(request: IncomingRequest) -> Self {
        let path = request
            .path_with_query()
            .map(|path| path.split('?').next().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let headers = request.headers().entries();
        Self {
            method: request.method(),
            uri: request.uri(),
            path,
            headers,
            request,
        }
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The first value of a header (names are lower case), as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    }

    /// Checks the bearer token against `credentials`, from the headers alone.
    pub fn authorize(&self, credentials: &Credentials) -> Result<(), Problem> {
        credentials.authorize(self.header("authorization").as_deref(), &self.method)
    }

    /// Authenticates, then reads the body within `MAX_BODY_BYTES`: the whole request.
    pub async fn read_authorized(self, credentials: &Credentials) -> Result<Request, Problem> {
        self.authorize(credentials)?;
        let declared = self.header("content-length");
        let body = read_capped(
            declared.as_deref(),
            self.request.into_body_stream(),
            MAX_BODY_BYTES,
        )
        .await
        .map_err(|error| match error {
            BodyError::TooLarge => Problem::payload_too_large(MAX_BODY_BYTES),
            BodyError::Unreadable(error) => {
                eprintln!("unreadable request body: {error}");
                Problem::invalid_field("", "the request could not be read")
            }
        })?;
        Ok(Request::builder()
            .method(self.method)
            .uri(self.uri)
            .headers(self.headers)
            .body(body)
            .build())
    }
}

/// Why a body was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError<E> {
    /// Declared or found to be over the limit.
    TooLarge,
    Unreadable(E),
}

/// Reads a body of at most `limit` bytes: refuses a declared `Content-Length` over it without
/// reading, and stops reading at the first chunk that goes over it.
pub async fn read_capped<E>(
    declared_length: Option<&str>,
    stream: impl Stream<Item = Result<Vec<u8>, E>>,
    limit: usize,
) -> Result<Vec<u8>, BodyError<E>> {
    if declared_length.is_some_and(|length| declares_more_than(length, limit)) {
        return Err(BodyError::TooLarge);
    }
    let mut stream = pin!(stream);
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Unreadable)?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Whether a `Content-Length` value is a number over `limit` (however many digits it has).
fn declares_more_than(length: &str, limit: usize) -> bool {
    let digits = length.trim().trim_start_matches('0');
    digits.bytes().all(|b| b.is_ascii_digit())
        && digits
            .parse::<usize>()
            .map_or(!digits.is_empty(), |length| length > limit)
}

/// The body as JSON, sent as one of the `accepted` media types: presence first (400), then
/// media type (415) and syntax (400). `expected` says what to send in the 415.
pub fn json_body(request: &Request, accepted: &[&str], expected: &str) -> Result<Value, Problem> {
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
    if !accepted.contains(&media_type.as_str()) {
        return Err(Problem::unsupported_media_type(expected));
    }
    serde_json::from_slice(request.body())
        .map_err(|e| Problem::invalid_field("", &format!("the body is not valid JSON: {e}")))
}

/// Sends `response` through Spin's out-parameter. Work after this runs with the client
/// already answered.
pub async fn send_response(out: ResponseOutparam, response: Response) {
    let headers: Vec<(String, Vec<u8>)> = response
        .headers()
        .map(|(name, value)| (name.to_owned(), value.as_bytes().to_vec()))
        .collect();
    let fields = Fields::from_list(&headers).unwrap_or_else(|error| {
        eprintln!("invalid response headers: {error:?}");
        Fields::new()
    });
    let outgoing = OutgoingResponse::new(fields);
    if outgoing.set_status_code(*response.status()).is_err() {
        eprintln!("invalid status {}", response.status());
    }
    if let Err(error) = out.set_with_body(outgoing, response.into_body()).await {
        eprintln!("could not send the response: {error:?}");
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use futures::stream;

    use super::*;

    fn read(declared: Option<&str>, chunks: &[usize], limit: usize) -> Result<usize, BodyError<()>> {
        let chunks: Vec<Result<Vec<u8>, ()>> = chunks.iter().map(|n| Ok(vec![b'x'; *n])).collect();
        block_on(read_capped(declared, stream::iter(chunks), limit)).map(|body| body.len())
    }

    #[test]
    fn bodies_within_the_limit_are_read_whole() {
        assert_eq!(read(None, &[], 10), Ok(0));
        assert_eq!(read(None, &[4, 6], 10), Ok(10));
        assert_eq!(read(Some("10"), &[10], 10), Ok(10));
        assert_eq!(read(Some("junk"), &[3], 10), Ok(3));
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let never_read = stream::poll_fn(|_| -> std::task::Poll<Option<Result<Vec<u8>, ()>>> {
            panic!("the body was read")
        });
        assert_eq!(
            block_on(read_capped(Some("11"), never_read, 10)),
            Err(BodyError::TooLarge)
        );
        assert_eq!(
            read(Some("99999999999999999999999"), &[], MAX_BODY_BYTES),
            Err(BodyError::TooLarge)
        );
    }

    #[test]
    fn an_undeclared_body_stops_at_one_byte_over() {
        assert_eq!(read(None, &[10, 1], 10), Err(BodyError::TooLarge));
        assert_eq!(read(None, &[MAX_BODY_BYTES], MAX_BODY_BYTES), Ok(MAX_BODY_BYTES));
        assert_eq!(
            read(None, &[MAX_BODY_BYTES, 1], MAX_BODY_BYTES),
            Err(BodyError::TooLarge)
        );
        // Nothing after the chunk that went over is read.
        let mut pulled = 0;
        let chunks = stream::iter(std::iter::repeat_with(|| {
            pulled += 1;
            Ok::<_, ()>(vec![0u8; 1024])
        }));
        assert_eq!(
            block_on(read_capped(None, chunks, MAX_BODY_BYTES)),
            Err(BodyError::TooLarge)
        );
        assert_eq!(pulled, MAX_BODY_BYTES / 1024 + 1);
        assert_eq!(read(None, &[], 0), Ok(0));
    }

    #[test]
    fn a_failing_stream_is_unreadable() {
        let failing = stream::iter([Ok(vec![1]), Err("reset")]);
        assert_eq!(
            block_on(read_capped(None, failing, 10)),
            Err(BodyError::Unreadable("reset"))
        );
    }

    #[test]
    fn json_bodies() {
        let json = ["application/json"];
        let status = |headers: &[(&str, &str)], body: &str, accepted: &[&str]| {
            let request = Request::post("/things", body.to_owned())
                .headers(
                    headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<Vec<_>>(),
                )
                .build();
            json_body(&request, accepted, "JSON")
                .map(|_| 200)
                .unwrap_or_else(|problem| problem.status())
        };
        let typed = [("content-type", "application/json; charset=utf-8")];
        assert_eq!(status(&typed, "{\"a\":1}", &json), 200);
        assert_eq!(status(&typed, "", &json), 400);
        assert_eq!(status(&typed, " \n", &json), 400);
        assert_eq!(status(&typed, "{", &json), 400);
        assert_eq!(status(&[("content-type", "text/plain")], "{}", &json), 415);
        assert_eq!(status(&[], "{}", &json), 415);
        let merge = [("content-type", "application/merge-patch+json")];
        assert_eq!(status(&merge, "{}", &json), 415);
        assert_eq!(
            status(
                &merge,
                "{}",
                &["application/json", "application/merge-patch+json"]
            ),
            200
        );
    }
}
