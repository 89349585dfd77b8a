//! The compute service (gRPC): builds an instance with its virt driver and records it
//! in the database.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use osprofiler::trace_impl;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use tonic::Status;

use super::db::{Db, InstanceUpdate};
use super::grpc::{self, BoxFuture, Handler};

/// The gRPC service name.
pub const SERVICE: &str = "nova.compute.Compute";

/// Size of an instance's disk: big enough for the driver's work to show in the trace,
/// small enough to take a few milliseconds.
const DISK_BYTES: usize = 4 << 20;

/// A virt driver whose "hypervisor" is a directory: an instance is a disk image and a
/// domain definition. Its methods are `driver` points.
pub struct LocalDiskDriver {
    instances: PathBuf,
}

#[trace_impl(name = "driver")]
impl LocalDiskDriver {
    pub async fn spawn(&self, uuid: &str, name: &str) -> Result<(), std::io::Error> {
        std::fs::create_dir_all(self.instances.join(uuid))?;
        // Short synchronous work: fine on a runtime worker.
        let disk_sha1 = self.create_image(uuid)?;
        self.define_domain(uuid, name, &disk_sha1)
    }

    /// Writes the instance's disk and returns its SHA-1 (the image cache's checksum).
    pub fn create_image(&self, uuid: &str) -> Result<String, std::io::Error> {
        let mut file = std::fs::File::create(self.instances.join(uuid).join("disk"))?;
        let mut sha1 = Sha1::new();
        let mut chunk = vec![0u8; 64 << 10];
        // Any bytes will do; these differ per instance and per chunk.
        let mut x = uuid.bytes().fold(0x9e37_79b9_7f4a_7c15_u64, |h, b| {
            (h ^ u64::from(b)).rotate_left(5)
        }) | 1;
        for _ in 0..DISK_BYTES / chunk.len() {
            for word in chunk.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                word.copy_from_slice(&x.to_le_bytes());
            }
            sha1.update(&chunk);
            file.write_all(&chunk)?;
        }
        file.sync_data()?;
        Ok(sha1.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn define_domain(
        &self,
        uuid: &str,
        name: &str,
        disk_sha1: &str,
    ) -> Result<(), std::io::Error> {
        let dir = self.instances.join(uuid);
        let xml = format!(
            "<domain type='demo'>\n  <name>{}</name>\n  <uuid>{uuid}</uuid>\n  \
             <memory unit='MiB'>512</memory>\n  <vcpu>1</vcpu>\n  <devices>\n    \
             <disk type='file'><source file='{}'/><checksum type='sha1'>{disk_sha1}</checksum></disk>\n  \
             </devices>\n</domain>\n",
            xml_text(name),
            xml_text(&dir.join("disk").display().to_string()),
        );
        std::fs::write(dir.join("domain.xml"), xml)
    }
}

fn xml_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
}

/// The compute service's gRPC methods.
#[derive(Clone)]
pub struct Compute {
    db: Db,
    driver: Arc<LocalDiskDriver>,
}

impl Compute {
    pub fn new(db: Db, instances: PathBuf) -> Compute {
        Compute {
            db,
            driver: Arc::new(LocalDiskDriver { instances }),
        }
    }

    async fn build_and_run_instance(&self, request: Value) -> Result<Value, Status> {
        let (Some(uuid), Some(name)) = (request["uuid"].as_str(), request["name"].as_str()) else {
            return Err(Status::invalid_argument("uuid and name are required"));
        };
        let db_error = |e: sqlx::Error| Status::internal(e.to_string());
        let spawning = InstanceUpdate {
            host: None,
            vm_state: "building",
            task_state: Some("spawning"),
        };
        self.db
            .instance_update(uuid, &spawning)
            .await
            .map_err(db_error)?;
        let spawned = self.driver.spawn(uuid, name).await;
        let done = InstanceUpdate {
            host: None,
            vm_state: if spawned.is_ok() { "active" } else { "error" },
            task_state: None,
        };
        self.db
            .instance_update(uuid, &done)
            .await
            .map_err(db_error)?;
        spawned.map_err(|e| Status::internal(format!("spawn failed: {e}")))?;
        Ok(json!({"vm_state": "active"}))
    }
}

impl Handler for Compute {
    fn call(&self, method: &str, request: Value) -> BoxFuture<Result<Value, Status>> {
        let this = self.clone();
        let method = method.to_owned();
        Box::pin(async move {
            match method.as_str() {
                "BuildAndRunInstance" => this.build_and_run_instance(request).await,
                other => Err(Status::unimplemented(format!("no method {other}"))),
            }
        })
    }
}

/// The compute services' client, as the conductor uses it (nova's `compute.rpcapi`):
/// calls go to the chosen host's service, each an `rpc` point on the caller's side.
#[derive(Clone)]
pub struct ComputeApi {
    hosts: Vec<(String, grpc::Client)>,
}

impl ComputeApi {
    pub fn new(hosts: Vec<(String, grpc::Client)>) -> ComputeApi {
        ComputeApi { hosts }
    }
}

#[trace_impl(name = "rpc")]
impl ComputeApi {
    pub async fn build_and_run_instance(
        &self,
        host: &str,
        uuid: &str,
        name: &str,
    ) -> Result<Value, Status> {
        let client = self
            .hosts
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, c)| c)
            .ok_or_else(|| Status::unavailable(format!("no compute service on {host}")))?;
        client
            .call("BuildAndRunInstance", json!({"uuid": uuid, "name": name}))
            .await
    }
}
