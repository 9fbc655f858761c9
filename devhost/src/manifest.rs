//! `spin.toml` (manifest version 2): the subset of the format this app uses, parsed strictly
//! enough that a mistake is reported with the key it is in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub spin_manifest_version: u32,
    pub application: Application,
    #[serde(default)]
    pub variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    pub trigger: Triggers,
    #[serde(default)]
    pub component: BTreeMap<String, Component>,
}

#[derive(Debug, Deserialize)]
pub struct Application {
    #[expect(
        dead_code,
        reason = "required by Spin's manifest format; devhost has no use for it"
    )]
    pub name: String,
    #[serde(default)]
    pub trigger: ApplicationTriggers,
}

#[derive(Debug, Default, Deserialize)]
pub struct ApplicationTriggers {
    pub http: Option<HttpSettings>,
}

#[derive(Debug, Deserialize)]
pub struct HttpSettings {
    pub base: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    #[expect(dead_code, reason = "devhost never prints variable values, secret or not")]
    pub secret: bool,
    #[expect(dead_code, reason = "documentation only")]
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Triggers {
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
}

#[derive(Debug, Deserialize)]
pub struct HttpTrigger {
    pub route: RouteSpec,
    pub component: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RouteSpec {
    Path(String),
    Private { private: bool },
}

#[derive(Debug, Deserialize)]
pub struct Component {
    pub source: Source,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Source {
    Local(String),
    Remote(serde::de::IgnoredAny),
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the manifest {}", path.display()))?;
        let manifest: Manifest = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid Spin manifest", path.display()))?;
        if manifest.spin_manifest_version != 2 {
            bail!(
                "{}: spin_manifest_version is {}; devhost reads version 2 only",
                path.display(),
                manifest.spin_manifest_version
            );
        }
        if let Some(base) = manifest
            .application
            .trigger
            .http
            .as_ref()
            .and_then(|h| h.base.as_deref())
            && base != "/"
        {
            bail!(
                "{}: [application.trigger.http] base = {base:?}: Spin 3.6 supports only \"/\"",
                path.display()
            );
        }
        for trigger in &manifest.trigger.http {
            if !manifest.component.contains_key(&trigger.component) {
                bail!(
                    "{}: [[trigger.http]] route {:?} names component {:?}, which has no [component.{}] table",
                    path.display(),
                    trigger.route,
                    trigger.component,
                    trigger.component
                );
            }
        }
        Ok(manifest)
    }
}

impl Component {
    /// The component's Wasm file, resolved against the manifest's directory.
    pub fn wasm_path(&self, id: &str, manifest_dir: &Path) -> Result<PathBuf> {
        match &self.source {
            Source::Local(file) => Ok(manifest_dir.join(file)),
            Source::Remote(_) => {
                bail!("[component.{id}] source: devhost runs local files only, not URL or registry sources")
            }
        }
    }
}
