//! End-to-end tests. One PostgreSQL serves the whole run (each test gets its own database);
//! each test starts the devhost processes it needs. Run through `scripts/test`, which builds
//! the components and devhost first.

mod contract;
mod devhost;
mod events;
mod notify;
mod security;
mod spin4;

use std::sync::OnceLock;

use e2e::Postgres;
use libtest_mimic::{Arguments, Failed, Trial};

static POSTGRES: OnceLock<Postgres> = OnceLock::new();

/// The shared PostgreSQL of this run.
pub fn postgres() -> &'static Postgres {
    POSTGRES
        .get()
        .expect("PostgreSQL is started before the tests run")
}

pub type TestResult = anyhow::Result<()>;

/// A test as each module lists it.
pub type NamedTest = (&'static str, fn() -> TestResult);

/// `named_tests![module: test_a, test_b]` lists functions under the names `module::test_a`, ….
#[macro_export]
macro_rules! named_tests {
    ($module:ident: $($test:ident),* $(,)?) => {
        vec![$((concat!(stringify!($module), "::", stringify!($test)), $test as fn() -> $crate::TestResult)),*]
    };
}

fn trial(name: &'static str, test: fn() -> TestResult) -> Trial {
    Trial::test(name, move || {
        test().map_err(|error| Failed::from(format!("{error:?}")))
    })
}

fn main() {
    let arguments = Arguments::from_args();
    let trials: Vec<Trial> = devhost::tests()
        .into_iter()
        .chain(events::tests())
        .chain(notify::tests())
        .chain(contract::tests())
        .chain(spin4::tests())
        .chain(security::tests())
        .map(|(name, test)| trial(name, test))
        .collect();
    let wanted = trials.iter().any(|t| !arguments.is_filtered_out(t));
    if wanted && !arguments.list {
        match Postgres::start() {
            Ok(postgres) => {
                let _ = POSTGRES.set(postgres);
            }
            Err(error) => {
                eprintln!("cannot start PostgreSQL for the tests: {error:#}");
                std::process::exit(101);
            }
        }
    }
    let conclusion = libtest_mimic::run(&arguments, trials);
    // Statics are never dropped: stop the server and remove its directory explicitly.
    if let Some(postgres) = POSTGRES.get() {
        postgres.shutdown();
    }
    conclusion.exit();
}
