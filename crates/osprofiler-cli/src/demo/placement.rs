//! A placement service (HTTP, axum behind the server layer) and its client (reqwest with
//! the osprofiler middleware), which the scheduler calls: `http` points on the caller's
//! side, `wsgi` points on placement's.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use osprofiler::Identity;
use osprofiler::integrations::reqwest::HttpClientMiddleware;
use osprofiler::integrations::tower::HttpServerLayer;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use serde_json::{Value, json};

use super::json_response;

/// Resource providers and their inventory.
const PROVIDERS: [&str; 2] = ["cmp-1", "cmp-2"];

#[derive(Clone, Default)]
struct Placement {
    /// Consumers whose claim already lost a race once (see [`claim`]).
    raced: Arc<Mutex<HashSet<String>>>,
}

pub fn router(identity: Identity) -> Router {
    Router::new()
        .route("/allocation_candidates", get(allocation_candidates))
        .route("/allocations/{consumer}", put(claim))
        .with_state(Placement::default())
        .layer(HttpServerLayer::new().identity(identity))
}

async fn allocation_candidates() -> Response {
    json_response(StatusCode::OK, &json!({ "hosts": PROVIDERS }))
}

/// Claims resources for a consumer. The first claim of each consumer fails as if another
/// scheduler had just taken the resources (placement's generation conflict), so every
/// boot shows a failed scheduling attempt and its retry.
async fn claim(State(p): State<Placement>, Path(consumer): Path<String>) -> Response {
    let first = match p.raced.lock() {
        Ok(mut raced) => raced.insert(consumer),
        Err(_) => false,
    };
    if first {
        return json_response(
            StatusCode::CONFLICT,
            &json!({"errors": [{"status": 409, "code": "placement.concurrent_update",
                "title": "Conflict",
                "detail": "resource provider generation conflict: another scheduler claimed first"}]}),
        );
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The outcome of a claim.
pub enum Claim {
    Claimed,
    Conflict(String),
}

/// Placement's client; cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: ClientWithMiddleware,
    base: String,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Result<Client, String> {
        // Loopback only: an http_proxy in the environment must not be used.
        let plain = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let http = ClientBuilder::new(plain)
            .with(HttpClientMiddleware::new())
            .build();
        Ok(Client {
            http,
            base: format!("http://{addr}"),
        })
    }

    /// The providers that can host an instance of this size.
    pub async fn allocation_candidates(
        &self,
        vcpus: u32,
        memory_mb: u32,
    ) -> Result<Vec<String>, String> {
        let url = format!(
            "{}/allocation_candidates?resources=VCPU:{vcpus},MEMORY_MB:{memory_mb}",
            self.base
        );
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("placement answered {status}"));
        }
        let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        Ok(v["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h.as_str().map(str::to_owned))
            .collect())
    }

    /// Claims the resources of `consumer` on `host`.
    pub async fn claim(
        &self,
        consumer: &str,
        host: &str,
        vcpus: u32,
        memory_mb: u32,
    ) -> Result<Claim, String> {
        let url = format!("{}/allocations/{consumer}", self.base);
        let body =
            json!({"allocations": {host: {"resources": {"VCPU": vcpus, "MEMORY_MB": memory_mb}}}});
        let resp = self
            .http
            .put(&url)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        if status.is_success() {
            return Ok(Claim::Claimed);
        }
        let text = resp.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["errors"][0]["detail"].as_str().map(str::to_owned))
            .unwrap_or(text);
        if status == StatusCode::CONFLICT {
            Ok(Claim::Conflict(detail))
        } else {
            Err(format!("placement answered {status}: {detail}"))
        }
    }
}
