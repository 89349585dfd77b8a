//! A real OpenTelemetry collector: `rotel-agent` from the PyPI package `rotel`, in a
//! virtualenv made by `scripts/test-all` (`target/otel`), receiving OTLP over HTTP and
//! gRPC on free loopback ports and printing every span it decodes.

use crate::TempDir;
use crate::process::{Launch, kill_group};
use std::fs::OpenOptions;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable naming the collector's virtualenv.
pub const OTEL_VENV_ENV: &str = "OSPROFILER_OTEL_VENV";

const READY_TIMEOUT: Duration = Duration::from_secs(10);
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);
const ATTEMPTS: usize = 5;

// The agent runs under `process::tethered`: it dies with the test process.

/// `rotel-agent start --exporter blackhole --debug-log traces --debug-log-verbosity
/// detailed`, on 127.0.0.1 and two free ports (gRPC, HTTP). Its output (what it
/// decoded) goes to a file, read back as [`RotelSpan`]s. Killed on drop, and also when
/// the test process dies without unwinding.
///
/// ```no_run
/// use osprofiler_testkit::{need, Rotel};
///
/// let Some(rotel) = need("rotel collector", Rotel::start()) else { return };
/// let cs = rotel.http_connection_string(); // "otlp://127.0.0.1:PORT"
/// // ... the exporter under test sends spans ...
/// let spans = rotel
///     .wait_for(|spans| spans.iter().any(|s| s.name == "list_servers"), std::time::Duration::from_secs(10))
///     .unwrap();
/// assert_eq!(spans[0].service_name, "nova-api");
/// ```
#[derive(Debug)]
pub struct Rotel {
    child: Option<(Child, ChildStdin)>,
    agent: PathBuf,
    grpc_port: u16,
    http_port: u16,
    extra: Vec<String>,
    // No debug log of the spans: for benchmarks, where printing would be the bottleneck.
    quiet: bool,
    // Dropped last: the agent is killed first (see Drop).
    dir: TempDir,
}

impl Rotel {
    /// The `rotel-agent` program of the virtualenv named by `OSPROFILER_OTEL_VENV`, else
    /// of `<workspace>/target/otel`. Found once per test process.
    pub fn locate() -> Result<PathBuf, String> {
        static LOCATED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        LOCATED
            .get_or_init(|| agent_in(&crate::venv::root_from_env(OTEL_VENV_ENV, "target/otel")?))
            .clone()
    }

    /// Starts the collector and waits until both ports accept connections.
    pub fn start() -> Result<Rotel, String> {
        Rotel::start_with(&[])
    }

    /// Like [`start`](Self::start) with extra arguments of `rotel-agent start`, e.g.
    /// `&["--otlp-receiver-traces-disabled"]` for a collector that refuses spans.
    pub fn start_with(args: &[&str]) -> Result<Rotel, String> {
        let agent = Rotel::locate()?;
        let mut rotel = Rotel {
            child: None,
            agent,
            grpc_port: 0,
            http_port: 0,
            extra: args.iter().map(|s| s.to_string()).collect(),
            quiet: false,
            dir: TempDir::try_new()?,
        };
        rotel.launch_on_free_ports()?;
        Ok(rotel)
    }

    /// A collector that receives and discards, printing nothing: for measuring what is
    /// sent to it ([`spans`](Self::spans) stays empty).
    pub fn start_quiet() -> Result<Rotel, String> {
        let mut rotel = Rotel {
            child: None,
            agent: Rotel::locate()?,
            grpc_port: 0,
            http_port: 0,
            extra: Vec::new(),
            quiet: true,
            dir: TempDir::try_new()?,
        };
        rotel.launch_on_free_ports()?;
        Ok(rotel)
    }

    fn launch_on_free_ports(&mut self) -> Result<(), String> {
        crate::process::on_free_ports("rotel-agent", ATTEMPTS, || {
            self.launch(crate::free_port(), crate::free_port())
        })
    }

    /// The OTLP/HTTP port.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The OTLP/gRPC port.
    pub fn grpc_port(&self) -> u16 {
        self.grpc_port
    }

