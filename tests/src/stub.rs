//! One HTTP stub server for every test that needs something on the other end of an outbound
//! request: a webhook receiver, a plain server for devhost's outbound-HTTP tests, a hostile
//! receiver. Built on hyper, on a tokio runtime of its own (one thread), so the blocking tests
//! drive it without an async context; dropping it ends every connection it holds.
//!
//! It records every request, with how its body was framed (`Content-Length` or chunked), and
//! answers as the test scripts it: a status, a body, no answer at all, a redirect, an endless
//! or trickled body, or a dropped connection. Given a Standard Webhooks secret it checks each
//! request's signature with the reference crate (`standardwebhooks`) and answers `401` to one
//! that does not verify.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_LENGTH, HeaderMap, LOCATION, TRANSFER_ENCODING};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use standardwebhooks::Webhook;

/// How the server answers a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// This status with an empty body.
    Status(u16),
    /// This status with this body (and its `Content-Length`).
    Body(u16, String),
    /// Never answer; the connection stays open until the server is dropped.
    Silence,
    /// This status (a `3xx`) with `Location` set to the URL.
    Redirect(u16, String),
    /// `200` with a body that never ends, sent as fast as the client reads it.
    Endless,
    /// `200` with a body that never ends, one byte per interval.
    Trickle(Duration),
    /// Close the connection without answering.
    HangUp,
}

/// How a request's body was framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A `Content-Length` header of this many bytes.
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither (no body).
    None,
}

/// A request the server received, and how it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// The path and query.
    pub path: String,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The Standard Webhooks headers (empty when absent).
    pub webhook_id: String,
    pub timestamp: String,
    /// Whether a secret was set and the signature of `id.timestamp.body` matches one of the
    /// `webhook-signature` values. How far the timestamp is from now is the test's to judge.
    pub signature_valid: bool,
    pub body: String,
    pub answer: Answer,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }
}

struct State {
    secret: Option<String>,
    /// The answer when the script is empty.
    default: Answer,
    script: VecDeque<Answer>,
    received: Vec<Received>,
}

pub struct StubServer {
    port: u16,
    state: Arc<Mutex<State>>,
    accepting: tokio::task::JoinHandle<()>,
    /// `Some` until dropped: dropping it without waiting ends every connection.
    runtime: Option<tokio::runtime::Runtime>,
}

/// The name the notification tests use for a stub server that stands for a subscriber.
pub type WebhookReceiver = StubServer;

impl StubServer {
    /// A server that answers `200` unless scripted otherwise.
    pub fn start() -> Self {
        Self::answering(Answer::Status(200))
    }

    /// A server that answers every request with `answer` unless scripted otherwise.
    pub fn answering(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let port = listener.local_addr().expect("local address").port();
        listener.set_nonblocking(true).expect("non-blocking listener");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("stub-server")
            .enable_all()
            .build()
            .expect("a tokio runtime for the stub server");
        let state = Arc::new(Mutex::new(State {
            secret: None,
            default: answer,
            script: VecDeque::new(),
            received: Vec::new(),
        }));
        let shared = state.clone();
        let accepting = runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |request| answer_request(state.clone(), request));
                    // A connection ends in an error when the client goes away mid-body or the
                    // script hangs up: both are the point of some tests.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            port,
            state,
            accepting,
            runtime: Some(runtime),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL on this server, for a subscription to point at.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// The subscription's secret: from now on every request's signature is checked with it.
    pub fn set_secret(&self, secret: &str) {
        self.lock().secret = Some(secret.to_owned());
    }

    /// The next answers, in order; afterwards the default one.
    pub fn script(&self, answers: &[Answer]) {
        self.lock().script = answers.iter().cloned().collect();
    }

