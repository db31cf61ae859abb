//! The same workloads on both client transports: one exchange, many in
//! flight, and initiators left waiting for a receiver that never comes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use wormhole_sync_core::Error;

const APPID: &str = "bench.example/load";
const INITIATOR_DATA: &[u8] = b"initiator's data";
const RECEIVER_DATA: &[u8] = b"receiver's data";

/// Which client crate drives the exchanges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// The blocking client (`wormhole-sync-ureq`), a thread per side.
    Ureq,
    /// The async client (`wormhole-sync-tokio`), a task per side.
    Tokio,
}

/// Completed and failed exchanges of a throughput run.
#[derive(Default)]
pub struct Counts {
    pub completed: AtomicU64,
    pub failed: AtomicU64,
}

fn check(initiator: Result<Vec<u8>, Error>, receiver: Result<Vec<u8>, Error>) -> Result<(), Error> {
    let (got_r, got_i) = (initiator?, receiver?);
    assert_eq!((got_r.as_slice(), got_i.as_slice()), (RECEIVER_DATA, INITIATOR_DATA), "data swapped or damaged");
    Ok(())
}

mod blocking {
    use super::*;
    use wormhole_sync_ureq::transcribe::{Initiator, Receiver};

    use wormhole_sync_ureq::ureq;

    /// One agent for every client of the run, with a pool as large as the
    /// run's concurrency (the default shared agent keeps 16 idle connections).
    fn agent() -> ureq::Agent {
        static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
        AGENT
            .get_or_init(|| {
                ureq::Agent::config_builder()
                    .max_idle_connections(4096)
                    .max_idle_connections_per_host(4096)
                    .build()
                    .into()
            })
            .clone()
    }

    pub fn initiator(url: &str, timeout: Option<Duration>) -> Result<Initiator, Error> {
        let builder = Initiator::builder(APPID, INITIATOR_DATA.to_vec()).rendezvous(url).http_client(agent());
        match timeout {
            Some(timeout) => builder.timeout(timeout).build(),
            None => builder.build(),
        }
    }

    pub fn receive(url: &str, code: &str) -> Result<Vec<u8>, Error> {
        Receiver::builder(APPID, code, RECEIVER_DATA.to_vec()).rendezvous(url).http_client(agent()).build()?.get_data()
    }
}

mod asynchronous {
    use super::*;
    use wormhole_sync_tokio::transcribe::{Initiator, Receiver};

    pub async fn exchange(url: &str) -> Result<(), Error> {
        let initiator = Initiator::builder(APPID, INITIATOR_DATA.to_vec()).rendezvous(url).build()?.start();
        let code = initiator.when_code().await?.to_string();
        let receiver = Receiver::builder(APPID, &code, RECEIVER_DATA.to_vec()).rendezvous(url).build()?.start();
        let (got_r, got_i) = tokio::join!(initiator.when_data(), receiver.when_data());
        check(got_r, got_i)
    }

    pub async fn wait(url: String, timeout: Duration) -> Result<wormhole_sync_tokio::Handle, Error> {
        let initiator =
            Initiator::builder(APPID, INITIATOR_DATA.to_vec()).rendezvous(&url).timeout(timeout).build()?.start();
        initiator.when_code().await?;
        Ok(initiator)
    }
}

/// One runtime for every async run, so the closes that clients send after
/// their data arrived are not cut off when a run ends.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().expect("a tokio runtime"))
}

/// One exchange after another; the time each took, from creating the
/// initiator until both sides hold the other's data.
pub fn sequential(transport: Transport, url: &str, count: usize) -> Result<Vec<Duration>, Error> {
    match transport {
        Transport::Ureq => (0..count)
            .map(|_| {
                let started = Instant::now();
                let mut initiator = blocking::initiator(url, None)?;
                let code = initiator.get_code()?.to_string();
                let url = url.to_string();
                let receiver = std::thread::spawn(move || blocking::receive(&url, &code));
                check(initiator.get_data(), receiver.join().expect("receiver thread"))?;
                Ok(started.elapsed())
            })
            .collect(),
        Transport::Tokio => runtime().block_on(async {
            let mut times = Vec::with_capacity(count);
            for _ in 0..count {
                let started = Instant::now();
                asynchronous::exchange(url).await?;
                times.push(started.elapsed());
            }
            Ok(times)
        }),
    }
}

