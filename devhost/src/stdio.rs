//! A component's stdout and stderr (`wasi:cli`), written line by line to devhost's stderr with
//! the component id in front, as `spin up` does, so interleaved output of several components
//! stays readable.

use std::sync::Arc;

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The stream a component's stdout and stderr are both given.
#[derive(Clone)]
pub struct ComponentOutput {
    prefix: Arc<str>,
}

impl ComponentOutput {
    pub fn new(component_id: &str) -> Self {
        Self {
            prefix: format!("[{component_id}] ").into(),
        }
    }
}

impl IsTerminal for ComponentOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for ComponentOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter {
            prefix: self.prefix.clone(),
            pending: Vec::new(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::stderr())
    }
}

/// Holds a partial line until its end arrives (or the stream is dropped).
struct LineWriter {
    prefix: Arc<str>,
    pending: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self, flush_partial: bool) {
        use std::io::Write;
        let text = take_lines(&mut self.pending, &self.prefix, flush_partial);
        if !text.is_empty() {
            // Best effort, like a terminal: a closed stderr must not fail the component.
            let _ = std::io::stderr().lock().write_all(&text);
        }
    }
}

/// Removes the complete lines from `pending` (all of it when `flush_partial`) and returns them
/// with `prefix` in front of each, the last one ended by a newline.
fn take_lines(pending: &mut Vec<u8>, prefix: &str, flush_partial: bool) -> Vec<u8> {
    let cut = if flush_partial {
        pending.len()
    } else {
        pending.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
    };
    let mut text = Vec::with_capacity(cut + 32);
    for line in pending[..cut].split_inclusive(|&b| b == b'\n') {
        text.extend_from_slice(prefix.as_bytes());
        text.extend_from_slice(line);
    }
    if !text.is_empty() && !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    pending.drain(..cut);
    text
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.emit(true);
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.pending.extend_from_slice(&bytes);
        self.emit(false);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::take_lines;

    #[test]
    fn complete_lines_are_prefixed_and_a_partial_one_waits() {
        let mut pending = b"one\ntwo\nthr".to_vec();
        assert_eq!(take_lines(&mut pending, "[c] ", false), b"[c] one\n[c] two\n");
        assert_eq!(pending, b"thr");
        assert_eq!(take_lines(&mut pending, "[c] ", false), b"");
        pending.extend_from_slice(b"ee\n");
        assert_eq!(take_lines(&mut pending, "[c] ", false), b"[c] three\n");
        assert!(pending.is_empty());
    }

    #[test]
    fn a_flush_ends_the_partial_line() {
        let mut pending = b"last words".to_vec();
        assert_eq!(take_lines(&mut pending, "[c] ", true), b"[c] last words\n");
        assert_eq!(take_lines(&mut pending, "[c] ", true), b"");
    }
}