    /// Closes the listening socket: from now on connections are refused. Connections already
    /// open are served on.
    pub fn refuse_connections(&self) {
        self.accepting.abort();
        while !self.accepting.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Waits until `done(received)` holds, or fails after `seconds`.
    pub fn wait_for(&self, seconds: u64, done: impl Fn(&[Received]) -> bool) -> Result<Vec<Received>> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let received = self.received();
            if done(&received) {
                return Ok(received);
            }
            anyhow::ensure!(Instant::now() < deadline, "timed out; received: {received:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

type Body = BoxBody<Bytes, Infallible>;

/// What `Answer::HangUp` makes the service fail with: hyper then drops the connection.
#[derive(Debug)]
struct HangUp;

impl std::fmt::Display for HangUp {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("the script hangs up")
    }
}

impl std::error::Error for HangUp {}

async fn answer_request(
    state: Arc<Mutex<State>>,
    request: Request<Incoming>,
) -> Result<Response<Body>, HangUp> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(|_| HangUp)?.to_bytes();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let answer = {
        let mut state = lock(&state);
        let signature_valid = state
            .secret
            .as_deref()
            .is_some_and(|secret| signature_matches(secret, &parts.headers, &body));
        let answer = if state.secret.is_some() && !signature_valid {
            Answer::Status(401)
        } else {
            let default = state.default.clone();
            state.script.pop_front().unwrap_or(default)
        };
        state.received.push(Received {
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map(ToString::to_string)
                .unwrap_or_default(),
            framing: framing(&parts.headers),
            webhook_id: header(standardwebhooks::HEADER_WEBHOOK_ID),
            timestamp: header(standardwebhooks::HEADER_WEBHOOK_TIMESTAMP),
            headers: parts.headers.clone(),
            signature_valid,
            body: String::from_utf8_lossy(&body).into_owned(),
            answer: answer.clone(),
        });
        answer
    };
    respond(answer).await
}

fn framing(headers: &HeaderMap) -> Framing {
    let chunked = headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.to_ascii_lowercase().contains("chunked"));
    let length = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse().ok());
    match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(length)) => Framing::ContentLength(length),
        (false, None) => Framing::None,
    }
}

/// The reference crate signs `id.timestamp.body` with the secret; any of the space-separated
/// `webhook-signature` values may match (several during a secret rotation). Its `verify` is not
/// used because it also refuses timestamps more than five minutes off, which the tests that
/// replay the specification's examples need to get past.
fn signature_matches(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let value = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let (Some(id), Some(timestamp), Some(signatures)) = (
        value(standardwebhooks::HEADER_WEBHOOK_ID),
        value(standardwebhooks::HEADER_WEBHOOK_TIMESTAMP).and_then(|t| t.parse::<i64>().ok()),
        value(standardwebhooks::HEADER_WEBHOOK_SIGNATURE),
    ) else {
        return false;
    };
    let Ok(expected) = Webhook::new(secret).and_then(|webhook| webhook.sign(id, timestamp, body)) else {
        return false;
    };
    !id.is_empty() && signatures.split(' ').any(|candidate| candidate == expected)
}

async fn respond(answer: Answer) -> Result<Response<Body>, HangUp> {
    let (status, body, location) = match answer {
        Answer::Status(status) => (status, Empty::new().boxed(), None),
        Answer::Body(status, body) => (status, Full::new(Bytes::from(body)).boxed(), None),
        Answer::Redirect(status, location) => (status, Empty::new().boxed(), Some(location)),
        Answer::Endless => {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let chunks = futures::stream::repeat_with(move || Ok(Frame::data(chunk.clone())));
            (200, StreamBody::new(chunks).boxed(), None)
        }
        Answer::Trickle(interval) => {
            let bytes = futures::stream::unfold((), move |()| async move {
                tokio::time::sleep(interval).await;
                Some((Ok(Frame::data(Bytes::from_static(b"x"))), ()))
            });
            (200, StreamBody::new(bytes).boxed(), None)
        }
        Answer::Silence => match std::future::pending::<Infallible>().await {},
        Answer::HangUp => return Err(HangUp),
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).map_err(|_| HangUp)?;
    if let Some(location) = location {
        response
            .headers_mut()
            .insert(LOCATION, location.parse().map_err(|_| HangUp)?);
    }
    Ok(response)
}
