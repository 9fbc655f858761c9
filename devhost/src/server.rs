//! The HTTP front: accepts connections, answers Spin's well-known routes, and hands everything
//! else to the app with the route it matched.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use wasmtime_wasi_http::body::HyperOutgoingBody;
use wasmtime_wasi_http::hyper_request_error;

use crate::app::App;
use crate::body::{full, status_response};
use crate::router::Router;

const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

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
                "health" => Response::new(full("OK")),
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
        match self
            .app
            .clone()
            .respond_routed(component, request, &route_match, client_addr)
            .await
        {
            Ok(response) => response,
            Err(e) => {
                eprintln!("devhost: bad request to {path}: {e:#}");
                status_response(StatusCode::BAD_REQUEST)
            }
        }
    }
}
