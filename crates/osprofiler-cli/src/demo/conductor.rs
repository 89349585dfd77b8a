//! The conductor (a gRPC service) and the scheduler it runs: picks a host with DB API
//! calls and placement's HTTP API, retrying when an attempt finds no valid host, then
//! asks that host's compute service to build the instance.

use osprofiler::trace_impl;
use serde_json::{Value, json};
use tonic::Status;

use super::compute::ComputeApi;
use super::db::{Db, InstanceUpdate};
use super::grpc::{self, BoxFuture, Handler};
use super::placement::{self, Claim};

/// The gRPC service name.
pub const SERVICE: &str = "nova.conductor.ComputeTask";

/// The flavor every demo server gets.
const VCPUS: u32 = 1;
const MEMORY_MB: u32 = 512;

/// Scheduling attempts before the build fails.
const MAX_ATTEMPTS: u32 = 3;

/// No host can take the instance (nova's `NoValidHost`).
#[derive(Debug)]
pub struct NoValidHost(String);

impl std::fmt::Display for NoValidHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "No valid host was found. {}", self.0)
    }
}

impl std::error::Error for NoValidHost {}

/// The scheduler. Its methods are `rpc` points, as nova traces its managers
/// (`profiler.trace_cls("rpc")`).
#[derive(Clone)]
pub struct SchedulerManager {
    db: Db,
    placement: placement::Client,
}

#[trace_impl(name = "rpc")]
impl SchedulerManager {
    /// `attempt` is only recorded (with the arguments): which try this is.
    pub async fn select_destinations(
        &self,
        instance_uuid: &str,
        attempt: u32,
    ) -> Result<String, NoValidHost> {
        let nodes = self
            .db
            .compute_node_get_all()
            .await
            .map_err(|e| NoValidHost(format!("cannot read the compute nodes: {e}")))?;
        let candidates = self
            .placement
            .allocation_candidates(VCPUS, MEMORY_MB)
            .await
            .map_err(|e| NoValidHost(format!("placement: {e}")))?;
        let hosts = nodes
            .iter()
            .filter(|n| !n.disabled && candidates.contains(&n.host))
            .filter(|n| n.vcpus >= i64::from(VCPUS) && n.memory_mb >= i64::from(MEMORY_MB));
        let mut lost = Vec::new();
        for node in hosts {
            match self
                .placement
                .claim(instance_uuid, &node.host, VCPUS, MEMORY_MB)
                .await
            {
                Ok(Claim::Claimed) => return Ok(node.host.clone()),
                Ok(Claim::Conflict(why)) => lost.push(format!("{}: {why}", node.host)),
                Err(e) => lost.push(format!("{}: {e}", node.host)),
            }
        }
        Err(NoValidHost(if lost.is_empty() {
            "No compute node has room for the instance.".to_owned()
        } else {
            format!("Claims failed ({}).", lost.join("; "))
        }))
    }
}

/// The conductor's gRPC methods.
#[derive(Clone)]
pub struct Conductor {
    pub db: Db,
    pub scheduler: SchedulerManager,
    pub compute: ComputeApi,
}

impl Conductor {
    pub fn new(db: Db, placement: placement::Client, compute: ComputeApi) -> Conductor {
        Conductor {
            scheduler: SchedulerManager {
                db: db.clone(),
                placement,
            },
            db,
            compute,
        }
    }

    async fn build_instances(&self, request: Value) -> Result<Value, Status> {
        let (Some(uuid), Some(name)) = (request["uuid"].as_str(), request["name"].as_str()) else {
            return Err(Status::invalid_argument("uuid and name are required"));
        };
        let mut attempt = 1;
        let host = loop {
            match self.scheduler.select_destinations(uuid, attempt).await {
                Ok(host) => break host,
                Err(_) if attempt < MAX_ATTEMPTS => attempt += 1,
                Err(e) => {
                    let update = InstanceUpdate {
                        host: None,
                        vm_state: "error",
                        task_state: None,
                    };
                    let _ = self.db.instance_update(uuid, &update).await;
                    return Err(Status::resource_exhausted(e.to_string()));
                }
            }
        };
        let update = InstanceUpdate {
            host: Some(host.clone()),
            vm_state: "building",
            task_state: Some("networking"),
        };
        self.db
            .instance_update(uuid, &update)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let built = self
            .compute
            .build_and_run_instance(&host, uuid, name)
            .await?;
        Ok(json!({"host": host, "attempts": attempt, "compute": built}))
    }
}

impl Handler for Conductor {
    fn call(&self, method: &str, request: Value) -> BoxFuture<Result<Value, Status>> {
        let this = self.clone();
        let method = method.to_owned();
        Box::pin(async move {
            match method.as_str() {
                "BuildInstances" => this.build_instances(request).await,
                other => Err(Status::unimplemented(format!("no method {other}"))),
            }
        })
    }
}

/// The conductor's client, as the API uses it (nova's `ComputeTaskAPI`): each call is
/// an `rpc` point on the caller's side, parent of the conductor's own `rpc` point.
#[derive(Clone)]
pub struct ComputeTaskApi {
    client: grpc::Client,
}

impl ComputeTaskApi {
    pub fn new(client: grpc::Client) -> ComputeTaskApi {
        ComputeTaskApi { client }
    }
}

#[trace_impl(name = "rpc")]
impl ComputeTaskApi {
    pub async fn build_instances(&self, uuid: &str, name: &str) -> Result<Value, Status> {
        self.client
            .call("BuildInstances", json!({"uuid": uuid, "name": name}))
            .await
    }
}
