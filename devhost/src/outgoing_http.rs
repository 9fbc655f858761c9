//! What `wasi:http/outgoing-handler` does with a guest's request, as Spin does it: the
//! destination is checked against `allowed_outbound_hosts`, the guest's `Host` header is
//! dropped, and `http://<component-id>.spin.internal/...` is served by that component
//! in-process (service chaining: devhost's one call from a host interface up to the app,
//! through [`ServiceChain`]); everything else goes out through wasmtime-wasi-http.

use std::sync::Arc;

use futures::future::BoxFuture;
use http::{Request, Response};
use wasmtime_wasi_http::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::body::{HyperIncomingBody, HyperOutgoingBody};
use wasmtime_wasi_http::types::{
    HostFutureIncomingResponse, IncomingResponse, OutgoingRequestConfig, default_send_request,
};
use wasmtime_wasi_http::{HttpError, HttpResult};

use crate::outbound::{AllowedHosts, warn_denied};

/// The suffix that routes an outbound request to a component of this app.
const SPIN_INTERNAL_SUFFIX: &str = ".spin.internal";

/// The app, as service chaining sees it.
pub trait ServiceChain: Send + Sync {
    /// Runs `request` on the app's component `id`, as Spin runs a chained request; `None` when
    /// the app serves no such component.
    fn chain(
        self: Arc<Self>,
        id: &str,
        request: Request<HyperOutgoingBody>,
    ) -> Option<BoxFuture<'static, Result<Response<HyperIncomingBody>, ErrorCode>>>;
}

/// Sends a guest's outgoing request, or refuses it (`HttpRequestDenied`, with Spin's warning).
pub fn send_request(
    allowed_hosts: &AllowedHosts,
    app: &Arc<dyn ServiceChain>,
    mut request: Request<HyperOutgoingBody>,
    config: OutgoingRequestConfig,
) -> HttpResult<HostFutureIncomingResponse> {
    let uri = request.uri();
    let scheme = uri.scheme_str().unwrap_or("http").to_owned();
    let host = uri.host().unwrap_or_default().to_ascii_lowercase();
    let port = uri.port_u16();
    if !allowed_hosts.allows(&scheme, &host, port) {
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        warn_denied(&format!("{scheme}://{authority}"));
        return Err(ErrorCode::HttpRequestDenied.into());
    }
    // Spin drops the guest's Host header: the URI's authority is what is sent.
    request.headers_mut().remove(http::header::HOST);
    match host.strip_suffix(SPIN_INTERNAL_SUFFIX) {
        Some(target) => chain_to(app, target, request, config),
        None => Ok(default_send_request(request, config)),
    }
}

/// As in Spin, naming a component the app does not serve traps the caller.
fn chain_to(
    app: &Arc<dyn ServiceChain>,
    target: &str,
    request: Request<HyperOutgoingBody>,
    config: OutgoingRequestConfig,
) -> HttpResult<HostFutureIncomingResponse> {
    let Some(response) = app.clone().chain(target, request) else {
        return Err(HttpError::trap(wasmtime::Error::msg(format!(
            "unknown routing destination '{target}'"
        ))));
    };
    let handle = wasmtime_wasi::runtime::spawn(async move {
        Ok(response.await.map(|resp| IncomingResponse {
            resp,
            worker: None,
            between_bytes_timeout: config.between_bytes_timeout,
        }))
    });
    Ok(HostFutureIncomingResponse::pending(handle))
}
