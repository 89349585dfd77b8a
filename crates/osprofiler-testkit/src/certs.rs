//! A throwaway certificate authority and a server certificate for 127.0.0.1, made with
//! the `openssl` command, for tests of TLS clients (`rediss://`, `otlps://`); client
//! certificates from the same CA on demand (mutual TLS).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files [`TestCerts::make`] wrote: PEM, EC P-256, valid two days.
#[derive(Debug, Clone)]
pub struct TestCerts {
    /// The CA certificate, to trust.
    pub ca: PathBuf,
    /// The server certificate (CN and subjectAltName `IP:127.0.0.1`), signed by the CA;
    /// good for client authentication too (Redis Cluster's TLS bus and replication).
    pub cert: PathBuf,
    /// The server's private key (PKCS#8).
    pub key: PathBuf,
}

/// A client certificate from [`TestCerts::issue_client`].
#[derive(Debug, Clone)]
pub struct TestClientCert {
    /// The certificate (CN the name given, `extendedKeyUsage=clientAuth`), PEM.
    pub cert: PathBuf,
    /// Its private key (PKCS#8 PEM).
    pub key: PathBuf,
}

/// Signs the request `csr` with the CA in `dir` (`ca.pem`, `ca.key`) into `out`, with the
/// extensions of `ext`, valid two days.
fn sign(dir: &Path, csr: &str, out: &str, ext: &str) -> Result<(), String> {
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            out,
            "-days",
            "2",
            "-extfile",
            ext,
        ],
    )
}

/// Runs `openssl args…` in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// openssl's options for a new EC P-256 key, unencrypted.
const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

impl TestCerts {
    /// Writes `ca.pem`, `server.pem` and `server.key` (and scratch files) into `dir`.
    /// Fails when `openssl` is missing or refuses.
    pub fn make(dir: &Path) -> Result<TestCerts, String> {
        let run = |args: &[&str]| openssl(dir, args);
        std::fs::write(
            dir.join("server.ext"),
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .map_err(|e| e.to_string())?;
        let ec = EC;
        run(&[
            &["req", "-x509"][..],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=osprofiler test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat())?;
        run(&[
            &["req"][..],
            &ec[..],
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat())?;
        sign(dir, "server.csr", "server.pem", "server.ext")?;
        Ok(TestCerts {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        })
    }

    /// A client certificate for `name` (letters, digits, `-`, `_`) signed by this CA
    /// (whose key `make` left beside `ca.pem`): `client-NAME.pem` and `client-NAME.key`.
    pub fn issue_client(&self, name: &str) -> Result<TestClientCert, String> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "client certificate name {name:?}: letters, digits, - or _"
            ));
        }
        let dir = self
            .ca
            .parent()
            .ok_or_else(|| format!("{} has no directory", self.ca.display()))?;
        let run = |args: &[&str]| openssl(dir, args);
        let (cert, key, csr, ext) = (
            format!("client-{name}.pem"),
            format!("client-{name}.key"),
            format!("client-{name}.csr"),
            format!("client-{name}.ext"),
        );
        std::fs::write(
            dir.join(&ext),
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        .map_err(|e| e.to_string())?;
        let subject = format!("/CN={name}");
        run(&[
            &["req"][..],
            &EC[..],
            &["-keyout", &key, "-out", &csr, "-subj", &subject],
        ]
        .concat())?;
        sign(dir, &csr, &cert, &ext)?;
        Ok(TestClientCert {
            cert: dir.join(cert),
            key: dir.join(key),
        })
    }
}
