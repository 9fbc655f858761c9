//! devhost's WIT (`wit/deps/`) is spin-sdk 5.2's, byte for byte: found here in the spin-sdk
//! package of the workspace's dependency graph (downloaded by the time tests run; the build
//! itself needs no other package's files).

use std::path::PathBuf;
use std::process::Command;

const SPIN_SDK_VERSION_PREFIX: &str = "5.2.";

/// The `wit/` directory of the spin-sdk 5.2 package the components build with.
fn spin_sdk_wit_dir() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version=1", "--locked"])
        .current_dir(manifest_dir.join(".."))
        .output()
        .expect("running cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("metadata JSON");
    let package = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| {
            p["name"] == "spin-sdk"
                && p["version"]
                    .as_str()
                    .is_some_and(|v| v.starts_with(SPIN_SDK_VERSION_PREFIX))
        })
        .expect("spin-sdk 5.2 is a dependency of the components");
    PathBuf::from(package["manifest_path"].as_str().expect("manifest_path"))
        .parent()
        .expect("package directory")
        .join("wit")
}

#[test]
fn vendored_wit_is_spin_sdks() {
    let sdk = spin_sdk_wit_dir();
    let ours = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("wit/deps");
    for (vendored, original) in [
        (
            "spin-postgres/postgres.wit",
            "deps/spin-postgres@4.0.0/postgres.wit",
        ),
        ("fermyon-spin/variables.wit", "deps/spin@2.0.0/variables.wit"),
    ] {
        let vendored_bytes = std::fs::read(ours.join(vendored)).expect("vendored WIT");
        let original_bytes = std::fs::read(sdk.join(original)).expect("spin-sdk WIT");
        assert!(
            vendored_bytes == original_bytes,
            "devhost/wit/deps/{vendored} differs from spin-sdk's wit/{original}: copy it again"
        );
    }
}
