//! The listener: plain HTTP or HTTPS (rustls), HTTP/1.1 and HTTP/2, with bounds on everything a
//! client controls: header bytes, the time from accept to the first complete request head (the
//! TLS handshake and HTTP/2 preface included), the time to send each later HTTP/1 request head
//! (also the HTTP/1 keep-alive timeout), how long any connection may sit with no request in
//! flight, HTTP/2 keep-alive pings, the number of open connections, and the number of open
//! connections from one client address.
//!
//! axum's own `serve` has none of these, so connections are driven here with hyper-util.
//! On shutdown the listener stops accepting, every connection is told to finish its in-flight
//! request and close, and the process waits for them up to a grace period.
//!
//! Why a deadline of our own before the first request: hyper's HTTP/1 header timeout starts only
//! once hyper-util has decided which protocol the connection speaks, and it decides by reading
//! the first bytes. A connection that sends nothing, or sends `PRI * HTTP/2.0\r\n` and stops,
//! never gets that far and would hold its connection slot for as long as the client likes. So
//! each connection's service raises a flag when it is first called (a request head is complete
//! then, for HTTP/1 and HTTP/2 alike), and the connection is dropped if the flag is still down
//! when the deadline passes.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use ipnet::IpNet;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// What a client is allowed.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes of request head (request line and headers) over HTTP/1, header list over HTTP/2.
    pub max_header_bytes: usize,
    /// Time allowed to send an HTTP/1 request head, counted from the previous response (and
    /// from the protocol detection for the first one).
    pub header_timeout: Duration,
    /// Time allowed for the TLS handshake (the first-request deadline bounds it as well).
    pub tls_handshake_timeout: Duration,
    /// Time from accept to the first complete request head, whatever the protocol.
    pub first_request_timeout: Duration,
    /// A connection with no request in flight for this long is shut down gracefully.
    pub idle_timeout: Duration,
    /// Interval of HTTP/2 keep-alive pings; `None` sends none.
    pub h2_keep_alive_interval: Option<Duration>,
    /// Time an HTTP/2 keep-alive ping may go unanswered before the connection is closed.
    pub h2_keep_alive_timeout: Duration,
    /// Open connections; further connections wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Open connections from one client address; further ones are closed at once.
    pub max_connections_per_ip: usize,
    /// Peers exempt from the per-address cap (load balancers carry everyone's connections).
    pub trusted: Vec<IpNet>,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}

/// Connection metrics, shared by every listener of the process.
#[derive(Clone)]
pub struct ConnMetrics {
    open: IntGauge,
    refused_per_ip: IntCounter,
    first_request_timeouts: IntCounter,
    idle_timeouts: IntCounter,
}

impl ConnMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let open = IntGauge::new(
            "smslink_proxy_connections_open",
            "Client connections open now, on every listener",
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "smslink_proxy_connections_refused_total",
                "Client connections closed as soon as they were accepted, by reason",
            ),
            &["reason"],
        )?;
        let timeouts = IntCounterVec::new(
            Opts::new(
                "smslink_proxy_connection_timeouts_total",
                "Client connections closed by a deadline: no complete request head in time \
                 (first_request), or no request in flight for the idle timeout (idle)",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(timeouts.clone()))?;
        Ok(ConnMetrics {
            open,
            refused_per_ip: refused.with_label_values(&["per_ip"]),
            first_request_timeouts: timeouts.with_label_values(&["first_request"]),
            idle_timeouts: timeouts.with_label_values(&["idle"]),
        })
    }
}

