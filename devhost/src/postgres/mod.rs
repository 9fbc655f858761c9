//! `spin:postgres/postgres@4.0.0` on tokio-postgres, with Spin 3.6's pool semantics: one
//! deadpool pool per connection string, at most 64 connections, and the session reset before a
//! connection is used again (settings, temporary tables, advisory locks, cursors; devhost also
//! ends a transaction left open).
//!
//! What it sends differs from Spin, to cost fewer round trips on the request's path; what a
//! guest sees does not (same values, same errors):
//! - Spin resets a connection when it takes it from the pool (`RecyclingMethod::Clean`, a round
//!   trip before the first statement). devhost sends the same reset, after a `ROLLBACK`, in the
//!   same write as the guest's first statement, so it costs no round trip of its own.
//! - Spin prepares every statement (Parse/Describe, then Bind/Execute: two round trips) and
//!   binds each parameter to the type PostgreSQL inferred for it. devhost does the same the
//!   first time it meets a statement text on a pool and remembers the inferred types; later it
//!   sends Parse/Bind/Execute in one round trip with those same types, so a value is checked
//!   against, and encoded as, exactly the type Spin would use.
//!
//! The interface is implemented on a [`PgView`]: the instance's resource table, the process's
//! pools and the component's allow-list, nothing else of the store. Inside, `session` (a
//! connection: reset, execution) uses `pool` (pools, statement-type cache); `convert` (values
//! both ways) and `error` (Spin's error values) use the generated `bindings`, which name
//! `session`'s connection type; none of them imports this file.

mod bindings;
mod convert;
mod error;
mod pool;
mod session;

use std::str::FromStr;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use self::bindings::spin::postgres::postgres::{self as pg, Error as PgError, ParameterValue, RowSet};
use self::convert::{to_row_set, to_sql_params};
use self::error::query_failed;
pub use self::pool::PgPools;
use self::session::PgConnection;
use crate::outbound::{AllowedHosts, warn_denied};

/// What the interface sees of the store.
pub struct PgView<'a> {
    pub table: &'a mut ResourceTable,
    pub pools: &'a PgPools,
    pub allowed_hosts: &'a AllowedHosts,
}

/// The interface's `HasData`: its host functions get a [`PgView`].
struct SpinPostgres;

impl HasData for SpinPostgres {
    type Data<'a> = PgView<'a>;
}

/// Adds the interface to `linker`; `view` projects the store's state onto what it uses.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> PgView<'_>,
) -> wasmtime::Result<()> {
    pg::add_to_linker::<T, SpinPostgres>(linker, view)
}

impl pg::Host for PgView<'_> {}

impl pg::HostConnection for PgView<'_> {
    async fn open(&mut self, address: String) -> wasmtime::Result<Result<Resource<PgConnection>, PgError>> {
        let config = match tokio_postgres::Config::from_str(&address) {
            Ok(config) => config,
            Err(e) => return Ok(Err(PgError::ConnectionFailed(e.to_string()))),
        };
        let pool = match check_address(self.allowed_hosts, &config)
            .and_then(|()| self.pools.pool_for(&address, config))
        {
            Ok(pool) => pool,
            Err(message) => return Ok(Err(PgError::ConnectionFailed(message))),
        };
        let (client, parameter_types) = match pool.get().await {
            Ok(pooled) => pooled,
            Err(e) => return Ok(Err(PgError::ConnectionFailed(format!("{e:?}")))),
        };
        Ok(Ok(self.table.push(PgConnection::new(client, parameter_types))?))
    }

    async fn query(
        &mut self,
        connection: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<RowSet, PgError>> {
        let params = match to_sql_params(params) {
            Ok(params) => params,
            Err(e) => return Ok(Err(PgError::BadParameter(e))),
        };
        let rows = match self.table.get_mut(&connection)?.query(&statement, &params).await {
            Ok(rows) => rows,
            Err(e) => return Ok(Err(query_failed(e))),
        };
        if rows.is_empty() && self.pools.trap_empty_queries {
            return Err(wasmtime::Error::msg(format!(
                "--empty-query-trap: this query returned no rows, and on Spin 4.0.0-4.0.2 such a \
                 query never returns (spinframework/spin issue #3671): {statement}"
            )));
        }
        Ok(to_row_set(&rows).map_err(|e| PgError::QueryFailed(pg::QueryError::Text(e))))
    }

    async fn execute(
        &mut self,
        connection: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<u64, PgError>> {
        // Spin 3.6 reports the same conversion failure as value-conversion-failed here.
        let params = match to_sql_params(params) {
            Ok(params) => params,
            Err(e) => return Ok(Err(PgError::ValueConversionFailed(e))),
        };
        let affected = self
            .table
            .get_mut(&connection)?
            .execute(&statement, &params)
            .await;
        Ok(affected.map_err(query_failed))
    }

    async fn drop(&mut self, connection: Resource<PgConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

/// Spin checks `postgres://host[:port]` (no port: 5432) against `allowed_outbound_hosts`,
/// whatever scheme the connection string uses.
fn check_address(allowed_hosts: &AllowedHosts, config: &tokio_postgres::Config) -> Result<(), String> {
    let ports = config.get_ports();
    for (index, host) in config.get_hosts().iter().enumerate() {
        let tokio_postgres::config::Host::Tcp(host) = host else {
            return Err("Unix sockets are not supported on WebAssembly".into());
        };
        let port = ports.get(index).or(ports.first()).copied();
        if !allowed_hosts.allows("postgres", host, port) {
            let url = match port {
                Some(port) => format!("postgres://{host}:{port}"),
                None => format!("postgres://{host}"),
            };
            warn_denied(&url);
            return Err(format!("address {url} is not permitted"));
        }
    }
    Ok(())
}