    /// `otlp://127.0.0.1:HTTP_PORT`.
    pub fn http_connection_string(&self) -> String {
        format!("otlp://127.0.0.1:{}", self.http_port)
    }

    /// `otlp+grpc://127.0.0.1:GRPC_PORT`.
    pub fn grpc_connection_string(&self) -> String {
        format!("otlp+grpc://127.0.0.1:{}", self.grpc_port)
    }

    /// Everything the collector printed so far, across restarts.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.output_path()).unwrap_or_default()
    }

    /// The spans the collector decoded so far, in the order it printed them.
    pub fn spans(&self) -> Vec<RotelSpan> {
        parse_spans(&self.output())
    }

    /// Waits until `done` holds for the spans decoded so far and returns them; after
    /// `timeout`, an error with the collector's output.
    pub fn wait_for(
        &self,
        mut done: impl FnMut(&[RotelSpan]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<RotelSpan>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return Ok(spans);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "rotel-agent: not the spans expected after {timeout:?} ({} decoded){}",
                    spans.len(),
                    crate::process::tail("output", self.output().as_bytes())
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Kills the collector (both ports stop answering), to test an exporter whose
    /// collector goes away. What it printed stays readable.
    pub fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.child.take() {
            kill_group(&mut child);
            drop(stdin);
        }
    }

    /// Starts the collector again on the same ports (after [`stop`](Self::stop), or
    /// kills the running one first).
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let (grpc, http) = (self.grpc_port, self.http_port);
        crate::process::on_same_ports(READY_TIMEOUT, || self.launch(grpc, http))
    }

    fn output_path(&self) -> PathBuf {
        self.dir.join("rotel.out")
    }

    fn launch(&mut self, grpc_port: u16, http_port: u16) -> Result<(), Launch> {
        let path = self.output_path();
        let start_len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|e| Launch::Failed(format!("rotel-agent: cannot create its output: {e}")))?;
        let grpc = format!("127.0.0.1:{grpc_port}");
        let http = format!("127.0.0.1:{http_port}");
        let mut cmd = crate::process::tethered("rotel-wrapper", &self.agent);
        cmd.arg("start")
            .args(["--otlp-grpc-endpoint", &grpc, "--otlp-http-endpoint", &http])
            .args(["--exporter", "blackhole"])
            .args(if self.quiet {
                &[][..]
            } else {
                &["--debug-log", "traces", "--debug-log-verbosity", "detailed"][..]
            })
            // Not the shared defaults under /tmp: collectors run side by side.
            .arg("--pid-file")
            .arg(self.dir.join("rotel.pid"))
            .arg("--log-file")
            .arg(self.dir.join("rotel.log"))
            .args(&self.extra)
            // No colours in what is parsed.
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(out.0))
            .stderr(Stdio::from(out.1));
        let mut child = crate::process::spawn_tethered(&mut cmd)
            .map_err(|e| Launch::Failed(crate::process::spawn_error("rotel-agent", &cmd, &e)))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        let output = |from: u64| {
            let all = std::fs::read(&path).unwrap_or_default();
            let from = usize::try_from(from).unwrap_or(0).min(all.len());
            String::from_utf8_lossy(&all[from..]).into_owned()
        };
        loop {
            if let Ok(Some(status)) = child.0.try_wait() {
                let log = output(start_len);
                kill_group(&mut child.0);
                return Err(crate::process::exited_early(
                    &format!("rotel-agent on ports {grpc_port}/{http_port}"),
                    status,
                    "output",
                    &log,
                    &["in use"],
                ));
            }
            if accepts(grpc_port) && accepts(http_port) {
                // Another program may hold a port: then ours fails to bind and exits.
                std::thread::sleep(Duration::from_millis(50));
                if let Ok(None) = child.0.try_wait() {
                    self.child = Some(child);
                    self.grpc_port = grpc_port;
                    self.http_port = http_port;
                    return Ok(());
                }
                continue;
            }
            if Instant::now() >= deadline {
                kill_group(&mut child.0);
                return Err(Launch::Failed(format!(
                    "rotel-agent on ports {grpc_port}/{http_port} did not listen within \
                     {READY_TIMEOUT:?}{}",
                    crate::process::tail("output", output(start_len).as_bytes())
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        PROBE_TIMEOUT,
    )
    .is_ok()
}

/// `<venv>/lib/python3.*/site-packages/rotel/rotel-agent`.
fn agent_in(root: &Path) -> Result<PathBuf, String> {
    let missing = || {
        format!(
            "no rotel-agent in the virtualenv {} (scripts/test-all makes it: python3 -m venv \
             target/otel && target/otel/bin/pip install rotel opentelemetry-proto)",
            root.display()
        )
    };
    let lib = std::fs::read_dir(root.join("lib")).map_err(|_| missing())?;
    for entry in lib.flatten() {
        if entry.file_name().to_string_lossy().starts_with("python") {
            let agent = entry.path().join("site-packages/rotel/rotel-agent");
            if agent.is_file() {
                return Ok(agent);
            }
        }
    }
    Err(missing())
}

/// One span as `rotel-agent --debug-log-verbosity detailed` printed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotelSpan {
    /// The resource's `service.name` (empty when it has none).
    pub service_name: String,
    /// Every resource attribute, value as printed (`Str(nova-api)`).
    pub resource: Vec<(String, String)>,
    /// The instrumentation scope: name, a space, version.
    pub scope: String,
    /// Hex.
    pub trace_id: String,
    /// Hex.
    pub id: String,
    /// Hex; empty for a span without parent.
    pub parent_id: String,
    /// The span's name.
    pub name: String,
    /// `SPAN_KIND_SERVER`, `SPAN_KIND_CLIENT`, `SPAN_KIND_INTERNAL`, …
    pub kind: String,
    /// Unix nanoseconds, as printed.
    pub start_time: String,
    /// Unix nanoseconds, as printed.
    pub end_time: String,
    /// `STATUS_CODE_ERROR` and the like; `None` when unset (not printed).
    pub status_code: Option<String>,
    /// The status message, when a status is printed.
    pub status_message: Option<String>,
    /// The attributes in order, values as printed: `Str(GET)`, `Int(8774)`, `Bool(true)`.
    pub attributes: Vec<(String, String)>,
    /// The span's events.
    pub events: Vec<RotelEvent>,
}

/// An event of a [`RotelSpan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotelEvent {
    /// Its name.
    pub name: String,
    /// Unix nanoseconds, as printed.
    pub timestamp: String,
    /// Its attributes, values as printed.
    pub attributes: Vec<(String, String)>,
}

impl RotelSpan {
    /// An attribute's value as printed (`Str(GET)`, `Int(8774)`).
    pub fn attr(&self, key: &str) -> Option<&str> {
        lookup(&self.attributes, key)
    }

    /// A string attribute's value (`GET` for `Str(GET)`); `None` for other types.
    pub fn str_attr(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(unwrap_str)
    }
}

impl RotelEvent {
    /// A string attribute's value (`x` for `Str(x)`).
    pub fn str_attr(&self, key: &str) -> Option<&str> {
        lookup(&self.attributes, key).and_then(unwrap_str)
    }
}

fn lookup<'a>(attrs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn unwrap_str(v: &str) -> Option<&str> {
    v.strip_prefix("Str(")?.strip_suffix(')')
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Other,
    ResourceAttrs,
    Span,
    SpanAttrs,
    Event,
    EventAttrs,
}

