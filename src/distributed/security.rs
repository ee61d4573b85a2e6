//! Who may talk to a worker, and over what: a shared secret and TLS.
//!
//! - **Token.** Every request to a worker carries `authorization: Bearer <token>`; a worker
//!   with a token refuses any request without that exact token (gRPC `unauthenticated`; the
//!   comparison takes the same time wherever the tokens differ). The token comes from
//!   [`TOKEN_ENV`] or a file ([`TOKEN_FILE_ENV`], `--token-file`). A worker without a token
//!   only listens on a loopback address.
//! - **TLS** (rustls) for `https://` workers: a worker serves with its certificate and key; a
//!   coordinator (and a worker, for the stages it reads from other workers) verifies workers
//!   against the CA given, else the system's roots. A worker given a CA also requires its
//!   clients to present a certificate the CA signed (mutual TLS), and a client with a
//!   certificate and key presents them.
//!
//! Both go in every channel to a worker ([`SecureChannels`], the distributed planner's channel
//! resolver), on the coordinator and on the workers alike.
//! The Flight SQL server ([`crate::flight_sql`]) admits requests and speaks TLS by the same
//! rules as a worker.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::common::DataFusionError;
use datafusion_distributed::grpc::{create_worker_client, BoxCloneSyncChannel};
use datafusion_distributed::{ChannelResolver, WorkerChannel};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};
use url::Url;

use crate::error::{MetaxyError, Result};

/// The environment variable holding the cluster's shared secret.
pub const TOKEN_ENV: &str = "METAXY_CLUSTER_TOKEN";
/// The environment variable naming a file that holds the cluster's shared secret.
pub const TOKEN_FILE_ENV: &str = "METAXY_CLUSTER_TOKEN_FILE";

/// The gRPC metadata key the token travels in.
const AUTHORIZATION: &str = "authorization";
/// Fewer characters than this and a token is refused as guessable.
const MIN_TOKEN_LEN: usize = 16;

/// PEM files for TLS between coordinator and workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// This process's certificate chain: a worker's server certificate, or a client
    /// certificate presented to workers that require one.
    pub cert: Option<PathBuf>,
    /// The private key of `cert`.
    pub key: Option<PathBuf>,
    /// The CA that signs the workers' certificates (clients verify workers with it; a worker
    /// given it requires client certificates it signed). Without it, clients trust the
    /// system's roots.
    pub ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether any TLS file is given.
    pub fn any(&self) -> bool {
        self.cert.is_some() || self.key.is_some() || self.ca.is_some()
    }
}

/// How a coordinator and its workers authenticate each other: the shared token and TLS.
/// `Debug` never prints the token.
///
/// ```
/// use datafusion_metaxy::distributed::ClusterSecurity;
/// let security = ClusterSecurity::default().with_token("a-long-shared-secret-0123")?;
/// assert!(security.has_token());
/// assert!(!format!("{security:?}").contains("secret"));
/// # Ok::<(), datafusion_metaxy::MetaxyError>(())
/// ```
#[derive(Clone, Default)]
pub struct ClusterSecurity {
    token: Option<Arc<str>>,
    /// TLS files.
    pub tls: TlsFiles,
}

impl fmt::Debug for ClusterSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSecurity")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

