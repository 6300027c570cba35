//! `[ops]`: the worker's health, readiness and metrics listener and ECS task scale-in
//! protection.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

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
    /// CloudWatch namespace of the job metrics the worker writes to stdout as embedded metric
    /// format lines (`Jobs`, `JobDuration` by `Status` and `Profile`), which CloudWatch Logs
    /// turns into metrics with no agent; empty (the default) writes none.
    pub emf_namespace: String,
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
            emf_namespace: String::new(),
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
        let ns = &self.emf_namespace;
        if ns.len() > 255
            || !ns
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/#:".contains(c))
        {
            return Err((
                "emf_namespace".into(),
                format!(
                    "{ns:?} is not a CloudWatch namespace (up to 255 of A-Z a-z 0-9 . _ - / # :)"
                ),
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
        let e = super::super::Config::from_sources(
            None,
            &[("MEDIAFLOW_OPS__LISTEN".into(), "localhost:x".into())],
        )
        .expect_err("not an address");
        assert!(e.to_string().contains("ops.listen"), "{e}");
        let c = super::super::Config::from_sources(
            None,
            &[("MEDIAFLOW_OPS__LISTEN".into(), "127.0.0.1:0".into())],
        )
        .expect("valid");
        assert_eq!(c.ops.listen.port(), 0);
    }
}
