//! The data of an instance's store, and the linker that gives each host interface a view of
//! only the part of it the interface uses (wasmtime's `HasData` projections): WASI its context
//! and resource table, outgoing HTTP the allow-list and the app (for service chaining), Spin
//! variables the component's variables, PostgreSQL the table, the pools and the allow-list.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::body::HyperOutgoingBody;
use wasmtime_wasi_http::types::{HostFutureIncomingResponse, OutgoingRequestConfig};
use wasmtime_wasi_http::{HttpResult, WasiHttpCtx, WasiHttpView};

use crate::outbound::AllowedHosts;
use crate::outgoing_http::ServiceChain;
use crate::postgres::{PgPools, PgView};
use crate::spin_variables::VariablesView;
use crate::stdio::ComponentOutput;

/// What the instances of one component see of the app, resolved at start-up.
pub struct ComponentSettings {
    pub id: String,
    pub allowed_hosts: AllowedHosts,
    pub variables: HashMap<String, String>,
    pub environment: Vec<(String, String)>,
}

/// The store data of one instance (one request).
pub struct HostState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    limits: StoreLimits,
    component: Arc<ComponentSettings>,
    pg_pools: Arc<PgPools>,
    app: Arc<dyn ServiceChain>,
}

impl HostState {
    pub fn new(
        component: Arc<ComponentSettings>,
        pg_pools: Arc<PgPools>,
        app: Arc<dyn ServiceChain>,
    ) -> Self {
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
            limits: crate::engine::store_limits(),
            component,
            pg_pools,
            app,
        }
    }

    /// What the store limits an instance to (set with `Store::limiter`).
    pub fn limits(&mut self) -> &mut StoreLimits {
        &mut self.limits
    }

    fn postgres_view(&mut self) -> PgView<'_> {
        PgView {
            table: &mut self.table,
            pools: &self.pg_pools,
            allowed_hosts: &self.component.allowed_hosts,
        }
    }

    fn variables_view(&mut self) -> VariablesView<'_> {
        VariablesView {
            component_id: &self.component.id,
            values: &self.component.variables,
        }
    }
}

/// A linker with WASI, outgoing HTTP, Spin variables and PostgreSQL.
pub fn linker(engine: &Engine) -> Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::add_only_http_to_linker_async(&mut linker)?;
    crate::postgres::add_to_linker(&mut linker, HostState::postgres_view)?;
    crate::spin_variables::add_to_linker(&mut linker, HostState::variables_view)?;
    Ok(linker)
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
        request: hyper::Request<HyperOutgoingBody>,
        config: OutgoingRequestConfig,
    ) -> HttpResult<HostFutureIncomingResponse> {
        crate::outgoing_http::send_request(&self.component.allowed_hosts, &self.app, request, config)
    }
}
