//! The three listeners (login, Graph, control), plain http or https with a freshly generated CA,
//! each connection served by hyper with HTTP/1.1 and HTTP/2.
//!
//! Connections run over [`ResettableStream`], which closes with a TCP reset when the fault gate
//! asked for one, so clients meet a real "connection reset by peer" mid-body.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

use crate::EmulatorError;
use crate::gate::{self, ConnectionControl};
use crate::state::AppState;

/// Where the listeners are.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    pub(crate) login_url: url::Url,
    pub(crate) graph_url: url::Url,
    pub(crate) admin_url: url::Url,
    /// CA certificate PEM when serving https.
    pub(crate) ca_pem: Option<String>,
}

/// The running listeners; dropping this stops them.
#[derive(Debug)]
pub(crate) struct Running {
    state: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, closes the connections and waits for the accept loops to end.
    pub(crate) async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        self.state.clear_graph_service();
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.state.clear_graph_service();
    }
}

/// A TCP stream that closes with RST instead of FIN once its flag is set.
pub(crate) struct ResettableStream {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.reset.load(Ordering::SeqCst) {
            // No orderly shutdown: the drop resets the connection.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Test CA and the listeners' certificate.
struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    ca_pem: String,
}

fn build_tls() -> Result<Tls, EmulatorError> {
    let fail =
        |what: &str, e: &dyn std::fmt::Display| EmulatorError::Credentials(format!("{what}: {e}"));
    let ca_key = rcgen::KeyPair::generate().map_err(|e| fail("CA key", &e))?;
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "m365-emulator test CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|e| fail("CA certificate", &e))?;
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let leaf_key = rcgen::KeyPair::generate().map_err(|e| fail("server key", &e))?;
    let mut leaf_params = rcgen::CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .map_err(|e| fail("server certificate names", &e))?;
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "m365-emulator");
    leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .map_err(|e| fail("server certificate", &e))?;
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail("TLS versions", &e))?
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone(), ca_cert.der().clone()], key_der)
        .map_err(|e| fail("TLS configuration", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        ca_pem: ca_cert.pem(),
    })
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, EmulatorError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| EmulatorError::Bind { addr, source })
}

fn url_of(listener: &TcpListener, tls: bool) -> Result<url::Url, EmulatorError> {
    let local = listener
        .local_addr()
        .map_err(|e| EmulatorError::InvalidConfig(format!("listener has no local address: {e}")))?;
    let host = match local.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST).to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    let scheme = if tls { "https" } else { "http" };
    url::Url::parse(&format!("{scheme}://{host}:{}/", local.port()))
        .map_err(|e| EmulatorError::InvalidConfig(format!("listener URL: {e}")))
}

/// The Graph router behind its gates (context, token, permissions, throttle, faults).
fn graph_app(state: &Arc<AppState>) -> axum::Router {
    use axum::middleware::from_fn_with_state;
    crate::graph::router()
        .layer(from_fn_with_state(Arc::clone(state), gate::faults))
        .layer(from_fn_with_state(Arc::clone(state), gate::throttle))
        .layer(from_fn_with_state(Arc::clone(state), gate::permissions))
        .layer(from_fn_with_state(Arc::clone(state), gate::token))
        .layer(from_fn_with_state(Arc::clone(state), gate::context))
        .with_state(Arc::clone(state))
}

/// Binds the listeners and starts serving.
pub(crate) async fn serve(state: Arc<AppState>) -> Result<(Endpoints, Running), EmulatorError> {
    let tls = if state.config.tls {
        Some(build_tls()?)
    } else {
        None
    };
    let graph_addr = state.config.listen;
    let side_addr = SocketAddr::new(graph_addr.ip(), 0);
    let admin_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let graph_listener = bind(graph_addr).await?;
    let login_listener = bind(side_addr).await?;
    let admin_listener = bind(admin_addr).await?;
    let is_tls = tls.is_some();
    let endpoints = Endpoints {
        login_url: url_of(&login_listener, is_tls)?,
        graph_url: url_of(&graph_listener, is_tls)?,
        admin_url: url_of(&admin_listener, is_tls)?,
        ca_pem: tls.as_ref().map(|t| t.ca_pem.clone()),
    };
    state
        .identity
        .set_urls(endpoints.login_url.clone(), endpoints.graph_url.clone());

    let graph = graph_app(&state);
    state.install_graph_service(graph.clone());
    let login = crate::identity::router().with_state(Arc::clone(&state));
    let admin = crate::admin::router().with_state(Arc::clone(&state));

    let (shutdown, watcher) = watch::channel(false);
    let acceptor = tls.map(|t| t.acceptor);
    let tasks = vec![
        tokio::spawn(accept_loop(
            graph_listener,
            graph,
            acceptor.clone(),
            watcher.clone(),
        )),
        tokio::spawn(accept_loop(
            login_listener,
            login,
            acceptor.clone(),
            watcher.clone(),
        )),
        tokio::spawn(accept_loop(admin_listener, admin, acceptor, watcher)),
    ];
    tracing::info!(
        login = %endpoints.login_url, graph = %endpoints.graph_url, admin = %endpoints.admin_url,
        "emulator listening"
    );
    Ok((
        endpoints,
        Running {
            state,
            shutdown,
            tasks,
        },
    ))
}

async fn accept_loop(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors or a transient network error: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let control = ConnectionControl::default();
        let io = ResettableStream {
            inner: stream,
            reset: Arc::clone(&control.reset),
        };
        let app = app.clone();
        let tls = tls.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(control.clone());
                app.clone().oneshot(request.map(Body::new))
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match tls {
                Some(acceptor) => {
                    let Ok(stream) = acceptor.accept(io).await else {
                        return;
                    };
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = connection => {}
                        _ = shutdown.wait_for(|stop| *stop) => {}
                    }
                }
                None => {
                    let connection = builder.serve_connection(TokioIo::new(io), service);
                    tokio::select! {
                        _ = connection => {}
                        _ = shutdown.wait_for(|stop| *stop) => {}
                    }
                }
            }
        });
    }
}
