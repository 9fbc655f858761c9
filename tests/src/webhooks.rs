//! A webhook receiver for the tests: it verifies every Standard Webhooks signature with its own
//! implementation of the algorithm (refusing bad ones with 401), records what arrived, and
//! answers as the test scripts it (status codes in turn, or no answer at all).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How the receiver answers a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// Never answer (until the receiver is dropped).
    Silence,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub webhook_id: String,
    pub timestamp: String,
    pub signature_valid: bool,
    pub body: String,
    pub answer: Answer,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }
}

#[derive(Default)]
struct State {
    secret: Option<String>,
    script: VecDeque<Answer>,
    received: Vec<Received>,
}

pub struct WebhookReceiver {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl WebhookReceiver {
    /// A receiver that answers `200` unless scripted otherwise.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let port = listener.local_addr().expect("local address").port();
        listener.set_nonblocking(true).expect("non-blocking listener");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopped) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (state, stop) = (shared.clone(), stopped.clone());
                        std::thread::spawn(move || serve(stream, &state, &stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self { port, state, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// The subscription's secret, to verify signatures with.
    pub fn set_secret(&self, secret: &str) {
        self.lock().secret = Some(secret.to_owned());
    }

    /// The next answers, in order; afterwards `200`.
    pub fn script(&self, answers: &[Answer]) {
        self.lock().script = answers.iter().copied().collect();
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Waits until `done(received)` holds, or fails after `seconds`.
    pub fn wait_for(
        &self,
        seconds: u64,
        done: impl Fn(&[Received]) -> bool,
    ) -> anyhow::Result<Vec<Received>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            let received = self.received();
            if done(&received) {
                return Ok(received);
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "timed out; received: {received:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(stream) => stream,
        Err(_) => return,
    });
    let mut writer = stream;
    loop {
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((name, value)) = trimmed.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let body = if header("transfer-encoding").eq_ignore_ascii_case("chunked") {
            match read_chunked(&mut reader) {
                Some(body) => body,
                None => return,
            }
        } else {
            let mut body = vec![0; header("content-length").parse().unwrap_or(0)];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            body
        };
        let body = String::from_utf8_lossy(&body).into_owned();
        let (webhook_id, timestamp, signature) = (
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
        );
        let answer = {
            let mut state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let signature_valid = state
                .secret
                .as_deref()
                .is_some_and(|secret| verify(secret, &webhook_id, &timestamp, &body, &signature));
            let answer = if signature_valid {
                state.script.pop_front().unwrap_or(Answer::Status(200))
            } else {
                Answer::Status(401)
            };
            state.received.push(Received {
                webhook_id,
                timestamp,
                signature_valid,
                body,
                answer,
            });
            answer
        };
        match answer {
            Answer::Status(status) => {
                let response = format!("HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\n\r\n");
                if writer.write_all(response.as_bytes()).is_err() {
                    return;
                }
            }
            Answer::Silence => {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return;
            }
        }
    }
}

/// A `Transfer-Encoding: chunked` body (how wasi-http clients send a streamed body).
fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line).ok()?;
        let size = usize::from_str_radix(size_line.trim().split(';').next()?, 16).ok()?;
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

/// The Standard Webhooks check: some `v1,<sig>` of the header equals base64(HMAC-SHA256(key,
/// "id.timestamp.body")), the key being the secret's base64 part after `whsec_`.
pub fn verify(secret: &str, id: &str, timestamp: &str, body: &str, signatures: &str) -> bool {
    let Ok(key) = STANDARD.decode(secret.trim_start_matches("whsec_")) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return false;
    };
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    !id.is_empty()
        && signatures
            .split(' ')
            .any(|candidate| candidate.strip_prefix("v1,") == Some(expected.as_str()))
}
