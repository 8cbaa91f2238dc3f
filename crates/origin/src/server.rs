//! Listening, connections and shutdown.
//!
//! One accept loop per address (127.0.0.1 and 127.0.0.2, same port), each
//! owning a [`JoinSet`] of its connection tasks. Shutdown is a `watch`
//! flag: on [`Origin::stop`] the loops stop accepting and abort their
//! connections, and `stop` waits for the loops to finish. [`Drop`] aborts the
//! loops instead, and dropping a loop's `JoinSet` aborts its connections, so
//! a test that panics before `stop` still leaves no server behind.
//!
//! Connections are served by hyper-util's auto builder, so clients may speak
//! HTTP/1.1 (keep-alive on) or HTTP/2 with prior knowledge (h2c).

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::conn::{ConnState, ResettableIo};
use crate::content::path_key;
use crate::paths::PathTable;
use crate::stats::{Counters, LoggedRequest, Stats};
use crate::{routes, Config};

const HOST1: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const HOST2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// With an ephemeral port, another process may hold the same port on
/// 127.0.0.2; try a few fresh ports before giving up.
const BIND_ATTEMPTS: usize = 8;

/// State shared by every connection of one origin.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) counters: Arc<Counters>,
    pub(crate) paths: PathTable,
    /// Set by the first `bump`; until then every version is 0 and content
    /// routes skip the path table.
    pub(crate) any_bumped: AtomicBool,
}

/// A running origin. See the [crate docs](crate) for its routes.
#[derive(Debug)]
pub struct Origin {
    port: u16,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Origin {
    /// Bind 127.0.0.1 and 127.0.0.2 on one port (`config.port`, or a free one
    /// when it is 0) and start serving in the background.
    ///
    /// Must be called inside a tokio runtime. Fails if either address cannot
    /// be bound; 127.0.0.2 works out of the box on Linux, where all of
    /// 127.0.0.0/8 is routed to the loopback interface, but not on macOS
    /// without an alias.
    ///
    /// # Errors
    ///
    /// The bind error, naming the address, if either address cannot be
    /// listened on (with `config.port` 0, after a few fresh ports were tried).
    pub async fn start(config: Config) -> io::Result<Origin> {
        let (first, second) = bind_pair(config.port).await?;
        let port = first.local_addr()?.port();
        let shared = Arc::new(Shared {
            config,
            counters: Arc::default(),
            paths: PathTable::default(),
            any_bumped: AtomicBool::new(false),
        });
        let (shutdown, watching) = watch::channel(false);
        let tasks = [first, second]
            .into_iter()
            .map(|listener| {
                tokio::spawn(accept_loop(listener, Arc::clone(&shared), watching.clone()))
            })
            .collect();
        Ok(Origin {
            port,
            shared,
            shutdown,
            tasks,
        })
    }

    /// The port both addresses listen on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` followed by `path_and_query` (which should
    /// start with `/`).
    #[must_use]
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{HOST1}:{}{path_and_query}", self.port)
    }

    /// Like [`Origin::url`] but on 127.0.0.2: a second host, as far as a
    /// client's per-host limits and credential scoping are concerned.
    #[must_use]
    pub fn url_host2(&self, path_and_query: &str) -> String {
        format!("http://{HOST2}:{}{path_and_query}", self.port)
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Requests whose path (without query) equals `path`, on either host.
    /// Counted from the request log, so always 0 when
    /// [`Config::log_requests`] is off.
    #[must_use]
    pub fn requests(&self, path: &str) -> u64 {
        self.shared.counters.requests_to(path)
    }

    /// Every request so far, in arrival order (empty when
    /// [`Config::log_requests`] is off).
    #[must_use]
    pub fn log(&self) -> Vec<LoggedRequest> {
        self.shared.counters.log()
    }

    /// Give a content path a new version: different bytes, ETag and
    /// Last-Modified from now on, so a client resuming with `If-Range` gets
    /// the whole new body. `path` is without the query string. Works for
    /// every content route, not only `/file/`.
    pub fn bump(&self, path: &str) {
        self.shared
            .paths
            .with(path_key(path), |state| state.version += 1);
        self.shared.any_bumped.store(true, Relaxed);
    }

    /// Stop accepting, close every connection (in-flight responses are cut
    /// off), and wait for the server tasks to end.
    pub async fn stop(mut self) {
        self.shutdown.send_replace(true);
        for task in std::mem::take(&mut self.tasks) {
            // A JoinError here means the loop panicked or was cancelled;
            // either way it is gone, which is all stop promises.
            let _ = task.await;
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        // Empty after `stop`; otherwise this is a drop without `stop` (say a
        // failing test), and aborting also aborts every connection task.
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Bind both addresses on the same port.
async fn bind_pair(port: u16) -> io::Result<(TcpListener, TcpListener)> {
    if port != 0 {
        let first = bind(HOST1, port).await?;
        let second = bind(HOST2, port).await?;
        return Ok((first, second));
    }
    let mut last_error = None;
    for _ in 0..BIND_ATTEMPTS {
        let first = bind(HOST1, 0).await?;
        let port = first.local_addr()?.port();
        match bind(HOST2, port).await {
            Ok(second) => return Ok((first, second)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error
        .unwrap_or_else(|| io::Error::other("no port free on both 127.0.0.1 and 127.0.0.2")))
}

/// Bind one address, naming it in the error.
async fn bind(ip: IpAddr, port: u16) -> io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::new(ip, port))
        .await
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("haul-origin: cannot listen on {ip}:{port}: {e}"),
            )
        })
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // Err means the Origin was dropped: stop as well.
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            // Reap finished connections so the set does not grow without
            // bound over a long benchmark.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, Arc::clone(&shared), Arc::clone(&builder)));
                }
                // Out of file descriptors and the like: pause instead of
                // spinning; the listener itself is still fine.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
    connections.shutdown().await;
}

async fn serve(stream: TcpStream, shared: Arc<Shared>, builder: Arc<auto::Builder<TokioExecutor>>) {
    shared.counters.connections.fetch_add(1, Relaxed);
    // Small responses would otherwise wait on Nagle plus delayed ACKs.
    let _ = stream.set_nodelay(true);
    let conn = ConnState::default();
    let io = TokioIo::new(ResettableIo::new(stream, conn.reset.clone()));
    let service = service_fn(move |req| {
        let response = routes::respond(&shared, &conn, &req);
        let loaded = shared.config.latency_per_in_flight
            * u32::try_from(shared.counters.in_flight_now().saturating_sub(1)).unwrap_or(u32::MAX);
        let latency = shared.config.latency + loaded;
        async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            Ok::<_, Infallible>(response)
        }
    });
    // Errors here are clients hanging up or injected resets: nothing to report.
    let _ = builder.serve_connection(io, service).await;
}
