//! Which Spin-compatible runtime serves the app under test. devhost by default; `E2E_RUNTIME`
//! names another `spin up`-compatible command (`E2E_RUNTIME="spin up"`), so the same suite runs
//! against real Spin where it is installed. Either is started as
//! `<command> --from <manifest> --listen <address> [-c <component id>]...`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Result, bail};

pub enum Runtime {
    /// devhost itself: `$DEVHOST_BIN`, else the release build in the workspace's target dir.
    /// It may listen on port 0 and print the port it got.
    Devhost,
    /// The words of `E2E_RUNTIME` (split at whitespace): the program and its first arguments.
    /// The harness picks its port, since a runtime need not support port 0.
    Named(Vec<String>),
}

impl Runtime {
    /// The runtime of this run, from `E2E_RUNTIME` (unset or blank: devhost).
    pub fn current() -> &'static Runtime {
        static RUNTIME: OnceLock<Runtime> = OnceLock::new();
        RUNTIME.get_or_init(|| {
            let words: Vec<String> = std::env::var("E2E_RUNTIME")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if words.is_empty() {
                Runtime::Devhost
            } else {
                Runtime::Named(words)
            }
        })
    }

    pub fn is_devhost(&self) -> bool {
        matches!(self, Runtime::Devhost)
    }

    /// What error messages call it.
    pub fn name(&self) -> String {
        match self {
            Runtime::Devhost => "devhost".to_owned(),
            Runtime::Named(words) => format!("`{}` (E2E_RUNTIME)", words.join(" ")),
        }
    }

    /// The command, before the manifest, address and component arguments.
    pub(crate) fn command(&self) -> Result<Command> {
        Ok(match self {
            Runtime::Devhost => Command::new(devhost_binary()?),
            Runtime::Named(words) => {
                let mut command = Command::new(&words[0]);
                command.args(&words[1..]);
                command
            }
        })
    }
}

/// The devhost binary: `$DEVHOST_BIN`, else the release build in the workspace's target dir.
pub fn devhost_binary() -> Result<PathBuf> {
    let path = std::env::var_os("DEVHOST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target/release/devhost"));
    if !path.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release -p devhost` (scripts/test does)",
            path.display()
        );
    }
    Ok(path)
}
