//! What `mediaflow worker` runs beside its jobs for operators: the `[ops]` settings, the HTTP
//! listener ([`super::server`]) started before the plugins load (so `/healthz` answers while
//! they compile and `/readyz` says why the worker is not ready yet), the readiness state
//! ([`super::health`]), the jobs-in-flight tracker ([`super::activity`]) and, inside ECS
//! (`ECS_AGENT_URI` set), task scale-in protection ([`super::protection`]).

use super::activity::Activity;
use super::health::Health;
use super::protection::{Agent, Protection, Schedule};
use super::server::Server;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The listener's default address. `deploy/healthcheck.sh` and the ECS task definition use
/// its port (checked by `tests/all/deploy.rs`).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9090";

/// `[ops]`: the health/readiness/metrics listener and ECS task scale-in protection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    /// Serve `/healthz`, `/readyz` and `/metrics` while `mediaflow worker` runs.
    pub enabled: bool,
    /// Address the listener binds, `IP:port`. Port 0 takes any free port (logged at start);
    /// workers sharing a machine each need their own port. A port that cannot be bound stops
    /// the worker at start-up.
    pub listen: SocketAddr,
    /// How long a readiness result is reused, in milliseconds, so frequent probes and scrapes
    /// don't each call SQS and S3.
    pub readiness_cache_ms: u64,
    /// Longest a readiness check of the queue or the store may take, in milliseconds.
    pub readiness_timeout_ms: u64,
    /// ECS task scale-in protection while jobs run (only when `ECS_AGENT_URI` is set, as ECS
    /// sets it): minutes each protection lasts (1..=2880), renewed at half of it; 0 turns
    /// protection off.
    pub task_protection_minutes: u32,
    /// How long the worker must stay idle before its protection is released, in milliseconds.
    pub task_protection_release_ms: u64,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 9090))),
            readiness_cache_ms: 2_000,
            readiness_timeout_ms: 2_000,
            task_protection_minutes: 10,
            task_protection_release_ms: 5_000,
        }
    }
}

impl OpsConfig {
    /// Check the values; `Err((field, problem))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.task_protection_minutes > 2880 {
            return Err((
                "task_protection_minutes".into(),
                format!(
                    "{} must be 0..=2880 (ECS's limit: 48 hours; 0 = off)",
                    self.task_protection_minutes
                ),
            ));
        }
        if !(1..=60_000).contains(&self.readiness_timeout_ms) {
            return Err((
                "readiness_timeout_ms".into(),
                format!("{} must be 1..=60000", self.readiness_timeout_ms),
            ));
        }
        if self.readiness_cache_ms > 60_000 {
            return Err((
                "readiness_cache_ms".into(),
                format!("{} must be 0..=60000", self.readiness_cache_ms),
            ));
        }
        Ok(())
    }
}

/// Why the ops side could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The listener's address cannot be bound.
    #[error(
        "ops.listen {addr}: {source} (set another address with MEDIAFLOW_OPS__LISTEN, port 0 for any free port, or ops.enabled = false)"
    )]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The running ops side of a worker.
#[derive(Debug)]
pub struct Ops {
    /// Readiness, as `/readyz` reports it.
    pub health: Arc<Health>,
    /// Messages in flight (the worker takes a guard per message).
    pub activity: Arc<Activity>,
    server: Option<Server>,
    protection: Option<Protection>,
}

impl Ops {
    /// Bind the listener (when enabled) and start task protection (when `ECS_AGENT_URI` is
    /// set and protection is on), on the current tokio runtime.
    pub async fn start(config: &OpsConfig) -> Result<Ops, OpsError> {
        let health = Arc::new(Health::new(
            Duration::from_millis(config.readiness_cache_ms),
            Duration::from_millis(config.readiness_timeout_ms),
        ));
        let activity = Arc::new(Activity::default());
        let server = if config.enabled {
            let server = Server::start(config.listen, health.clone())
                .await
                .map_err(|source| OpsError::Listen {
                    addr: config.listen,
                    source,
                })?;
            tracing::info!(addr = %server.addr(), "ops listener started: /healthz /readyz /metrics");
            Some(server)
        } else {
            None
        };
        let agent_uri = std::env::var("ECS_AGENT_URI").unwrap_or_default();
        let protection = if agent_uri.is_empty() {
            None
        } else if config.task_protection_minutes == 0 {
            tracing::info!("task protection off (ops.task_protection_minutes = 0)");
            None
        } else {
            match Agent::from_uri(&agent_uri) {
                Ok(agent) => Some(Protection::spawn(
                    agent,
                    Schedule::new(
                        config.task_protection_minutes,
                        Duration::from_millis(config.task_protection_release_ms),
                    ),
                    activity.watch(),
                )),
                Err(e) => {
                    tracing::warn!(error_code = "task_protection_failed", error = %e, "task protection off");
                    None
                }
            }
        };
        Ok(Ops {
            health,
            activity,
            server,
            protection,
        })
    }

    /// The listener's address, if it runs.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(Server::addr)
    }

    /// The worker is exiting: release task protection (waiting briefly for the agent) and
    /// stop the listener.
    pub async fn shutdown(self) {
        if let Some(p) = self.protection {
            p.stop(Duration::from_secs(3)).await;
        }
        drop(self.server);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_name_the_field() {
        let c = OpsConfig::default();
        assert_eq!(c.listen.port(), 9090);
        assert!(c.validate().is_ok());
        let bad = OpsConfig {
            task_protection_minutes: 3000,
            ..OpsConfig::default()
        };
        assert_eq!(
            bad.validate().map_err(|e| e.0),
            Err("task_protection_minutes".to_string())
        );
        let e = crate::config::Config::from_sources(
            None,
            &[("MEDIAFLOW_OPS__LISTEN".into(), "localhost:x".into())],
        )
        .expect_err("not an address");
        assert!(e.to_string().contains("ops.listen"), "{e}");
        let c = crate::config::Config::from_sources(
            None,
            &[("MEDIAFLOW_OPS__LISTEN".into(), "127.0.0.1:0".into())],
        )
        .expect("valid");
        assert_eq!(c.ops.listen.port(), 0);
    }

    #[tokio::test]
    async fn a_taken_port_is_a_clear_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let config = OpsConfig {
            listen: taken.local_addr().expect("addr"),
            ..OpsConfig::default()
        };
        let e = Ops::start(&config).await.expect_err("in use");
        assert!(e.to_string().contains("ops.listen 127.0.0.1:"), "{e}");
        let ops = Ops::start(&OpsConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..OpsConfig::default()
        })
        .await
        .expect("free port");
        assert!(ops.addr().is_some_and(|a| a.port() != 0));
        ops.shutdown().await;
    }
}
