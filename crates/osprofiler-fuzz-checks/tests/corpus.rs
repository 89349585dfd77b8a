//! Replays every committed fuzz input through its target's properties, on stable: each file
//! of `fuzz/corpus/<target>/` (the minimised corpus) and `fuzz/regressions/<target>/`
//! (inputs of bugs found and fixed). One test per target; a failure names the files.

use std::alloc::System;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use cap::Cap;

/// The heap is capped: a parser that allocates for a declared length (`$999999999`) fails
/// the replay instead of passing on an overcommitting kernel.
#[global_allocator]
static HEAP: Cap<System> = Cap::new(System, 1 << 29);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Runs `replay_on` on a thread with libFuzzer's main-thread stack (8 MiB) and more: the
/// deepest reports are walked recursively, by serde_json too, and a test thread has 2 MiB.
fn replay(target: &'static str) {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || replay_on(target))
        .expect("a thread")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

fn replay_on(target: &str) {
    let check = osprofiler_fuzz_checks::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, check)| *check)
        .expect("a target of that name");
    let corpus = files(&fuzz_dir().join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "no corpus for {target} under {}",
        fuzz_dir().display()
    );
    let regressions = files(&fuzz_dir().join("regressions").join(target));
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("readable");
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failed.push(format!("{}: {why}", path.display()));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs of {target} fail:\n{}",
        failed.len(),
        corpus.len() + regressions.len(),
        failed.join("\n")
    );
}

#[test]
fn trace_headers() {
    replay("trace_headers");
}

#[test]
fn carrier() {
    replay("carrier");
}

#[test]
fn traceparent() {
    replay("traceparent");
}

#[test]
fn report() {
    replay("report");
}

#[test]
fn redis_reply() {
    replay("redis_reply");
}

#[test]
fn connection_string() {
    replay("connection_string");
}

#[test]
fn profiler_ini() {
    replay("profiler_ini");
}

#[test]
fn every_target_is_replayed() {
    let names: Vec<&str> = osprofiler_fuzz_checks::TARGETS
        .iter()
        .map(|t| t.0)
        .collect();
    assert_eq!(
        names,
        [
            "trace_headers",
            "carrier",
            "traceparent",
            "report",
            "redis_reply",
            "connection_string",
            "profiler_ini"
        ]
    );
    for name in names {
        assert!(
            fuzz_dir()
                .join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file(),
            "no fuzz target for {name}"
        );
    }
}
