//! What `mediaflow worker` runs beside its jobs for operators: the `[ops]` settings, the HTTP
//! listener ([`super::server`]) started before the plugins load (so `/healthz` answers while
//! they compile and `/readyz` says why the worker is not ready yet), the readiness state
//! ([`super::health`]), the jobs-in-flight tracker ([`super::activity`]) and, inside ECS
//! (`ECS_AGENT_URI` set), task scale-in protection ([`super::protection`]).

use super::activity::Activity;
use super::health::Health;
use super::protection::{Agent, Protection, Schedule};
use super::server::Server;
use crate::config::OpsConfig;
use crate::shutdown::{CancellationToken, Shutdown};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
    /// Stops the listener and task protection.
    stop: CancellationToken,
}

impl Ops {
    /// Bind the listener (when enabled) and start task protection (when `ECS_AGENT_URI` is
    /// set and protection is on), on the current tokio runtime. Readiness says `draining`
    /// once `shutdown` stops receiving; both stop with its services.
    pub async fn start(config: &OpsConfig, shutdown: &Shutdown) -> Result<Ops, OpsError> {
        let health = Arc::new(Health::new(
            Duration::from_millis(config.readiness_cache_ms),
            Duration::from_millis(config.readiness_timeout_ms),
        ));
        health.follow(shutdown.receiving());
        super::emf::enable(&config.emf_namespace);
        let stop = shutdown.services().child_token();
        let activity = Arc::new(Activity::default());
        let server = if config.enabled {
            let server = Server::start(config.listen, health.clone(), stop.clone())
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
                    stop.clone(),
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
            stop,
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
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_port_is_a_clear_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let config = OpsConfig {
            listen: taken.local_addr().expect("addr"),
            ..OpsConfig::default()
        };
        let shutdown = Shutdown::new();
        let e = Ops::start(&config, &shutdown).await.expect_err("in use");
        assert!(e.to_string().contains("ops.listen 127.0.0.1:"), "{e}");
        let ops = Ops::start(
            &OpsConfig {
                listen: "127.0.0.1:0".parse().expect("addr"),
                ..OpsConfig::default()
            },
            &shutdown,
        )
        .await
        .expect("free port");
        assert!(ops.addr().is_some_and(|a| a.port() != 0));
        ops.shutdown().await;
    }
}
