//! A temporary directory removed on drop (instead of the tempfile crate).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A fresh, empty directory under [`std::env::temp_dir()`], removed with its contents on drop.
///
/// ```
/// let dir = osprofiler_testkit::TempDir::new();
/// std::fs::write(dir.join("report.html"), "<p>hi</p>").unwrap();
/// assert!(dir.path().join("report.html").is_file());
/// ```
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    keep: bool,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempDir {
    /// Creates the directory; panics if the system temp dir is unusable.
    #[allow(clippy::new_without_default)]
    pub fn new() -> TempDir {
        TempDir::try_new().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates the directory, or says why it could not.
    pub fn try_new() -> Result<TempDir, String> {
        let base = std::env::temp_dir();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        for _ in 0..100 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!(
                "osprofiler-test-{}-{n}-{nanos:08x}",
                std::process::id()
            ));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path, keep: false }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            }
        }
        Err(format!("no free temp dir name under {}", base.display()))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(name)`.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// Keeps the directory on drop (to look at what a failing test left) and returns its path.
    pub fn keep(mut self) -> PathBuf {
        self.keep = true;
        self.path.clone()
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_and_removed() {
        let a = TempDir::new();
        let b = TempDir::new();
        assert_ne!(a.path(), b.path());
        assert!(a.path().starts_with(std::env::temp_dir()));
        std::fs::create_dir(a.join("sub")).unwrap();
        std::fs::write(a.join("sub/f"), b"x").unwrap();
        let pa = a.path().to_path_buf();
        drop(a);
        assert!(!pa.exists());
        let pb = b.keep();
        assert!(pb.is_dir());
        std::fs::remove_dir(pb).unwrap();
    }
}
