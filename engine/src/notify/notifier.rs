//! The notifier: rules evaluated where the job runs, deliveries in the background.
//!
//! [`Notifier::evaluate`] runs the rules for an event on the caller's thread (so a fail-closed
//! rule can still change the job's outcome) and gives a [`Pending`] set of notifications;
//! [`Pending::send`] puts them on a bounded queue without ever waiting: when the queue is full
//! the event's notifications are dropped, each logged with the event id and counted. One
//! background task drains the queue, delivering up to [`MAX_IN_FLIGHT`] notifications at once
//! (a webhook that retries for a minute holds one slot, not the queue). [`Notifier::shutdown`]
//! closes the queue and gives what is pending `notify.flush_timeout_ms` to finish; whatever is
//! still pending then is abandoned, logged and counted as dropped. Both ends are driven by
//! cancellation tokens: `stop` (no more notifications; deliver what is queued) and `give_up`
//! (the flush window ended).
//!
//! With an [`Outbox`] (the job index), the notifications of a recorded job's event are
//! confirmed to it once every one of them has been delivered or given up on; those dropped,
//! abandoned at shutdown or lost with the process stay unconfirmed, and are delivered again.

use super::counters::Counters;
use super::event::{Event, EventStatus};
use super::log::LogSink;
use super::rules::{RuleFailure, Rules};
use super::sink::Sink;
use super::sns::SnsSink;
use super::sqs::SqsSink;
use super::webhook::{self, WebhookSink};
use crate::config::{LOG_SINK, NotifyConfig, SinkConfig};
use crate::plugin::catalog::CatalogSource;
use crate::plugin::types::Notification;
use crate::shutdown::CancellationToken;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};

/// Where recorded jobs' notifications are confirmed: the job index, which redelivers the
/// unconfirmed ones.
pub trait Outbox: Send + Sync {
    /// Every notification of job `job_id`'s recorded event was delivered or given up on.
    /// Called from the delivery task: implementations must not block.
    fn delivered(&self, job_id: &str);
}

/// What confirms an event's deliveries: the last one to end calls the outbox.
struct Countdown {
    left: std::sync::atomic::AtomicUsize,
    job_id: String,
    outbox: Arc<dyn Outbox>,
}

impl Countdown {
    fn one_done(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.outbox.delivered(&self.job_id);
        }
    }
}

/// Deliveries in progress at once.
pub const MAX_IN_FLIGHT: usize = 32;

/// The notifier could not start (exit code 2: configuration).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A rule cannot be used.
    #[error("config: `{field}` {problem}")]
    Rule {
        /// `notify.rules[i].plugin`.
        field: String,
        /// Why.
        problem: String,
    },
    /// A sink cannot be set up.
    #[error("config: `notify.sinks.{sink}`: {problem}")]
    Sink {
        /// The sink.
        sink: String,
        /// Why.
        problem: String,
    },
}

/// Every configured sink (and `log`, always there), with the clients they need: AWS ones from
/// `aws` (else the standard environment) when an SNS or SQS sink is configured, one HTTP
/// client shared by the webhooks.
async fn build_sinks(
    config: &NotifyConfig,
    aws: Option<&aws_config::SdkConfig>,
) -> Result<BTreeMap<String, Sink>, NotifyError> {
    let needs_aws = config
        .sinks
        .values()
        .any(|s| matches!(s, SinkConfig::Sns(_) | SinkConfig::Sqs(_)));
    let aws = match aws {
        Some(a) => Some(a.clone()),
        None if needs_aws => Some(crate::aws::sdk_config().await),
        None => None,
    };
    let http = webhook_client(config)?;
    let mut sinks = BTreeMap::new();
    for (name, c) in &config.sinks {
        let refused = |problem: String| NotifyError::Sink {
            sink: name.clone(),
            problem,
        };
        let sink = match (c, &aws, &http) {
            (SinkConfig::Log(_), _, _) => Sink::Log(LogSink::new(name)),
            (SinkConfig::Sns(s), Some(aws), _) => Sink::Sns(SnsSink::new(
                name,
                aws_sdk_sns::Client::new(aws),
                &s.topic_arn,
            )),
            (SinkConfig::Sqs(s), Some(aws), _) => Sink::Sqs(SqsSink::new(
                name,
                aws_sdk_sqs::Client::new(aws),
                &s.queue_url,
            )),
            (SinkConfig::Webhook(w), _, Some(client)) => Sink::Webhook(Box::new(
                WebhookSink::new(name, w, client.clone()).map_err(refused)?,
            )),
            _ => return Err(refused("no client for this kind of sink".into())),
        };
        sinks.insert(name.clone(), sink);
    }
    sinks
        .entry(LOG_SINK.to_string())
        .or_insert_with(|| Sink::Log(LogSink::new(LOG_SINK)));
    Ok(sinks)
}

