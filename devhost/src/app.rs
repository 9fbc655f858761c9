//! Loading the app once (manifest, variables, compiled and pre-instantiated components) and
//! running one fresh instance per request, as Spin does.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::bindings::ProxyPre;
use wasmtime_wasi_http::bindings::http::types::Scheme;
use wasmtime_wasi_http::body::{HyperIncomingBody, HyperOutgoingBody};

use crate::host::HostState;
use crate::manifest::Manifest;
use crate::outbound::AllowedHosts;
use crate::postgres::PgPools;
use crate::variables::AppVariables;

/// Instances that may be alive at once across all components (the pooling allocator's slots).
const MAX_CONCURRENT_INSTANCES: u32 = 1000;

pub struct App {
    engine: Engine,
    components: HashMap<String, Arc<AppComponent>>,
    pub pg_pools: PgPools,
}

/// A component ready to serve: compiled, linked, with its variables and allow-list resolved.
pub struct AppComponent {
    pub id: String,
    pub allowed_hosts: AllowedHosts,
    pub variables: HashMap<String, String>,
    pub environment: Vec<(String, String)>,
    pre: ProxyPre<HostState>,
}

pub struct LoadOptions<'a> {
    pub manifest_path: &'a Path,
    /// Serve only these components (all when empty), like `spin up --component-id`.
    pub component_ids: &'a [String],
    /// Where compiled components are cached; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
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
        let engine = new_engine()?;
        let linker = new_linker(&engine)?;
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
            let component = compile(&engine, id, &wasm, options.cache_dir.as_deref())?;
            let pre = linker.instantiate_pre(&component).map_err(anyhow::Error::from).with_context(|| {
                format!("component {id:?} imports an interface devhost does not provide (see devhost/README.md)")
            })?;
            let pre = ProxyPre::new(pre).map_err(anyhow::Error::from).with_context(|| {
                format!(
                    "component {id:?} does not export wasi:http/incoming-handler: is it an HTTP component?"
                )
            })?;
            components.insert(
                id.clone(),
                Arc::new(AppComponent {
                    id: id.clone(),
                    allowed_hosts,
                    variables: component_variables,
                    environment: spec.environment.clone().into_iter().collect(),
                    pre,
                }),
            );
        }
        Ok(Self {
            engine,
            components,
            pg_pools: PgPools::new(options.trap_empty_queries),
        })
    }

    pub fn component(&self, id: &str) -> Option<Arc<AppComponent>> {
        self.components.get(id).cloned()
    }

    /// Runs `request` on a fresh instance of `component`; a component that traps or sends no
    /// response gives the client an empty 500, as in Spin, and the error goes to stderr.
    pub async fn respond(
        self: Arc<Self>,
        component: Arc<AppComponent>,
        request: hyper::Request<HyperIncomingBody>,
    ) -> hyper::Response<HyperOutgoingBody> {
        match self.handle(component, request).await {
            Ok(response) => response,
            Err(error) => {
                eprintln!("devhost: error processing request: {error:?}");
                crate::server::status_response(http::StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    async fn handle(
        self: Arc<Self>,
        component: Arc<AppComponent>,
        request: hyper::Request<HyperIncomingBody>,
    ) -> Result<hyper::Response<HyperOutgoingBody>> {
        let mut store = Store::new(&self.engine, HostState::new(self.clone(), component.clone()));
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
            Ok(Err(error_code)) => bail!(
                "component {:?} answered with an error: {error_code:?}",
                component.id
            ),
            Err(_) => match task.await {
                Ok(Ok(())) => bail!("component {:?} returned without sending a response", component.id),
                Ok(Err(trap)) => {
                    Err(anyhow::Error::from(trap).context(format!("component {:?} trapped", component.id)))
                }
                Err(join_error) => bail!("component {:?} task failed: {join_error}", component.id),
            },
        }
    }
}

fn new_engine() -> Result<Engine> {
    let mut config = Config::new();
    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_component_instances(MAX_CONCURRENT_INSTANCES)
        .total_core_instances(4 * MAX_CONCURRENT_INSTANCES)
        .total_memories(MAX_CONCURRENT_INSTANCES)
        .total_tables(4 * MAX_CONCURRENT_INSTANCES)
        .total_stacks(MAX_CONCURRENT_INSTANCES)
        .max_memory_size(256 << 20);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    match Engine::new(&config) {
        Ok(engine) => Ok(engine),
        Err(pooling_error) => {
            // The pooling allocator reserves address space up front; some sandboxes refuse that.
            eprintln!("devhost: pooling allocator unavailable ({pooling_error:#}); allocating on demand");
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            Ok(Engine::new(&config)?)
        }
    }
}

fn new_linker(engine: &Engine) -> Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::add_only_http_to_linker_async(&mut linker)?;
    crate::bindings::spin::postgres::postgres::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
    crate::bindings::fermyon::spin::variables::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
    Ok(linker)
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

/// Compiles a component, or loads it from the cache when the same bytes were compiled before by
/// this devhost build with the same engine settings.
fn compile(engine: &Engine, id: &str, wasm_path: &Path, cache_dir: Option<&Path>) -> Result<Component> {
    let wasm = std::fs::read(wasm_path).with_context(|| {
        format!(
            "component {id:?}: cannot read {}: build the components first (`cargo build --target wasm32-wasip2 --release`, or `spin build`)",
            wasm_path.display()
        )
    })?;
    let Some(cache_dir) = cache_dir else {
        return Component::new(engine, &wasm)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "component {id:?}: {} is not a valid component",
                    wasm_path.display()
                )
            });
    };
    let mut hasher = Sha256::new();
    hasher.update(&wasm);
    hasher.update(env!("CARGO_PKG_VERSION"));
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut engine_hash);
    hasher.update(engine_hash.finish().to_le_bytes());
    let key: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let cached = cache_dir.join(format!("{id}-{key}.cwasm"));
    if cached.exists() {
        // SAFETY: the file was written by `Component::serialize` of this devhost build (the key
        // covers the wasm bytes, devhost's version and the engine's compatibility hash) into a
        // cache directory that only devhost writes.
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(component) => return Ok(component),
            Err(e) => eprintln!(
                "devhost: ignoring unusable cache entry {}: {e:#}",
                cached.display()
            ),
        }
    }
    let component = Component::new(engine, &wasm)
        .map_err(anyhow::Error::from)
        .with_context(|| {
            format!(
                "component {id:?}: {} is not a valid component",
                wasm_path.display()
            )
        })?;
    if let Err(e) = write_cache(&cached, &component) {
        eprintln!(
            "devhost: could not write the compilation cache {}: {e:#}",
            cached.display()
        );
    }
    Ok(component)
}

fn write_cache(path: &Path, component: &Component) -> Result<()> {
    let dir = path.parent().context("cache path has no directory")?;
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(
        ".{}.{}",
        std::process::id(),
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::write(&temp, component.serialize()?)?;
    std::fs::rename(&temp, path)?;
    Ok(())
}

/// Collects a body into bytes (used for the health answer and error bodies).
pub fn full_body(bytes: impl Into<bytes::Bytes>) -> HyperOutgoingBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}
