//! Who records: project, service and host, as osprofiler puts them in events.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

/// The project, service and host stamped on the events a service records
/// (`"project"`, `"service"` and `info.host` in osprofiler's events).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The project, e.g. `nova`.
    pub project: Arc<str>,
    /// The service, e.g. `api` or `compute`.
    pub service: Arc<str>,
    /// The host label, e.g. the machine's hostname.
    pub host: Arc<str>,
}

impl Identity {
    /// An identity from its three parts.
    pub fn new(
        project: impl Into<Arc<str>>,
        service: impl Into<Arc<str>>,
        host: impl Into<Arc<str>>,
    ) -> Identity {
        Identity {
            project: project.into(),
            service: service.into(),
            host: host.into(),
        }
    }

    /// This machine's hostname (osprofiler's `socket.gethostname()`), or
    /// `localhost` when it cannot be read.
    pub fn local_hostname() -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".to_owned())
    }

    fn process_default() -> Identity {
        let exe = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "rust".to_owned());
        Identity::new(exe.as_str(), exe.as_str(), Identity::local_hostname())
    }
}

// Records carry a small index instead of the identity itself, so recording a
// point never touches a reference count. The table only grows, and is capped.
static TABLE: RwLock<Vec<Arc<Identity>>> = RwLock::new(Vec::new());
static DEFAULT: AtomicU32 = AtomicU32::new(u32::MAX);
const MAX_IDENTITIES: usize = 4096;

pub(crate) fn intern(identity: &Identity) -> u32 {
    if let Ok(t) = TABLE.read()
        && let Some(i) = t.iter().position(|x| **x == *identity)
    {
        return i as u32;
    }
    let mut t = match TABLE.write() {
        Ok(t) => t,
        Err(p) => p.into_inner(),
    };
    if let Some(i) = t.iter().position(|x| **x == *identity) {
        return i as u32;
    }
    if t.len() >= MAX_IDENTITIES {
        return 0;
    }
    t.push(Arc::new(identity.clone()));
    (t.len() - 1) as u32
}

/// Sets the identity new traces in this process record with.
pub fn set_process_identity(identity: Identity) {
    DEFAULT.store(intern(&identity), Ordering::Release);
}

/// The identity new traces in this process record with.
pub fn process_identity() -> Identity {
    lookup(default_index())
        .map(|a| (*a).clone())
        .unwrap_or_else(Identity::process_default)
}

pub(crate) fn default_index() -> u32 {
    let i = DEFAULT.load(Ordering::Acquire);
    if i != u32::MAX {
        return i;
    }
    let i = intern(&Identity::process_default());
    // Another thread may have set an identity meanwhile: keep theirs.
    match DEFAULT.compare_exchange(u32::MAX, i, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => i,
        Err(current) => current,
    }
}

pub(crate) fn lookup(index: u32) -> Option<Arc<Identity>> {
    TABLE.read().ok()?.get(index as usize).cloned()
}

/// A reader-side cache so the exporter takes the lock only for new indexes.
#[derive(Default)]
pub(crate) struct IdentityCache(Vec<Option<Arc<Identity>>>);

impl IdentityCache {
    pub(crate) fn get(&mut self, index: u32) -> Arc<Identity> {
        let i = index as usize;
        if let Some(Some(id)) = self.0.get(i) {
            return id.clone();
        }
        let found = lookup(index).unwrap_or_else(|| Arc::new(Identity::process_default()));
        if self.0.len() <= i {
            self.0.resize(i + 1, None);
        }
        self.0[i] = Some(found.clone());
        found
    }
}
