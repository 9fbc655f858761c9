//! Compiled components on disk, so that a start does not compile them again (Cranelift takes a
//! few hundred milliseconds per component). Loading an entry runs its machine code, so the
//! cache is used only if its directory belongs to this user and neither its group nor others
//! may write to it; otherwise devhost says why and compiles at every start. An entry that is
//! not this user's, or that others may write, is compiled afresh and replaced.

use std::collections::hash_map::DefaultHasher;
use std::fs::Metadata;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A cache directory that passed the checks.
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache in `dir`, created (mode 0700) if it is missing; `None`, after a warning that
    /// says why, when it cannot be created or is not safe to load code from.
    pub fn open(dir: &Path) -> Option<Self> {
        let checked = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .context("cannot create it")
            .and_then(|()| std::fs::metadata(dir).context("cannot read its metadata"))
            .and_then(|metadata| {
                if !metadata.is_dir() {
                    bail!("it is not a directory");
                }
                check_private(&metadata)
            });
        match checked {
            Ok(()) => Some(Self { dir: dir.to_owned() }),
            Err(reason) => {
                eprintln!(
                    "devhost: not using the compilation cache {}: {reason:#}; compiling every component at start-up",
                    dir.display()
                );
                None
            }
        }
    }
}

/// Whether what `metadata` describes belongs to this process's user and only it may write it.
fn check_private(metadata: &Metadata) -> Result<()> {
    let user = effective_uid();
    if metadata.uid() != user {
        bail!(
            "it belongs to uid {}, not to this user (uid {user})",
            metadata.uid()
        );
    }
    let mode = metadata.mode() & 0o7777;
    if mode & 0o022 != 0 {
        bail!("its group or others may write to it (mode {mode:04o})");
    }
    Ok(())
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Compiles the component `id` from `wasm_path`, or loads it from `cache`.
pub fn compile(engine: &Engine, id: &str, wasm_path: &Path, cache: Option<&Cache>) -> Result<Component> {
    let wasm = std::fs::read(wasm_path).with_context(|| {
        format!(
            "component {id:?}: cannot read {}: build the components first (`cargo build --target wasm32-wasip2 --release`, or `spin build`)",
            wasm_path.display()
        )
    })?;
    let compile = || {
        Component::new(engine, &wasm)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "component {id:?}: {} is not a valid component",
                    wasm_path.display()
                )
            })
    };
    let Some(cache) = cache else {
        return compile();
    };
    let entry = cache.dir.join(format!("{id}-{}.cwasm", key(engine, &wasm)));
    match load(engine, &entry) {
        Ok(Some(component)) => return Ok(component),
        Ok(None) => {}
        Err(e) => eprintln!("devhost: ignoring cache entry {}: {e:#}", entry.display()),
    }
    let component = compile()?;
    if let Err(e) = store(&entry, &component) {
        eprintln!(
            "devhost: could not write the compilation cache {}: {e:#}",
            entry.display()
        );
    }
    Ok(component)
}

/// What an entry depends on: the Wasm bytes, devhost's version and the engine's settings.
fn key(engine: &Engine, wasm: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(wasm);
    hasher.update(env!("CARGO_PKG_VERSION"));
    let mut engine_hash = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut engine_hash);
    hasher.update(engine_hash.finish().to_le_bytes());
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The entry at `path`, `None` if there is none.
fn load(engine: &Engine, path: &Path) -> Result<Option<Component>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    check_private(&file.metadata()?)?;
    // Mapped through the file just checked (not its path again), so that what was checked is
    // what runs even if the directory were swapped meanwhile.
    let checked = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    // SAFETY: the file was written by `Component::serialize` of this devhost build (the key
    // covers the Wasm bytes, devhost's version and the engine's compatibility hash) into a
    // directory, and a file, that only this user may write.
    let component = unsafe { Component::deserialize_file(engine, &checked) }?;
    Ok(Some(component))
}

fn store(path: &Path, component: &Component) -> Result<()> {
    let dir = path.parent().context("cache path has no directory")?;
    let temp = dir.join(format!(
        ".{}.{}",
        std::process::id(),
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(&component.serialize()?)?;
    std::fs::rename(&temp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_missing_directory_is_created_private() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a/b");
        assert!(Cache::open(&dir).is_some());
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (mode, usable) in [
            (0o700, true),
            (0o755, true),
            (0o775, false),
            (0o757, false),
            (0o777, false),
        ] {
            set_mode(dir.path(), mode);
            assert_eq!(Cache::open(dir.path()).is_some(), usable, "{mode:o}");
        }
        set_mode(dir.path(), 0o777);
        let reason = check_private(&std::fs::metadata(dir.path()).unwrap()).unwrap_err();
        assert_eq!(
            reason.to_string(),
            "its group or others may write to it (mode 0777)"
        );
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        set_mode(dir.path(), 0o700);
        if effective_uid() != 0 {
            // Only root can give a directory away; any other user can at least use one of root's.
            assert!(Cache::open(Path::new("/")).is_none());
            return;
        }
        std::os::unix::fs::chown(dir.path(), Some(65534), None).unwrap();
        assert!(Cache::open(dir.path()).is_none());
        let reason = check_private(&std::fs::metadata(dir.path()).unwrap()).unwrap_err();
        assert_eq!(
            reason.to_string(),
            "it belongs to uid 65534, not to this user (uid 0)"
        );
    }

    #[test]
    fn an_entry_others_may_write_is_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("x.cwasm");
        std::fs::write(&entry, b"anything").unwrap();
        set_mode(&entry, 0o666);
        let engine = Engine::default();
        let refused = load(&engine, &entry).err().map(|e| e.to_string());
        assert_eq!(
            refused.as_deref(),
            Some("its group or others may write to it (mode 0666)")
        );
        assert!(
            load(&engine, &dir.path().join("missing.cwasm"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn an_entry_is_written_private_and_loaded_back() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let engine = Engine::default();
        // The smallest component: the preamble of the component binary format.
        let wasm = dir.path().join("empty.wasm");
        std::fs::write(&wasm, b"\0asm\x0d\0\x01\0").unwrap();
        compile(&engine, "empty", &wasm, Some(&cache)).unwrap();
        let entries: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(std::fs::metadata(&entries[0]).unwrap().mode() & 0o777, 0o600);
        assert!(load(&engine, &entries[0]).unwrap().is_some());
    }
}
