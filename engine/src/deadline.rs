//! A timeout that arms its timer once.
//!
//! `madsim::time::timeout` polls its `Sleep` every time the guarded future is woken, and
//! under the simulator each poll of a pending `Sleep` adds one more timer to the heap (one
//! boxed callback, one push, one pop and one stray wake, all at the same deadline). An RPC
//! is woken three or four times on its way (the send's delay, the answer, the receive's
//! delay), so every call left three or four timers behind. `within` polls the `Sleep` on
//! the first poll and afterwards only when that timer has rung, through a waker of its
//! own: one timer per deadline, and the same outcome at the same simulated instant (the
//! extra timers rang at the same deadline, waking a task that was either already woken or
//! already done).

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// The guarded future did not finish in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "RPC timeout")
    }
}

/// The sleep's waker: notes that it rang, then wakes the task.
struct Alarm {
    rung: AtomicBool,
    task: Mutex<Waker>,
}

impl Wake for Alarm {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.rung.store(true, Ordering::Release);
        self.task.lock().unwrap_or_else(|p| p.into_inner()).wake_by_ref();
    }
}

/// Runs `future` for at most `timeout`: its output, or `Elapsed` once the timeout has
/// passed with the future still pending (the future is polled first, as
/// `madsim::time::timeout` does).
pub async fn within<F: Future>(timeout: Duration, future: F) -> Result<F::Output, Elapsed> {
    let mut future = pin!(future);
    let mut sleep = pin!(madsim::time::sleep(timeout));
    let mut alarm: Option<(Arc<Alarm>, Waker)> = None;
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let due = match &alarm {
            None => true,
            Some((alarm, _)) => {
                let mut task = alarm.task.lock().unwrap_or_else(|p| p.into_inner());
                if !task.will_wake(cx.waker()) {
                    task.clone_from(cx.waker());
                }
                drop(task);
                alarm.rung.swap(false, Ordering::AcqRel)
            }
        };
        if due {
            let (_, waker) = alarm.get_or_insert_with(|| {
                let alarm = Arc::new(Alarm { rung: AtomicBool::new(false), task: Mutex::new(cx.waker().clone()) });
                let waker = Waker::from(alarm.clone());
                (alarm, waker)
            });
            if sleep.as_mut().poll(&mut Context::from_waker(waker)).is_ready() {
                return Poll::Ready(Err(Elapsed));
            }
        }
        Poll::Pending
    })
    .await
}

// Simulated time only: live, these would be timed assertions on the wall clock.
#[cfg(all(test, madsim))]
mod tests {
    use super::*;

    #[madsim::test]
    async fn a_ready_future_wins_and_a_pending_one_times_out_at_its_deadline() {
        assert_eq!(within(Duration::from_millis(5), async { 7 }).await, Ok(7));
        let started = madsim::time::Instant::now();
        let never = std::future::pending::<()>();
        assert_eq!(within(Duration::from_millis(250), never).await, Err(Elapsed));
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(250) && waited < Duration::from_millis(260), "{waited:?}");
    }

    #[madsim::test]
    async fn a_future_woken_many_times_still_finishes_or_times_out_on_time() {
        // Sleeps of 1 ms, 40 of them: woken 40 times before its own end.
        let steps = |n: u64| async move {
            for _ in 0..n {
                madsim::time::sleep(Duration::from_millis(1)).await;
            }
            n
        };
        assert_eq!(within(Duration::from_millis(100), steps(40)).await, Ok(40));
        let started = madsim::time::Instant::now();
        assert_eq!(within(Duration::from_millis(30), steps(1_000)).await, Err(Elapsed));
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(30) && waited < Duration::from_millis(33), "{waited:?}");
    }
}