/// The HTTP client the webhook sinks share (`None` without webhooks); https only if one needs
/// it, so a bare container without root certificates still serves `http://` webhooks.
fn webhook_client(config: &NotifyConfig) -> Result<Option<webhook::HttpClient>, NotifyError> {
    let webhooks: Vec<(&String, &crate::config::WebhookSinkConfig)> = config
        .sinks
        .iter()
        .filter_map(|(n, s)| match s {
            SinkConfig::Webhook(w) => Some((n, w)),
            _ => None,
        })
        .collect();
    let Some((first, _)) = webhooks.first() else {
        return Ok(None);
    };
    let need_https = webhooks.iter().any(|(_, w)| w.url.starts_with("https:"));
    webhook::http_client(need_https)
        .map(Some)
        .map_err(|problem| NotifyError::Sink {
            sink: (*first).clone(),
            problem,
        })
}

/// One notification on its way.
struct Delivery {
    id: u64,
    event_id: Arc<str>,
    notification: Notification,
    /// Confirms the event's deliveries to the outbox (recorded events, with an outbox).
    countdown: Option<Arc<Countdown>>,
}

/// Deliveries accepted and not finished: id → (event id, sink). Whoever removes an entry
/// (the delivery when it ends, the shutdown when it gives up) counts it, exactly once.
type InFlight = Arc<Mutex<BTreeMap<u64, (Arc<str>, String)>>>;

