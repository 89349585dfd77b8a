//! OTLP/HTTP: `POST /v1/traces` with a protobuf body, on a kept-alive connection
//! (ureq, blocking: the exporter thread needs no runtime).

#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "tls")]
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

use super::{ExportError, Exported};
use crate::OtlpTarget;

/// Most bytes of a response read: a success is a few bytes, an error a short text.
const MAX_RESPONSE: u64 = 64 * 1024;

pub(crate) struct HttpExporter {
    agent: ureq::Agent,
    timeout: Duration,
    url: String,
    user_agent: String,
}

impl HttpExporter {
    pub(crate) fn new(t: &OtlpTarget, timeout: Duration) -> Result<HttpExporter, String> {
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut config = ureq::Agent::config_builder()
            // Statuses are judged here (which ones deserve a backoff).
            .http_status_as_error(false)
            // One deadline for the whole exchange: connect, send, answer.
            .timeout_global(Some(timeout))
            .max_redirects(0)
            // One exporter thread: one connection in use, kept alive.
            .max_idle_connections_per_host(1);
        // Without `tls`, `otlps://` is refused before it gets here.
        #[cfg(feature = "tls")]
        if t.tls {
            let certs: Vec<Certificate<'static>> =
                crate::tls::root_certs(t.ca_certs.as_deref(), "ca_certs")?
                    .iter()
                    .map(|c| Certificate::from_der(c).to_owned())
                    .collect();
            config = config.tls_config(
                TlsConfig::builder()
                    .provider(TlsProvider::Rustls)
                    .root_certs(RootCerts::new_with_certs(&certs))
                    // Explicit: the process-wide default provider may be unset or another.
                    .unversioned_rustls_crypto_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .build(),
            );
        }
        Ok(HttpExporter {
            agent: config.build().new_agent(),
            timeout,
            url: t.url(),
            user_agent: format!("osprofiler-rs/{}", env!("CARGO_PKG_VERSION")),
        })
    }

    pub(crate) fn export(&mut self, body: &[u8]) -> Result<Exported, ExportError> {
        let response = self
            .agent
            .post(&self.url)
            .header("content-type", "application/x-protobuf")
            .header("user-agent", &self.user_agent)
            .send(body);
        let mut response = match response {
            Ok(r) => r,
            Err(e) => {
                let message = match e {
                    ureq::Error::Timeout(_) => format!("no answer within {:?}", self.timeout),
                    e => e.to_string(),
                };
                return Err(ExportError {
                    message,
                    backoff: true,
                });
            }
        };
        let status = response.status().as_u16();
        let protobuf = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-protobuf"));
        // Read to the end, so the connection can be used again.
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_vec();
        if (200..300).contains(&status) {
            return match text {
                Ok(bytes) => Ok(Exported::decode(&bytes)),
                Err(e) => Err(ExportError {
                    message: format!("reading the response: {e}"),
                    backoff: true,
                }),
            };
        }
        let detail = text
            .map(|b| describe_error_body(&b, protobuf))
            .unwrap_or_default();
        Err(ExportError {
            message: format!("HTTP {status}{detail}"),
            // The collector refused this batch (bad data, too big): the next one may
            // pass. Anything else (overloaded, unavailable, wrong endpoint) is waited out.
            backoff: !matches!(status, 400 | 413),
        })
    }
}

/// An error body: a `google.rpc.Status` (OTLP) or text; its first line, shortened.
fn describe_error_body(b: &[u8], protobuf: bool) -> String {
    let text = match protobuf {
        true => super::status_message(b).unwrap_or_default(),
        false => String::from_utf8_lossy(b).into_owned(),
    };
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return String::new();
    }
    let cut: String = line.chars().take(200).collect();
    format!(": {cut}")
}
