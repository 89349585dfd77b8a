//! `messaging://`: traces as OpenStack notifications on the message bus (RabbitMQ, AMQP
//! 0-9-1), as Python osprofiler's `messaging` driver sends and reads them, so Python
//! services and tools read what we publish and we read what they publish.
//!
//! The broker is oslo.messaging's transport URL, given apart from the connection string
//! ([`Options::transport_url`]: the CLI's `--transport-url`, a service's
//! `[oslo_messaging_notifications]` or `[DEFAULT]` `transport_url`, see
//! [`Options::with_oslo_messaging`]; else `$OSPROFILER_TRANSPORT_URL`).
//!
//! # What is published
//!
//! Each event is one message, exactly as oslo.messaging's notifier sends it for Python
//! osprofiler (`Notifier(driver="messaging", topics=["profiler"])`, `info()`):
//!
//! - to the topic exchange named by [`Options::control_exchange`] (`openstack`), routing key
//!   `profiler.info`; the exchange is declared as oslo.messaging declares it (topic, not
//!   durable, not auto-deleted: `amqp_durable_queues` and `amqp_auto_delete` off), and so is
//!   the queue `profiler.info`, bound to it with that key, as oslo's notifier does so that
//!   notifications wait for a reader;
//! - properties `content_type` `application/json`, `content_encoding` `utf-8`, empty
//!   headers, `delivery_mode` 2, `priority` 0 (what kombu sets);
//! - body: `{"message_id": <uuid4>, "publisher_id": <host>, "event_type":
//!   "profiler.<service>", "priority": "INFO", "payload": <the event, with project and
//!   service>, "timestamp": "YYYY-MM-DD HH:MM:SS.ffffff", "_unique_id": <uuid4 hex>}`.
//!   Python osprofiler uses oslo's `messaging` driver, whose message is this notification
//!   itself; with [`Options::messaging_v2`] it is wrapped in the 2.0 envelope of oslo's
//!   `messagingv2` driver, `{"oslo.version": "2.0", "oslo.message": "<the same as JSON
//!   text>"}`. Every reader (oslo.messaging's, ours) takes both.
//!
//! Publisher confirms are on: a batch counts as written once the broker has taken every
//! message of it; a batch the broker did not confirm, or that failed on the way, is counted
//! lost by the exporter (logged once per interval) and the sink reconnects by itself, after
//! a pause that doubles from 50 ms up to 5 s while the broker stays away.
//!
//! # What the bus keeps, and what it cannot
//!
//! The bus is a queue, not a store. It keeps each event until a reader takes it, in one
//! queue (`profiler.info`) shared by every trace and every service; nothing expires it
//! (unless a broker policy does) and it is kept only in the broker's memory (the queue is
//! not durable, as oslo.messaging declares it: a broker restart loses what waits there).
//!
//! - Reading a trace ([`TraceStore::event_texts`], `osprofiler trace show`) consumes the
//!   queue with manual acknowledgements: it acknowledges (removes) that trace's events
//!   only and hands every other message back to the queue unharmed, in its place, when it
//!   is done (`basic.nack` with `requeue`). Python's reader acknowledges every message it
//!   sees, so reading one trace with Python's `osprofiler trace show` loses every other
//!   trace waiting on the topic.
//! - So a trace can be read **once**: its events are gone afterwards. Save the report
//!   (`trace show --json --out trace.json`) to look at it again.
//! - The reader waits until [`Options::messaging_idle_timeout`] (1 s) has passed without a
//!   new event of the trace, as Python's does, so it gets the events of a request still
//!   running when it started, but not those published later than that.
//! - One reader at a time: while a read runs, the other traces' messages are held by it
//!   (not lost: they return to the queue when it ends, or when its connection drops); a
//!   second reader meanwhile sees none of them. Every message of the queue passes through
//!   the reader, so a read costs as much as what waits on the bus.
//! - No listing: the bus has no index of traces ([`TraceStore::list_traces`] and
//!   `trace list` say so).
//!
//! Where traces should be kept, read many times, listed, or looked at by several people,
//! publish to the bus and let one consumer store them in Redis or SQL (e.g. a small service
//! that reads `profiler.info` and writes each event through this crate's `redis://` sink),
//! or point the services at Redis or SQL directly: `messaging://` is for deployments where
//! the bus is the only shared infrastructure, and traces are read soon after they are
//! taken.
//!
//! # The client
//!
//! [lapin](https://docs.rs/lapin) on a small tokio runtime owned by each sink and store
//! (one worker thread: lapin's own I/O thread drives its socket through the runtime's
//! reactor, which a current-thread runtime would only run while the exporter waits on it).
//! TLS with the `tls` feature (`amqps://…`, `rabbit://…?ssl=true`; see [`TransportUrl`]):
//! lapin's rustls (ring), the system's roots plus the URL's `ssl_ca_file`, and the client's
//! certificate (`ssl_cert_file`, `ssl_key_file`) for a broker that verifies its clients.
//!
//! ```no_run
//! use osprofiler_store::{ConnectionString, Options, TransportUrl, open, sink};
//! let opts = Options {
//!     transport_url: Some("rabbit://guest:guest@127.0.0.1:5672/".parse::<TransportUrl>().unwrap()),
//!     ..Options::default()
//! };
//! let _guard = osprofiler::notifier::set_boxed_sink(sink(&ConnectionString::Messaging, &opts).unwrap());
//! // ... traced code; later, in another process:
//! let mut store = open(&ConnectionString::Messaging, &opts).unwrap();
//! let report = store.report("4f5c5a3e-0c1b-4b53-9f0e-52e4b0c7a1d2").unwrap(); // consumes the trace
//! ```