/// Parses the spans out of `rotel-agent`'s detailed debug output (one line per field;
/// string values that contain line breaks are not supported).
pub fn parse_spans(output: &str) -> Vec<RotelSpan> {
    let mut spans = Vec::new();
    let mut resource: Vec<(String, String)> = Vec::new();
    let mut scope = String::new();
    let mut current: Option<RotelSpan> = None;
    let mut section = Section::Other;
    for raw in output.lines() {
        let line = raw.trim();
        if line.starts_with("ResourceSpans #") {
            spans.extend(current.take());
            resource.clear();
            scope.clear();
            section = Section::Other;
        } else if line == "Resource attributes:" {
            section = Section::ResourceAttrs;
        } else if line.starts_with("ScopeSpans #") {
            spans.extend(current.take());
            section = Section::Other;
        } else if let Some(s) = line.strip_prefix("InstrumentationScope ") {
            scope = s.to_string();
        } else if line.starts_with("Span #") {
            spans.extend(current.take());
            let service_name = lookup(&resource, "service.name")
                .and_then(unwrap_str)
                .unwrap_or("")
                .to_string();
            current = Some(RotelSpan {
                service_name,
                resource: resource.clone(),
                scope: scope.clone(),
                ..RotelSpan::default()
            });
            section = Section::Span;
        } else if let Some(span) = current.as_mut() {
            span_line(span, line, &mut section);
        } else if section == Section::ResourceAttrs
            && let Some((k, v)) = arrow(line)
        {
            resource.push((k, v));
        }
    }
    spans.extend(current);
    spans
}

