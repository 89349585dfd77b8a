//! The notifier pipeline: recorded points go from per-thread buffers, in
//! batches, over a bounded queue to one background exporter thread, which
//! turns them into [`Event`](crate::Event)s and writes them to a [`Sink`].
//!
//! The traced code never waits: when the queue is full (the sink is slow or
//! down) whole batches are dropped and counted ([`stats`](fn@stats)). A sink error is
//! counted too and never reaches the traced code.
//!
//! # Memory bound
//!
//! With the default [`Config`] (and `max_batch` = 4,096), what the pipeline holds at most,
//! from the constants in this module and in `osprofiler-store`'s `fanout.rs`:
//!
//! | part | bound | default |
//! |---|---|---|
//! | the queue to the exporter | `max_queued_events` × 96 B (a record), exactly: the budget counts the capacity of the queued buffers | 65,536 × 96 = 6,291,456 B (6 MiB) |
//! | each recording thread's buffer (in the thread, or between its traces in its mailbox, which the exporter empties at each wake-up) | `BATCH` × 96 B = 512 × 96 | 49,152 B per thread |
//! | the pools of spare buffers | `POOL_MAX` × `BATCH` × 96 B = 64 × 512 × 96, and `SMALL_POOL_MAX` × (16 + 32 + … + 256) × 96 B = 16 × 496 × 96 | 3,145,728 + 761,856 B (3.7 MiB) |
//! | the exporter's batch in hand | 512 records + `max_batch` events of 336 B | 49,152 + 1,376,256 B |
//! | the channel's slots | 16,384 × 32 B | 524,288 B |
//! | each backend of a `Backends` list | 64 queued batches (`QUEUE_BATCHES`) of up to `max_batch` events, + 1 being written | 65 × 4,096 × 336 B = 89,456,640 B (85 MiB) |
//!
//! So a single sink: about 11.6 MiB + 48 KiB per recording thread (12,345,344 B with
//! 4 threads); a `Backends` list of *n* adds up to 85 MiB per backend (the batches are
//! shared between backends, so *n* healthy backends hold far less). What records point to
//! comes on top: points with a static name and no info point to nothing; an info payload,
//! a run-time name, function arguments or an error message is a heap allocation per point
//! (its size is the caller's), and an event's `info` is its JSON-ready form.
//!
//! The queue's bound is in bytes whatever the shape of the load: queue length × batch
//! size × record size, where the queue length is what `max_queued_events` admits and
//! a batch counts its buffer's capacity (a buffer handed over with few records, a
//! thread's buffer flushed by age or a short trace's, still holds its capacity while
//! queued), so at most min(`max_queued_events`, 16,384 slots × 512) × 96 B. (Counting
//! records instead, as before, let 16,384 small buffers of 16 slots holding 2 records
//! each take 25 MB against the 6 MiB stated.) `tests/memory_bound.rs` shows the bound
//! for both shapes: 5 million points over 4 threads, in long traces (full buffers) and
//! in buffers handed over with two records each, against a sink that never returns.
//!
//! ```
//! use osprofiler::notifier::{self, MemorySink};
//! let sink = MemorySink::new();
//! let _guard = notifier::set_sink(sink.clone());
//! let ctx = osprofiler::init(None, None, None);
//! {
//!     let _p = osprofiler::point("db");
//! }
//! osprofiler::clean();
//! notifier::flush().unwrap();
//! assert_eq!(sink.events().len(), 2);
//! # drop(ctx);
//! ```

mod exporter;
mod pool;
mod record;
mod sink;
mod sinks;
mod stats;

pub use exporter::{
    Config, FlushError, NotifierGuard, SHUTDOWN_TIMEOUT, configure, configured, flush,
    flush_timeout, set_boxed_sink, set_sink, shutdown, shutdown_timeout,
};
pub(crate) use exporter::{Mailbox, mailbox, submit};
pub(crate) use pool::{BATCH, new_buffer};
pub(crate) use record::{
    Extra, Payload, Record, RecordKind, RequestInfo, ResponseInfo, field_records, push_fields,
};
pub use sink::{Sink, SinkError};
pub use sinks::{JsonLinesSink, MemorySink};
pub use stats::{
    LOSS_REPORT_INTERVAL, Stats, dropped_events, last_error, report_late_failure, stats,
};
