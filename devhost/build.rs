//! Takes the WIT of the Spin interfaces devhost implements from the spin-sdk crate the
//! components are built with, so host and guest can never disagree on an interface.
//!
//! Writes `$OUT_DIR/wit/` (a small world importing only those interfaces) and
//! `$OUT_DIR/bindings.rs` (the `bindgen!` call pointing at it).

use std::{env, fs, path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};

const SPIN_SDK_VERSION_PREFIX: &str = "5.2.";

fn main() -> Result<()> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let sdk_wit = spin_sdk_wit_dir()?;
    let wit = out_dir.join("wit");
    let _ = fs::remove_dir_all(&wit);
    copy_package(
        &sdk_wit.join("deps/spin-postgres@4.0.0/postgres.wit"),
        &wit.join("deps/spin-postgres/postgres.wit"),
    )?;
    // `fermyon:spin@2.0.0` also holds a world that pulls in old WASI packages: take only variables.
    let variables = fs::read_to_string(sdk_wit.join("deps/spin@2.0.0/variables.wit"))?;
    write(
        &wit.join("deps/fermyon-spin/variables.wit"),
        &format!("package fermyon:spin@2.0.0;\n\n{variables}"),
    )?;
    write(
        &wit.join("world.wit"),
        "package devhost:host;\n\nworld spin-imports {\n    import spin:postgres/postgres@4.0.0;\n    import fermyon:spin/variables@2.0.0;\n}\n",
    )?;
    write(
        &out_dir.join("bindings.rs"),
        &format!(
            r#"wasmtime::component::bindgen!({{
    path: {wit:?},
    world: "devhost:host/spin-imports",
    imports: {{ default: async | trappable }},
    with: {{ "spin:postgres/postgres.connection": crate::postgres::PgConnection }},
}});
"#
        ),
    )?;
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed={}", sdk_wit.display());
    Ok(())
}

/// Finds the `wit/` directory of the spin-sdk 5.2 package in this workspace's dependency graph.
fn spin_sdk_wit_dir() -> Result<PathBuf> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("..");
    let output = Command::new(cargo)
        // Offline and for this platform only: cargo has already downloaded what the build needs.
        .args(["metadata", "--format-version=1", "--offline", "--filter-platform"])
        .arg(env::var("TARGET")?)
        .current_dir(&workspace)
        .output()
        .context("running cargo metadata to locate spin-sdk")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata has no packages")?;
    for package in packages {
        let version = package["version"].as_str().unwrap_or_default();
        if package["name"] == "spin-sdk" && version.starts_with(SPIN_SDK_VERSION_PREFIX) {
            let manifest = PathBuf::from(package["manifest_path"].as_str().context("no manifest_path")?);
            return Ok(manifest.parent().context("manifest has no parent")?.join("wit"));
        }
    }
    bail!("spin-sdk {SPIN_SDK_VERSION_PREFIX}x is not in the workspace's dependencies")
}

fn copy_package(from: &PathBuf, to: &PathBuf) -> Result<()> {
    let text = fs::read_to_string(from).with_context(|| format!("reading {}", from.display()))?;
    write(to, &text)
}

fn write(path: &PathBuf, text: &str) -> Result<()> {
    fs::create_dir_all(path.parent().context("no parent")?)?;
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
