//! `osprofiler`: show and list traces, make the headers that turn tracing on, run the demo.

// The doc comments of the command-line arguments are clap's help texts, where brackets
// are literal (`[profiler]`, `redis://[:password@]host`), not rustdoc links.
#![allow(rustdoc::broken_intra_doc_links)]

mod demo;
mod ui;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use osprofiler::{HmacKey, Id, TraceHeaders};
use osprofiler_report::{Report, render_dot, render_html_to};
use osprofiler_store::{ConnectionString, Options, TraceOverview, TraceQuery, TraceStore};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "osprofiler",
    version,
    about = "Show and list osprofiler traces (Rust and Python services alike)",
    long_about = "Show and list osprofiler traces (Rust and Python services alike), or see one \
        made: `osprofiler demo`.\n\n\
        Traces are read from the store named by --connection-string, else by the \
        OSPROFILER_CONNECTION_STRING environment variable, else from the embedded \
        SQLite store in the user's data directory.",
    after_help = "Examples:\n  \
        osprofiler demo\n  \
        osprofiler trace headers --hmac-key SECRET_KEY\n  \
        osprofiler trace list --connection-string redis://127.0.0.1:6379\n  \
        osprofiler trace show 6f1c2b1e-8a5d-4c1e-9f0b-3d2a1c0b9e8f --html --out trace.html"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with traces.
    #[command(subcommand)]
    Trace(TraceCommand),
    /// Run a small cloud in this process, boot a server in a trace, and show the trace.
    #[command(
        long_about = "Run a small cloud in this process and boot a server in a trace.\n\n\
        Four services on loopback ports (api, conductor with its scheduler, compute, \
        placement) talk over HTTP and gRPC; the client signs its request with the HMAC key, \
        as `openstack --os-profile KEY server create` does. The trace is written to the \
        store, read back, written as an HTML report (--out) and summed up. With --serve, \
        the services stay up for your own requests."
    )]
    Demo(demo::DemoArgs),
    /// Serve a trace browser (search, report, downloads) on the store, until Ctrl-C.
    #[command(after_help = "Examples:\n  \
        osprofiler ui\n  \
        osprofiler ui --listen 0.0.0.0:9876 --token \"$(openssl rand -hex 16)\"")]
    Ui(ui::UiArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "Examples:\n  \
        osprofiler completions bash > /etc/bash_completion.d/osprofiler\n  \
        osprofiler completions zsh > \"${fpath[1]}/_osprofiler\"\n  \
        osprofiler completions fish > ~/.config/fish/completions/osprofiler.fish")]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `osprofiler man > osprofiler.1`.
    Man {
        /// Write one page per command into this directory instead (osprofiler.1,
        /// osprofiler-trace-show.1, …).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TraceCommand {
    /// Display a trace as JSON (default, as osprofiler's), HTML or DOT.
    Show(ShowArgs),
    /// List stored traces, newest first.
    List(ListArgs),
    /// Print the X-Trace-Info and X-Trace-HMAC headers that start a trace.
    #[command(
        long_about = "Print the X-Trace-Info and X-Trace-HMAC headers that start a trace.\n\n\
        Anyone holding one of a service's HMAC keys can profile a single request with them, e.g.\n  \
        curl -H @<(osprofiler trace headers --hmac-key SECRET_KEY) http://api:8774/v2.1/servers\n\
        The two header lines go to standard output, the trace id to standard error."
    )]
    Headers(HeadersArgs),
}

#[derive(Args)]
struct StoreArgs {
    /// Store to read: sqlite:///path, redis://[:password@]host[:port][/db], rediss://…,
    /// redissentinel://host:port, postgresql://user@host/db, mysql://user@host/db,
    /// file:///path.jsonl, messaging:// [default: $OSPROFILER_CONNECTION_STRING, else the
    /// embedded store]
    #[arg(long, value_name = "URI")]
    connection_string: Option<String>,
    /// oslo.messaging transport URL, for messaging:// only, e.g.
    /// rabbit://user:password@host:5672/ [default: $OSPROFILER_TRANSPORT_URL]
    #[arg(long, value_name = "URL")]
    transport_url: Option<String>,
    /// How long to wait for more of the trace, in seconds (messaging:// only; reading
    /// takes the trace's events off the bus)
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    idle_timeout: f64,
    /// oslo.messaging's control exchange, for messaging:// only
    #[arg(long, value_name = "NAME", default_value = "openstack")]
    control_exchange: String,
}

