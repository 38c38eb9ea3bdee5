//! Opening connections the way a user's app does, timing each phase: DNS
//! (`tokio::net::lookup_host`; none for an IP literal), TCP connect (the resolved
//! addresses in order, the next one started after [`NEXT_ADDRESS_AFTER`] or as soon
//! as the previous one fails), the TLS handshake (rustls with the platform's
//! verifier, ALPN `h2` then `http/1.1`), then an HTTP/2 or HTTP/1.1 connection by
//! what ALPN chose.
//!
//! A connection belongs to one run's [`Client`](super::http::Client): it is
//! reused by the run's later requests to the same origin and closed when the run
//! ends. The TLS configuration (root store included) is built once per process.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::phases::{IoClock, Phase, Recorder};
use super::received::{ReceiveTimes, handshake_rtt};
use super::result::{Reason, StepError};

/// How long a connection attempt to one address runs alone before the next
/// address is tried alongside it (RFC 8305's "connection attempt delay").
pub const NEXT_ADDRESS_AFTER: Duration = Duration::from_millis(250);

/// The TLS set-up a runner's clients use.
#[derive(Clone, Default)]
pub struct Tls {
    /// `None`: the platform's roots, loaded on first use and shared by the process.
    configs: Option<Arc<Configs>>,
}

/// The two client configurations a run may need, both built once (a run must
/// not pay for building, cloning or loading roots inside its clock).
struct Configs {
    /// ALPN `h2` then `http/1.1`.
    http: Arc<rustls::ClientConfig>,
    /// ALPN `http/1.1` only, the one the websocket upgrade works over.
    websocket: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.configs.is_some() { "Tls(platform roots + extra roots)" } else { "Tls(platform roots)" })
    }
}

/// The TLS client could not be set up (the platform's verifier or rustls refused
/// the configuration): a problem of the machine the probe runs on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TlsSetupError(String);

impl Tls {
    /// The platform's roots plus `extra_roots` (e.g. a private CA).
    pub fn with_extra_roots(extra_roots: Vec<CertificateDer<'static>>) -> Result<Tls, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider.clone())
            .map_err(|e| TlsSetupError(format!("cannot set up TLS verification: {e}")))?;
        Ok(Tls { configs: Some(client_configs(provider, Arc::new(verifier)).map_err(TlsSetupError)?) })
    }

    /// The same verification for a websocket: ALPN offers only HTTP/1.1, the one
    /// the websocket upgrade works over.
    pub(crate) fn websocket_config(&self) -> Result<Arc<rustls::ClientConfig>, StepError> {
        Ok(self.configs()?.websocket.clone())
    }

    fn config(&self) -> Result<Arc<rustls::ClientConfig>, StepError> {
        Ok(self.configs()?.http.clone())
    }

    /// Loads the platform's roots now, if no earlier call did: a run calls this
    /// before its clock starts, so that reading the root store from disk (a few
    /// milliseconds, once per process: every run of a `once` CronJob's process)
    /// is never counted as the first run's TLS handshake.
    pub fn prepare(&self) {
        // An error is reported by the connection that needs the configuration.
        let _ = self.configs();
    }

    fn configs(&self) -> Result<Arc<Configs>, StepError> {
        if let Some(configs) = &self.configs {
            return Ok(configs.clone());
        }
        static PLATFORM: OnceLock<Result<Arc<Configs>, String>> = OnceLock::new();
        PLATFORM
            .get_or_init(|| {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
                    .map_err(|e| format!("cannot load the platform's CA roots: {e}"))?;
                client_configs(provider, Arc::new(verifier))
            })
            .clone()
            .map_err(|e| StepError::new(Reason::Config, e))
    }
}

fn client_configs(
    provider: Arc<rustls::crypto::CryptoProvider>,
    verifier: Arc<rustls_platform_verifier::Verifier>,
) -> Result<Arc<Configs>, String> {
    let mut http = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let mut websocket = http.clone();
    http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    websocket.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(Configs { http: Arc::new(http), websocket: Arc::new(websocket) }))
}

/// Where a connection goes: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OriginKey {
    https: bool,
    host: url::Host<String>,
    port: u16,
}

impl OriginKey {
    pub(crate) fn of(url: &url::Url) -> Result<OriginKey, StepError> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(StepError::new(Reason::Config, format!("`{other}:` URLs are not HTTP"))),
        };
        let host = url
            .host()
            .ok_or_else(|| StepError::new(Reason::Config, format!("`{}` has no host", url.path())))?
            .to_owned();
        let port = url.port().unwrap_or(if https { 443 } else { 80 });
        Ok(OriginKey { https, host, port })
    }

    pub(crate) fn matches(&self, url: &url::Url) -> bool {
        let https = url.scheme() == "https";
        https == self.https
            && url.port().unwrap_or(if https { 443 } else { 80 }) == self.port
            && url.host().is_some_and(|h| match (&self.host, h) {
                (url::Host::Domain(a), url::Host::Domain(b)) => a == b,
                (url::Host::Ipv4(a), url::Host::Ipv4(b)) => *a == b,
                (url::Host::Ipv6(a), url::Host::Ipv6(b)) => *a == b,
                _ => false,
            })
    }
}

