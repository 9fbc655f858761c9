//! The host side of `spin:postgres/postgres@4.0.0`, generated from the vendored WIT; a guest's
//! `connection` is a [`PgConnection`](super::session::PgConnection).

wasmtime::component::bindgen!({
    path: "wit",
    world: "devhost:host/spin-postgres",
    imports: { default: async | trappable },
    with: { "spin:postgres/postgres.connection": crate::postgres::session::PgConnection },
});
