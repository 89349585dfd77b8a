//! The compute API (HTTP, axum behind osprofiler's server layer): `POST /v2.1/servers`
//! boots a server, `GET /v2.1/servers` lists them.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use osprofiler::integrations::tower::HttpServerLayer;
use osprofiler::{Id, Identity};
use serde_json::{Value, json};

use super::json_response;

use super::conductor::ComputeTaskApi;
use super::db::Db;

#[derive(Clone)]
struct Api {
    db: Db,
    conductor: ComputeTaskApi,
}

pub fn router(identity: Identity, db: Db, conductor: ComputeTaskApi) -> Router {
    Router::new()
        .route("/v2.1/servers", get(list).post(create))
        .fallback(|| async { fault(StatusCode::NOT_FOUND, "itemNotFound", "no such resource") })
        .with_state(Api { db, conductor })
        .layer(HttpServerLayer::new().identity(identity))
}

/// An error as nova words them: `{"badRequest": {"code": 400, "message": …}}`.
fn fault(status: StatusCode, kind: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({ kind: {"code": status.as_u16(), "message": message} }),
    )
}

/// The server's name from `{"server": {"name": …}}`. The body is read as JSON whatever
/// its content type, so a bare `curl -d` works.
fn server_name(body: &str) -> Result<String, String> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| format!("Malformed request body: {e}"))?;
    match v["server"]["name"].as_str().map(str::trim) {
        Some(name) if !name.is_empty() && name.len() <= 255 => Ok(name.to_owned()),
        Some(_) => Err("Invalid input for field/attribute name: 1 to 255 characters".to_owned()),
        None => Err("Invalid input: 'server' with a 'name' is required".to_owned()),
    }
}

/// Boots a server. Nova answers once the build is handed over; the demo waits for the
/// build, so that the trace is complete when the client has its answer.
async fn create(State(api): State<Api>, body: String) -> Response {
    let name = match server_name(&body) {
        Ok(n) => n,
        Err(message) => return fault(StatusCode::BAD_REQUEST, "badRequest", &message),
    };
    let uuid = Id::new_v4().to_string();
    if let Err(e) = api.db.instance_create(&uuid, &name).await {
        return fault(
            StatusCode::INTERNAL_SERVER_ERROR,
            "computeFault",
            &e.to_string(),
        );
    }
    match api.conductor.build_instances(&uuid, &name).await {
        Ok(_) => json_response(
            StatusCode::ACCEPTED,
            &json!({"server": {"id": uuid, "links": [{"rel": "self", "href": format!("/v2.1/servers/{uuid}")}]}}),
        ),
        Err(status) => fault(
            StatusCode::INTERNAL_SERVER_ERROR,
            "computeFault",
            &format!("Build of instance {uuid} failed: {}", status.message()),
        ),
    }
}

async fn list(State(api): State<Api>) -> Response {
    match api.db.instance_get_all().await {
        Ok(instances) => {
            let servers: Vec<Value> = instances
                .iter()
                .map(|i| {
                    json!({"id": i.uuid, "name": i.name, "status": status(&i.vm_state),
                           "task_state": i.task_state, "host": i.host})
                })
                .collect();
            json_response(StatusCode::OK, &json!({ "servers": servers }))
        }
        Err(e) => fault(
            StatusCode::INTERNAL_SERVER_ERROR,
            "computeFault",
            &e.to_string(),
        ),
    }
}

/// The API's status for a vm_state, as nova maps them.
fn status(vm_state: &str) -> &'static str {
    match vm_state {
        "active" => "ACTIVE",
        "building" => "BUILD",
        "error" => "ERROR",
        _ => "UNKNOWN",
    }
}
