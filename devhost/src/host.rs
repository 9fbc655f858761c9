//! The per-request store data of a component instance and the host traits it implements:
//! WASI, outbound HTTP (allow-list and service chaining) and Spin variables.

use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::body::HyperOutgoingBody;
use wasmtime_wasi_http::types::{
    HostFutureIncomingResponse, IncomingResponse, OutgoingRequestConfig, default_send_request,
};
use wasmtime_wasi_http::{HttpError, HttpResult, WasiHttpCtx, WasiHttpView};

use crate::app::{App, AppComponent};
use crate::bindings::fermyon::spin::variables;
use crate::outbound::AllowedHosts;
use crate::postgres::PgPools;

/// The suffix that routes an outbound request to a component of this app (service chaining).
const SPIN_INTERNAL_SUFFIX: &str = ".spin.internal";

pub struct HostState {
    pub table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    app: Arc<App>,
    component: Arc<AppComponent>,
}

impl HostState {
    pub fn new(app: Arc<App>, component: Arc<AppComponent>) -> Self {
        let mut wasi = WasiCtx::builder();
        // As in `spin up`, both of the guest's streams go to the host's stderr.
        let output = ComponentOutput::new(&component.id);
        wasi.stdout(output.clone())
            .stderr(output)
            .envs(&component.environment);
        Self {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            app,
            component,
        }
    }

    pub fn allowed_hosts(&self) -> &AllowedHosts {
        &self.component.allowed_hosts
    }

    pub fn pg_pools(&self) -> &PgPools {
        &self.app.pg_pools
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn ctx(&mut self) -> &mut WasiHttpCtx {
        &mut self.http
    }

    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    fn send_request(
        &mut self,
        mut request: hyper::Request<HyperOutgoingBody>,
        config: OutgoingRequestConfig,
    ) -> HttpResult<HostFutureIncomingResponse> {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("http").to_owned();
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        let port = uri.port_u16();
        if !self.allowed_hosts().allows(&scheme, &host, port) {
            let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
            warn_denied(&format!("{scheme}://{authority}"));
            return Err(ErrorCode::HttpRequestDenied.into());
        }
        // Spin drops the guest's Host header: the URI's authority is what is sent.
        request.headers_mut().remove(http::header::HOST);
        if let Some(target) = host.strip_suffix(SPIN_INTERNAL_SUFFIX) {
            return self.chain_to(target, request, config);
        }
        Ok(default_send_request(request, config))
    }
}

impl HostState {
    /// Dispatches `http://<component-id>.spin.internal/...` to that component in-process. As in
    /// Spin, naming a component the app does not serve traps the caller.
    fn chain_to(
        &self,
        target: &str,
        request: hyper::Request<HyperOutgoingBody>,
        config: OutgoingRequestConfig,
    ) -> HttpResult<HostFutureIncomingResponse> {
        let Some(component) = self.app.component(target) else {
            return Err(HttpError::trap(wasmtime::Error::msg(format!(
                "unknown routing destination '{target}'"
            ))));
        };
        let app = self.app.clone();
        let handle = wasmtime_wasi::runtime::spawn(async move {
            Ok(match crate::server::chained_request(request, &component.id) {
                Ok(request) => Ok(IncomingResponse {
                    resp: app.respond(component, request).await,
                    worker: None,
                    between_bytes_timeout: config.between_bytes_timeout,
                }),
                Err(error) => Err(ErrorCode::InternalError(Some(format!("{error:#}")))),
            })
        });
        Ok(HostFutureIncomingResponse::pending(handle))
    }
}

/// The warning Spin prints when a component reaches for a destination it may not.
pub fn warn_denied(url: &str) {
    eprintln!(
        "Warning: A component tried to make an outbound network connection to disallowed destination '{url}'.\nTo allow this request, add 'allowed_outbound_hosts = [\"{url}\"]' to the manifest component section."
    );
}

impl variables::Host for HostState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        if let Err(reason) = crate::variables::validate_name(&name) {
            return Ok(Err(variables::Error::InvalidName(reason.to_string())));
        }
        Ok(match self.component.variables.get(&name) {
            Some(value) => Ok(value.clone()),
            None => Err(variables::Error::Undefined(format!(
                "no variable for \"{}\".\"{name}\"",
                self.component.id
            ))),
        })
    }
}

/// A component's stdout or stderr, written line by line to devhost's stderr with the component
/// id in front, so interleaved output of several components stays readable.
#[derive(Clone)]
struct ComponentOutput {
    prefix: Arc<str>,
}

impl ComponentOutput {
    fn new(component_id: &str) -> Self {
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
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(LineWriter {
            output: self.clone(),
            pending: Vec::new(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::stderr())
    }
}

struct LineWriter {
    output: ComponentOutput,
    pending: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self, flush_partial: bool) {
        use std::io::Write;
        let cut = if flush_partial {
            self.pending.len()
        } else {
            match self.pending.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => return,
            }
        };
        if cut == 0 {
            return;
        }
        let mut text = Vec::with_capacity(cut + 32);
        for line in self.pending[..cut].split_inclusive(|&b| b == b'\n') {
            text.extend_from_slice(self.output.prefix.as_bytes());
            text.extend_from_slice(line);
        }
        if !text.ends_with(b"\n") {
            text.push(b'\n');
        }
        self.pending.drain(..cut);
        // Best effort, like a terminal: a closed stdout must not fail the component.
        let _ = std::io::stderr().lock().write_all(&text);
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.emit(true);
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl wasmtime_wasi::p2::OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.pending.extend_from_slice(&bytes);
        self.emit(false);
        Ok(())
    }

    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(64 * 1024)
    }
}