fn span_line(span: &mut RotelSpan, line: &str, section: &mut Section) {
    match line {
        "Attributes:" => *section = Section::SpanAttrs,
        "Events:" | "Links:" => *section = Section::Other,
        "-> Attributes::" => *section = Section::EventAttrs,
        _ if line.starts_with("SpanEvent #") => {
            span.events.push(RotelEvent::default());
            *section = Section::Event;
        }
        _ => match *section {
            Section::SpanAttrs => span.attributes.extend(arrow(line)),
            Section::EventAttrs => {
                if let (Some(e), Some(kv)) = (span.events.last_mut(), arrow(line)) {
                    e.attributes.push(kv);
                }
            }
            Section::Event => {
                if let (Some(e), Some((k, v))) = (span.events.last_mut(), arrow(line)) {
                    match k.as_str() {
                        "Name" => e.name = v,
                        "Timestamp" => e.timestamp = v,
                        _ => {}
                    }
                }
            }
            Section::Span => {
                if let Some((k, v)) = line.split_once(':') {
                    let v = v.trim().to_string();
                    match k.trim() {
                        "Trace ID" => span.trace_id = v,
                        "Parent ID" => span.parent_id = v,
                        "ID" => span.id = v,
                        "Name" => span.name = v,
                        "Kind" => span.kind = v,
                        "Start time" => span.start_time = v,
                        "End time" => span.end_time = v,
                        "Status code" => span.status_code = Some(v),
                        "Status message" => span.status_message = Some(v),
                        _ => {}
                    }
                }
            }
            Section::Other | Section::ResourceAttrs => {}
        },
    }
}

