//! Jobs in flight: the worker takes a [`Busy`] guard for each message from receive to settle;
//! the count feeds the `mediaflow_jobs_in_flight` gauge, and its idle ⇄ busy transitions are
//! published on a watch channel that ECS task protection ([`super::protection`]) follows.

use super::metrics::JOBS_IN_FLIGHT;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Counts messages being processed and says whether any is.
#[derive(Debug)]
pub struct Activity {
    /// Messages in flight. Changed under the lock together with `busy`, so a transition is
    /// never published out of order with the count.
    in_flight: Mutex<usize>,
    busy: watch::Sender<bool>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            in_flight: Mutex::new(0),
            busy: watch::Sender::new(false),
        }
    }
}

impl Activity {
    /// A message is being worked on until the returned guard is dropped.
    pub fn start(self: &Arc<Self>) -> Busy {
        self.update(|n| n + 1);
        Busy(self.clone())
    }

    /// Messages being worked on now.
    pub fn in_flight(&self) -> usize {
        *self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(usize) -> usize) {
        let mut n = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        *n = f(*n);
        JOBS_IN_FLIGHT.set(&[], *n as i64);
        let busy = *n > 0;
        self.busy
            .send_if_modified(|b| std::mem::replace(b, busy) != busy);
    }

    /// `true` while any message is being worked on; changes on each idle ⇄ busy transition.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.busy.subscribe()
    }
}

/// One message in flight; dropping it ends it.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.update(|n| n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_published_only_between_idle_and_busy() {
        let a = Arc::new(Activity::default());
        let mut rx = a.watch();
        assert!(!*rx.borrow_and_update());
        let one = a.start();
        assert!(rx.has_changed().expect("open") && *rx.borrow_and_update());
        let two = a.start();
        assert!(
            !rx.has_changed().expect("open"),
            "busy → busy is no transition"
        );
        assert_eq!(a.in_flight(), 2);
        drop(one);
        assert!(!rx.has_changed().expect("open"));
        drop(two);
        assert!(rx.has_changed().expect("open") && !*rx.borrow_and_update());
        assert_eq!(a.in_flight(), 0);
    }
}
