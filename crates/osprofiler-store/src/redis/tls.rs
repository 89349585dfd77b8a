//! TLS for `rediss://`: rustls with the ring provider, trusting the connection string's
//! `ssl_ca_certs` or else the system's roots, or nothing at all with `ssl_cert_reqs=none`.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;

use crate::tls::NoVerify;

/// What a TLS connection needs besides the socket.
#[derive(Clone)]
pub(crate) struct TlsSetup {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) server_name: ServerName<'static>,
}

/// Builds the client configuration for `host`.
pub(crate) fn setup(host: &str, ca_certs: Option<&Path>, verify: bool) -> Result<TlsSetup, String> {
    // An explicit provider: the process-wide default may be unset or another one.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = if verify {
        builder
            .with_root_certificates(crate::tls::root_store(ca_certs, "ssl_ca_certs")?)
            .with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth()
    };
    let server_name = ServerName::try_from(host.to_owned())
        .map_err(|_| format!("{host:?} is not a valid TLS server name"))?;
    Ok(TlsSetup {
        config: Arc::new(config),
        server_name,
    })
}
