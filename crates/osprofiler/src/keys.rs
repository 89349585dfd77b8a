//! HMAC keys: who may turn tracing on. Keys never leave the process: they are
//! not printed by `Debug`, not put in events, stores or headers.

use std::fmt;
use std::sync::Arc;

use hmac::Mac;

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

/// One HMAC key, as configured in `[profiler] hmac_keys`.
///
/// Cheap to clone (shared). Its `Debug` output never shows the key.
///
/// ```
/// let key = osprofiler::HmacKey::new("SECRET_KEY").unwrap();
/// assert_eq!(format!("{key:?}"), "HmacKey(<redacted>)");
/// assert!(osprofiler::HmacKey::new("").is_none());
/// ```
#[derive(Clone)]
pub struct HmacKey(Arc<KeyInner>);

struct KeyInner {
    // The MAC state keyed once, cloned per use: saves rehashing the key pads.
    mac: HmacSha1,
}

impl HmacKey {
    /// A key from its text (UTF-8 bytes, as osprofiler encodes it). `None` for
    /// an empty key: osprofiler never signs with one, since anyone could then
    /// turn tracing on.
    pub fn new(key: impl AsRef<[u8]>) -> Option<HmacKey> {
        let key = key.as_ref();
        if key.is_empty() {
            return None;
        }
        let mac = HmacSha1::new_from_slice(key).ok()?;
        Some(HmacKey(Arc::new(KeyInner { mac })))
    }

    /// HMAC-SHA1 of `data` under this key.
    pub(crate) fn sign(&self, data: &[u8]) -> [u8; 20] {
        let mut mac = self.0.mac.clone();
        mac.update(data);
        let mut out = [0u8; 20];
        out.copy_from_slice(&mac.finalize().into_bytes());
        out
    }

    /// Lowercase hex HMAC-SHA1 of `data` (osprofiler's `generate_hmac`).
    pub fn sign_hex(&self, data: &[u8]) -> String {
        crate::digits::hex_string(&self.sign(data))
    }

    /// Whether `tag` is the HMAC of `data` under this key, compared in
    /// constant time.
    pub(crate) fn verify(&self, data: &[u8], tag: &[u8; 20]) -> bool {
        let mut mac = self.0.mac.clone();
        mac.update(data);
        mac.verify_slice(tag).is_ok()
    }

    /// Whether both handles are the same configured key.
    pub fn same_as(&self, other: &HmacKey) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey(<redacted>)")
    }
}

/// The list of keys a service accepts, tried in order.
///
/// ```
/// let keys = osprofiler::HmacKeys::parse("SECRET_KEY, other-key,,");
/// assert_eq!(keys.len(), 2);
/// ```
#[derive(Clone, Default)]
pub struct HmacKeys(Arc<[HmacKey]>);

impl HmacKeys {
    /// Parses osprofiler's comma-separated `hmac_keys` option: items are
    /// stripped and empty ones dropped (`osprofiler._utils.split`).
    pub fn parse(comma_separated: &str) -> HmacKeys {
        comma_separated.split(',').map(str::trim).collect()
    }

    /// The keys, in order.
    pub fn iter(&self) -> impl Iterator<Item = &HmacKey> {
        self.0.iter()
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no key (then nothing verifies).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first key (the one to sign with when starting a trace), if any.
    pub fn first(&self) -> Option<&HmacKey> {
        self.0.first()
    }

    /// The key at `index`.
    pub fn get(&self, index: usize) -> Option<&HmacKey> {
        self.0.get(index)
    }
}

impl<S: AsRef<[u8]>> FromIterator<S> for HmacKeys {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> HmacKeys {
        HmacKeys(iter.into_iter().filter_map(HmacKey::new).collect())
    }
}

impl From<Vec<HmacKey>> for HmacKeys {
    fn from(v: Vec<HmacKey>) -> HmacKeys {
        HmacKeys(v.into())
    }
}

impl fmt::Debug for HmacKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HmacKeys(<{} redacted>)", self.0.len())
    }
}
