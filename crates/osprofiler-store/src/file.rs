//! `file://`: osprofiler JSON, one event per line. Appended to by the notifier; read by
//! scanning the file (fine for the small traces this backend is meant for).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use osprofiler::notifier::{JsonLinesSink, Sink};
use serde_json::Value;

use crate::{OpenError, ReadError, TraceStore, TraceSummary};

pub(crate) fn open_sink(path: &Path) -> Result<Box<dyn Sink>, OpenError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| unavailable(path, e))?;
    }
    Ok(Box::new(
        JsonLinesSink::open(path).map_err(|e| unavailable(path, e))?,
    ))
}

pub(crate) fn open_store(path: &Path) -> Result<Box<dyn TraceStore>, OpenError> {
    std::fs::metadata(path).map_err(|e| unavailable(path, e))?;
    Ok(Box::new(FileStore {
        path: path.to_path_buf(),
    }))
}

fn unavailable(path: &Path, e: std::io::Error) -> OpenError {
    OpenError::Unavailable {
        // Hidden up to an `@`: see `conn::shown_path`.
        store: format!("file://{}", crate::conn::shown_path(path)),
        reason: e.to_string(),
    }
}

struct FileStore {
    path: PathBuf,
}

impl FileStore {
    fn scan(&self, mut each: impl FnMut(Value)) -> Result<(), ReadError> {
        let err = |e: std::io::Error| ReadError {
            store: self.describe(),
            reason: e.to_string(),
        };
        let file = std::fs::File::open(&self.path).map_err(err)?;
        for line in BufReader::new(file).lines() {
            let line = line.map_err(err)?;
            // A torn or foreign line is skipped: the rest of the file is still good.
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                each(v);
            }
        }
        Ok(())
    }

    fn summaries(
        &self,
        only_errors: bool,
        limit: Option<usize>,
    ) -> Result<Vec<TraceSummary>, ReadError> {
        // base id -> (earliest timestamp, has an error)
        let mut traces: HashMap<String, (String, bool)> = HashMap::new();
        self.scan(|v| {
            let (Some(base), Some(ts)) = (v["base_id"].as_str(), v["timestamp"].as_str()) else {
                return;
            };
            let err = v["info"]["etype"].is_string();
            let e = traces
                .entry(base.to_owned())
                .or_insert_with(|| (ts.to_owned(), false));
            if ts < e.0.as_str() {
                e.0 = ts.to_owned();
            }
            e.1 |= err;
        })?;
        let mut list: Vec<TraceSummary> = traces
            .into_iter()
            .filter(|(_, (_, err))| !only_errors || *err)
            .map(|(base_id, (timestamp, _))| TraceSummary { base_id, timestamp })
            .collect();
        list.sort_by(|a, b| {
            b.timestamp
                .cmp(&a.timestamp)
                .then_with(|| a.base_id.cmp(&b.base_id))
        });
        list.truncate(limit.unwrap_or(usize::MAX));
        Ok(list)
    }
}

impl TraceStore for FileStore {
    fn event_texts(&mut self, base_id: &str) -> Result<Vec<String>, ReadError> {
        let err = |e: std::io::Error| ReadError {
            store: self.describe(),
            reason: e.to_string(),
        };
        let file = std::fs::File::open(&self.path).map_err(err)?;
        let mut out = Vec::new();
        for line in BufReader::new(file).lines() {
            let line = line.map_err(err)?;
            // Only this trace's lines are kept, whole, as stored.
            if line.contains(base_id)
                && serde_json::from_str::<Value>(&line)
                    .is_ok_and(|v| v["base_id"].as_str() == Some(base_id))
            {
                out.push(line);
            }
        }
        Ok(out)
    }

    fn list_traces(&mut self, limit: Option<usize>) -> Result<Vec<TraceSummary>, ReadError> {
        self.summaries(false, limit)
    }

    fn list_error_traces(&mut self, limit: Option<usize>) -> Result<Vec<TraceSummary>, ReadError> {
        self.summaries(true, limit)
    }

    fn describe(&self) -> String {
        format!("file://{}", crate::conn::shown_path(&self.path))
    }
}
