//! The user's side: what `openstack [--os-profile KEY] server create|list` sends. A
//! profiled request carries the signed trace headers; the client records no point, so
//! the trace starts at the API's `wsgi` point.

use std::net::SocketAddr;

use osprofiler::TraceHeaders;
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

pub struct OpenStackClient {
    http: reqwest::Client,
    base: String,
}

impl OpenStackClient {
    pub fn new(api: SocketAddr) -> Result<OpenStackClient, String> {
        // Loopback only: an http_proxy in the environment must not be used.
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(OpenStackClient {
            http,
            base: format!("http://{api}/v2.1"),
        })
    }

    pub async fn create_server(
        &self,
        name: &str,
        trace: Option<&TraceHeaders>,
    ) -> Result<Answer, String> {
        let mut req = self
            .http
            .post(format!("{}/servers", self.base))
            .header(CONTENT_TYPE, "application/json")
            .body(json!({"server": {"name": name}}).to_string());
        for (name, value) in trace.iter().flat_map(|t| t.pairs()) {
            req = req.header(name, value);
        }
        answer(req).await
    }

    pub async fn list_servers(&self) -> Result<Answer, String> {
        answer(self.http.get(format!("{}/servers", self.base))).await
    }
}

async fn answer(req: reqwest::RequestBuilder) -> Result<Answer, String> {
    let resp = req
        .send()
        .await
        .map_err(|e| format!("the API did not answer: {e}"))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("reading the API's answer: {e}"))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Answer { status, body })
}
