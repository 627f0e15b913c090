//! `--web`: the archive's pages and API beside the scheduler, until the service stops.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use archive_web::{OidcSignIn, TlsFiles, WebConfig, WebState};
use archiver_service::Service;
use profile_engine::CancellationToken;
use tracing::info;

use crate::{Args, CALLER};

/// Binds `addr` and serves the web app in the background; refuses plain HTTP off loopback.
pub async fn start(
    service: &Service,
    args: &Args,
    addr: SocketAddr,
    stop: CancellationToken,
) -> Result<()> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(archive_web::serve::tls_config(&TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        })?),
        _ => None,
    };
    if tls.is_none() && !addr.ip().is_loopback() {
        anyhow::bail!(archive_web::ServeError::PlainHttpOffLoopback(addr));
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}/"));
    let public_url: url::Url = public
        .parse()
        .with_context(|| format!("--public-url `{public}` is not a URL"))?;
    let credentials = args
        .credentials
        .clone()
        .context("--web needs --credentials NAME (the app registration people sign in with)")?;
    let mut config = WebConfig::new(public_url, service.data_dir().join("web-exports"));
    config.restore_credentials = Some(credentials.clone());
    let redirect_uri: url::Url = config
        .redirect_uri()
        .parse()
        .context("the redirect URI derived from --public-url is not a URL")?;
    let (registration, options) = service
        .sign_in_registration(CALLER, &credentials)
        .with_context(|| format!("credential `{credentials}`"))?;
    let entra = OidcSignIn::new(registration, &options, redirect_uri.clone())
        .with_context(|| format!("Entra sign-in with credential `{credentials}`"))?;
    let state = WebState::new(service.clone(), config).with_entra(Arc::new(entra));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    info!(%bound, %redirect_uri, "web pages and API listening (register the redirect URI in Entra)");
    tokio::spawn(async move {
        let shutdown = async move { stop.cancelled().await };
        if let Err(e) =
            archive_web::serve(listener, archive_web::router(state), tls, shutdown).await
        {
            tracing::error!("the web server stopped: {e}");
        }
    });
    Ok(())
}