/// One open connection: HTTP/1.1 driven by the run's own future, or HTTP/2 with
/// the task that drives it.
pub(crate) struct Connection {
    pub(crate) origin: OriginKey,
    pub(crate) sender: Sender,
    pub(crate) clock: Arc<IoClock>,
}

pub(crate) enum Sender {
    Http1(super::h1::Connection),
    Http2(http2::SendRequest<Full<Bytes>>, tokio::task::AbortHandle),
}

impl Connection {
    /// Whether the connection can carry another request now (an HTTP/1.1
    /// socket is looked at: a server may have closed it while it was idle).
    pub(crate) fn is_open(&mut self) -> bool {
        match &mut self.sender {
            Sender::Http1(c) => c.is_open(),
            Sender::Http2(s, _) => !s.is_closed(),
        }
    }

    /// Whether the connection may be kept for another request, without a
    /// look at the socket ([`Connection::is_open`] does that before reuse).
    pub(crate) fn reusable(&self) -> bool {
        match &self.sender {
            Sender::Http1(c) => c.reusable(),
            Sender::Http2(s, _) => !s.is_closed(),
        }
    }
}

impl Drop for Connection {
    /// Closing is immediate: a run that timed out mid-response must not leave a
    /// task waiting on a server that never answers. (An HTTP/1.1 connection has
    /// no task: its socket closes as it is dropped.)
    fn drop(&mut self) {
        if let Sender::Http2(_, task) = &self.sender {
            task.abort();
        }
    }
}

/// How host names become addresses: the system's resolver, or a fixed table
/// (for tests and sandboxes, so that no lookup ever leaves the machine).
#[derive(Clone, Debug, Default)]
pub enum Resolver {
    /// `getaddrinfo` through `tokio::net::lookup_host`.
    #[default]
    System,
    /// Only these names resolve (compared case-insensitively); every other name
    /// fails as "no such name", as an NXDOMAIN answer would.
    Static(Arc<Vec<(String, Vec<std::net::IpAddr>)>>),
}

impl Resolver {
    /// A resolver that knows only `names`.
    pub fn fixed(names: impl IntoIterator<Item = (String, Vec<std::net::IpAddr>)>) -> Resolver {
        Resolver::Static(Arc::new(names.into_iter().collect()))
    }

    /// The addresses of `name` at `port`; an error (`dns`) when it has none.
    pub async fn lookup(&self, name: &str, port: u16) -> Result<Vec<SocketAddr>, StepError> {
        let found: Vec<SocketAddr> = match self {
            Resolver::System => tokio::net::lookup_host((name, port))
                .await
                .map_err(|e| StepError::new(Reason::Dns, format!("cannot resolve {name}: {e}")))?
                .collect(),
            Resolver::Static(names) => {
                let Some((_, ips)) = names.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) else {
                    return Err(StepError::new(Reason::Dns, format!("cannot resolve {name}: no such name")));
                };
                ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()
            }
        };
        if found.is_empty() {
            return Err(StepError::new(Reason::Dns, format!("{name} has no address")));
        }
        Ok(found)
    }

    /// The addresses of `host` at `port`: an IP literal as it is, a name looked up.
    pub async fn addresses(&self, host: &url::Host<String>, port: u16) -> Result<Vec<SocketAddr>, StepError> {
        match host {
            url::Host::Ipv4(ip) => Ok(vec![SocketAddr::new((*ip).into(), port)]),
            url::Host::Ipv6(ip) => Ok(vec![SocketAddr::new((*ip).into(), port)]),
            url::Host::Domain(name) => self.lookup(name, port).await,
        }
    }
}

/// Opens a TCP connection to `host`:`port` through `resolver`, as a connection
/// to an instance does (addresses in order, the next after [`NEXT_ADDRESS_AFTER`]).
pub async fn tcp(resolver: &Resolver, host: &url::Host<String>, port: u16) -> Result<TcpStream, StepError> {
    let addresses = resolver.addresses(host, port).await?;
    connect_any(&addresses)
        .await
        .map(|(tcp, _)| tcp)
        .map_err(|e| StepError::new(Reason::Connect, format!("cannot connect to {host}:{port}: {e}")))
}

