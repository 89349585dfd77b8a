//! The certificates TLS clients of this crate trust (`rediss://`, `otlps://`): a
//! connection string's CA bundle, or else the system's roots; and the client
//! certificates they present (`amqps://`, PostgreSQL, MySQL).

use std::path::Path;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The CA certificates to trust: every certificate of the PEM file `ca_certs` (each
/// must be a valid trust anchor), or else the system's. `option` names the connection
/// string option for messages (`ssl_ca_certs`, `ca_certs`).
pub(crate) fn root_certs(
    ca_certs: Option<&Path>,
    option: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    match ca_certs {
        Some(path) => {
            let shown = path.display();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read CA certificates from {shown}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("cannot read CA certificates from {shown}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("no PEM certificate in {shown}"));
            }
            // Checked here, so a bad file is reported when the store is opened and not
            // as a handshake failure later.
            let mut check = RootCertStore::empty();
            for cert in &certs {
                check
                    .add(cert.clone())
                    .map_err(|e| format!("bad CA certificate in {shown}: {e}"))?;
            }
            Ok(certs)
        }
        None => {
            // Unreadable entries are skipped: one bad file must not disable TLS.
            let found = rustls_native_certs::load_native_certs();
            let mut check = RootCertStore::empty();
            let certs: Vec<_> = found
                .certs
                .into_iter()
                .filter(|c| check.add(c.clone()).is_ok())
                .collect();
            if certs.is_empty() {
                return Err(format!(
                    "no system CA certificates found (give {option}=<file.pem>)"
                ));
            }
            Ok(certs)
        }
    }
}

/// A client's certificate and private key, read from PEM files and checked: the PEM
/// texts as read, and what rustls takes.
#[cfg(any(feature = "messaging", feature = "postgres-tls", feature = "mysql"))]
// lapin alone reads the PEM texts, rustls (PostgreSQL) the rest.
#[cfg_attr(
    not(all(feature = "messaging", feature = "postgres-tls")),
    allow(dead_code)
)]
pub(crate) struct ClientPem {
    /// The certificate file as read (for lapin, which parses it again).
    pub(crate) cert_pem: Vec<u8>,
    /// The key file as read.
    pub(crate) key_pem: Vec<u8>,
    /// The certificate chain, the client's first.
    pub(crate) chain: Vec<CertificateDer<'static>>,
    /// The first private key of the key file.
    pub(crate) key: rustls::pki_types::PrivateKeyDer<'static>,
}

/// The certificate chain of the PEM file `cert` and the private key of `key` (else of
/// `cert`, where Python's `ssl` also looks for it). Both checked here, so that a bad file
/// is reported as such and not as a failed handshake; messages name the files, never show
/// what they hold.
// Used by the client certificates of amqps://, PostgreSQL and MySQL only.
#[cfg(any(feature = "messaging", feature = "postgres-tls", feature = "mysql"))]
pub(crate) fn client_pem(cert: &Path, key: Option<&Path>) -> Result<ClientPem, String> {
    let shown = cert.display();
    let cert_pem = std::fs::read(cert)
        .map_err(|e| format!("cannot read the client certificate from {shown}: {e}"))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("bad client certificate in {shown}: not PEM"))?;
    if chain.is_empty() {
        return Err(format!("no PEM certificate in {shown}"));
    }
    let key_path = key.unwrap_or(cert);
    let shown = key_path.display();
    let key_pem = std::fs::read(key_path)
        .map_err(|e| format!("cannot read the client key from {shown}: {e}"))?;
    // The parser's own error is not shown: it may quote a line of the file.
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| format!("no PEM private key in {shown}"))?;
    Ok(ClientPem {
        cert_pem,
        key_pem,
        chain,
        key,
    })
}

/// [`root_certs`] as a rustls root store.
pub(crate) fn root_store(ca_certs: Option<&Path>, option: &str) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    // Every one was checked by `root_certs`.
    store.add_parsable_certificates(root_certs(ca_certs, option)?);
    Ok(store)
}

/// Any certificate accepted (`ssl_cert_reqs=none`, redis-py's `CERT_NONE`; `sslmode=require`).
/// The handshake's signatures are still checked, so the peer holds the certificate's key.
#[derive(Debug)]
pub(crate) struct NoVerify(pub(crate) WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// How much of the server's certificate an SQL client verifies.
#[cfg(feature = "postgres-tls")]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Verify {
    /// Nothing (libpq's `require`, `prefer`).
    Nothing,
    /// The chain, not the host name (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    Full,
}

/// A rustls client configuration (ring) trusting `ca` or else the system's roots, and
/// presenting the certificate `identity` (PEM files: certificate, key) if given.
#[cfg(feature = "postgres-tls")]
pub(crate) fn client_config(
    ca: Option<&Path>,
    option: &str,
    verify: Verify,
    identity: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, String> {
    use std::sync::Arc;
    // An explicit provider: the process-wide default may be unset or another one.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = match verify {
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(
                provider.signature_verification_algorithms,
            ))),
        Verify::Full => builder.with_root_certificates(root_store(ca, option)?),
        Verify::Chain => {
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(root_store(ca, option)?),
                provider,
            )
            .build()
            .map_err(|e| format!("TLS setup: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
        }
    };
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let pem = client_pem(cert, Some(key))?;
            // rustls checks that the key is the certificate's; its error quotes neither.
            builder
                .with_client_auth_cert(pem.chain, pem.key)
                .map_err(|e| {
                    format!(
                        "client certificate {} with key {}: {e}",
                        cert.display(),
                        key.display()
                    )
                })
        }
    }
}

/// `verify-ca`: webpki's verdict, except that a certificate for another host name passes.
/// webpki checks the name last, after the chain, so that error means the chain is good.
#[cfg(feature = "postgres-tls")]
#[derive(Debug)]
struct ChainOnly(std::sync::Arc<rustls::client::WebPkiServerVerifier>);

#[cfg(feature = "postgres-tls")]
impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