use crate::backoff::Backoff;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::FieldTable;
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use osprofiler::notifier::{Sink, SinkError};
use osprofiler::{Event, Id, Timestamp};
use serde_json::Value;

use crate::{OpenError, Options, ReadError, TraceStore, TraceSummary, TransportUrl};

/// Environment variable naming the transport URL when [`Options::transport_url`] is
/// `None` (e.g. a service set up by [`crate::init_from_conf`], whose `[profiler]` section
/// has no transport URL).
pub const TRANSPORT_URL_ENV: &str = "OSPROFILER_TRANSPORT_URL";

/// The notifier's topic and priority: oslo.messaging's queue and routing key.
pub const ROUTING_KEY: &str = "profiler.info";

/// What the sink and the store share: where the broker is and how to declare its
/// exchange and queue.
struct Bus {
    url: TransportUrl,
    exchange: String,
    timeout: Duration,
    rt: tokio::runtime::Runtime,
}

/// An open connection and its channel.
struct Link {
    conn: Connection,
    ch: Channel,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type Publish<'a> = BoxFuture<'a, lapin::Result<lapin::PublisherConfirm>>;

/// Runs `futs` together and returns their results in order, or the first error. All are
/// polled once, in order, before any is polled again (so a publish's frames are queued in
/// batch order); afterwards polling resumes at the first unfinished one and stops at the
/// first still pending (they finish in order: this keeps a batch linear, not quadratic).
async fn all_in_order(futs: &mut [Publish<'_>]) -> Result<Vec<lapin::PublisherConfirm>, String> {
    let mut out: Vec<Option<lapin::PublisherConfirm>> = Vec::with_capacity(futs.len());
    out.resize_with(futs.len(), || None);
    let mut first = true;
    let mut next = 0usize;
    std::future::poll_fn(|cx| {
        let mut i = next;
        while i < futs.len() {
            if out[i].is_none() {
                match futs[i].as_mut().poll(cx) {
                    std::task::Poll::Ready(Ok(c)) => out[i] = Some(c),
                    std::task::Poll::Ready(Err(e)) => {
                        return std::task::Poll::Ready(Err(e.to_string()));
                    }
                    std::task::Poll::Pending if first => {}
                    std::task::Poll::Pending => break,
                }
            }
            if out[i].is_some() && i == next {
                next += 1;
            }
            i += 1;
        }
        first = false;
        if next == futs.len() {
            std::task::Poll::Ready(Ok(()))
        } else {
            std::task::Poll::Pending
        }
    })
    .await?;
    Ok(out.into_iter().flatten().collect())
}

impl Bus {
    fn new(opts: &Options) -> Result<Bus, OpenError> {
        let from_env = || {
            std::env::var(TRANSPORT_URL_ENV)
                .ok()
                .filter(|u| !u.trim().is_empty())
                .map(|u| {
                    u.parse::<TransportUrl>()
                        .map_err(|e| OpenError::Unavailable {
                            store: "messaging://".into(),
                            reason: format!("${TRANSPORT_URL_ENV}: {e}"),
                        })
                })
        };
        let url = match opts.transport_url.clone() {
            Some(u) => u,
            None => from_env().transpose()?.ok_or_else(|| OpenError::Unavailable {
                store: "messaging://".into(),
                reason: format!("no transport URL: give the broker with --transport-url rabbit://user:password@host:5672/ (a service's [oslo_messaging_notifications] or [DEFAULT] transport_url, or ${TRANSPORT_URL_ENV})"),
            })?,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("osprofiler-amqp")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| OpenError::Unavailable {
                store: format!("messaging:// ({url})"),
                reason: format!("cannot start the AMQP runtime: {e}"),
            })?;
        Ok(Bus {
            url,
            exchange: opts.control_exchange.clone(),
            timeout: opts.socket_timeout.max(Duration::from_millis(10)),
            rt,
        })
    }

    fn name(&self) -> String {
        format!("messaging:// ({})", self.url)
    }

    /// `e`'s text with every password of the URL hidden: lapin's errors do not quote
    /// them, but a message from elsewhere must not either.
    fn scrub(&self, e: impl std::fmt::Display) -> String {
        let mut text = e.to_string();
        for h in &self.url.hosts {
            if !h.password.is_empty() {
                text = text.replace(&h.password, "***");
            }
        }
        text
    }

    /// Runs `f` on the runtime, failing after `timeout`.
    fn run<'a, T>(
        &'a self,
        timeout: Duration,
        f: BoxFuture<'a, Result<T, String>>,
    ) -> Result<T, String> {
        self.rt.block_on(async {
            match tokio::time::timeout(timeout, f).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {timeout:?}")),
            }
        })
    }