/// Opens a new connection to `origin`, reporting each phase as it starts.
pub(crate) async fn open(
    origin: &OriginKey,
    tls: &Tls,
    resolver: &Resolver,
    phases: &Recorder,
) -> Result<Connection, StepError> {
    if matches!(origin.host, url::Host::Domain(_)) {
        phases.enter(Phase::Dns);
    }
    let addresses = resolver.addresses(&origin.host, origin.port).await?;
    phases.enter(Phase::Connect);
    let (tcp, attempt_began) = connect_any(&addresses)
        .await
        .map_err(|e| StepError::new(Reason::Connect, format!("cannot connect to {}: {e}", origin_text(origin))))?;
    // The handshake ended when the SYN-ACK came, which may be well before this
    // thread got round to seeing the connection up.
    if let Some(rtt) = handshake_rtt(&tcp) {
        phases.connected(attempt_began + rtt);
    }
    // Requests are written whole; Nagle's algorithm would only delay them.
    let _ = tcp.set_nodelay(true);
    let clock = Arc::new(IoClock::default());
    let io = TimedIo::new(tcp, clock.clone());
    let sender = if origin.https {
        phases.enter(Phase::Tls);
        let config = tls.config()?;
        let name = match &origin.host {
            url::Host::Domain(d) => ServerName::try_from(d.clone())
                .map_err(|e| StepError::new(Reason::Config, format!("`{d}` is not a TLS server name: {e}")))?,
            url::Host::Ipv4(ip) => ServerName::IpAddress((*ip).into()),
            url::Host::Ipv6(ip) => ServerName::IpAddress((*ip).into()),
        };
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, io)
            .await
            .map_err(|e| StepError::new(classify_io(&e), format!("TLS with {}: {e}", origin_text(origin))))?;
        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
            http2_handshake(TokioIo::new(stream)).await?
        } else {
            Sender::Http1(super::h1::Connection::new(super::h1::Io::Tls(Box::new(stream))))
        }
    } else {
        Sender::Http1(super::h1::Connection::new(super::h1::Io::Plain(io)))
    };
    Ok(Connection { origin: origin.clone(), sender, clock })
}

fn origin_text(origin: &OriginKey) -> String {
    format!("{}:{}", origin.host, origin.port)
}

async fn http2_handshake<T>(io: TokioIo<T>) -> Result<Sender, StepError>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let failed = |e: hyper::Error| StepError::new(super::http::classify(&e), format!("HTTP handshake: {e}"));
    let (sender, connection) = http2::handshake(TokioExecutor::new(), io).await.map_err(failed)?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "HTTP/2 connection ended");
        }
    });
    Ok(Sender::Http2(sender, task.abort_handle()))
}

/// Connects to the first address that answers, and says when the attempt
/// that did began. Each address gets [`NEXT_ADDRESS_AFTER`] alone before the
/// next one is tried alongside it, and a refused address hands over at once, so
/// a host with a broken IPv6 route still connects over IPv4 quickly.
async fn connect_any(addresses: &[SocketAddr]) -> io::Result<(TcpStream, Instant)> {
    let attempt = |address: SocketAddr| async move {
        let began = Instant::now();
        TcpStream::connect(address).await.map(|tcp| (tcp, began))
    };
    if let [only] = addresses {
        return attempt(*only).await;
    }
    let mut attempts = tokio::task::JoinSet::new();
    let mut next = 0;
    let mut last_error = None;
    loop {
        if attempts.is_empty() {
            match addresses.get(next) {
                Some(address) => {
                    attempts.spawn(attempt(*address));
                    next += 1;
                }
                None => {
                    return Err(last_error.unwrap_or_else(|| io::Error::other("no address to connect to")));
                }
            }
        }
        tokio::select! {
            Some(joined) = attempts.join_next() => match joined {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => last_error = Some(e),
                Err(e) => last_error = Some(io::Error::other(e)),
            },
            () = tokio::time::sleep(NEXT_ADDRESS_AFTER), if next < addresses.len() => {
                attempts.spawn(attempt(addresses[next]));
                next += 1;
            }
        }
    }
}

/// Whether an I/O error from the TLS layer is the handshake failing (certificate,
/// protocol) or the connection going away under it.
pub(crate) fn classify_io(error: &io::Error) -> Reason {
    if error.get_ref().is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        || error.kind() == io::ErrorKind::InvalidData
    {
        Reason::Tls
    } else {
        Reason::ConnectionClosed
    }
}

/// The TCP stream with every successful write and read noted on the connection's
/// [`IoClock`]: a read as the instant the kernel received its bytes where that is
/// known ([`ReceiveTimes`]), else as the instant it was read. It sits under TLS,
/// so it sees bytes as they reach and leave the socket.
pub(crate) struct TimedIo {
    pub(crate) inner: TcpStream,
    clock: Arc<IoClock>,
    received: Option<ReceiveTimes>,
}

impl TimedIo {
    pub(crate) fn new(inner: TcpStream, clock: Arc<IoClock>) -> TimedIo {
        let received = ReceiveTimes::enable(&inner);
        TimedIo { inner, clock, received }
    }

    fn wrote(&mut self) {
        self.clock.wrote();
        if let Some(received) = &mut self.received {
            received.wrote();
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let read = match &mut this.received {
            Some(received) => received.poll_read(&this.inner, cx, buf),
            None => Pin::new(&mut this.inner).poll_read(cx, buf).map_ok(|()| None),
        };
        // An end of stream, an error, or bytes with no stamp: known when read.
        read.map(|read| {
            this.clock.received(read.as_ref().ok().copied().flatten().unwrap_or_else(Instant::now));
            read.map(|_| ())
        })
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