/// Loads a PEM certificate chain and private key for HTTPS.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no PEM certificate found",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("--tls-cert/--tls-key do not form a usable pair: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A client connection, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Open connections per client address.
#[derive(Default)]
struct PerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in `PerIp`, given back when the connection closes.
struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    /// A slot for one more connection from `ip`, or `None` when it already has `cap`.
    fn enter(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<IpSlot> {
        // A panic while holding this lock cannot leave the map inconsistent (one insert or one
        // decrement), so a poisoned lock is still usable.
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Keeps `smslink_proxy_connections_open` right however the connection task ends.
struct OpenGuard(IntGauge);

impl OpenGuard {
    fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        OpenGuard(gauge.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What a connection's service tells the task that watches the connection's deadlines.
struct Activity {
    accepted: Instant,
    /// A request head has been completely received at least once.
    started: AtomicBool,
    /// Requests whose response future has not finished yet.
    in_flight: AtomicUsize,
    /// When the last request finished, in milliseconds since `accepted`.
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new(accepted: Instant) -> Self {
        Activity {
            accepted,
            started: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    /// How long the connection has had no request in flight; `None` while one is.
    fn idle_for(&self, now: Instant) -> Option<Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let since =
            self.accepted + Duration::from_millis(self.idle_since_ms.load(Ordering::SeqCst));
        Some(now.saturating_duration_since(since))
    }
}

/// One request in flight on a connection, from the service call to the end of its response
/// future (a dropped future, such as a request the client reset, counts as ended).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(activity: &Arc<Activity>) -> Self {
        activity.started.store(true, Ordering::SeqCst);
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // The idle clock is set before the count drops, so that a watcher that sees no request
        // in flight also sees when the last one ended.
        let ms = u64::try_from(self.0.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_since_ms.store(ms, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    metrics: ConnMetrics,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(64)
        .keep_alive_interval(limits.h2_keep_alive_interval)
        .keep_alive_timeout(limits.h2_keep_alive_timeout);
    let builder = Arc::new(builder);
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let per_ip = Arc::new(PerIp::default());
    let limits = Arc::new(limits);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let accepted = Instant::now();
        let ip = peer.ip().to_canonical();
        let ip_slot = if crate::forwarded::is_trusted(ip, &limits.trusted) {
            None
        } else {
            match per_ip.enter(ip, limits.max_connections_per_ip) {
                Some(slot) => Some(slot),
                None => {
                    // Closed at once: the client learns nothing it could wait on, and the slot
                    // it took in the global limit is free again.
                    metrics.refused_per_ip.inc();
                    tracing::debug!(%peer, "connection refused: too many from this address");
                    drop(stream);
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let open = OpenGuard::new(&metrics.open);
        let task = Connection {
            router: router.clone(),
            builder: builder.clone(),
            limits: limits.clone(),
            metrics: metrics.clone(),
            stop: stop_rx.clone(),
            tls: tls.clone(),
            peer,
            accepted,
        };
        tokio::spawn(async move {
            let _held = (permit, ip_slot, open);
            task.serve(stream).await;
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = stop_tx.send(true);
    // Every connection holds one permit until it closes: all permits back means all closed.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing the remaining connections");
    }
}

/// Everything one connection's task needs.
struct Connection {
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Arc<Limits>,
    metrics: ConnMetrics,
    stop: watch::Receiver<bool>,
    tls: Option<TlsAcceptor>,
    peer: SocketAddr,
    accepted: Instant,
}

impl Connection {
    async fn serve(mut self, stream: tokio::net::TcpStream) {
        let peer = self.peer;
        let limits = self.limits.clone();
        let deadline = self.accepted + limits.first_request_timeout;
        let io: Box<dyn Io> = match self.tls.take() {
            None => Box::new(stream),
            Some(acceptor) => {
                let handshake_deadline = deadline.min(self.accepted + limits.tls_handshake_timeout);
                match tokio::time::timeout_at(handshake_deadline, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => Box::new(s),
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        self.metrics.first_request_timeouts.inc();
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                }
            }
        };
        let activity = Arc::new(Activity::new(self.accepted));
        let router = self.router.clone();
        let watched = activity.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            let in_flight = InFlight::enter(&watched);
            req.extensions_mut().insert(ConnectInfo(peer));
            let response = router.clone().oneshot(req);
            async move {
                let response = response.await;
                drop(in_flight);
                response
            }
        });
        let conn = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        // One timer serves every deadline: first the first-request deadline; once a request has
        // come, the idle timeout; once a graceful shutdown has begun, a bound on how long the
        // client may take to let go.
        let timer = tokio::time::sleep_until(deadline);
        tokio::pin!(timer);
        let mut stopping = false;
        let mut closing = false;
        let result = loop {
            let stop = &mut self.stop;
            tokio::select! {
                r = conn.as_mut() => break r,
                _ = async {
                    if stop.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }, if !stopping => {
                    // Shutdown: finish the in-flight request and close.
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = &mut timer => {
                    let now = Instant::now();
                    if closing {
                        tracing::debug!(%peer, "closing a connection that did not finish closing");
                        return;
                    }
                    if !activity.started.load(Ordering::SeqCst) {
                        self.metrics.first_request_timeouts.inc();
                        tracing::debug!(%peer, "no complete request head before the deadline");
                        return;
                    }
                    match activity.idle_for(now) {
                        Some(idle) if idle >= limits.idle_timeout => {
                            self.metrics.idle_timeouts.inc();
                            tracing::debug!(%peer, "idle connection shut down");
                            closing = true;
                            conn.as_mut().graceful_shutdown();
                            timer.as_mut().reset(now + limits.header_timeout);
                        }
                        Some(idle) => timer.as_mut().reset(now + (limits.idle_timeout - idle)),
                        None => timer.as_mut().reset(now + limits.idle_timeout),
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "connection closed with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Every bound in these tests is either a lower bound (tokio timers never fire early) or a
    /// generous upper bound (10 s) against a real failure mode: a connection never closed.
    const NEVER: Duration = Duration::from_secs(10);

    fn limits() -> Limits {
        Limits {
            max_header_bytes: 16384,
            header_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(30),
            first_request_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(30),
            h2_keep_alive_interval: None,
            h2_keep_alive_timeout: Duration::from_secs(10),
            max_connections: 100,
            max_connections_per_ip: 100,
            trusted: Vec::new(),
            shutdown_grace: Duration::from_secs(1),
        }
    }

    struct Server {
        addr: SocketAddr,
        registry: Registry,
        _stop: tokio::sync::oneshot::Sender<()>,
    }

    async fn server(limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let registry = Registry::new();
        let metrics = ConnMetrics::register(&registry).expect("metrics");
        let router = Router::new().route("/", get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(run(listener, router, None, limits, metrics, async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            registry,
            _stop: stop,
        }
    }

    fn metric(registry: &Registry, name: &str, label: Option<&str>) -> f64 {
        for family in registry.gather() {
            if family.name() != name {
                continue;
            }
            for m in family.get_metric() {
                let matches = match label {
                    None => true,
                    Some(l) => m.get_label().iter().any(|p| p.value() == l),
                };
                if matches {
                    return match family.get_field_type() {
                        prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
                        _ => m.get_gauge().get_value(),
                    };
                }
            }
        }
        f64::NAN
    }

    /// Reads until the server closes the connection; the bytes read, or `None` if it did not
    /// close within `NEVER`.
    async fn read_to_close(s: &mut TcpStream) -> Option<Vec<u8>> {
        let mut all = Vec::new();
        tokio::time::timeout(NEVER, async {
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await
        .ok()
        .map(|_| all)
    }

    async fn get_on(s: &mut TcpStream) -> String {
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(NEVER, s.read(&mut buf))
            .await
            .expect("an answer")
            .expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn silent_and_half_sent_connections_are_closed_by_the_first_request_deadline() {
        let srv = server(limits()).await;
        for (what, sent) in [
            ("nothing", &b""[..]),
            ("half an HTTP/2 preface", &b"PRI * HTTP/2.0\r\n"[..]),
            ("half an HTTP/1 head", &b"GET / HTTP/1.1\r\nHost: x\r\n"[..]),
        ] {
            let started = Instant::now();
            let mut s = TcpStream::connect(srv.addr).await.expect("connect");
            s.write_all(sent).await.expect("write");
            let got = read_to_close(&mut s).await;
            assert_eq!(got, Some(Vec::new()), "{what}: closed without an answer");
            assert!(
                started.elapsed() >= Duration::from_millis(300),
                "{what}: not before the deadline"
            );
        }
        assert_eq!(
            metric(
                &srv.registry,
                "smslink_proxy_connection_timeouts_total",
                Some("first_request")
            ),
            3.0
        );
    }

    #[tokio::test]
    async fn a_connection_that_sent_a_request_outlives_the_first_request_deadline() {
        let srv = server(limits()).await;
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        assert!(get_on(&mut s).await.starts_with("HTTP/1.1 200"));
        // Three times the deadline: a wrongly armed deadline would have closed it by now.
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(get_on(&mut s).await.starts_with("HTTP/1.1 200"));
        assert_eq!(
            metric(
                &srv.registry,
                "smslink_proxy_connection_timeouts_total",
                Some("first_request")
            ),
            0.0
        );
    }

    #[tokio::test]
    async fn an_idle_connection_is_shut_down() {
        let srv = server(Limits {
            idle_timeout: Duration::from_millis(400),
            ..limits()
        })
        .await;
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        assert!(get_on(&mut s).await.starts_with("HTTP/1.1 200"));
        let started = Instant::now();
        assert_eq!(read_to_close(&mut s).await, Some(Vec::new()));
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(
            metric(
                &srv.registry,
                "smslink_proxy_connection_timeouts_total",
                Some("idle")
            ),
            1.0
        );
    }

    #[tokio::test]
    async fn an_idle_http2_connection_is_shut_down_with_goaway() {
        let srv = server(Limits {
            idle_timeout: Duration::from_millis(400),
            ..limits()
        })
        .await;
        let tcp = TcpStream::connect(srv.addr).await.expect("connect");
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("h2 handshake");
        let driver = tokio::spawn(conn);
        let request = hyper::Request::get(format!("http://{}/", srv.addr))
            .body(http_body_util::Empty::<axum::body::Bytes>::new())
            .expect("request");
        let response = send.send_request(request).await.expect("response");
        assert_eq!(response.status(), 200);
        // The server's GOAWAY ends the client's connection future.
        let ended = tokio::time::timeout(NEVER, driver).await;
        assert!(ended.is_ok(), "the idle HTTP/2 connection was not closed");
        assert_eq!(
            metric(
                &srv.registry,
                "smslink_proxy_connection_timeouts_total",
                Some("idle")
            ),
            1.0
        );
    }

    #[tokio::test]
    async fn connections_over_the_per_address_cap_are_closed_at_once() {
        let srv = server(Limits {
            first_request_timeout: Duration::from_secs(30),
            max_connections_per_ip: 2,
            ..limits()
        })
        .await;
        let mut a = TcpStream::connect(srv.addr).await.expect("connect");
        let _b = TcpStream::connect(srv.addr).await.expect("connect");
        let mut c = TcpStream::connect(srv.addr).await.expect("connect");
        // The first-request deadline is 30 s, so only the cap can close it within NEVER.
        assert_eq!(read_to_close(&mut c).await, Some(Vec::new()));
        assert_eq!(
            metric(
                &srv.registry,
                "smslink_proxy_connections_refused_total",
                Some("per_ip")
            ),
            1.0
        );
        assert_eq!(
            metric(&srv.registry, "smslink_proxy_connections_open", None),
            2.0
        );
        assert!(get_on(&mut a).await.starts_with("HTTP/1.1 200"));
        // A slot given back is usable again.
        drop(a);
        let mut d = None;
        for _ in 0..100 {
            let mut s = TcpStream::connect(srv.addr).await.expect("connect");
            let ok = tokio::time::timeout(Duration::from_millis(500), async {
                s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    .await
                    .ok()?;
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).await.ok()?;
                Some(buf[..n].starts_with(b"HTTP/1.1 200"))
            })
            .await;
            if ok == Ok(Some(true)) {
                d = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            d.is_some(),
            "the freed slot was never given to a new connection"
        );
    }

    #[tokio::test]
    async fn trusted_peers_are_exempt_from_the_per_address_cap() {
        let srv = server(Limits {
            first_request_timeout: Duration::from_secs(30),
            max_connections_per_ip: 1,
            trusted: vec!["127.0.0.0/8".parse().expect("cidr")],
            ..limits()
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut s = TcpStream::connect(srv.addr).await.expect("connect");
            assert!(get_on(&mut s).await.starts_with("HTTP/1.1 200"));
            held.push(s);
        }
        assert_eq!(
            metric(
                &srv.registry,
                "smslink_proxy_connections_refused_total",
                Some("per_ip")
            ),
            0.0
        );
        assert_eq!(
            metric(&srv.registry, "smslink_proxy_connections_open", None),
            3.0
        );
    }

    #[test]
    fn per_ip_slots_are_counted_and_given_back() {
        let table = Arc::new(PerIp::default());
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        let a = table.enter(ip, 2).expect("first");
        let b = table.enter(ip, 2).expect("second");
        assert!(table.enter(ip, 2).is_none());
        let c = table
            .enter(other, 2)
            .expect("another address has its own count");
        drop(a);
        let a = table.enter(ip, 2).expect("a slot given back");
        drop((a, b, c));
        assert!(table.open.lock().expect("lock").is_empty());
    }
}
