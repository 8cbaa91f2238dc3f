//! The threads that do the job's disk work (create, write, link, rename),
//! so that none of it runs on the async runtime.
//!
//! Written here rather than taken from `tokio::task::spawn_blocking`
//! because of what a small file costs: the shared blocking pool keeps a
//! thread per recent caller and wakes an idle one for every call, so each
//! file paid a futex wake and a context switch on the way in and another on
//! the way out. Measured on 2 cores, 10,000 × 10 KiB: 8.3 futex calls per
//! file, and the whole run's CPU 11% lower once the same work went to two
//! threads. A fixed, small set of threads drains one queue: a busy thread
//! takes the next job without sleeping, and a job wakes a thread only when
//! one is idle. The thread count also bounds the directory-lock contention
//! that many concurrent creates and renames cause (see [`threads`]).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    idle: usize,
    closed: bool,
}

struct Inner {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A job that panicked is caught below; the queue itself stays sound.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A fixed set of disk threads sharing one queue. Cloning shares it; the
/// threads end when the last clone is dropped and the queue is empty.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
    _owner: Arc<Closer>,
}

/// Closes the queue when the last handle goes.
struct Closer(Arc<Inner>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.ready.notify_all();
    }
}

/// The job could not run: the pool was gone, or the job panicked.
#[derive(Debug, thiserror::Error)]
#[error("the disk thread stopped")]
pub struct Lost;

/// Disk threads for a machine: two, or a quarter of the CPUs on a larger
/// machine, at most eight. On ext4, every create, link and rename in one
/// directory takes that directory's lock; profiles of 10,000 small files
/// showed a fifth of the CPU spinning on it with a thread per transfer, and
/// one thread used 5% less CPU than two. Two, because one thread is too few
/// for large files once they are hashed (8 × 256 MiB with `--hash` on 2
/// cores: 11.0 s with one, 6.3 s with two; 2.7 s and 2.2 s without).
pub fn threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(2, usize::from);
    (cpus / 4).clamp(2, 8)
}

impl Pool {
    /// Starts `n` threads (at least one).
    pub fn new(n: usize) -> std::io::Result<Self> {
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
        });
        for i in 0..n.max(1) {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name(format!("haul-disk-{i}"))
                .spawn(move || work(&inner))?;
        }
        Ok(Self {
            _owner: Arc::new(Closer(inner.clone())),
            inner,
        })
    }

    /// Runs `f` on a disk thread and waits for it without blocking the
    /// runtime.
    pub async fn run<T, F>(&self, f: F) -> Result<T, Lost>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn(f).await
    }

    /// Queues `f` for a disk thread at once; the answer is awaited later.
    pub fn spawn<T, F>(&self, f: F) -> Pending<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        {
            let mut q = self.inner.lock();
            q.jobs.push_back(job);
            if q.idle > 0 {
                self.inner.ready.notify_one();
            }
        }
        Pending(rx)
    }
}

/// A queued disk job's answer.
pub struct Pending<T>(tokio::sync::oneshot::Receiver<T>);

impl<T> std::future::Future for Pending<T> {
    type Output = Result<T, Lost>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map_err(|_| Lost)
    }
}

fn work(inner: &Inner) {
    let mut q = inner.lock();
    loop {
        if let Some(job) = q.jobs.pop_front() {
            drop(q);
            // A panic drops the job's reply, which its caller sees as
            // `Lost`; the thread carries on with the next job.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            q = inner.lock();
            continue;
        }
        if q.closed {
            return;
        }
        q.idle += 1;
        q = inner.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
        q.idle -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_and_return() {
        let disk = Pool::new(2).unwrap();
        let results = futures_join(&disk).await;
        assert_eq!(results, (0..100).map(|i| i * 2).collect::<Vec<_>>());
    }

    async fn futures_join(disk: &Pool) -> Vec<u32> {
        let mut handles = Vec::new();
        for i in 0..100u32 {
            let disk = disk.clone();
            handles.push(tokio::spawn(async move { disk.run(move || i * 2).await }));
        }
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap().unwrap());
        }
        out
    }

    #[tokio::test]
    async fn a_panicking_job_is_lost_and_the_thread_goes_on() {
        let disk = Pool::new(1).unwrap();
        let lost = disk.run(|| panic!("boom")).await;
        assert!(lost.is_err());
        assert_eq!(disk.run(|| 7).await.unwrap(), 7);
    }

    #[test]
    fn threads_end_when_the_last_handle_goes() {
        let disk = Pool::new(2).unwrap();
        let inner = Arc::downgrade(&disk.inner);
        drop(disk);
        // Each thread holds the queue until it sees it closed.
        for _ in 0..200 {
            if inner.strong_count() == 0 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("disk threads still running");
    }
}
