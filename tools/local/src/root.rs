//! Where the repository (and so `.tools/` and `.venv-moto/`) is.

use std::path::{Path, PathBuf};

/// The repository root: `B24_ROOT` when set, else two levels above this crate's manifest
/// directory (`tools/local/../..`).
pub fn repo_root() -> PathBuf {
    if let Some(root) = std::env::var_os("B24_ROOT").filter(|v| !v.is_empty()) {
        return PathBuf::from(root);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    dir.canonicalize().unwrap_or(dir)
}

/// Finds `program` on `PATH` (an absolute or relative path with a `/` is returned as is when it
/// exists).
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