/// Rules, sinks, the delivery queue and its counters.
pub struct Notifier {
    rules: Rules,
    sinks: Arc<BTreeMap<String, Sink>>,
    counters: Arc<Counters>,
    queue: mpsc::Sender<Vec<Delivery>>,
    in_flight: InFlight,
    next_id: AtomicU64,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    flush: Duration,
    /// No new notifications; the dispatcher delivers what is queued, then ends.
    stop: CancellationToken,
    /// The flush window ended: deliveries still running are dropped.
    give_up: CancellationToken,
    /// Where recorded events' deliveries are confirmed.
    outbox: std::sync::OnceLock<Arc<dyn Outbox>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("rules", &self.rules)
            .field("sinks", &self.sinks.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Resolve the rules in `catalog`, set up the sinks (AWS clients from the standard
    /// environment when an SNS or SQS sink is configured; an HTTP client for webhooks) and
    /// start the delivery task on the current Tokio runtime.
    pub async fn start(
        config: &NotifyConfig,
        catalog: impl Into<CatalogSource>,
    ) -> Result<Notifier, NotifyError> {
        Self::start_with(config, catalog, None).await
    }

    /// [`Notifier::start`] with this AWS configuration for SNS and SQS sinks (instead of the
    /// standard environment's).
    pub async fn start_with(
        config: &NotifyConfig,
        catalog: impl Into<CatalogSource>,
        aws: Option<&aws_config::SdkConfig>,
    ) -> Result<Notifier, NotifyError> {
        let rules = Rules::resolve(config, catalog.into())
            .map_err(|(field, problem)| NotifyError::Rule { field, problem })?;
        let sinks = build_sinks(config, aws).await?;
        let counters = Arc::new(Counters::new(
            sinks.iter().map(|(n, s)| (n.as_str(), s.kind())),
            rules.labels(),
        ));
        let sinks = Arc::new(sinks);
        let in_flight: InFlight = Arc::default();
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let (stop, give_up) = (CancellationToken::new(), CancellationToken::new());
        let dispatcher = tokio::spawn(dispatch(
            rx,
            Deliveries {
                sinks: sinks.clone(),
                counters: counters.clone(),
                in_flight: in_flight.clone(),
            },
            stop.clone(),
            give_up.clone(),
        ));
        tracing::info!(
            target: "mediaflow::notify",
            rules = ?rules.labels(),
            sinks = ?sinks.iter().map(|(n, s)| format!("{n} ({})", s.kind())).collect::<Vec<_>>(),
            queue_capacity = config.queue_capacity,
            "notifications ready"
        );
        Ok(Notifier {
            rules,
            sinks,
            counters,
            queue: tx,
            in_flight,
            next_id: AtomicU64::new(0),
            dispatcher: Mutex::new(Some(dispatcher)),
            flush: Duration::from_millis(config.flush_timeout_ms),
            stop,
            give_up,
            outbox: std::sync::OnceLock::new(),
        })
    }

    /// Confirm recorded events' deliveries to `outbox` from now on.
    pub fn set_outbox(&self, outbox: Arc<dyn Outbox>) {
        let _ = self.outbox.set(outbox);
    }

    /// The counters (shared; they keep counting).
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Evaluate the rules for `event` on this thread: the notifications of the rules that
    /// answered, and the failure of a fail-closed rule if one failed (already logged and
    /// counted).
    pub fn evaluate(&self, event: &Event) -> Pending<'_> {
        let out = self
            .rules
            .evaluate(event, |s| self.sinks.contains_key(s), &self.counters);
        let recorded = matches!(event.status, EventStatus::Succeeded | EventStatus::Failed);
        Pending {
            notifier: self,
            event_id: Arc::from(event.id.as_str()),
            job_id: recorded.then(|| event.job_id.clone()),
            notifications: out.notifications,
            fail_closed: out.fail_closed,
        }
    }

    /// Evaluate and send what the rules that answered returned; a fail-closed rule's failure
    /// changes nothing here (it is logged and counted by the evaluation).
    pub fn emit(&self, event: &Event) {
        self.evaluate(event).send();
    }

    fn enqueue(
        &self,
        event_id: Arc<str>,
        job_id: Option<String>,
        notifications: Vec<Notification>,
    ) {
        let outbox = self.outbox.get().cloned();
        let countdown = match (job_id, outbox) {
            (Some(job_id), Some(outbox)) if notifications.is_empty() => {
                outbox.delivered(&job_id);
                None
            }
            (Some(job_id), Some(outbox)) => Some(Arc::new(Countdown {
                left: std::sync::atomic::AtomicUsize::new(notifications.len()),
                job_id,
                outbox,
            })),
            _ => None,
        };
        if notifications.is_empty() {
            return;
        }
        let batch: Vec<Delivery> = notifications
            .into_iter()
            .map(|notification| Delivery {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                event_id: event_id.clone(),
                notification,
                countdown: countdown.clone(),
            })
            .collect();
        if let Ok(mut f) = self.in_flight.lock() {
            for d in &batch {
                f.insert(d.id, (d.event_id.clone(), d.notification.sink.clone()));
            }
        }
        let refused = if self.stop.is_cancelled() {
            (batch, "notifications are shut down")
        } else {
            match self.queue.try_send(batch) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(b)) => (b, "the delivery queue is full"),
                Err(mpsc::error::TrySendError::Closed(b)) => (b, "notifications are shut down"),
            }
        };
        let (batch, why) = refused;
        for d in batch {
            let removed = self
                .in_flight
                .lock()
                .map(|mut f| f.remove(&d.id).is_some())
                .unwrap_or(true);
            if removed {
                self.counters.dropped(&d.notification.sink);
                tracing::warn!(
                    target: "mediaflow::notify",
                    event_id = %d.event_id, sink = %d.notification.sink, error_code = "notification_dropped",
                    "notification dropped: {why}"
                );
            }
        }
    }

    /// Stop accepting notifications, let pending deliveries run for the flush window
    /// (`notify.flush_timeout_ms`), then abandon the rest (each logged and counted as dropped).
    pub async fn shutdown(&self) {
        self.shutdown_within(self.flush).await;
    }

    /// [`Notifier::shutdown`] with another flush window.
    pub async fn shutdown_within(&self, window: Duration) {
        self.stop.cancel();
        let Some(mut dispatcher) = self.dispatcher.lock().ok().and_then(|mut d| d.take()) else {
            return;
        };
        let pending = self.in_flight.lock().map(|f| f.len()).unwrap_or(0);
        if pending > 0 {
            tracing::info!(target: "mediaflow::notify", pending, window_ms = window.as_millis() as u64, "flushing notifications");
        }
        if tokio::time::timeout(window, &mut dispatcher).await.is_err() {
            self.give_up.cancel();
            let _ = dispatcher.await;
        }
        let left = self
            .in_flight
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default();
        for (event_id, sink) in left.into_values() {
            self.counters.dropped(&sink);
            tracing::warn!(
                target: "mediaflow::notify",
                %event_id, %sink, error_code = "notification_abandoned",
                "notification not delivered: still pending when the shutdown flush window ended"
            );
        }
    }
}

