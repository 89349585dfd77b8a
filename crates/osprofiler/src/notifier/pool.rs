//! The pools of spare record buffers, one per capacity a thread asks for.

use std::sync::Mutex;

use super::record::Record;

// Buffers go back to a small pool instead of the allocator: a busy thread then
// reuses warm memory instead of allocating (and the exporter freeing) a buffer
// per batch. Full-size ones: freeing 48 KiB per batch made the allocator return
// and re-fault pages under load. Small ones (a short trace's, handed over when
// it ends): the exporter freeing into the recording thread's malloc arena made
// the two threads contend for the arena's lock, a futex wake per trace.
// LIFO: the buffer last handed back is the warmest. `try_lock` on both sides:
// neither the traced thread nor the exporter ever waits for the other here.
static POOLS: [Mutex<Vec<Vec<Record>>>; CLASSES] = [const { Mutex::new(Vec::new()) }; CLASSES];
const CLASSES: usize = 6;
/// Spare full-size buffers kept.
pub(crate) const POOL_MAX: usize = 64;
/// Spare buffers kept of each smaller capacity (16 to 256 records).
pub(crate) const SMALL_POOL_MAX: usize = 16;

/// Records per full batch (the capacity of pooled buffers).
pub(crate) const BATCH: usize = 512;

/// The pool of buffers of capacity `cap`: 16, 32, ..., 512 records.
#[inline]
fn class(cap: usize) -> Option<(usize, usize)> {
    match cap {
        BATCH => Some((CLASSES - 1, POOL_MAX)),
        16 | 32 | 64 | 128 | 256 => Some((cap.trailing_zeros() as usize - 4, SMALL_POOL_MAX)),
        _ => None,
    }
}

#[inline]
pub(super) fn recycle(mut buf: Vec<Record>) {
    let Some((class, max)) = class(buf.capacity()) else {
        return;
    };
    buf.clear();
    if let Ok(mut pool) = POOLS[class].try_lock()
        && pool.len() < max
    {
        pool.push(buf);
    }
}

/// A buffer of capacity `cap`: from its pool when there is one to spare.
pub(crate) fn new_buffer(cap: usize) -> Vec<Record> {
    if let Some((class, _)) = class(cap)
        && let Some(b) = POOLS[class].try_lock().ok().and_then(|mut p| p.pop())
    {
        return b;
    }
    Vec::with_capacity(cap)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_capacity_a_thread_asks_for_has_its_pool() {
        let mut classes: Vec<_> = [16, 32, 64, 128, 256, super::BATCH]
            .iter()
            .map(|&c| super::class(c).unwrap().0)
            .collect();
        classes.dedup();
        assert_eq!(classes, [0, 1, 2, 3, 4, 5]);
        assert!(super::class(48).is_none());
        let b = super::new_buffer(32);
        assert_eq!(b.capacity(), 32);
        super::recycle(b);
        assert_eq!(super::new_buffer(32).capacity(), 32);
    }
}
