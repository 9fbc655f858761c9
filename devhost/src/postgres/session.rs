//! A guest's `connection`: a pooled PostgreSQL session, reset before its first statement, and
//! the execution of a statement as Spin does it, in fewer round trips.

use std::sync::Arc;

use deadpool_postgres::Object;
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

use super::pool::ParameterTypes;

/// A parameter value, converted from the guest's.
pub type SqlParam = Box<dyn ToSql + Send + Sync>;

/// Ends whatever the previous user of a session left: a transaction (outside one, `ROLLBACK`
/// is only a warning), then what Spin's `RecyclingMethod::Clean` resets (cursors, the session
/// user, settings, LISTEN, advisory locks, temporary tables, sequence state). Not `DISCARD ALL`:
/// it would also deallocate the statements tokio-postgres keeps for looking up types it does
/// not know (enums, domains), and the next lookup on that connection would fail.
const SESSION_RESET: [&str; 2] = [
    "ROLLBACK",
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
     SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES;",
];

/// The host side of a guest's `connection`: a pooled client, returned to the pool when the
/// guest drops it, and reset before its first statement.
pub struct PgConnection {
    client: Object,
    parameter_types: Arc<ParameterTypes>,
    /// Until the first statement: the session may hold state of an earlier request.
    reset_pending: bool,
}

impl PgConnection {
    pub fn new(client: Object, parameter_types: Arc<ParameterTypes>) -> Self {
        Self {
            client,
            parameter_types,
            reset_pending: true,
        }
    }

    pub async fn query(
        &mut self,
        statement: &str,
        params: &[SqlParam],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        self.run::<Query>(statement, params).await
    }

    pub async fn execute(
        &mut self,
        statement: &str,
        params: &[SqlParam],
    ) -> Result<u64, tokio_postgres::Error> {
        self.run::<Execute>(statement, params).await
    }

    /// Runs `statement`, after the session reset if this is the connection's first statement.
    /// The reset's messages are sent ahead of the statement's in the same write
    /// (tokio-postgres sends a request when its future is first polled, and `join3` polls in
    /// argument order), so the reset costs no round trip of its own.
    async fn run<C: Call>(
        &mut self,
        statement: &str,
        params: &[SqlParam],
    ) -> Result<C::Output, tokio_postgres::Error> {
        let work = run::<C>(&self.client, &self.parameter_types, statement, params);
        if !std::mem::take(&mut self.reset_pending) {
            return work.await;
        }
        let [end_transaction, clean_up] = SESSION_RESET.map(|batch| self.client.batch_execute(batch));
        let (ended, cleaned, output) = futures::future::join3(end_transaction, clean_up, work).await;
        if let Err(error) = ended.and(cleaned) {
            // The statement's own outcome is what the guest gets, since it ran; the reset is
            // tried again before the next one (a closed connection leaves the pool instead).
            eprintln!("devhost: could not reset a pooled PostgreSQL session: {error}");
            self.reset_pending = true;
        }
        output
    }
}

/// `query` or `execute`, each with and without a prepared statement.
trait Call {
    type Output;

    async fn typed(
        client: &Object,
        statement: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Self::Output, tokio_postgres::Error>;

    async fn prepared(
        client: &Object,
        statement: &tokio_postgres::Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Self::Output, tokio_postgres::Error>;
}

struct Query;

impl Call for Query {
    type Output = Vec<Row>;

    async fn typed(
        client: &Object,
        statement: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        client.query_typed(statement, params).await
    }

    async fn prepared(
        client: &Object,
        statement: &tokio_postgres::Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        client.query(statement, params).await
    }
}

struct Execute;

impl Call for Execute {
    type Output = u64;

    async fn typed(
        client: &Object,
        statement: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<u64, tokio_postgres::Error> {
        client.execute_typed(statement, params).await
    }

    async fn prepared(
        client: &Object,
        statement: &tokio_postgres::Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        client.execute(statement, params).await
    }
}

/// Runs `statement` as Spin does, in one round trip when the parameter types PostgreSQL
/// inferred for it are known; otherwise (the first time, or when the number of parameters does
/// not match, so that the error is Spin's) prepared first, remembering the types.
async fn run<C: Call>(
    client: &Object,
    known: &ParameterTypes,
    statement: &str,
    params: &[SqlParam],
) -> Result<C::Output, tokio_postgres::Error> {
    if let Some(types) = known.get(statement, params.len()) {
        match C::typed(client, statement, &typed(params, types)).await {
            Ok(output) => return Ok(output),
            // The remembered types may be stale (the schema changed): prepare afresh next
            // time. An error PostgreSQL did not raise (a value that does not convert) came
            // before anything was sent: run the statement Spin's way now, for Spin's answer.
            Err(error) => {
                known.forget(statement);
                if error.as_db_error().is_some() {
                    return Err(error);
                }
            }
        }
    }
    let prepared = client.prepare(statement).await?;
    known.remember(statement, &prepared);
    C::prepared(client, &prepared, &untyped(params)).await
}

fn typed(params: &[SqlParam], types: Vec<Type>) -> Vec<(&(dyn ToSql + Sync), Type)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .zip(types)
        .collect()
}

fn untyped(params: &[SqlParam]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
}
