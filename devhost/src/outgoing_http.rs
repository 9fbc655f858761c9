//! What `wasi:http/outgoing-handler` does with a guest's request, as Spin does it: the
//! destination is checked against `allowed_outbound_hosts`, the guest's `Host` header is
//! replaced by the URI's authority, and `http://<component-id>.spin.internal/...` is served by that component
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
        None => {
            // Spin's client (hyper-util's) sends that authority as `Host`; wasmtime-wasi-http's
            // sends none, and HTTP/1.1 servers may refuse a request without one (Node: 400).
            if let Some(value) = host_header(request.uri()) {
                request.headers_mut().insert(http::header::HOST, value);
            }
            Ok(default_send_request(request, config))
        }
    }
}

/// `host[:port]` of the URI as hyper-util's client writes it: the port only when it is not
/// the scheme's default.
fn host_header(uri: &http::Uri) -> Option<http::HeaderValue> {
    let host = uri.host()?;
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    let value = match uri.port_u16() {
        Some(port) if port != default_port => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    http::HeaderValue::from_str(&value).ok()
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

#[cfg(test)]
mod tests {
    use super::host_header;

    #[test]
    fn host_header_names_the_port_unless_it_is_the_default() {
        let host = |uri: &str| host_header(&uri.parse().unwrap()).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            host("http://127.0.0.1:8080/hook").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(
            host("http://hooks.example.com:80/").as_deref(),
            Some("hooks.example.com")
        );
        assert_eq!(
            host("https://hooks.example.com/in").as_deref(),
            Some("hooks.example.com")
        );
        assert_eq!(
            host("https://hooks.example.com:80/").as_deref(),
            Some("hooks.example.com:80")
        );
        assert_eq!(host("http://[::1]:3000/").as_deref(), Some("[::1]:3000"));
        assert_eq!(host("/relative"), None);
    }
}
