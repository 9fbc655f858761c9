//! The end-to-end suite's runner. Each test is declared with `#[e2e::test]`, which registers
//! it (through `inventory`) where it is written; `run` collects them all and runs them with
//! libtest-mimic, sharing one PostgreSQL for the whole run (each test makes its own database).

use std::sync::OnceLock;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::{Postgres, Runtime};

pub type TestResult = anyhow::Result<()>;

/// A registered test: `#[e2e::test]` submits one per test function.
pub struct Test {
    /// The `module_path!()` of the function.
    pub module_path: &'static str,
    pub name: &'static str,
    pub run: fn() -> TestResult,
    /// Tests devhost itself (or needs its own options): skipped under another runtime.
    pub devhost_only: bool,
}

inventory::collect!(Test);

impl Test {
    /// The module within the test crate: `events` for `e2e::events`.
    pub fn module(&self) -> &'static str {
        self.module_path
            .split_once("::")
            .map_or("", |(_crate, module)| module)
    }

    /// What the run lists and filters on: `events::create_read_update_delete`.
    pub fn full_name(&self) -> String {
        match self.module() {
            "" => self.name.to_owned(),
            module => format!("{module}::{}", self.name),
        }
    }
}

/// Every registered test, by name.
pub fn registered() -> Vec<&'static Test> {
    let mut tests: Vec<&Test> = inventory::iter::<Test>.into_iter().collect();
    tests.sort_by_key(|test| test.full_name());
    tests
}

static POSTGRES: OnceLock<Postgres> = OnceLock::new();

/// The shared PostgreSQL of this run.
pub fn postgres() -> &'static Postgres {
    POSTGRES
        .get()
        .expect("PostgreSQL is started before the tests run")
}

/// Runs the registered tests as the command line asks (libtest's arguments), then exits.
pub fn run() -> ! {
    let arguments = Arguments::from_args();
    let runtime = Runtime::current();
    let skip_reason = format!("devhost only: the app runs on {}", runtime.name());
    let trials: Vec<Trial> = registered()
        .into_iter()
        .map(|test| {
            let skip = (test.devhost_only && !runtime.is_devhost()).then(|| skip_reason.clone());
            let run = test.run;
            Trial::ignorable_test(test.full_name(), move || match skip {
                Some(reason) => Ok(Completion::ignored_with(reason)),
                None => run()
                    .map(|()| Completion::Completed)
                    .map_err(|error| Failed::from(format!("{error:?}"))),
            })
        })
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
