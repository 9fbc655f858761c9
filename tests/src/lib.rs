//! The end-to-end harness: a throwaway PostgreSQL (own data directory, free port, unprivileged
//! user when run as root, the app's database roles), a fresh database per test from a migrated
//! template, the app served by devhost (or the runtime `E2E_RUNTIME` names) with each function
//! as its own database role, an HTTP stub server for what the app calls out to, and the suite's
//! runner: tests declared with `#[e2e::test]`, run by libtest-mimic.
//! Everything is stopped and removed on drop.

mod app;
mod devhost;
mod postgres;
mod runtime;
mod stub;
mod suite;

pub use app::{
    App, DELIVERY_TIMEOUT_MS, NOTIFY_TOKEN, TOKEN, app_options, assert_problem, database_name, eventually,
};
pub use devhost::{Devhost, DevhostOptions, HttpResponse};
pub use postgres::{Postgres, Role, Session};
pub use runtime::{Runtime, devhost_binary};
pub use stub::{Answer, Framing, Received, StubServer, WebhookReceiver};
pub use suite::{Test, TestResult, postgres, registered, run};

/// `#[e2e::test]` declares a test and registers it; `#[e2e::test(devhost_only)]` one that is
/// skipped when the app runs on another runtime. See the `e2e-macros` crate.
pub use e2e_macros::test;
/// For `#[e2e::test]`'s expansion.
#[doc(hidden)]
pub use inventory;

use std::path::PathBuf;

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("binding an ephemeral port on 127.0.0.1")
}

/// Kills the child when the thread that spawned it ends (our guards also kill it on drop):
/// a harness that dies unexpectedly leaves no server behind.
pub fn die_with_parent(command: &mut std::process::Command, signal: libc::c_int) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child being set up.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