/// `in_flight` exchanges at all times for `duration`.
pub fn throughput(transport: Transport, url: &str, in_flight: usize, duration: Duration) -> Arc<Counts> {
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let record = |counts: &Counts, result: Result<(), Error>| {
        let counter = if result.is_ok() { &counts.completed } else { &counts.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    };
    match transport {
        Transport::Ureq => {
            // Two long-lived threads per slot, the initiator handing each code to its receiver.
            let mut threads = Vec::new();
            for _ in 0..in_flight {
                let (codes, inbox) = mpsc::channel::<String>();
                let (url_i, url_r) = (url.to_string(), url.to_string());
                let (counts_i, stop_i) = (counts.clone(), stop.clone());
                threads.push(std::thread::spawn(move || {
                    while !stop_i.load(Ordering::Relaxed) {
                        let result = (|| {
                            let mut initiator = blocking::initiator(&url_i, None)?;
                            codes.send(initiator.get_code()?.to_string()).expect("receiver thread");
                            initiator.get_data().map(drop)
                        })();
                        record(&counts_i, result);
                    }
                }));
                let counts_r = counts.clone();
                threads.push(std::thread::spawn(move || {
                    for code in inbox {
                        if let Err(e) = blocking::receive(&url_r, &code) {
                            record(&counts_r, Err(e));
                        }
                    }
                }));
            }
            std::thread::sleep(duration);
            stop.store(true, Ordering::Relaxed);
            for thread in threads {
                thread.join().expect("bench thread");
            }
        }
        Transport::Tokio => runtime().block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..in_flight {
                let (url, counts, stop) = (url.to_string(), counts.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        record(&counts, asynchronous::exchange(&url).await);
                    }
                }));
            }
            tokio::time::sleep(duration).await;
            stop.store(true, Ordering::Relaxed);
            for task in tasks {
                task.await.expect("bench task");
            }
        }),
    }
    counts
}

/// Initiators holding a code and waiting for a receiver that never comes.
pub struct Waiting {
    stop: Box<dyn FnOnce()>,
}

impl Waiting {
    /// Starts `count` initiators and returns once each holds its code. They
    /// give up after `timeout`, or when [`stop`](Self::stop) is called.
    pub fn start(transport: Transport, url: &str, count: usize, timeout: Duration) -> Result<Waiting, Error> {
        match transport {
            Transport::Ureq => {
                let (ready, coded) = mpsc::channel();
                let threads: Vec<_> = (0..count)
                    .map(|_| {
                        let (url, ready) = (url.to_string(), ready.clone());
                        std::thread::Builder::new()
                            .stack_size(64 * 1024)
                            .spawn(move || {
                                let result = (|| {
                                    let mut initiator = blocking::initiator(&url, Some(timeout))?;
                                    initiator.get_code()?;
                                    Ok::<_, Error>(initiator)
                                })();
                                match result {
                                    Ok(mut initiator) => {
                                        ready.send(Ok(())).ok();
                                        let _ = initiator.get_data(); // times out: nobody comes
                                    }
                                    Err(e) => drop(ready.send(Err(e))),
                                }
                            })
                            .expect("a thread")
                    })
                    .collect();
                for _ in 0..count {
                    coded.recv().expect("waiting threads report")?;
                }
                Ok(Waiting {
                    stop: Box::new(move || {
                        for thread in threads {
                            thread.join().expect("waiting thread");
                        }
                    }),
                })
            }
            Transport::Tokio => {
                let runtime = runtime();
                let handles = runtime.block_on(async {
                    let tasks: Vec<_> =
                        (0..count).map(|_| tokio::spawn(asynchronous::wait(url.to_string(), timeout))).collect();
                    let mut handles = Vec::with_capacity(count);
                    for task in tasks {
                        handles.push(task.await.expect("waiting task")?);
                    }
                    Ok::<_, Error>(handles)
                })?;
                Ok(Waiting {
                    stop: Box::new(move || {
                        runtime.block_on(async {
                            for handle in &handles {
                                handle.stop().await;
                            }
                        });
                        drop(handles);
                    }),
                })
            }
        }
    }

    /// Ends every waiting initiator (blocking ones end at their timeout).
    pub fn stop(self) {
        (self.stop)();
    }
}