/// `-> key: value`.
fn arrow(line: &str) -> Option<(String, String)> {
    let (k, v) = line.strip_prefix("-> ")?.split_once(": ")?;
    Some((k.to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real output of rotel-agent 0.0.1-alpha10 (the PyPI wheel 0.0.1a15).
    const OUTPUT: &str = "\
2026-12-01T20:11:49.669546Z  INFO Starting Rotel. grpc_endpoint=\"127.0.0.1:54317\" http_endpoint=\"127.0.0.1:54318\"
ResourceSpans #0
Resource SchemaURL: 
Resource attributes:
     -> service.name: Str(nova-api)
     -> host.name: Str(host-a)
ScopeSpans #0
ScopeSpans SchemaURL: 
InstrumentationScope osprofiler 0.1.0
Span #0
    Trace ID       : 11111111222233334444555555555555
    Parent ID      : 8aaa000000000002
    ID             : 8aaa000000000001
    Name           : list_servers
    Kind           : SPAN_KIND_CLIENT
Start time: 1767225600000100000
End time: 1767225600000900000
    Status code    : STATUS_CODE_ERROR
    Status message : No valid host: was found
Attributes:
     -> s: Str(x y)
     -> i: Int(42)
Events:
SpanEvent #0
     -> Name: exception
     -> Timestamp: 1767225600000900000
     -> DroppedAttributesCount: 0
     -> Attributes::
          -> exception.type: Str(NoValidHost)
Span #1
    Trace ID       : 11111111222233334444555555555555
    Parent ID      : 
    ID             : 8aaa000000000003
    Name           : WSGI_GET_/v2/servers
    Kind           : SPAN_KIND_SERVER
Start time: 1767225600000100000
End time: 1767225600000900000
Attributes:
     -> b: Bool(true)
ResourceSpans #1
Resource SchemaURL: 
Resource attributes:
     -> service.name: Str(nova-compute)
ScopeSpans #0
ScopeSpans SchemaURL: 
InstrumentationScope osprofiler 0.1.0
Span #0
    Trace ID       : 11111111222233334444555555555555
    Parent ID      : 8aaa000000000003
    ID             : 8aaa000000000004
    Name           : rpc
    Kind           : SPAN_KIND_INTERNAL
Start time: 1767225600000100000
End time: 1767225600000900000
";

    #[test]
    fn parses_detailed_output() {
        let spans = parse_spans(OUTPUT);
        assert_eq!(spans.len(), 3);
        let s = &spans[0];
        assert_eq!(
            (s.service_name.as_str(), s.scope.as_str()),
            ("nova-api", "osprofiler 0.1.0")
        );
        assert_eq!(s.trace_id, "11111111222233334444555555555555");
        assert_eq!(
            (s.id.as_str(), s.parent_id.as_str()),
            ("8aaa000000000001", "8aaa000000000002")
        );
        assert_eq!(
            (s.name.as_str(), s.kind.as_str()),
            ("list_servers", "SPAN_KIND_CLIENT")
        );
        assert_eq!(s.start_time, "1767225600000100000");
        assert_eq!(s.status_code.as_deref(), Some("STATUS_CODE_ERROR"));
        assert_eq!(
            s.status_message.as_deref(),
            Some("No valid host: was found")
        );
        assert_eq!(s.str_attr("s"), Some("x y"));
        assert_eq!(s.attr("i"), Some("Int(42)"));
        assert_eq!(s.str_attr("i"), None);
        assert_eq!(s.events.len(), 1);
        assert_eq!(s.events[0].name, "exception");
        assert_eq!(s.events[0].timestamp, "1767225600000900000");
        assert_eq!(s.events[0].str_attr("exception.type"), Some("NoValidHost"));
        let wsgi = &spans[1];
        assert_eq!(
            (wsgi.parent_id.as_str(), wsgi.status_code.as_deref()),
            ("", None)
        );
        assert_eq!(wsgi.attr("b"), Some("Bool(true)"));
        assert!(wsgi.events.is_empty());
        assert_eq!(spans[2].service_name, "nova-compute");
        assert_eq!(spans[2].resource.len(), 1);
    }

    #[test]
    fn start_receive_stop_restart() {
        let Some(mut rotel) = crate::need("rotel collector", Rotel::start()) else {
            return;
        };
        assert!(accepts(rotel.http_port()) && accepts(rotel.grpc_port()));
        let (g, h) = (rotel.grpc_port(), rotel.http_port());
        rotel.stop();
        assert!(!accepts(h) && !accepts(g));
        rotel.restart().unwrap();
        assert_eq!((rotel.grpc_port(), rotel.http_port()), (g, h));
        assert!(accepts(h) && accepts(g));
        assert!(
            rotel.output().contains("Starting Rotel"),
            "{}",
            rotel.output()
        );
    }

    #[test]
    fn dies_with_its_parent() {
        let Some(mut rotel) = crate::need("rotel collector", Rotel::start()) else {
            return;
        };
        let port = rotel.http_port();
        let (mut child, stdin) = rotel.child.take().expect("running");
        // What the kernel does to the pipe when the test process dies, however it dies.
        drop(stdin);
        let deadline = Instant::now() + Duration::from_secs(5);
        while accepts(port) {
            if Instant::now() >= deadline {
                kill_group(&mut child);
                panic!("the agent outlived the end of its pipe");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
    }
}
