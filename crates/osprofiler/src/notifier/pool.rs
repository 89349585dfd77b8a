//! The pool of spare full-size record buffers.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::record::Record;

// Full-size buffers go back to a small pool instead of the allocator: a busy
// thread then reuses warm memory instead of allocating (and the exporter
// freeing) 48 KiB per batch, which made the allocator return and re-fault
// pages under load.
static POOL: Mutex<VecDeque<Vec<Record>>> = Mutex::new(VecDeque::new());
const POOL_MAX: usize = 64;

/// Records per full batch (the capacity of pooled buffers).
pub(crate) const BATCH: usize = 512;

#[inline]
pub(super) fn recycle(mut buf: Vec<Record>) {
    if buf.capacity() != BATCH {
        return;
    }
    buf.clear();
    if let Ok(mut pool) = POOL.lock()
        && pool.len() < POOL_MAX
    {
        pool.push_back(buf);
    }
}

/// A buffer of capacity `cap`: from the pool when a full-size one is asked for.
pub(crate) fn new_buffer(cap: usize) -> Vec<Record> {
    if cap == BATCH
        && let Some(b) = POOL.lock().ok().and_then(|mut p| p.pop_front())
    {
        return b;
    }
    Vec::with_capacity(cap)
}
