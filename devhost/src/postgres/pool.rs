//! The pools of the whole process, one per connection string (as in Spin), and per pool the
//! parameter types PostgreSQL inferred for each statement text it has met.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use tokio_postgres::NoTls;
use tokio_postgres::types::Type;

/// Spin 3.6's per-pool connection limit.
const MAX_POOL_SIZE: usize = 64;

/// How many statement texts a pool remembers parameter types for before it starts afresh (an
/// app that builds SQL text per request must not grow devhost without bound).
const MAX_REMEMBERED_STATEMENTS: usize = 4096;

#[derive(Default)]
pub struct PgPools {
    pools: Mutex<HashMap<String, PgPool>>,
    /// Play Spin 4.0.0-4.0.2, loudly: a `query` whose result has no rows traps the instance
    /// (on those releases it never returns; spinframework/spin issue #3671).
    pub trap_empty_queries: bool,
}

#[derive(Clone)]
pub struct PgPool {
    connections: Pool,
    parameter_types: Arc<ParameterTypes>,
}

impl PgPools {
    pub fn new(trap_empty_queries: bool) -> Self {
        Self {
            pools: Mutex::default(),
            trap_empty_queries,
        }
    }

    /// The pool for `address`, created on first use; an error is a connection-failed message.
    pub fn pool_for(&self, address: &str, config: tokio_postgres::Config) -> Result<PgPool, String> {
        let mut pools = self.pools.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(pool) = pools.get(address) {
            return Ok(pool.clone());
        }
        // `Fast` only checks that the connection is open: the session is reset before the next
        // guest's first statement (`session::PgConnection::run`).
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let connections = Pool::builder(manager)
            .max_size(MAX_POOL_SIZE)
            .build()
            .map_err(|e| format!("{e:?}"))?;
        let pool = PgPool {
            connections,
            parameter_types: Arc::default(),
        };
        pools.insert(address.to_owned(), pool.clone());
        Ok(pool)
    }
}

impl PgPool {
    /// A connection of this pool, with the pool's statement-type cache.
    pub async fn get(&self) -> Result<(Object, Arc<ParameterTypes>), PoolError> {
        Ok((self.connections.get().await?, self.parameter_types.clone()))
    }
}

/// The parameter types PostgreSQL inferred for each statement text, per pool.
#[derive(Default)]
pub struct ParameterTypes(Mutex<HashMap<String, Vec<Type>>>);

impl ParameterTypes {
    /// The types inferred for `statement`, if it has `params` of them.
    pub fn get(&self, statement: &str, params: usize) -> Option<Vec<Type>> {
        self.lock()
            .get(statement)
            .filter(|types| types.len() == params)
            .cloned()
    }

    /// Remembers what `prepared` inferred, unless a column has a type PostgreSQL does not
    /// build in: tokio-postgres would look that type up while it holds the rows of a statement
    /// sent without a prepare, and a large result can deadlock that look-up (rust-postgres
    /// issue #1348). Such a statement is prepared every time, as Spin does.
    pub fn remember(&self, statement: &str, prepared: &tokio_postgres::Statement) {
        if !prepared
            .columns()
            .iter()
            .all(|c| Type::from_oid(c.type_().oid()).is_some())
        {
            return;
        }
        self.insert(statement, prepared.params().to_vec());
    }

    fn insert(&self, statement: &str, types: Vec<Type>) {
        let mut known = self.lock();
        if known.len() >= MAX_REMEMBERED_STATEMENTS {
            known.clear();
        }
        known.insert(statement.to_owned(), types);
    }

    pub fn forget(&self, statement: &str) {
        self.lock().remove(statement);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Type>>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_found_only_for_the_same_number_of_parameters() {
        let known = ParameterTypes::default();
        known.insert("SELECT $1", vec![Type::INT8]);
        assert_eq!(known.get("SELECT $1", 1), Some(vec![Type::INT8]));
        assert_eq!(known.get("SELECT $1", 2), None);
        assert_eq!(known.get("SELECT 1", 0), None);
        known.forget("SELECT $1");
        assert_eq!(known.get("SELECT $1", 1), None);
    }

    #[test]
    fn a_full_cache_starts_afresh() {
        let known = ParameterTypes::default();
        for i in 0..MAX_REMEMBERED_STATEMENTS {
            known.insert(&format!("SELECT {i}"), Vec::new());
        }
        assert_eq!(known.get("SELECT 0", 0), Some(Vec::new()));
        known.insert("SELECT 'one more'", Vec::new());
        assert_eq!(known.get("SELECT 0", 0), None);
        assert_eq!(known.get("SELECT 'one more'", 0), Some(Vec::new()));
    }
}
