//! The app, loaded once (manifest, variables, compiled and pre-instantiated components), and
//! one fresh instance per request, as Spin runs it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use wasmtime::{Engine, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::bindings::ProxyPre;
use wasmtime_wasi_http::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::body::{HyperIncomingBody, HyperOutgoingBody};

use crate::body::status_response;
use crate::cache::Cache;
use crate::engine::InstanceAllocator;
use crate::host::{ComponentSettings, HostState};
use crate::manifest::Manifest;
use crate::outbound::AllowedHosts;
use crate::outgoing_http::ServiceChain;
use crate::postgres::PgPools;
use crate::router::{CHAINED_CLIENT_ADDR, Refusal, RouteMatch};
use crate::variables::AppVariables;

pub struct App {
    engine: Engine,
    components: HashMap<String, Arc<AppComponent>>,
    pg_pools: Arc<PgPools>,
}

/// A component ready to serve: compiled, linked, with its variables and allow-list resolved.
pub struct AppComponent {
    settings: Arc<ComponentSettings>,
    pre: ProxyPre<HostState>,
}

pub struct LoadOptions<'a> {
    pub manifest_path: &'a Path,
    /// Serve only these components (all when empty), like `spin up --component-id`.
    pub component_ids: &'a [String],
    /// Where compiled components are cached; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// How instances get their memory.
    pub allocator: InstanceAllocator,
    /// Trap on a PostgreSQL query that returns no rows, as Spin 4.0.0-4.0.2 hang on one.
    pub trap_empty_queries: bool,
}

impl App {
    pub fn load(manifest: &Manifest, options: &LoadOptions) -> Result<Self> {
        let manifest_dir = options
            .manifest_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        for id in options.component_ids {
            if !manifest.component.contains_key(id) {
                bail!(
                    "--component-id {id:?}: the manifest has no such component (it has: {})",
                    manifest.component.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
        let selected =
            |id: &str| options.component_ids.is_empty() || options.component_ids.iter().any(|c| c == id);
        // Like Spin's environment provider: the process environment, then a `.env` file in the
        // working directory.
        let dotenv: HashMap<String, String> = dotenvy::dotenv_iter()
            .map(|entries| entries.filter_map(Result::ok).collect())
            .unwrap_or_default();
        let variables = AppVariables::resolve(&manifest.variables, |name| {
            std::env::var(name).ok().or_else(|| dotenv.get(name).cloned())
        })?;
        let engine = crate::engine::new_engine(options.allocator)?;
        let linker = crate::host::linker(&engine)?;
        let cache = options.cache_dir.as_deref().and_then(Cache::open);
        let mut components = HashMap::new();
        for (id, spec) in manifest.component.iter().filter(|(id, _)| selected(id)) {
            let allowed_entries = spec
                .allowed_outbound_hosts
                .iter()
                .map(|entry| variables.expand(entry))
                .collect::<Result<Vec<_>>>()
                .with_context(|| format!("[component.{id}] allowed_outbound_hosts"))?;
            if !options.component_ids.is_empty() {
                check_chaining_targets(id, &spec.allowed_outbound_hosts, &selected)?;
            }
            let allowed_hosts = AllowedHosts::parse(&allowed_entries)
                .with_context(|| format!("[component.{id}] allowed_outbound_hosts"))?;
            let component_variables = expand_all(&variables, &spec.variables)
                .with_context(|| format!("[component.{id}.variables]"))?;
            let wasm = spec.wasm_path(id, &manifest_dir)?;
            let component = crate::cache::compile(&engine, id, &wasm, cache.as_ref())?;
            let pre = linker.instantiate_pre(&component).map_err(anyhow::Error::from).with_context(|| {
                format!("component {id:?} imports an interface devhost does not provide (see devhost/README.md)")
            })?;
            let pre = ProxyPre::new(pre).map_err(anyhow::Error::from).with_context(|| {
                format!(
                    "component {id:?} does not export wasi:http/incoming-handler: is it an HTTP component?"
                )
            })?;
            let settings = ComponentSettings {
                id: id.clone(),
                allowed_hosts,
                variables: component_variables,
                environment: spec.environment.clone().into_iter().collect(),
            };
            components.insert(
                id.clone(),
                Arc::new(AppComponent {
                    settings: Arc::new(settings),
                    pre,
                }),
            );
        }
        Ok(Self {
            engine,
            components,
            pg_pools: Arc::new(PgPools::new(options.trap_empty_queries)),
        })
    }

    pub fn component(&self, id: &str) -> Option<Arc<AppComponent>> {
        self.components.get(id).cloned()
    }

    /// Runs a routed request on `component`, prepared as Spin prepares it (see
    /// `router::prepare_request`). A header value that is not UTF-8 gets Spin's empty 500
    /// before any instance exists; an error is a request whose URL cannot be made absolute.
    pub async fn respond_routed(
        self: Arc<Self>,
        component: Arc<AppComponent>,
        request: Request<HyperIncomingBody>,
        route_match: &RouteMatch,
        client_addr: SocketAddr,
    ) -> Result<Response<HyperOutgoingBody>> {
        match crate::router::prepare_request(request, route_match, client_addr) {
            Ok(request) => Ok(self.respond(component, request).await),
            Err(refusal @ Refusal::HeaderNotUtf8 { .. }) => {
                eprintln!("devhost: error processing request: {refusal}");
                Ok(status_response(StatusCode::INTERNAL_SERVER_ERROR))
            }
            Err(Refusal::BadUrl(error)) => Err(error),
        }
    }

    /// Runs `request` on a fresh instance of `component`; a component that traps or sends no
    /// response gives the client an empty 500, as in Spin, and the error goes to stderr.
    async fn respond(
        self: Arc<Self>,
        component: Arc<AppComponent>,
        request: Request<HyperIncomingBody>,
    ) -> Response<HyperOutgoingBody> {
        match self.handle(component, request).await {
            Ok(response) => response,
            Err(error) => {
                eprintln!("devhost: error processing request: {error:?}");
                status_response(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    async fn handle(
        self: Arc<Self>,
        component: Arc<AppComponent>,
        request: Request<HyperIncomingBody>,
    ) -> Result<Response<HyperOutgoingBody>> {
        let id = component.settings.id.clone();
        let state = HostState::new(component.settings.clone(), self.pg_pools.clone(), self.clone());
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state.limits());
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let request = store.data_mut().new_incoming_request(Scheme::Http, request)?;
        let response = store.data_mut().new_response_outparam(sender)?;
        let pre = component.pre.clone();
        // The instance keeps running after it has sent the head of its response, to stream
        // the body; it is dropped when the handler returns.
        let task = tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, response)
                .await
        });
        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error_code)) => bail!("component {id:?} answered with an error: {error_code:?}"),
            Err(_) => match task.await {
                Ok(Ok(())) => bail!("component {id:?} returned without sending a response"),
                Ok(Err(trap)) => Err(anyhow::Error::from(trap).context(format!("component {id:?} trapped"))),
                Err(join_error) => bail!("component {id:?} task failed: {join_error}"),
            },
        }
    }
}

