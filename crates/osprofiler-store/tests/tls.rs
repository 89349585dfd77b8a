//! TLS to the servers of the SQL, messaging and Redis Cluster backends (feature `tls`;
//! PostgreSQL's: `postgres-tls`), each a real server started with certificates from the
//! harness's throwaway CA: a write and a read over TLS, the server's own word that the
//! connection is TLS (PostgreSQL's `pg_stat_ssl`, MariaDB's `REQUIRE SSL` user and
//! `Ssl_accepts`, a plain client refused on a TLS-only port, a RabbitMQ that wants a client
//! certificate), a certificate from another CA refused with a one-line error that shows no
//! password, and plain TCP still working. Client certificates (`sslcert`/`sslkey`,
//! `ssl_cert`/`ssl_key`, `ssl_cert_file`) against servers that let a user in with one only. Each test skips (or fails under `CI=true`) when
//! its server or `openssl` is missing. Without the feature, one test checks that TLS
//! strings are refused (and one that `tls` without `postgres-tls` refuses PostgreSQL's).

use std::time::Duration;

use osprofiler_store::{ConnectionString, OpenError, Options, open, sink};

mod common;
use common::cs;

fn opts() -> Options {
    Options {
        socket_timeout: Duration::from_secs(5),
        ..Options::default()
    }
}

/// The error of opening `c`: unavailable, on one line, without `secret`.
/// Whether `m` is the peer's TLS refusal of our certificate: its alert, or, when the
/// alert came after a TLS 1.3 handshake and the connection was reset before we read it
/// (the kernel drops what was unread), the reset.
#[cfg(feature = "tls")]
fn tls_refusal(m: &str) -> bool {
    m.contains("alert") || m.contains("os error 104")
}

fn open_err(c: &ConnectionString, o: &Options, secret: &str) -> String {
    match open(c, o) {
        Ok(_) => panic!("{c} opened"),
        Err(e @ OpenError::Unavailable { .. }) => {
            let m = e.to_string();
            assert!(!m.contains('\n'), "one line: {m}");
            assert!(!m.contains(secret), "shows the password: {m}");
            eprintln!("refused as expected: {m}");
            m
        }
        Err(e) => panic!("{c}: unexpected error {e}"),
    }
}

/// Without the `tls` feature, every string that asks for TLS is refused at once, on one
/// line, by the sink and the store alike (no server needed: nothing is sent).
#[cfg(not(feature = "tls"))]
#[test]
fn tls_needs_the_feature() {
    use osprofiler_store::TransportUrl;
    let m = ConnectionString::Messaging;
    let amqps = Options {
        transport_url: Some(
            "amqps://guest:S3cret@127.0.0.1:1/"
                .parse::<TransportUrl>()
                .unwrap(),
        ),
        ..opts()
    };
    for (c, o) in [
        (
            cs("postgresql://u:S3cret@127.0.0.1:1/db?sslmode=verify-full"),
            opts(),
        ),
        (
            cs("postgresql://u:S3cret@127.0.0.1:1/db?sslmode=require"),
            opts(),
        ),
        (
            cs("mysql+pymysql://u:S3cret@127.0.0.1:1/db?ssl_ca=/ca.pem"),
            opts(),
        ),
        (
            cs("mysql://u:S3cret@127.0.0.1:1/db?ssl_mode=REQUIRED"),
            opts(),
        ),
        // A client certificate is not dropped, not even with `prefer` (TLS if offered).
        (
            cs("postgresql://u:S3cret@127.0.0.1:1/db?sslcert=/c.pem&sslkey=/c.key"),
            opts(),
        ),
        (
            cs("mysql://u:S3cret@127.0.0.1:1/db?ssl_mode=PREFERRED&ssl_cert=/c.pem&ssl_key=/c.key"),
            opts(),
        ),
        (cs("rediscluster://:S3cret@127.0.0.1:1?ssl=true"), opts()),
        (m, amqps),
    ] {
        // `tls`, or for PostgreSQL `postgres-tls`.
        let e = open_err(&c, &o, "S3cret");
        assert!(e.contains("tls` feature"), "{e}");
        match sink(&c, &o) {
            Err(e) => assert!(e.to_string().contains("tls` feature"), "{e}"),
            Ok(_) => panic!("a sink for {c}"),
        }
    }
}

