//! The certificates TLS clients of this crate trust (`rediss://`, `otlps://`): a
//! connection string's CA bundle, or else the system's roots.

use std::path::Path;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

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

/// [`root_certs`] as a rustls root store.
pub(crate) fn root_store(ca_certs: Option<&Path>, option: &str) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    // Every one was checked by `root_certs`.
    store.add_parsable_certificates(root_certs(ca_certs, option)?);
    Ok(store)
}
