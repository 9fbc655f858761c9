//! End-to-end tests. One PostgreSQL serves the whole run (each test gets its own database);
//! each test starts the app processes it needs. Run through `scripts/test`, which builds the
//! components and devhost first.
//!
//! A test is a function declared with `#[e2e::test]` in one of these modules, and is named
//! `module::function`; `harness::every_test_file_is_a_module` fails when a file here is not
//! declared below.

mod calendar;
mod contract;
mod delivery;
mod devhost;
mod events;
mod handoff;
mod harness;
mod notify;
mod receivers;
mod roles;
mod security;
mod spin4;

fn main() {
    e2e::run()
}