/// `tls` without `postgres-tls`: PostgreSQL's TLS strings are refused in one line naming
/// the feature (the other backends have TLS); `prefer`, libpq's default, is plain TCP.
#[cfg(all(feature = "tls", not(feature = "postgres-tls")))]
#[test]
fn postgres_tls_needs_its_feature() {
    for q in [
        "sslmode=require",
        "sslmode=verify-full",
        "sslmode=verify-ca&sslrootcert=/ca.pem",
        "sslcert=/c.pem&sslkey=/c.key",
    ] {
        let c = cs(&format!("postgresql://u:S3cret@127.0.0.1:1/db?{q}"));
        let e = open_err(&c, &opts(), "S3cret");
        assert!(e.contains("`postgres-tls` feature"), "{e}");
        match sink(&c, &opts()) {
            Err(e) => assert!(e.to_string().contains("`postgres-tls` feature"), "{e}"),
            Ok(_) => panic!("a sink for {c}"),
        }
    }
    // Nothing listens on port 1: refused as unreachable, not for TLS.
    let e = open_err(
        &cs("postgresql://u:S3cret@127.0.0.1:1/db"),
        &opts(),
        "S3cret",
    );
    assert!(!e.contains("feature"), "{e}");
}

/// The tests against servers with TLS.
#[cfg(feature = "tls")]
mod with_tls {
    use super::*;
    use std::time::Instant;

    use common::text::uuid;
    use osprofiler::Event;
    use osprofiler_store::TransportUrl;
    use osprofiler_testkit::{
        MariaDbServer, PostgresServer, RabbitMqServer, RedisCluster, TempDir, TestCerts, need,
    };
    use serde_json::json;

    /// A wsgi point with a db point inside: four events.
    fn small_trace(base: &str) -> Vec<Event> {
        common::text::wsgi_db(
            base,
            0,
            json!({"request": {"path": "/"}}),
            json!({"db": {"statement": "SELECT 1"}}),
            json!({}),
        )
    }

    /// Two throwaway CAs with a server certificate each: the server's, and another one
    /// whose CA must not be trusted for it. Both CAs have the same name, so rustls finds the
    /// other as the issuer and says `BadSignature` (the system roots: `UnknownIssuer`).
    struct Certs {
        ours: TestCerts,
        other: TestCerts,
        _dirs: (TempDir, TempDir),
    }

    fn certs() -> Option<Certs> {
        let (a, b) = (TempDir::new(), TempDir::new());
        let ours = need("openssl", TestCerts::make(a.path()))?;
        let other = need("openssl", TestCerts::make(b.path()))?;
        Some(Certs {
            ours,
            other,
            _dirs: (a, b),
        })
    }

    /// Writes one trace through a sink of `c` and reads its four events back with a store.
    fn round_trip(c: &ConnectionString, o: &Options, n: u32) {
        let base = uuid(n);
        let mut w = sink(c, o).unwrap_or_else(|e| panic!("{c}: {e}"));
        w.write(&small_trace(&base)).unwrap();
        w.flush().unwrap();
        drop(w);
        let mut store = open(c, o).unwrap_or_else(|e| panic!("{c}: {e}"));
        assert_eq!(store.event_texts(&base).unwrap().len(), 4, "{c}");
    }

    /// rustls' words for a certificate no trusted CA signed.
    fn refused_certificate(m: &str) -> bool {
        m.contains("invalid peer certificate: UnknownIssuer")
            || m.contains("invalid peer certificate: BadSignature")
    }

    fn started<T>(what: &str, t: Instant, server: Result<T, String>) -> Option<T> {
        let s = need(what, server)?;
        eprintln!("{what} started in {:?}", t.elapsed());
        Some(s)
    }

