//! A test cluster that accepts TCP clients only with a client certificate: `ssl = on` with a
//! server certificate for 127.0.0.1, and `hostssl all all 127.0.0.1/32 cert` as the only TCP line
//! of `pg_hba.conf` (the `cert` method verifies the chain against `ssl_ca_file` and requires the
//! certificate's CN to be the user's name: libpq's `clientcert=verify-full`). Certificates come
//! from a throw-away CA made in the test with rcgen.
//!
//! ```ignore
//! let pg = PgServer::start();
//! pg.create_user_db("gateway", "unused");
//! let certs = ClientCerts::require(&pg, "gateway");
//! let url = certs.url("gateway");   // sslmode=verify-full&sslrootcert=…&sslcert=…&sslkey=…
//! ```

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair};

use super::postgres::{PgServer, encode};
use super::wait_until;

/// A CA, the server's certificate installed in the cluster, and a client certificate for one user.
pub struct ClientCerts {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    port: u16,
    user: String,
    /// The CA's certificate (PEM): `sslrootcert`.
    pub ca_file: PathBuf,
    /// The client certificate (PEM), CN = the user: `sslcert`.
    pub cert_file: PathBuf,
    /// Its key (PKCS#8 PEM, mode 0600 as libpq wants it): `sslkey`.
    pub key_file: PathBuf,
}

impl ClientCerts {
    /// Turns `pg` into a server that requires a client certificate on TCP (the unix socket keeps
    /// trusting the harness's psql), and issues one for `user`. Waits until the server has
    /// reloaded. Panics on failure.
    #[track_caller]
    pub fn require(pg: &PgServer, user: &str) -> ClientCerts {
        let ca_key = KeyPair::generate().expect("client certs: CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("client certs: CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name = dn("vigil test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("client certs: CA certificate");

        let server_key = KeyPair::generate().expect("client certs: server key");
        let mut server_params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("client certs: server params");
        server_params.distinguished_name = dn("127.0.0.1");
        let server = server_params
            .signed_by(&server_key, &ca)
            .expect("client certs: server certificate");

        let data = pg.data_dir();
        let owner = fs::metadata(data).expect("client certs: data directory");
        for (name, pem) in [
            ("server.crt", server.pem()),
            ("server.key", server_key.serialize_pem()),
            ("root.crt", ca.pem()),
        ] {
            let path = data.join(name);
            fs::write(&path, pem).expect("client certs: write into the data directory");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("client certs: chmod");
            std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).expect("client certs: chown");
        }
        fs::write(
            data.join("pg_hba.conf"),
            "# written by tests/support/pg_client_cert.rs: TCP clients need a client certificate\n\
             # TYPE   DATABASE     USER  ADDRESS       METHOD\n\
             local    all          all                 trust\n\
             local    replication  all                 trust\n\
             hostssl  all          all   127.0.0.1/32  cert\n",
        )
        .expect("client certs: write pg_hba.conf");
        pg.psql("ALTER SYSTEM SET ssl_cert_file = 'server.crt'");
        pg.psql("ALTER SYSTEM SET ssl_key_file = 'server.key'");
        pg.psql("ALTER SYSTEM SET ssl_ca_file = 'root.crt'");
        pg.psql("ALTER SYSTEM SET ssl = on");
        pg.psql("SELECT pg_reload_conf()");
        // The postmaster reloads pg_hba.conf and the TLS settings on the same SIGHUP; a new
        // session seeing ssl = on and the file's rule in effect means both are in.
        wait_until(
            Duration::from_secs(10),
            "the server to require client certificates",
            || {
                pg.psql("SHOW ssl") == "on"
                    && pg.psql("SELECT count(*) FROM pg_hba_file_rules WHERE auth_method = 'cert' AND error IS NULL")
                        == "1"
            },
        );

        let dir = tempfile::Builder::new()
            .prefix("vigil-client-cert-")
            .tempdir()
            .expect("client certs: temporary directory");
        let ca_file = dir.path().join("ca.pem");
        fs::write(&ca_file, ca.pem()).expect("client certs: write ca.pem");
        let mut certs = ClientCerts {
            ca_file,
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            dir,
            ca,
            port: pg.port(),
            user: user.to_owned(),
        };
        let (cert_file, key_file) = certs.issue(user, "client");
        certs.cert_file = cert_file;
        certs.key_file = key_file;
        certs
    }

    /// Another client certificate from the same CA, with CN `common_name`, written as
    /// `<name>.crt` / `<name>.key`: e.g. one whose CN is not the user's.
    pub fn issue(&self, common_name: &str, name: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("client certs: client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client certs: client params");
        params.distinguished_name = dn(common_name);
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("client certs: client certificate");
        let cert_file = self.dir.path().join(format!("{name}.crt"));
        let key_file = self.dir.path().join(format!("{name}.key"));
        fs::write(&cert_file, cert.pem()).expect("client certs: write the certificate");
        fs::write(&key_file, key.serialize_pem()).expect("client certs: write the key");
        fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).expect("client certs: chmod key");
        (cert_file, key_file)
    }

    /// `postgres://<user>@127.0.0.1:<port>/<db>?sslmode=verify-full&sslrootcert=…&sslcert=…&sslkey=…`
    /// (no password: the certificate is the credential).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{}?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
            encode(&self.user),
            self.port,
            encode(db),
            self.ca_file.display(),
            self.cert_file.display(),
            self.key_file.display()
        )
    }

    /// The same as a libpq key=value connection string.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={} dbname={db} sslmode=verify-full sslrootcert={} sslcert={} sslkey={}",
            self.port,
            self.user,
            self.ca_file.display(),
            self.cert_file.display(),
            self.key_file.display()
        )
    }

    /// The directory holding the client-side files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}