/// Notifications an event deserves, not sent yet.
#[derive(Debug)]
pub struct Pending<'a> {
    notifier: &'a Notifier,
    event_id: Arc<str>,
    /// The job, for a recorded job's event (its deliveries are confirmed to the outbox).
    job_id: Option<String>,
    notifications: Vec<Notification>,
    fail_closed: Option<RuleFailure>,
}

impl Pending<'_> {
    /// The failure of a fail-closed rule, if one failed (taken: asked twice, `None`).
    pub fn take_fail_closed(&mut self) -> Option<RuleFailure> {
        self.fail_closed.take()
    }

    /// Queue them for delivery (never waits; a full queue drops them, logged and counted).
    pub fn send(self) {
        self.notifier
            .enqueue(self.event_id, self.job_id, self.notifications);
    }

    /// The notifications.
    pub fn notifications(&self) -> &[Notification] {
        &self.notifications
    }
}

/// What the delivery tasks share.
#[derive(Clone)]
struct Deliveries {
    sinks: Arc<BTreeMap<String, Sink>>,
    counters: Arc<Counters>,
    in_flight: InFlight,
}

impl Deliveries {
    /// Deliver `d`, then count it — unless the shutdown already counted it as abandoned.
    async fn deliver(self, d: Delivery) {
        let sink_name = d.notification.sink.as_str();
        let result = match self.sinks.get(sink_name) {
            Some(sink) => sink
                .deliver(&d.event_id, &d.notification)
                .await
                .map_err(|e| (sink.kind(), e.to_string())),
            None => Err(("none", "no such sink".to_string())),
        };
        let mine = self
            .in_flight
            .lock()
            .map(|mut f| f.remove(&d.id).is_some())
            .unwrap_or(true);
        if !mine {
            return;
        }
        if let Some(c) = &d.countdown {
            c.one_done();
        }
        match result {
            Ok(()) => self.counters.delivered(sink_name),
            Err((kind, error)) => {
                self.counters.failed(sink_name);
                tracing::warn!(
                    target: "mediaflow::notify",
                    event_id = %d.event_id, sink = sink_name, kind, error_code = "notification_failed", %error,
                    "notification not delivered: given up"
                );
            }
        }
    }
}

/// The background task: deliver what comes off the queue, up to [`MAX_IN_FLIGHT`] at once,
/// until `stop` (then what is queued is still delivered) and every delivery has ended — or
/// until `give_up`, which drops the deliveries still running.
async fn dispatch(
    mut rx: mpsc::Receiver<Vec<Delivery>>,
    deliveries: Deliveries,
    stop: CancellationToken,
    give_up: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut running = JoinSet::new();
    loop {
        let batch = tokio::select! {
            b = rx.recv() => b,
            _ = stop.cancelled() => {
                // No new notifications; what is already queued is still delivered.
                rx.close();
                rx.recv().await
            }
            _ = give_up.cancelled() => return,
        };
        let Some(batch) = batch else { break };
        for d in batch {
            let slot = tokio::select! {
                s = slots.clone().acquire_owned() => s,
                _ = give_up.cancelled() => return,
            };
            let Ok(slot) = slot else { return };
            while running.try_join_next().is_some() {}
            let deliveries = deliveries.clone();
            running.spawn(async move {
                let _slot = slot;
                deliveries.deliver(d).await;
            });
        }
    }
    tokio::select! {
        _ = async { while running.join_next().await.is_some() {} } => {}
        _ = give_up.cancelled() => {}
    }
}
