//! Threads for requests, kept for reuse: every request runs on a thread of
//! its own (a request the server holds for 30 s must never delay another,
//! nor a cancel), but spawning one per request would cost more than the
//! request itself. A finished thread waits a while for the next job, then
//! exits; the pool grows with the requests in flight and has no other limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How long an idle thread waits for another job before it exits.
const IDLE: Duration = Duration::from_secs(30);

type Job = Box<dyn FnOnce() + Send>;

/// The idle threads: an id each, and the sender that hands it a job.
static IDLE_THREADS: Mutex<Vec<(u64, mpsc::Sender<Job>)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn idle_threads() -> MutexGuard<'static, Vec<(u64, mpsc::Sender<Job>)>> {
    IDLE_THREADS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `job` on an idle thread, or on a new one.
pub(crate) fn run(job: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let job: Job = Box::new(job);
    let idle = idle_threads().pop();
    if let Some((_, thread)) = idle {
        // A thread only leaves the list before it stops listening, so this arrives.
        if let Err(mpsc::SendError(job)) = thread.send(job) {
            return spawn(job);
        }
        return Ok(());
    }
    spawn(job)
}

fn spawn(job: Job) -> std::io::Result<()> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (sender, jobs) = mpsc::channel::<Job>();
    std::thread::Builder::new().name("wormhole-sync-request".into()).spawn(move || {
        let mut next = Some(job);
        while let Some(job) = next.take() {
            job();
            idle_threads().push((id, sender.clone()));
            next = match jobs.recv_timeout(IDLE) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    // Leave the list; a job handed over just before that is still run.
                    idle_threads().retain(|(other, _)| *other != id);
                    jobs.try_recv().ok()
                }
            };
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn jobs_run_side_by_side_and_threads_are_reused() {
        let (done, finished) = mpsc::channel();
        let started = Instant::now();
        for _ in 0..4 {
            let done = done.clone();
            run(move || {
                std::thread::sleep(Duration::from_millis(300)); // A held request.
                done.send(std::thread::current().id()).unwrap();
            })
            .unwrap();
        }
        let first: Vec<_> = (0..4).map(|_| finished.recv().unwrap()).collect();
        assert!(started.elapsed() < Duration::from_millis(900), "held jobs waited for each other");
        // The next jobs find the idle threads instead of starting new ones.
        let done2 = done.clone();
        run(move || done2.send(std::thread::current().id()).unwrap()).unwrap();
        assert!(first.contains(&finished.recv().unwrap()), "a new thread was started");
    }
}
