//! A small hash table from strings to indices, for the report's hot paths.
//!
//! std's `HashMap<String, _>` costs a SipHash and, for owned keys, an allocation per key;
//! here each distinct string is copied once into one buffer, and numbered.

use std::hash::{BuildHasher, RandomState};

/// A fast keyed string hash (folded multiplies over 8-byte words). The keys are random,
/// as std's are, so that crafted ids cannot be made to pile up in one place.
#[derive(Clone, Debug)]
pub(crate) struct StrHasher {
    k0: u64,
    k1: u64,
}

impl Default for StrHasher {
    fn default() -> StrHasher {
        let random = RandomState::new();
        StrHasher {
            k0: random.hash_one(0x243f_6a88_u64),
            k1: random.hash_one(0x85a3_08d3_u64) | 1,
        }
    }
}

const K: u64 = 0x9e37_79b9_7f4a_7c15;

fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl StrHasher {
    pub(crate) fn hash(&self, s: &str) -> u64 {
        let bytes = s.as_bytes();
        let mut h = self.k0 ^ (bytes.len() as u64).wrapping_mul(K);
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
            h = fold(h ^ w, self.k1 ^ K);
        }
        let mut tail = [0u8; 8];
        let rest = words.remainder();
        if let Some(dst) = tail.get_mut(..rest.len()) {
            dst.copy_from_slice(rest);
        }
        fold(h ^ u64::from_le_bytes(tail), self.k1)
    }
}

/// Distinct strings numbered in order of first appearance, each copied once.
///
/// Open addressing with linear probing, at most half full. A slot holds a few bits of its
/// string's hash, its number, and where the string is: a lookup reads one slot and,
/// mostly only for the right string, the string itself.
#[derive(Clone, Debug, Default)]
pub(crate) struct Names {
    text: String,
    /// Where each string is in `text`.
    spans: Vec<(u32, u32)>,
    /// `[tag, number + 1, offset, length]`; `number + 1 == 0`: empty.
    slots: Vec<[u32; 4]>,
}

impl Names {
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    pub(crate) fn get(&self, id: u32) -> &str {
        let Some(&(at, len)) = self.spans.get(id as usize) else {
            return "";
        };
        self.text
            .get(at as usize..at as usize + len as usize)
            .unwrap_or_default()
    }

    /// The slot of `name`, found or where it would go.
    fn slot(&self, hash: u64, name: &str) -> Option<usize> {
        let tag = (hash >> 32) as u32;
        let mask = self.slots.len().checked_sub(1)?;
        let mut at = tag as usize & mask;
        // At most half full: the probe meets an empty slot.
        loop {
            let [slot_tag, id, offset, len] = *self.slots.get(at)?;
            if id == 0
                || (slot_tag == tag
                    && len as usize == name.len()
                    && self
                        .text
                        .get(offset as usize..offset as usize + len as usize)
                        == Some(name))
            {
                return Some(at);
            }
            at = (at + 1) & mask;
        }
    }

    /// The number of `name`, if it has one.
    pub(crate) fn find(&self, hasher: &StrHasher, name: &str) -> Option<u32> {
        let at = self.slot(hasher.hash(name), name)?;
        self.slots.get(at)?[1].checked_sub(1)
    }

    /// The number of `name`, new or not; `None` past `u32::MAX - 1` names or 4 GiB of them.
    pub(crate) fn id(&mut self, hasher: &StrHasher, name: &str) -> Option<u32> {
        let hash = hasher.hash(name);
        if let Some(known) = self
            .slot(hash, name)
            .and_then(|at| self.slots.get(at)?[1].checked_sub(1))
        {
            return Some(known);
        }
        let id = u32::try_from(self.spans.len())
            .ok()
            .filter(|&id| id < u32::MAX - 1)?;
        let offset = u32::try_from(self.text.len()).ok()?;
        let len = u32::try_from(name.len()).ok()?;
        offset.checked_add(len)?;
        if (self.spans.len() + 1) * 2 > self.slots.len() {
            self.grow_to((self.slots.len() * 2).max(16));
        }
        let at = self.slot(hash, name)?;
        *self.slots.get_mut(at)? = [(hash >> 32) as u32, id + 1, offset, len];
        self.spans.push((offset, len));
        self.text.push_str(name);
        Some(id)
    }

    fn grow_to(&mut self, size: usize) {
        let old = std::mem::replace(&mut self.slots, vec![[0; 4]; size]);
        let mask = size - 1;
        for slot in old.into_iter().filter(|s| s[1] != 0) {
            let mut at = slot[0] as usize & mask;
            while let Some(s) = self.slots.get_mut(at) {
                if s[1] == 0 {
                    *s = slot;
                    break;
                }
                at = (at + 1) & mask;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_order_of_first_appearance() {
        let hasher = StrHasher::default();
        let mut names = Names::default();
        let words: Vec<String> = (0..100_000).map(|i| format!("w{}", i % 30_000)).collect();
        let ids: Vec<u32> = words
            .iter()
            .map(|w| names.id(&hasher, w).unwrap())
            .collect();
        assert_eq!(names.len(), 30_000);
        for (w, id) in words.iter().zip(ids) {
            assert_eq!(names.get(id), w);
            assert_eq!(id, w[1..].parse::<u32>().unwrap());
            assert_eq!(names.find(&hasher, w), Some(id));
        }
        assert_eq!(names.find(&hasher, "w30000"), None);
        assert_eq!(names.get(30_000), "");
        assert_ne!(hasher.hash("abcdefgh1"), hasher.hash("abcdefgh2"));
        assert_ne!(hasher.hash(""), hasher.hash("\0"));
    }
}