impl ClusterSecurity {
    /// Sets the shared token: at least 16 visible ASCII characters (it travels in a header).
    pub fn with_token(mut self, token: &str) -> Result<Self> {
        let token = token.trim();
        if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(MetaxyError::Config(format!(
                "the cluster token must be at least {MIN_TOKEN_LEN} visible ASCII characters \
                 (no spaces)"
            )));
        }
        self.token = Some(token.into());
        Ok(self)
    }

    /// Sets the TLS files.
    pub fn with_tls(mut self, tls: TlsFiles) -> Self {
        self.tls = tls;
        self
    }

    /// Whether a token is set.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The token of `token_file`, else of the file [`TOKEN_FILE_ENV`] names, else
    /// [`TOKEN_ENV`]; none when none is set.
    pub fn from_env(token_file: Option<&Path>, tls: TlsFiles) -> Result<Self> {
        let security = Self::default().with_tls(tls);
        let file = token_file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(TOKEN_FILE_ENV).map(PathBuf::from));
        if let Some(file) = file {
            let text = std::fs::read_to_string(&file).map_err(|source| MetaxyError::Io {
                path: file.display().to_string(),
                source,
            })?;
            return security.with_token(&text);
        }
        match std::env::var(TOKEN_ENV) {
            Ok(token) if !token.is_empty() => security.with_token(&token),
            _ => Ok(security),
        }
    }

    /// Refuses to serve on `listen` without a token unless it is a loopback address: anyone
    /// who reaches the port could `risk`. `holders` says who is to be given the token.
    pub(crate) fn check_listen(&self, listen: SocketAddr, risk: &str, holders: &str) -> Result<()> {
        if listen.ip().is_loopback() || self.has_token() {
            return Ok(());
        }
        Err(MetaxyError::Config(format!(
            "refusing to listen on {listen} without a cluster token: anyone who reaches the \
             port could {risk}. Set {TOKEN_ENV} (or {TOKEN_FILE_ENV}, --token-file) on \
             {holders}, or listen on a loopback address"
        )))
    }

    /// The check a server (a worker, the Flight SQL server) puts in front of every request.
    pub(crate) fn interceptor(&self) -> TokenCheck {
        TokenCheck {
            expected: self
                .token
                .as_ref()
                .map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }

    /// The server TLS configuration of a worker or the Flight SQL server, when it has a
    /// certificate.
    pub(crate) fn server_tls(&self) -> Result<Option<ServerTlsConfig>> {
        let tls = &self.tls;
        let (cert, key) = match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => (cert, key),
            (None, None) if tls.ca.is_none() => return Ok(None),
            _ => {
                return Err(MetaxyError::Config(
                    "a TLS server needs both a certificate and its key (--tls-cert, --tls-key)"
                        .into(),
                ))
            }
        };
        let mut config =
            ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
        if let Some(ca) = &tls.ca {
            config = config.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        install_crypto_provider();
        Ok(Some(config))
    }

    /// The client TLS configuration for the worker at `url` (https only).
    fn client_tls(&self, url: &Url) -> Result<ClientTlsConfig> {
        let tls = &self.tls;
        let mut config =
            ClientTlsConfig::new().domain_name(url.host_str().unwrap_or_default().to_string());
        config = match &tls.ca {
            Some(ca) => config.ca_certificate(Certificate::from_pem(read(ca)?)),
            None => config.with_native_roots(),
        };
        match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(read(cert)?, read(key)?))
            }
            (None, None) => {}
            _ => {
                return Err(MetaxyError::Config(
                    "a client certificate needs its key and the key its certificate \
                     (--tls-cert, --tls-key)"
                        .into(),
                ))
            }
        }
        install_crypto_provider();
        Ok(config)
    }

    /// Refuses worker URLs this configuration cannot honour: plain `http://` when TLS files
    /// are given.
    pub(crate) fn check_urls(&self, workers: &[Url]) -> Result<()> {
        if !self.tls.any() {
            return Ok(());
        }
        match workers.iter().find(|w| w.scheme() != "https") {
            Some(plain) => Err(MetaxyError::Config(format!(
                "worker {plain} is plain http while TLS files are given: use https://"
            ))),
            None => Ok(()),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| MetaxyError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// rustls is built with two crypto providers here (ring and aws-lc-rs, by different
/// dependencies), so it cannot pick one by itself: ring, once per process.
fn install_crypto_provider() {
    // An error only says a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A server's check of the token on every request (workers and the Flight SQL server).
#[derive(Clone)]
pub(crate) struct TokenCheck {
    /// The SHA-256 of the token; `None`: every request passes.
    expected: Option<[u8; 32]>,
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(
        &mut self,
        request: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(given) = given else {
            return Err(tonic::Status::unauthenticated(format!(
                "authentication failed: the request carries no cluster token ({TOKEN_ENV})"
            )));
        };
        // Equal-length digests compared in constant time: the time taken says nothing of
        // where the token differs, nor of its length.
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        if bool::from(digest.ct_eq(expected)) {
            Ok(request)
        } else {
            Err(tonic::Status::unauthenticated(format!(
                "authentication failed: wrong cluster token ({TOKEN_ENV})"
            )))
        }
    }
}

/// The channels to workers, one per URL, each sending the token and speaking TLS to
/// `https://` workers: the distributed planner's [`ChannelResolver`].
#[derive(Clone)]
pub(crate) struct SecureChannels {
    security: ClusterSecurity,
    channels: Arc<Mutex<HashMap<Url, BoxCloneSyncChannel>>>,
}

impl SecureChannels {
    pub(crate) fn new(security: ClusterSecurity) -> Self {
        Self {
            security,
            channels: Arc::default(),
        }
    }

    fn channel(&self, url: &Url) -> Result<BoxCloneSyncChannel> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(url) {
            return Ok(channel.clone());
        }
        let bad = |e: &dyn fmt::Display| MetaxyError::Config(format!("worker {url}: {e}"));
        let mut endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| bad(&e))?;
        if url.scheme() == "https" {
            endpoint = endpoint
                .tls_config(self.security.client_tls(url)?)
                .map_err(|e| bad(&e))?;
        }
        let header = match &self.security.token {
            Some(token) => {
                let mut value =
                    http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| bad(&e))?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let with_token = tower::ServiceBuilder::new()
            .map_request(move |mut request: http::Request<tonic::body::Body>| {
                if let Some(value) = &header {
                    request
                        .headers_mut()
                        .insert(http::header::AUTHORIZATION, value.clone());
                }
                request
            })
            .service(endpoint.connect_lazy());
        let channel = BoxCloneSyncChannel::new(with_token);
        channels.insert(url.clone(), channel.clone());
        Ok(channel)
    }
}

#[async_trait]
impl ChannelResolver for SecureChannels {
    async fn get_worker_client_for_url(
        &self,
        url: &Url,
    ) -> std::result::Result<Box<dyn WorkerChannel>, DataFusionError> {
        Ok(create_worker_client(self.channel(url)?))
    }
}

#[cfg(test)]
mod tests {
    use tonic::service::Interceptor;

    use super::*;

    fn request(header: Option<&str>) -> tonic::Request<()> {
        let mut request = tonic::Request::new(());
        if let Some(h) = header {
            request
                .metadata_mut()
                .insert(AUTHORIZATION, h.parse().unwrap());
        }
        request
    }

    #[test]
    fn the_token_check_admits_only_the_token() {
        let security = ClusterSecurity::default()
            .with_token("correct-horse-battery-staple")
            .unwrap();
        let mut check = security.interceptor();
        assert!(check
            .call(request(Some("Bearer correct-horse-battery-staple")))
            .is_ok());
        for wrong in [
            None,
            Some("Bearer correct-horse-battery-stapl"),
            Some("Bearer correct-horse-battery-staple2"),
            Some("correct-horse-battery-staple"),
            Some("Basic correct-horse-battery-staple"),
        ] {
            let status = check.call(request(wrong)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{wrong:?}");
            assert!(status.message().contains("token"), "{}", status.message());
        }
        // Without a token, a worker admits every request (it then only listens on loopback).
        assert!(ClusterSecurity::default()
            .interceptor()
            .call(request(None))
            .is_ok());
    }

    #[test]
    fn short_or_spaced_tokens_are_refused_and_never_printed() {
        assert!(ClusterSecurity::default().with_token("short").is_err());
        assert!(ClusterSecurity::default()
            .with_token("has a space in the middle")
            .is_err());
        let s = ClusterSecurity::default()
            .with_token("0123456789abcdef-secret")
            .unwrap();
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
    }
}
