//! The HTTP front: accepts connections, answers Spin's well-known routes, routes everything else
//! to a component with the `spin-*` headers Spin adds.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Result;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use wasmtime_wasi_http::body::{HyperIncomingBody, HyperOutgoingBody};
use wasmtime_wasi_http::hyper_request_error;

use crate::app::{App, full_body};
use crate::router::{RouteMatch, Router};

const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";
/// The client address Spin gives a service-chained request.
const CHAINED_CLIENT_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

pub struct Server {
    app: Arc<App>,
    router: Router,
}

impl Server {
    pub fn new(app: Arc<App>, router: Router) -> Self {
        Self { app, router }
    }

    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> Result<()> {
        loop {
            let (stream, client_addr) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Running out of file descriptors under load must not stop the server.
                    eprintln!("devhost: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.dispatch(request, client_addr).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = connection.await
                    && !(e.is_incomplete_message() || e.is_canceled())
                {
                    eprintln!("devhost: connection from {client_addr}: {e}");
                }
            });
        }
    }

    async fn dispatch(
        &self,
        request: Request<Incoming>,
        client_addr: SocketAddr,
    ) -> Response<HyperOutgoingBody> {
        let path = request.uri().path().to_owned();
        if let Some(well_known) = path.strip_prefix(WELL_KNOWN_PREFIX) {
            return match well_known {
                "health" => Response::new(full_body("OK")),
                _ => status_response(StatusCode::NOT_FOUND),
            };
        }
        let Some(route_match) = self.router.route(&path) else {
            return status_response(StatusCode::NOT_FOUND);
        };
        let Some(component) = self.app.component(&route_match.component) else {
            return status_response(StatusCode::NOT_FOUND);
        };
        let request = request.map(|body| body.map_err(hyper_request_error).boxed_unsync());
        match with_spin_headers(request, &route_match, client_addr) {
            Ok(request) => self.app.clone().respond(component, request).await,
            Err(e) => {
                eprintln!("devhost: bad request to {path}: {e:#}");
                status_response(StatusCode::BAD_REQUEST)
            }
        }
    }
}

/// Prepares a service-chained request for `component` as Spin does: the whole path is the
/// path info of a synthetic `/...` route.
pub fn chained_request(
    request: Request<HyperOutgoingBody>,
    component: &str,
) -> Result<Request<HyperIncomingBody>> {
    let route_match = RouteMatch::chained(component, request.uri().path());
    with_spin_headers(request, &route_match, CHAINED_CLIENT_ADDR)
}

/// Makes the URI absolute (wasi-http needs an authority) and sets the `spin-*` headers,
/// replacing any a client sent.
fn with_spin_headers(
    mut request: Request<HyperIncomingBody>,
    route_match: &RouteMatch,
    client_addr: SocketAddr,
) -> Result<Request<HyperIncomingBody>> {
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_owned());
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    let scheme = request.uri().scheme_str().unwrap_or("http").to_owned();
    let full_url = format!("{scheme}://{host}{path_and_query}");
    *request.uri_mut() = full_url.parse::<Uri>()?;
    let headers = request.headers_mut();
    let mut set = |name: &str, value: &str| -> Result<()> {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(value)?,
        );
        Ok(())
    };
    set("spin-path-info", &route_match.path_info)?;
    set("spin-full-url", &full_url)?;
    set("spin-matched-route", &route_match.based_route)?;
    set("spin-base-path", "/")?;
    set("spin-raw-component-route", &route_match.raw_route)?;
    set("spin-component-route", route_match.component_route())?;
    set("spin-client-addr", &client_addr.to_string())?;
    for (name, value) in &route_match.params {
        set(&format!("spin-path-match-{}", name.to_ascii_lowercase()), value)?;
    }
    Ok(request)
}

pub fn status_response(status: StatusCode) -> Response<HyperOutgoingBody> {
    let mut response = Response::new(full_body(""));
    *response.status_mut() = status;
    response
}