    /// `sslmode` (libpq's values) and `sslrootcert` against a PostgreSQL with `ssl=on`.
    #[cfg(feature = "postgres-tls")]
    #[test]
    fn postgres_tls() {
        let Some(certs) = certs() else { return };
        let t = Instant::now();
        let Some(pg) = started(
            "postgresql with TLS",
            t,
            PostgresServer::start_tls(&certs.ours),
        ) else {
            return;
        };
        let port = pg.port();
        // Trust authentication: the password is not needed, only never shown.
        let url = |host: &str, query: &str| {
            cs(&format!(
                "postgresql+psycopg2://postgres:Pg-s3cret@{host}:{port}/postgres?{query}"
            ))
        };
        let ca = certs.ours.ca.display().to_string();
        // How many of our connections the server has, over TLS and not.
        let ours = |ssl: bool| -> usize {
            pg.psql(&format!(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = 'osprofiler-rs' AND s.ssl = {ssl}"
            ))
            .unwrap()
            .parse()
            .unwrap()
        };

        let full = url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        );
        round_trip(&full, &opts(), 1);
        let store = open(&full, &opts()).unwrap();
        assert_eq!((ours(true), ours(false)), (1, 0));
        drop(store);

        // verify-ca: the certificate names 127.0.0.1, not localhost; the chain is enough.
        let by_name = url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        );
        let m = open_err(&by_name, &opts(), "Pg-s3cret");
        assert!(m.contains("invalid peer certificate"), "{m}");
        round_trip(
            &url("localhost", &format!("sslmode=verify-ca&sslrootcert={ca}")),
            &opts(),
            2,
        );
        // require: TLS, nothing verified; libpq's default (prefer) takes TLS when offered.
        round_trip(&url("127.0.0.1", "sslmode=require"), &opts(), 3);
        let store = open(&url("127.0.0.1", ""), &opts()).unwrap();
        assert_eq!(ours(true), 1, "prefer takes TLS");
        drop(store);

        // Another CA's certificate, and the system roots, do not vouch for this server.
        let other = certs.other.ca.display();
        for c in [
            url(
                "127.0.0.1",
                &format!("sslmode=verify-full&sslrootcert={other}"),
            ),
            url(
                "127.0.0.1",
                &format!("sslmode=verify-ca&sslrootcert={other}"),
            ),
            url("127.0.0.1", "sslmode=verify-full"),
        ] {
            let m = open_err(&c, &opts(), "Pg-s3cret");
            assert!(refused_certificate(&m), "{m}");
            assert!(sink(&c, &opts()).is_err(), "a sink for {c}");
        }
        // Plain TCP still works, and is plain.
        let plain = url("127.0.0.1", "sslmode=disable");
        round_trip(&plain, &opts(), 4);
        let store = open(&plain, &opts()).unwrap();
        assert_eq!((ours(true), ours(false)), (0, 1));
        drop(store);
    }

    /// `sslcert`/`sslkey` against a PostgreSQL that lets `alice` in over TLS with a
    /// certificate from its CA whose CN is `alice` only (`hostssl … cert`).
    #[cfg(feature = "postgres-tls")]
    #[test]
    fn postgres_client_certificate() {
        let Some(certs) = certs() else { return };
        let alice = certs.ours.issue_client("alice").unwrap();
        let bob = certs.ours.issue_client("bob").unwrap();
        let stranger = certs.other.issue_client("alice").unwrap();
        let t = Instant::now();
        let Some(pg) = started(
            "postgresql with client certificates",
            t,
            PostgresServer::start_mutual_tls(
                &certs.ours,
                &[
                    "hostssl all alice 127.0.0.1/32 cert",
                    "host all alice 127.0.0.1/32 reject",
                ],
            ),
        ) else {
            return;
        };
        // Alice's own database (libpq's default name), where she may create tables.
        pg.psql("CREATE ROLE alice LOGIN").unwrap();
        pg.psql("CREATE DATABASE alice OWNER alice").unwrap();
        let port = pg.port();
        let ca = certs.ours.ca.display().to_string();
        // Certificate authentication: the password is not needed, only never shown.
        let url = |query: &str| {
            cs(&format!(
                "postgresql://alice:Pg-s3cret@127.0.0.1:{port}?sslmode=verify-full&sslrootcert={ca}{query}"
            ))
        };
        let with = |c: &osprofiler_testkit::TestClientCert| {
            format!("&sslcert={}&sslkey={}", c.cert.display(), c.key.display())
        };
        round_trip(&url(&with(&alice)), &opts(), 1);
        // `require` (nothing verified) sends it as well.
        round_trip(
            &cs(&format!(
                "postgresql://alice:Pg-s3cret@127.0.0.1:{port}?sslmode=require{}",
                with(&alice)
            )),
            &opts(),
            2,
        );

        // No certificate, another user's, or one from another CA: refused on one line.
        let m = open_err(&url(""), &opts(), "Pg-s3cret");
        assert!(m.contains("client certificate"), "{m}");
        assert!(sink(&url(""), &opts()).is_err());
        let m = open_err(&url(&with(&bob)), &opts(), "Pg-s3cret");
        assert!(m.contains("certificate authentication failed"), "{m}");
        let m = open_err(&url(&with(&stranger)), &opts(), "Pg-s3cret");
        assert!(tls_refusal(&m), "{m}");
        // Bad files: named, their contents not shown.
        let cert = alice.cert.display().to_string();
        let m = open_err(
            &url(&format!("&sslcert={cert}&sslkey={cert}")),
            &opts(),
            "Pg-s3cret",
        );
        assert!(m.contains(&format!("no PEM private key in {cert}")), "{m}");
        assert!(!m.contains("BEGIN"), "{m}");
        let m = open_err(
            &url(&format!(
                "&sslcert={}&sslkey={}",
                bob.cert.display(),
                alice.key.display()
            )),
            &opts(),
            "Pg-s3cret",
        );
        assert!(m.contains(&bob.cert.display().to_string()), "{m}");
        assert!(!m.contains("BEGIN"), "{m}");
        let m = open_err(
            &url("&sslcert=/nonexistent/c.pem&sslkey=/nonexistent/c.key"),
            &opts(),
            "Pg-s3cret",
        );
        assert!(
            m.contains("cannot read the client certificate from /nonexistent/c.pem"),
            "{m}"
        );
    }

    /// MySQL's `ssl_mode` and pymysql's `ssl_ca` against a MariaDB started with
    /// `--ssl-cert`/`--ssl-key`.
    #[test]
    fn mariadb_tls() {
        let Some(certs) = certs() else { return };
        let t = Instant::now();
        let Some(db) = started("mariadb with TLS", t, MariaDbServer::start_tls(&certs.ours)) else {
            return;
        };
        // `tls_only` may log in over TLS only: the server refuses it a plain connection.
        db.sql(
            "CREATE USER 'tls_only'@'127.0.0.1' IDENTIFIED BY 'My-s3cret' REQUIRE SSL; \
             GRANT ALL ON osprofiler.* TO 'tls_only'@'127.0.0.1'; \
             CREATE USER 'plain'@'127.0.0.1' IDENTIFIED BY 'My-s3cret'; \
             GRANT ALL ON osprofiler.* TO 'plain'@'127.0.0.1'",
        )
        .unwrap();
        let port = db.port();
        let url = |user: &str, query: &str| {
            cs(&format!(
                "mysql+pymysql://{user}:My-s3cret@127.0.0.1:{port}/osprofiler?{query}"
            ))
        };
        let accepts = || -> u64 {
            let out = db.sql("SHOW GLOBAL STATUS LIKE 'Ssl_accepts'").unwrap();
            out.split_whitespace().last().unwrap().parse().unwrap()
        };
        let ca = certs.ours.ca.display().to_string();

        let before = accepts();
        round_trip(&url("tls_only", &format!("ssl_ca={ca}")), &opts(), 1);
        round_trip(
            &url("tls_only", &format!("ssl_mode=VERIFY_IDENTITY&ssl_ca={ca}")),
            &opts(),
            2,
        );
        // The certificate names 127.0.0.1: by another name it is refused unless only the
        // chain is checked (VERIFY_CA, pymysql's ssl_check_hostname=false).
        let by_name = |query: &str| {
            cs(&format!(
                "mysql+pymysql://tls_only:My-s3cret@localhost:{port}/osprofiler?{query}"
            ))
        };
        let m = open_err(&by_name(&format!("ssl_ca={ca}")), &opts(), "My-s3cret");
        assert!(m.contains("invalid peer certificate"), "{m}");
        round_trip(
            &by_name(&format!("ssl_ca={ca}&ssl_check_hostname=false")),
            &opts(),
            6,
        );
        round_trip(
            &by_name(&format!("ssl_mode=VERIFY_CA&ssl_ca={ca}")),
            &opts(),
            7,
        );
        // Unverified TLS: MySQL's REQUIRED, pymysql's ssl=true.
        round_trip(&url("tls_only", "ssl_mode=REQUIRED"), &opts(), 3);
        round_trip(&url("tls_only", "ssl=true"), &opts(), 4);
        // PREFERRED takes the TLS the server offers: the TLS-only user gets in.
        round_trip(&url("tls_only", "ssl_mode=PREFERRED"), &opts(), 8);
        assert!(accepts() >= before + 10, "{before} -> {}", accepts());

        // Another CA, or the system's and the crate's bundled roots, do not vouch for
        // this server.
        let other = certs.other.ca.display();
        for c in [
            url("tls_only", &format!("ssl_ca={other}")),
            url("tls_only", "ssl_mode=VERIFY_CA"),
            url("tls_only", "ssl_mode=VERIFY_IDENTITY"),
        ] {
            let m = open_err(&c, &opts(), "My-s3cret");
            assert!(refused_certificate(&m), "{m}");
            assert!(sink(&c, &opts()).is_err(), "a sink for {c}");
        }
        // The system's roots are trusted: with the test CA as the system's
        // (`SSL_CERT_FILE`, which rustls-native-certs reads), VERIFY_IDENTITY without
        // `ssl_ca` connects. In a child process: tests beside this one share its environment.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "with_tls::system_roots_child", "--ignored"])
            .args(["--nocapture", "--test-threads=1"])
            .env("SSL_CERT_FILE", &certs.ours.ca)
            .env_remove("SSL_CERT_DIR")
            .env(
                CHILD_URL,
                format!(
                    "mysql+pymysql://tls_only:My-s3cret@127.0.0.1:{port}/osprofiler\
                     ?ssl_mode=VERIFY_IDENTITY"
                ),
            )
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // Plain TCP: refused to the TLS-only user by the server, fine for the other.
        let m = open_err(&url("tls_only", ""), &opts(), "My-s3cret");
        assert!(m.contains("Access denied"), "{m}");
        // The mariadb command of `accepts` may itself count (its client takes TLS).
        let a0 = accepts();
        let a1 = accepts();
        round_trip(&url("plain", "ssl_mode=DISABLED"), &opts(), 5);
        assert_eq!(accepts() - a1, a1 - a0, "plain connections are plain");
    }

    /// `ssl_cert`/`ssl_key` against a MariaDB (started with `--ssl-ca`) whose user wants a
    /// certificate from its CA (`REQUIRE X509`).
    #[test]
    fn mariadb_client_certificate() {
        let Some(certs) = certs() else { return };
        let client = certs.ours.issue_client("alice").unwrap();
        let stranger = certs.other.issue_client("alice").unwrap();
        let t = Instant::now();
        let Some(db) = started(
            "mariadb with client certificates",
            t,
            MariaDbServer::start_tls(&certs.ours),
        ) else {
            return;
        };
        db.sql(
            "CREATE USER 'alice'@'127.0.0.1' IDENTIFIED BY 'My-s3cret' REQUIRE X509; \
             GRANT ALL ON osprofiler.* TO 'alice'@'127.0.0.1'",
        )
        .unwrap();
        let port = db.port();
        let url = |query: &str| {
            cs(&format!(
                "mysql+pymysql://alice:My-s3cret@127.0.0.1:{port}/osprofiler?{query}"
            ))
        };
        let ca = certs.ours.ca.display().to_string();
        let with = |c: &osprofiler_testkit::TestClientCert| {
            format!("ssl_cert={}&ssl_key={}", c.cert.display(), c.key.display())
        };
        // pymysql: a certificate alone is TLS; with the CA the server is verified too.
        round_trip(&url(&with(&client)), &opts(), 1);
        round_trip(&url(&format!("ssl_ca={ca}&{}", with(&client))), &opts(), 2);
        round_trip(
            &url(&format!(
                "ssl_mode=VERIFY_IDENTITY&ssl_ca={ca}&{}",
                with(&client)
            )),
            &opts(),
            3,
        );

        // Without a certificate: TLS, but the server refuses the user.
        let m = open_err(&url(&format!("ssl_ca={ca}")), &opts(), "My-s3cret");
        assert!(m.contains("Access denied"), "{m}");
        assert!(sink(&url(&format!("ssl_ca={ca}")), &opts()).is_err());
        // Another CA's: the server's TLS alert.
        let m = open_err(&url(&with(&stranger)), &opts(), "My-s3cret");
        assert!(tls_refusal(&m), "{m}");
        // Bad files: named, their contents not shown.
        let cert = client.cert.display().to_string();
        let m = open_err(
            &url(&format!("ssl_cert={cert}&ssl_key={cert}")),
            &opts(),
            "My-s3cret",
        );
        assert!(m.contains(&format!("no PEM private key in {cert}")), "{m}");
        assert!(!m.contains("BEGIN"), "{m}");
    }

    /// The child of `mariadb_tls`: a round trip through the connection string in
    /// `CHILD_URL`. Nothing without it.
    #[test]
    #[ignore = "run by mariadb_tls in a process of its own"]
    fn system_roots_child() {
        let Ok(url) = std::env::var(CHILD_URL) else {
            return;
        };
        round_trip(&cs(&url), &opts(), 9);
    }

    const CHILD_URL: &str = "OSPROFILER_TLS_TEST_URL";

    /// `ssl_mode=PREFERRED` against a MariaDB without TLS: plain TCP, as MySQL's client
    /// does (the server has no certificate: `have_ssl` is `DISABLED`).
    #[test]
    fn mariadb_preferred_without_tls() {
        let t = Instant::now();
        let Some(db) = started("mariadb", t, MariaDbServer::start()) else {
            return;
        };
        assert_eq!(db.sql("SELECT @@have_ssl").unwrap(), "DISABLED");
        db.sql(
            "CREATE USER 'plain'@'127.0.0.1' IDENTIFIED BY 'My-s3cret'; \
             GRANT ALL ON osprofiler.* TO 'plain'@'127.0.0.1'",
        )
        .unwrap();
        let port = db.port();
        let url = |query: &str| {
            cs(&format!(
                "mysql+pymysql://plain:My-s3cret@127.0.0.1:{port}/osprofiler?{query}"
            ))
        };
        round_trip(&url("ssl_mode=PREFERRED"), &opts(), 1);
        // REQUIRED still refuses it, on one line, without the password.
        let m = open_err(&url("ssl_mode=REQUIRED"), &opts(), "My-s3cret");
        assert!(m.contains("server does not have this capability"), "{m}");
    }

    /// `amqps://` (and `rabbit://…?ssl=true`) with `ssl_ca_file` against a RabbitMQ with a TLS
    /// listener beside its plain one.
    #[test]
    fn messaging_tls() {
        let Some(certs) = certs() else { return };
        let t = Instant::now();
        let Some(mq) = started(
            "rabbitmq-server with TLS",
            t,
            RabbitMqServer::start_tls(&certs.ours),
        ) else {
            return;
        };
        let tls_port = mq.tls_port().unwrap();
        let with = |url: &str| Options {
            transport_url: Some(url.parse::<TransportUrl>().unwrap()),
            ..opts()
        };
        let ca = certs.ours.ca.display().to_string();
        let m = ConnectionString::Messaging;
        round_trip(
            &m,
            &with(&format!(
                "amqps://guest:guest@127.0.0.1:{tls_port}/?ssl_ca_file={ca}"
            )),
            1,
        );
        round_trip(
            &m,
            &with(&format!(
                "rabbit://guest:guest@127.0.0.1:{tls_port}/?ssl=true&ssl_ca_file={ca}"
            )),
            2,
        );
        // Another CA, or the system roots alone, do not vouch for it.
        for url in [
            format!(
                "amqps://guest:guest@127.0.0.1:{tls_port}/?ssl_ca_file={}",
                certs.other.ca.display()
            ),
            format!("amqps://guest:guest@127.0.0.1:{tls_port}/"),
        ] {
            let e = open_err(&m, &with(&url), ":guest@");
            assert!(refused_certificate(&e), "{e}");
            assert!(sink(&m, &with(&url)).is_err(), "a sink for {url}");
        }
        // A plain client gets nowhere on the TLS port; plain TCP works on the plain one.
        let short = Options {
            socket_timeout: Duration::from_secs(2),
            ..with(&format!("rabbit://guest:guest@127.0.0.1:{tls_port}/"))
        };
        open_err(&m, &short, ":guest@");
        round_trip(&m, &with(&mq.transport_url()), 3);
    }

    /// Client certificates (`ssl_cert_file`, `ssl_key_file`) against a RabbitMQ whose TLS
    /// listener asks for one and refuses a client without (`verify_peer`,
    /// `fail_if_no_peer_cert`), in the URL and in a service's `[oslo_messaging_rabbit]`.
    #[test]
    fn messaging_mutual_tls() {
        let Some(certs) = certs() else { return };
        let client = certs.ours.issue_client("guest").unwrap();
        let stranger = certs.other.issue_client("guest").unwrap();
        let t = Instant::now();
        let Some(mq) = started(
            "rabbitmq-server with mutual TLS",
            t,
            RabbitMqServer::start_mutual_tls(&certs.ours),
        ) else {
            return;
        };
        let tls_port = mq.tls_port().unwrap();
        let with = |url: &str| Options {
            transport_url: Some(url.parse::<TransportUrl>().unwrap()),
            ..opts()
        };
        let (ca, cert, key) = (
            certs.ours.ca.display().to_string(),
            client.cert.display().to_string(),
            client.key.display().to_string(),
        );
        let base = format!("amqps://guest:guest@127.0.0.1:{tls_port}/?ssl_ca_file={ca}");
        let m = ConnectionString::Messaging;
        round_trip(
            &m,
            &with(&format!("{base}&ssl_cert_file={cert}&ssl_key_file={key}")),
            1,
        );
        // The key in the certificate's file, as Python's `ssl` also takes it.
        let both = certs.ours.ca.with_file_name("client-and-key.pem");
        let mut pem = std::fs::read(&client.cert).unwrap();
        pem.extend(std::fs::read(&client.key).unwrap());
        std::fs::write(&both, pem).unwrap();
        round_trip(
            &m,
            &with(&format!("{base}&ssl_cert_file={}", both.display())),
            2,
        );

        // A service's configuration: the URL from `[DEFAULT]`, TLS from `[oslo_messaging_rabbit]`.
        let ini = osprofiler::config::Ini::parse(&format!(
            "[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:{tls_port}/\n\
             [oslo_messaging_rabbit]\nssl = true\nssl_ca_file = {ca}\n\
             ssl_cert_file = {cert}\nssl_key_file = {key}\n"
        ))
        .unwrap();
        let from_conf = opts().with_oslo_messaging(&ini).unwrap();
        round_trip(&m, &from_conf, 3);

        // No client certificate, or one from another CA: the broker's TLS alert, refused
        // by the store on one line, without the password. The sink refuses at once when
        // its first connection brings the alert back in time; else (TLS 1.3 sends it after
        // the handshake, and a loaded broker may be slow to) it opens and its writes fail
        // on one line, without the password: never a write that seems to succeed.
        for url in [
            base.clone(),
            format!(
                "{base}&ssl_cert_file={}&ssl_key_file={}",
                stranger.cert.display(),
                stranger.key.display()
            ),
        ] {
            let e = open_err(&m, &with(&url), ":guest@");
            assert!(tls_refusal(&e), "{e}");
            match sink(&m, &with(&url)) {
                Err(e) => {
                    let e = e.to_string();
                    assert!(!e.contains('\n') && !e.contains(":guest@"), "{e}");
                    eprintln!("sink refused as expected: {e}");
                }
                Ok(mut s) => {
                    let e = s
                        .write(&small_trace(&uuid(9)))
                        .err()
                        .unwrap_or_else(|| panic!("a write through {url}"))
                        .to_string();
                    assert!(!e.contains('\n') && !e.contains(":guest@"), "{e}");
                    eprintln!("sink opened, its write refused: {e}");
                }
            }
        }
        // A key file that is not one: said so, naming the file and not its contents.
        let e = open_err(
            &m,
            &with(&format!("{base}&ssl_cert_file={cert}&ssl_key_file={cert}")),
            ":guest@",
        );
        assert!(e.contains("no PEM private key in"), "{e}");
        assert!(!e.contains("BEGIN"), "{e}");
    }

    /// `rediscluster://…?ssl=true&ssl_ca_certs=…` against a cluster (three masters, a
    /// replica each) whose nodes talk TLS to clients and to each other (`--tls-cluster
    /// yes`, `--tls-replication yes`).
    #[test]
    fn redis_cluster_tls() {
        let Some(certs) = certs() else { return };
        let t = Instant::now();
        let Some(cluster) = started(
            "redis cluster with TLS",
            t,
            RedisCluster::start_tls(3, 1, &certs.ours),
        ) else {
            return;
        };
        let ca = certs.ours.ca.display().to_string();
        let url = format!("{}&ssl_ca_certs={ca}", cluster.tls_url());
        let c = cs(&url);
        assert!(c.to_string().ends_with("?ssl=true"), "{c}");
        // Several traces, so that every master is written to.
        let mut w = sink(&c, &opts()).unwrap();
        for n in 0..12 {
            w.write(&small_trace(&uuid(n))).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        let mut store = open(&c, &opts()).unwrap();
        for n in 0..12 {
            assert_eq!(store.event_texts(&uuid(n)).unwrap().len(), 4);
        }
        // They are in the cluster (read over the harness's plain ports).
        let masters = cluster.master_ports().unwrap();
        let total: i64 = masters
            .iter()
            .map(|&p| cluster.cmd_on(p, &["DBSIZE"]).unwrap().as_int().unwrap())
            .sum();
        assert!(total >= 12, "{total} keys");
        // The replicas follow their masters over TLS (`--tls-replication yes`).
        for n in cluster
            .cluster_nodes()
            .unwrap()
            .iter()
            .filter(|n| !n.master)
        {
            let info = cluster
                .cmd_on(n.port, &["INFO", "replication"])
                .unwrap()
                .into_string()
                .unwrap();
            assert!(info.contains("master_link_status:up"), "{info}");
        }
        // Another CA, or the system roots, do not vouch for the nodes.
        for bad in [
            format!(
                "{}&ssl_ca_certs={}",
                cluster.tls_url(),
                certs.other.ca.display()
            ),
            cluster.tls_url(),
        ] {
            let m = open_err(&cs(&bad), &opts(), "ssl_ca_certs=");
            assert!(refused_certificate(&m), "{m}");
        }
        // A plain client gets nowhere on the TLS ports; the plain ports still work.
        let short = Options {
            socket_timeout: Duration::from_millis(500),
            ..opts()
        };
        let plain_on_tls = url
            .replace("?ssl=true", "?ssl=false")
            .replace(&format!("&ssl_ca_certs={ca}"), "");
        open_err(&cs(&plain_on_tls), &short, "\u{0}");
        let mut store = open(&cs(&cluster.url()), &opts()).unwrap();
        assert_eq!(store.event_texts(&uuid(3)).unwrap().len(), 4);
    }
}