    /// Connects to the first node that answers, opens a channel and declares the
    /// exchange and the queue as oslo.messaging does.
    fn connect(&self) -> Result<Link, String> {
        let mut last = String::from("no broker host");
        let tls = self.tls_config()?;
        for h in &self.url.hosts {
            let uri = AMQPUri {
                scheme: if self.url.tls {
                    AMQPScheme::AMQPS
                } else {
                    AMQPScheme::AMQP
                },
                authority: AMQPAuthority {
                    userinfo: AMQPUserInfo {
                        username: h.username.clone(),
                        password: h.password.clone(),
                    },
                    host: h.host.clone(),
                    port: h.port,
                },
                vhost: self.url.virtual_host.clone(),
                query: AMQPQueryString::default(),
            };
            let exchange = self.exchange.clone();
            let tls = tls.clone();
            let r = self.run(
                self.timeout,
                Box::pin(async move {
                    let runtime = lapin::runtime::default_runtime().map_err(|e| e.to_string())?;
                    let conn = Connection::connect_uri_with_config(
                        uri,
                        ConnectionProperties::default(),
                        tls,
                        runtime,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
                    declare(&ch, &exchange).await.map_err(|e| e.to_string())?;
                    Ok(Link { conn, ch })
                }),
            );
            match r {
                Ok(link) => return Ok(link),
                Err(e) => last = format!("{h}: {}", self.scrub(e)),
            }
        }
        Err(last)
    }

    /// lapin's TLS settings: the system's roots, and `ssl_ca_file`'s certificates too;
    /// the client's certificate and key (`ssl_cert_file`, `ssl_key_file`) if given.
    fn tls_config(&self) -> Result<OwnedTLSConfig, String> {
        if !self.url.tls {
            return Ok(OwnedTLSConfig::default());
        }
        #[cfg(feature = "tls")]
        {
            let read = |path: &std::path::Path, what: &str| {
                std::fs::read(path)
                    .map_err(|e| format!("cannot read {what} from {}: {e}", path.display()))
            };
            let cert_chain = match &self.url.ca_file {
                Some(path) => {
                    // Checked here: lapin would skip what it cannot parse.
                    crate::tls::root_certs(Some(path), "ssl_ca_file")?;
                    let pem = read(path, "CA certificates")?;
                    Some(String::from_utf8(pem).map_err(|_| {
                        format!(
                            "cannot read CA certificates from {}: not PEM",
                            path.display()
                        )
                    })?)
                }
                None => None,
            };
            let identity = match &self.url.cert_file {
                Some(cert) => Some(client_identity(cert, self.url.key_file.as_deref())?),
                None => None,
            };
            Ok(OwnedTLSConfig {
                identity,
                cert_chain,
            })
        }
        #[cfg(not(feature = "tls"))]
        Err("amqps: TLS needs osprofiler-store's `tls` feature".into())
    }

    fn close(&self, link: Link) {
        let _ = self.run(
            self.timeout,
            Box::pin(async move {
                let _ = link.conn.close(200, "OK".into()).await;
                Ok(())
            }),
        );
    }
}

/// oslo.messaging's declarations for a notification: the control exchange (topic, not
/// durable, not auto-deleted) and the queue `profiler.info` bound to it.
async fn declare(ch: &Channel, exchange: &str) -> lapin::Result<()> {
    ch.exchange_declare(
        exchange.into(),
        lapin::ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: false,
            auto_delete: false,
            ..ExchangeDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(
        ROUTING_KEY.into(),
        QueueDeclareOptions {
            durable: false,
            auto_delete: false,
            exclusive: false,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await?;
    ch.queue_bind(
        ROUTING_KEY.into(),
        exchange.into(),
        ROUTING_KEY.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
}

/// The properties kombu gives a JSON message.
fn properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_headers(FieldTable::default())
        .with_delivery_mode(2)
        .with_priority(0)
}

/// Appends the message of `e` to `out`: the notification oslo.messaging's notifier
/// builds (`json.dumps` separators, its key order), wrapped in the 2.0 envelope with `v2`.
pub fn write_notification(out: &mut Vec<u8>, e: &Event, v2: bool, now: Timestamp) {
    let mut msg = Vec::with_capacity(512);
    msg.extend_from_slice(b"{\"message_id\": \"");
    msg.extend_from_slice(Id::new_v4().to_string().as_bytes());
    msg.extend_from_slice(b"\", \"publisher_id\": ");
    json_string(&mut msg, e.host().unwrap_or("unknown"));
    msg.extend_from_slice(b", \"event_type\": ");
    // Python formats a missing service as `None`.
    json_string(
        &mut msg,
        &format!("profiler.{}", e.service.as_deref().unwrap_or("None")),
    );
    msg.extend_from_slice(b", \"priority\": \"INFO\", \"payload\": ");
    write_payload(&mut msg, e);
    msg.extend_from_slice(b", \"timestamp\": \"");
    write_oslo_time(&mut msg, now);
    msg.extend_from_slice(b"\", \"_unique_id\": \"");
    msg.extend_from_slice(Id::new_v4().simple().as_bytes());
    msg.extend_from_slice(b"\"}");
    if v2 {
        out.extend_from_slice(b"{\"oslo.version\": \"2.0\", \"oslo.message\": ");
        json_string(out, &String::from_utf8_lossy(&msg));
        out.push(b'}');
    } else {
        out.extend_from_slice(&msg);
    }
}

/// The payload: the event as Python's notifier has it when it sends it, `project` and
/// `service` always present (null when unset).
fn write_payload(out: &mut Vec<u8>, e: &Event) {
    if e.project.is_some() && e.service.is_some() {
        e.write_json(out);
        return;
    }
    let mut full = e.clone();
    let mut text = Vec::new();
    full.project.get_or_insert_with(|| "".into());
    full.service.get_or_insert_with(|| "".into());
    full.write_json(&mut text);
    // Rare (a sink fed by hand): rebuilt as a map to write nulls where nothing was set.
    match serde_json::from_slice::<serde_json::Map<String, Value>>(&text) {
        Ok(mut map) => {
            if e.project.is_none() {
                map.insert("project".into(), Value::Null);
            }
            if e.service.is_none() {
                map.insert("service".into(), Value::Null);
            }
            let _ = osprofiler::json::write_python_json(out, &map);
        }
        Err(_) => out.extend_from_slice(&text),
    }
}

/// `str(datetime.utcnow())`: `YYYY-MM-DD HH:MM:SS.ffffff`, without the fraction when it is
/// zero.
fn write_oslo_time(out: &mut Vec<u8>, t: Timestamp) {
    let start = out.len();
    t.write_to(out);
    if let Some(b) = out.get_mut(start + 10) {
        *b = b' ';
    }
    if t.as_micros().rem_euclid(1_000_000) == 0 {
        out.truncate(start + 19);
    }
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    let _ = osprofiler::json::write_python_json(out, &s);
}

/// The write side: each batch published with confirms, on one channel.
struct MessagingSink {
    bus: Bus,
    name: String,
    v2: bool,
    link: Option<Link>,
    backoff: Backoff,
    bodies: Vec<Vec<u8>>,
}

/// Opens the write side. It connects at once to report a refused login now; a broker
/// that is merely down is retried from the exporter thread (a service must start while
/// its broker is away).
pub(crate) fn open_sink(opts: &Options) -> Result<Box<dyn Sink>, OpenError> {
    let bus = Bus::new(opts)?;
    let name = bus.name();
    let mut sink = MessagingSink {
        name,
        v2: opts.messaging_v2,
        link: None,
        backoff: Backoff::default(),
        bodies: Vec::new(),
        bus,
    };
    match sink.bus.connect() {
        Ok(link) => sink.link = Some(link),
        // Refused for good: the login, or TLS (a certificate not trusted, a CA file that
        // cannot be read, TLS not built in), which trying again will not fix.
        Err(e)
            if [
                "ACCESS_REFUSED",
                "NOT_ALLOWED",
                "invalid peer certificate",
                "CA certificates",
                "client certificate",
                "client key",
                "private key",
                // The broker's TLS alert: a client certificate missing or not trusted.
                "received fatal alert",
                "`tls` feature",
            ]
            .iter()
            .any(|w| e.contains(w)) =>
        {
            return Err(OpenError::Unavailable {
                store: sink.name.clone(),
                reason: e,
            });
        }
        Err(e) => sink.failed(e),
    }
    Ok(Box::new(sink))
}

impl MessagingSink {
    fn failed(&mut self, e: String) {
        self.backoff.failed(e);
    }

    fn error(&self, e: impl std::fmt::Display) -> SinkError {
        SinkError::msg(format!("{}: {e}", self.name))
    }

    fn publish(&mut self, link: &Link) -> Result<(), String> {
        let exchange = self.bus.exchange.clone();
        let bodies = &self.bodies;
        let ch = &link.ch;
        // A batch gets the socket timeout per 1,000 messages, at least one.
        let timeout = self
            .bus
            .timeout
            .saturating_mul(u32::try_from(bodies.len() / 1000 + 1).unwrap_or(u32::MAX));
        self.bus.run(
            timeout,
            Box::pin(async move {
                // Every publish handed to lapin at once, in order (each waits for its frames
                // to be written by lapin's I/O thread: one after the other, that thread
                // hand-off per message was most of the time).
                let mut pending: Vec<Publish<'_>> = bodies
                    .iter()
                    .map(|body| {
                        Box::pin(ch.basic_publish(
                            exchange.as_str().into(),
                            ROUTING_KEY.into(),
                            BasicPublishOptions::default(),
                            body,
                            properties(),
                        )) as Publish<'_>
                    })
                    .collect();
                let confirms = all_in_order(&mut pending).await?;
                let mut nacked = 0usize;
                for c in confirms {
                    match c.await.map_err(|e| e.to_string())? {
                        Confirmation::Ack(_) | Confirmation::NotRequested => {}
                        Confirmation::Nack(_) => nacked += 1,
                    }
                }
                if nacked > 0 {
                    return Err(format!("the broker refused {nacked} messages (nack)"));
                }
                Ok(())
            }),
        )
    }
}

impl Sink for MessagingSink {
    fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        if self.link.is_none() {
            if let Some(waiting) = self.backoff.waiting() {
                return Err(self.error(waiting));
            }
            match self.bus.connect() {
                Ok(link) => self.link = Some(link),
                Err(e) => {
                    let err = self.error(&e);
                    self.failed(e);
                    return Err(err);
                }
            }
        }
        let now = Timestamp::now();
        self.bodies.resize_with(events.len(), Vec::new);
        self.bodies.truncate(events.len());
        for (body, e) in self.bodies.iter_mut().zip(events) {
            body.clear();
            write_notification(body, e, self.v2, now);
        }
        let Some(link) = self.link.take() else {
            return Err(self.error("not connected"));
        };
        // Confirms on: set once per channel (idempotent, cheap to repeat after a reconnect).
        let confirm = self.bus.run(
            self.bus.timeout,
            Box::pin(async {
                link.ch
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(|e| e.to_string())
            }),
        );
        match confirm.and_then(|()| self.publish(&link)) {
            Ok(()) => {
                self.backoff.succeeded();
                self.link = Some(link);
                Ok(())
            }
            Err(e) => {
                let e = self.bus.scrub(e);
                let err = self.error(&e);
                self.bus.close(link);
                self.failed(e);
                Err(err)
            }
        }
    }
}

impl Drop for MessagingSink {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            self.bus.close(link);
        }
    }
}

/// The read side: one trace's events taken off the queue, the others left there.
struct MessagingStore {
    bus: Bus,
    name: String,
    idle: Duration,
}

pub(crate) fn open_store(opts: &Options) -> Result<Box<dyn TraceStore>, OpenError> {
    let bus = Bus::new(opts)?;
    let name = bus.name();
    // Check the broker and the login now, as the other stores do.
    let link = bus.connect().map_err(|reason| OpenError::Unavailable {
        store: name.clone(),
        reason,
    })?;
    bus.close(link);
    Ok(Box::new(MessagingStore {
        bus,
        name,
        idle: opts.messaging_idle_timeout,
    }))
}

/// The event inside a message, as JSON, and its base id: the payload of an
/// oslo.messaging notification, 1.0 (the notification itself) or 2.0 (in `oslo.message`).
pub fn parse_notification(body: &[u8]) -> Option<(String, serde_json::Map<String, Value>)> {
    let mut msg: serde_json::Map<String, Value> = serde_json::from_slice(body).ok()?;
    if let Some(Value::String(inner)) = msg.get("oslo.message") {
        msg = serde_json::from_str(inner).ok()?;
    }
    match msg.remove("payload")? {
        Value::Object(p) => {
            let base = p.get("base_id")?.as_str()?.to_owned();
            Some((base, p))
        }
        _ => None,
    }
}

impl MessagingStore {
    fn read(&self, base_id: &str) -> Result<Vec<String>, String> {
        let link = self.bus.connect()?;
        let idle = self.idle;
        let want = base_id.to_owned();
        let ch = link.ch.clone();
        // The read takes as long as events keep coming; the timeout only guards a broker
        // that stops answering.
        let r = self.bus.rt.block_on(async move {
            // No prefetch limit: the other traces' messages stay unacknowledged until the
            // end, and a limit would stop the deliveries once it held that many.
            ch.basic_qos(0, BasicQosOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            let mut consumer = ch
                .basic_consume(
                    ROUTING_KEY.into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            let mut found = Vec::new();
            let mut last_other: Option<u64> = None;
            let mut deadline = tokio::time::Instant::now() + idle;
            loop {
                let next = std::future::poll_fn(|cx| {
                    futures_core::Stream::poll_next(Pin::new(&mut consumer), cx)
                });
                let delivery = match tokio::time::timeout_at(deadline, next).await {
                    Err(_) | Ok(None) => break,
                    Ok(Some(d)) => d.map_err(|e| e.to_string())?,
                };
                match parse_notification(&delivery.data) {
                    Some((base, payload)) if base == want => {
                        found.push(Value::Object(payload).to_string());
                        ch.basic_ack(delivery.delivery_tag, BasicAckOptions::default())
                            .await
                            .map_err(|e| e.to_string())?;
                        deadline = tokio::time::Instant::now() + idle;
                    }
                    _ => last_other = Some(delivery.delivery_tag),
                }
            }
            // Every other message back to the queue, in its place.
            if let Some(tag) = last_other {
                ch.basic_nack(
                    tag,
                    BasicNackOptions {
                        multiple: true,
                        requeue: true,
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(found)
        });
        self.bus.close(link);
        r.map_err(|e| self.bus.scrub(e))
    }
}

impl TraceStore for MessagingStore {
    fn event_texts(&mut self, base_id: &str) -> Result<Vec<String>, ReadError> {
        self.read(base_id).map_err(|reason| ReadError {
            store: self.name.clone(),
            reason,
        })
    }

    fn list_traces(&mut self, _limit: Option<usize>) -> Result<Vec<TraceSummary>, ReadError> {
        Err(ReadError {
            store: self.name.clone(),
            reason: "the message bus cannot list traces: it only carries events until a reader takes them (show one with `trace show <id>`, or let a consumer store them in Redis or SQL)".into(),
        })
    }

    fn list_error_traces(&mut self, limit: Option<usize>) -> Result<Vec<TraceSummary>, ReadError> {
        self.list_traces(limit)
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// lapin's client identity from PEM files ([`crate::tls::client_pem`]: the key of `key`,
/// else of `cert`).
#[cfg(feature = "tls")]
fn client_identity(
    cert: &std::path::Path,
    key: Option<&std::path::Path>,
) -> Result<lapin::tcp::OwnedIdentity, String> {
    let pem = crate::tls::client_pem(cert, key)?;
    Ok(lapin::tcp::OwnedIdentity::PKCS8 {
        pem: pem.cert_pem,
        key: pem.key_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oslo_time() {
        let mut out = Vec::new();
        write_oslo_time(&mut out, Timestamp(1_000_000 * 86_400 + 42));
        assert_eq!(out, b"1970-01-02 00:00:00.000042");
        out.clear();
        write_oslo_time(&mut out, Timestamp(1_000_000 * 86_400));
        assert_eq!(out, b"1970-01-02 00:00:00");
    }
}