/// Service chaining: the chained request is routed as Spin routes one, to a synthetic `/...`
/// route whose path info is the whole path.
impl ServiceChain for App {
    fn chain(
        self: Arc<Self>,
        id: &str,
        request: Request<HyperOutgoingBody>,
    ) -> Option<BoxFuture<'static, Result<Response<HyperIncomingBody>, ErrorCode>>> {
        let component = self.component(id)?;
        let route_match = RouteMatch::chained(id, request.uri().path());
        Some(Box::pin(async move {
            self.respond_routed(component, request, &route_match, CHAINED_CLIENT_ADDR)
                .await
                .map_err(|error| ErrorCode::InternalError(Some(format!("{error:#}"))))
        }))
    }
}

fn expand_all(
    variables: &AppVariables,
    templates: &BTreeMap<String, String>,
) -> Result<HashMap<String, String>> {
    templates
        .iter()
        .map(|(name, template)| {
            crate::variables::validate_name(name)?;
            Ok((
                name.clone(),
                variables
                    .expand(template)
                    .with_context(|| format!("variable {name}"))?,
            ))
        })
        .collect()
}

/// As `spin up --component-id` does: a literal `http://<id>.spin.internal` naming a component
/// that is not selected, or a wildcard over `.spin.internal`, is a start-up error; an entry
/// written as a template is not checked.
fn check_chaining_targets(id: &str, entries: &[String], selected: &impl Fn(&str) -> bool) -> Result<()> {
    for entry in entries.iter().filter(|entry| !entry.contains("{{")) {
        let host = entry
            .split_once("://")
            .map_or("", |(_, rest)| rest.split([':', '/']).next().unwrap_or_default());
        match host.strip_suffix(".spin.internal") {
            Some("*") => bail!(
                "Selected component '{id}' cannot use wildcard service chaining: allowed_outbound_hosts = [\"{entry}\"]"
            ),
            Some(target) if !selected(target) => bail!(
                "Selected component '{id}' cannot use service chaining to unselected component: allowed_outbound_hosts = [\"{entry}\"]"
            ),
            _ => {}
        }
    }
    Ok(())
}