impl StoreArgs {
    fn options(&self) -> Result<Options, Failure> {
        let mut o = Options::default();
        let env = std::env::var("OSPROFILER_TRANSPORT_URL").ok();
        if let Some(url) = self
            .transport_url
            .as_deref()
            .or(env.as_deref())
            .filter(|u| !u.trim().is_empty())
        {
            o.transport_url = Some(url.parse()?);
        }
        if !(self.idle_timeout.is_finite() && (0.0..=3600.0).contains(&self.idle_timeout)) {
            return Err(Failure(format!(
                "--idle-timeout {}: seconds from 0 to 3600",
                self.idle_timeout
            )));
        }
        o.messaging_idle_timeout = std::time::Duration::from_secs_f64(self.idle_timeout);
        o.control_exchange = self.control_exchange.clone();
        Ok(o)
    }
}

#[derive(Args)]
struct ShowArgs {
    /// Trace id (base id), or a file: a report saved with --json, or events (one per line)
    trace: String,
    /// Output osprofiler's report JSON (the default)
    #[arg(long, group = "format")]
    json: bool,
    /// Output one self-contained HTML page (works offline)
    #[arg(long, group = "format")]
    html: bool,
    /// Output the call graph in the DOT language
    #[arg(long, group = "format")]
    dot: bool,
    /// Write the output to FILE instead of standard output
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Also render the DOT graph to FILE with Graphviz `dot` (format from the extension:
    /// pdf, png, svg; pdf when none)
    #[arg(long, value_name = "FILE")]
    render_dot: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
struct ListArgs {
    /// Only traces that contain an error (recorded with filter_error_trace on); takes an
    /// optional yes/no value, as Python's `--error-trace 1` does
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    error_trace: Option<bool>,
    /// Show at most N traces
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Skip the N newest matching traces first (paging)
    #[arg(long, value_name = "N", default_value_t = 0)]
    offset: usize,
    /// Only traces with a point recorded by this service (exact)
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
    /// Only traces with a point of this name (category, e.g. db), or whose root point's
    /// name contains it (e.g. /v2.1/servers)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Only traces with an event containing this text (path, SQL, function; ASCII case
    /// ignored); reads the events
    #[arg(long, value_name = "TEXT")]
    text: Option<String>,
    /// Only traces lasting at least this long: 250ms, 1.5s, 300us (a bare number is ms)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_us)]
    min_duration: Option<i64>,
    /// Only traces lasting at most this long (as --min-duration)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_us)]
    max_duration: Option<i64>,
    /// Only traces started at or after this: a UTC time (2026-12-06T23:00:00) or a time
    /// ago (15m, 2h, 1d)
    #[arg(long, value_name = "TIME", value_parser = parse_time_us)]
    since: Option<i64>,
    /// Only traces started before this (as --since)
    #[arg(long, value_name = "TIME", value_parser = parse_time_us)]
    until: Option<i64>,
    /// Output the summaries as a JSON array (for scripts)
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// A duration in microseconds: `250ms`, `1.5s`, `300us`, `2m`; a bare number is ms.
fn parse_duration_us(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration such as 250ms, 1.5s, 300us"))?;
    let scale = match unit.trim() {
        "" | "ms" => 1e3,
        "us" | "µs" => 1.0,
        "s" => 1e6,
        "m" | "min" => 60e6,
        "h" => 3600e6,
        "d" => 86_400e6,
        u => return Err(format!("{s:?}: unknown unit {u:?} (us, ms, s, m, h, d)")),
    };
    let us = n * scale;
    if !(us.is_finite() && (0.0..9e18).contains(&us)) {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(us as i64)
}

/// A time in microseconds since the epoch: a naive UTC time as osprofiler writes them
/// (`2026-12-06T23:00:00`, fraction optional), or a duration ago (`15m`).
fn parse_time_us(s: &str) -> Result<i64, String> {
    if let Ok(t) = s.trim().parse::<osprofiler::Timestamp>() {
        return Ok(t.as_micros());
    }
    let ago = parse_duration_us(s).map_err(|_| {
        format!("{s:?}: expected a UTC time (2026-12-06T23:00:00) or a time ago (15m, 2h)")
    })?;
    Ok(osprofiler::Timestamp::now().as_micros() - ago)
}

#[derive(Args)]
struct HeadersArgs {
    /// One of the HMAC keys the services accept ([profiler] hmac_keys)
    #[arg(long, value_name = "KEY")]
    hmac_key: String,
    /// Trace id to use [default: a new one]
    #[arg(long, value_name = "UUID")]
    base_id: Option<String>,
    /// Parent point id [default: the trace id]
    #[arg(long, value_name = "UUID")]
    parent_id: Option<String>,
}

/// A command's failure: one line for the user, exit status 1.
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure(e.to_string())
    }
}

/// `osprofiler man`: the main page on stdout, or with `--dir` one page per command
/// (`osprofiler.1`, `osprofiler-trace-show.1`, …), as packagers install them.
fn man(dir: Option<PathBuf>) -> Result<(), Failure> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    cmd.build();
    let Some(dir) = dir else {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        std::io::stdout().write_all(&out)?;
        return Ok(());
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure(format!("cannot create {}: {e}", dir.display())))?;
    let mut pages = vec![("osprofiler".to_owned(), cmd)];
    while let Some((name, cmd)) = pages.pop() {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let sub_name = format!("{name}-{}", sub.get_name());
            let page = sub
                .clone()
                .name(sub_name.clone())
                .version(env!("CARGO_PKG_VERSION"));
            pages.push((sub_name, page));
        }
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        std::fs::write(&path, out)
            .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Trace(TraceCommand::Show(a)) => show(a),
        Command::Trace(TraceCommand::List(a)) => list(a),
        Command::Trace(TraceCommand::Headers(a)) => headers(a),
        Command::Demo(a) => demo::run(a),
        Command::Ui(a) => ui::run(a),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "osprofiler", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => man(dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            let _ = writeln!(std::io::stderr(), "osprofiler: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Progress on standard error, only when a person is watching.
struct Progress {
    on: bool,
    started: Instant,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
            started: Instant::now(),
        }
    }

    fn say(&self, what: &str) {
        if self.on {
            let _ = write!(
                std::io::stderr(),
                "\r\x1b[K[{:>5.1}s] {what}",
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    fn done(&self) {
        if self.on {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

/// The store to read; `None` when it is the embedded default and nothing has been
/// recorded there yet (not an error: there is simply no trace).
fn open_store(args: &StoreArgs) -> Result<Option<Box<dyn TraceStore>>, Failure> {
    let backends = osprofiler_store::resolve(args.connection_string.as_deref(), None)?;
    if let Some(cs @ ConnectionString::Sqlite { path }) = backends.readable()
        && *cs == osprofiler_store::default_connection_string()
        && !path.exists()
    {
        return Ok(None);
    }
    Ok(Some(osprofiler_store::open_first_readable(
        &backends,
        &args.options()?,
    )?))
}

fn show(a: ShowArgs) -> Result<(), Failure> {
    let progress = Progress::new();
    let path = Path::new(&a.trace);
    let (report, trace_id) = if path.is_file() {
        progress.say(&format!("reading {}", path.display()));
        (report_from_file(path)?, a.trace.clone())
    } else {
        let id: Id = a.trace.parse().map_err(|_| {
            Failure(format!(
                "{:?} is neither a trace id (a UUID) nor a readable file",
                a.trace
            ))
        })?;
        let report = match open_store(&a.store)? {
            Some(mut store) => {
                progress.say(&format!("fetching trace {id} from {}", store.describe()));
                store.report(&id.to_string())?
            }
            None => None,
        };
        (report, id.to_string())
    };
    let report = report.filter(|r| !r.is_empty()).ok_or_else(|| {
        Failure(format!(
            "Trace with UUID {trace_id} not found. Please check the HMAC key used in the command."
        ))
    })?;
    progress.say(&format!("rendering {} points", report.len()));
    let dot_source = (a.dot || a.render_dot.is_some()).then(|| render_dot(&report));
    let title = format!("osprofiler trace {trace_id}");
    // The HTML page is written as it is made (`render_html_to`): the page of a big trace
    // is tens of megabytes, and holding it whole cost more than making it.
    let output = if a.html {
        None
    } else if a.dot {
        Some(dot_source.clone().unwrap_or_default())
    } else {
        Some(report.to_json_string())
    };
    match &a.out {
        Some(file) => {
            let written = std::fs::File::create(file).and_then(|f| match &output {
                Some(text) => (&f).write_all(text.as_bytes()),
                None => render_html_to(&report, &title, &f),
            });
            progress.done();
            written.map_err(|e| Failure(format!("cannot write {}: {e}", file.display())))?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            let written = match &output {
                Some(text) => out.write_all(text.as_bytes()),
                None => render_html_to(&report, &title, &mut out),
            };
            progress.done();
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = written.and_then(|()| out.write_all(b"\n"));
        }
    }
    if let (Some(file), Some(source)) = (&a.render_dot, dot_source) {
        render_with_graphviz(&source, file)?;
    }
    // The process ends next: freeing a big report's hundreds of thousands of
    // allocations one by one takes tens of milliseconds the exit does for nothing.
    std::mem::forget(report);
    std::mem::forget(output);
    Ok(())
}

/// A report from a file: osprofiler's report JSON (as `trace show --json` saves it, from
/// Python or from us), or stored events, one JSON object per line.
fn report_from_file(path: &Path) -> Result<Option<Report>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))?;
    let whole = parse_report_file(&text);
    if let Ok(v) = &whole
        && v.get("children").is_some()
    {
        let mut events = Vec::new();
        collect_payloads(v, &mut events);
        return Ok(Some(Report::from_events(events)));
    }
    // Events, one per line; a torn last line (a file still being written) is skipped.
    let report = Report::from_json_lines(&text);
    if report.is_empty() {
        // Why the text is no report, when it looked like one: truncated, nested too deep.
        let why = match whole {
            Err(e) if text.trim_start().starts_with(['{', '[']) => format!(" (as JSON: {e})"),
            _ => String::new(),
        };
        // Only the error is needed; a value nested a thousand levels deep is dropped here.
        return Err(Failure(format!(
            "{} holds neither an osprofiler report nor osprofiler events{why}",
            path.display()
        )));
    }
    Ok(Some(report))
}

/// Deepest nesting a report file may have: a report of the deepest tree the report keeps
/// ([`osprofiler_report::MAX_DEPTH`] points) nests two levels per point, plus the events'
/// own. Far below what the parser's recursion can take on the main thread's stack.
const MAX_FILE_DEPTH: usize = 2 * osprofiler_report::MAX_DEPTH + 128;

/// `text` as JSON, nested at most [`MAX_FILE_DEPTH`] deep. serde_json alone stops at 128
/// levels, which a saved report of a trace 60 points deep passes; without its limit, a
/// file nested 100,000 deep would overflow the stack. So the depth is measured first, by
/// a scan that does not recurse, and the limit lifted only for text within it.
fn parse_report_file(text: &str) -> Result<Value, String> {
    let depth = json_depth(text);
    if depth > MAX_FILE_DEPTH {
        return Err(format!(
            "nested {depth} levels deep, more than the {MAX_FILE_DEPTH} a report can have"
        ));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    // One value, then nothing but whitespace (as `serde_json::from_str` wants).
    let mut values = de.into_iter::<Value>();
    let v = match values.next() {
        Some(v) => v.map_err(|e| e.to_string())?,
        None => return Err("no JSON value".into()),
    };
    match values.next() {
        None => Ok(v),
        Some(Err(e)) => Err(e.to_string()),
        Some(Ok(_)) => Err("more than one JSON value".into()),
    }
}

/// The deepest nesting of `[` and `{` in `text`, strings skipped (an escaped quote does not
/// end one). Not a validation: unbalanced text only gives some depth.
fn json_depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The raw start/stop events kept in a report's nodes (`meta.raw_payload.*`).
fn collect_payloads(node: &Value, out: &mut Vec<Value>) {
    if let Some(info) = node.get("info").and_then(Value::as_object) {
        for (k, v) in info {
            if k.starts_with("meta.raw_payload.") {
                out.push(v.clone());
            }
        }
    }
    for child in node
        .get("children")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        collect_payloads(child, out);
    }
}

fn render_with_graphviz(source: &str, file: &Path) -> Result<(), Failure> {
    let format = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("pdf")
        .to_ascii_lowercase();
    let child = std::process::Command::new("dot")
        .arg(format!("-T{format}"))
        .arg("-o")
        .arg(file)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure(format!(
                "cannot render {}: Graphviz `dot` is not installed (e.g. apt-get install graphviz); the DOT source was output as usual",
                file.display()
            )));
        }
        Err(e) => return Err(Failure(format!("cannot run Graphviz `dot`: {e}"))),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(source.as_bytes());
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(Failure(format!(
            "Graphviz `dot` could not render {}: {}",
            file.display(),
            why.trim()
        )));
    }
    Ok(())
}

fn list(a: ListArgs) -> Result<(), Failure> {
    let Some(mut store) = open_store(&a.store)? else {
        if a.json {
            println!("[]");
        }
        let cs = osprofiler_store::default_connection_string();
        let _ = writeln!(
            std::io::stderr(),
            "No traces in {cs}: nothing has been recorded there yet."
        );
        return Ok(());
    };
    let errors_only = a.error_trace.unwrap_or(false);
    let query = TraceQuery {
        service: a.service.clone(),
        name: a.name.clone(),
        text: a.text.clone(),
        min_duration_us: a.min_duration,
        max_duration_us: a.max_duration,
        errors_only,
        since_us: a.since,
        until_us: a.until,
        offset: a.offset,
        limit: a.limit,
    };
    let traces = store.search_traces(&query)?.traces;
    if a.json {
        let list: Vec<Value> = traces.iter().map(|t| t.to_json()).collect();
        let mut out = serde_json::to_string_pretty(&list)?;
        out.push('\n');
        let _ = std::io::stdout().lock().write_all(out.as_bytes());
        return Ok(());
    }
    if traces.is_empty() {
        let what = if errors_only {
            "traces with errors"
        } else {
            "traces"
        };
        let filtered = if query
            == (TraceQuery {
                errors_only,
                ..TraceQuery::default()
            }) {
            ""
        } else {
            " matching the filters"
        };
        let _ = writeln!(
            std::io::stderr(),
            "No {what}{filtered} in {}.",
            store.describe()
        );
        return Ok(());
    }
    let _ = std::io::stdout()
        .lock()
        .write_all(list_table(&traces).as_bytes());
    Ok(())
}

/// The table of `trace list`: Python's two columns first (`Trace ID`, `Timestamp`), then
/// the summary's.
fn list_table(traces: &[TraceOverview]) -> String {
    let header = [
        "Trace ID",
        "Timestamp",
        "Duration",
        "Points",
        "Services",
        "Root point",
        "Error",
    ];
    let rows: Vec<[String; 7]> = traces
        .iter()
        .map(|t| {
            [
                t.base_id.clone(),
                t.started(),
                format!("{:.3} ms", t.duration_us() as f64 / 1000.0),
                t.points.to_string(),
                t.services.join(", "),
                t.root.as_ref().map(|r| r.label()).unwrap_or_default(),
                if t.error { "yes" } else { "" }.to_owned(),
            ]
        })
        .collect();
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let line = |cells: &[&str]| {
        let mut l = String::new();
        for (c, w) in cells.iter().zip(&widths) {
            // Numbers right-aligned would be nicer; left keeps Python's look.
            let pad = w - c.chars().count();
            l.push_str(&format!("| {c}{} ", " ".repeat(pad)));
        }
        l + "|\n"
    };
    let mut out = rule.clone();
    out.push_str(&line(&header));
    out.push_str(&rule);
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        out.push_str(&line(&cells));
    }
    out.push_str(&rule);
    out
}

fn headers(a: HeadersArgs) -> Result<(), Failure> {
    let key = HmacKey::new(&a.hmac_key)
        .ok_or_else(|| Failure("the HMAC key must not be empty".into()))?;
    let parse = |flag: &str, v: &Option<String>| -> Result<Option<Id>, Failure> {
        v.as_deref()
            .map(|s| {
                s.parse::<Id>().map_err(|_| {
                    Failure(format!("invalid {flag} {s:?}: expected a lowercase UUID"))
                })
            })
            .transpose()
    };
    let base = parse("--base-id", &a.base_id)?.unwrap_or_else(Id::new_v4);
    let parent = parse("--parent-id", &a.parent_id)?.unwrap_or(base);
    let h = TraceHeaders::sign(base, parent, &key);
    let _ = writeln!(
        std::io::stdout().lock(),
        "X-Trace-Info: {}\nX-Trace-HMAC: {}",
        h.info,
        h.hmac
    );
    let _ = writeln!(
        std::io::stderr(),
        "Trace ID: {base}\nShow it with: osprofiler trace show {base}"
    );
    Ok(())
}
