//! Throwaway PostgreSQL clusters for the job-store tests.
//!
//! Every [`Pg`] is its own cluster: `initdb` into a temporary directory,
//! a server on 127.0.0.1 with its unix socket in that directory, a `haul`
//! database, trust authentication. Nothing is shared between tests, so a
//! test may kill or restart its server mid-run without disturbing another.
//! That costs little: on the 2-core CI machine `initdb` takes ~0.6 s and a
//! start ~0.1 s (fsync off, no sync after initdb, C locale).
//!
//! The server binaries come from `/usr/lib/postgresql/*/bin` (Debian's
//! layout, highest version) or else `PATH`; `.ci/run` installs them. When
//! they are missing the harness panics naming the package to install: a test
//! that needs PostgreSQL never passes without it.
//!
//! `initdb` and `pg_ctl` refuse to run as root, so as root they run as the
//! `postgres` system user (`runuser`), which then owns the directory.
//!
//! The port is picked at random below Linux's ephemeral range (32768 and
//! up) and checked free by binding it. Ports from `bind(127.0.0.1:0)`, which
//! the other tests' origins use, therefore never take it, including while a
//! test has the server stopped for a restart on the same port.
//!
//! The server is stopped by [`Pg::stop`] or, failing that, when the `Pg` is
//! dropped, a panicking test included. A test process killed outright
//! leaves its server running (pg_ctl detaches it).
//!
//! [`Pg::start_tls`] starts one that speaks TLS with a certificate for
//! `localhost` from a CA of its own (rcgen), and refuses TCP connections
//! without it (`hostssl` only in `pg_hba.conf`): a test that gets through
//! proves its data went encrypted.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// What to install when the server binaries are missing.
const INSTALL: &str = "install the PostgreSQL server: `apt-get install postgresql` \
    (Debian, Ubuntu), `dnf install postgresql-server` (Fedora), \
    `brew install postgresql` (macOS); .ci/run does this on CI";

/// One throwaway PostgreSQL cluster; see the module comment.
pub struct Pg {
    /// `None` once [`Pg::stop`] has removed the cluster.
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    port: u16,
    /// Run `initdb` and `pg_ctl` as the `postgres` user (we are root).
    as_postgres: bool,
    running: bool,
}

impl Pg {
    /// Creates and starts a cluster with an empty `haul` database.
    pub fn start() -> Pg {
        Pg::start_with(false)
    }

    /// [`Pg::start`], with TLS required on TCP (see the module comment);
    /// also returns the path of the CA's certificate (PEM).
    pub fn start_tls() -> (Pg, PathBuf) {
        let pg = Pg::start_with(true);
        let ca = pg.dir().join("ca.pem");
        (pg, ca)
    }

    fn start_with(tls: bool) -> Pg {
        let bin = bin_dir();
        let as_postgres = is_root();
        if as_postgres {
            check_postgres_user();
        }
        let dir = tempfile::Builder::new()
            .prefix("haul-pg-")
            .tempdir()
            .expect("create a temporary directory for PostgreSQL");
        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(dir.path()));
        }
        let mut pg = Pg {
            dir: Some(dir),
            bin,
            port: 0,
            as_postgres,
            running: false,
        };
        pg.initdb();
        if tls {
            pg.tls_only();
        }
        // Another cluster may take the port between the check and the bind.
        for attempt in 1.. {
            pg.port = free_port();
            match pg.try_start() {
                Ok(()) => break,
                Err(e) if attempt < 5 && e.contains("already in use") => {}
                Err(e) => panic!("{e}"),
            }
        }
        run(Command::new(pg.tool("createdb")).args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "postgres",
            "haul",
        ]));
        pg
    }

    /// `postgres://postgres@127.0.0.1:PORT/haul`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/haul", self.port)
    }

    /// The one value `query` answers, as psql prints it (`-A -t`): for a
    /// test to look at what haul left in the database.
    pub fn sql(&self, query: &str) -> String {
        let out = Command::new(self.tool("psql"))
            .args(["-X", "-A", "-t", "-d"])
            .arg(self.url())
            .args(["-c", query])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql: {query}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The TCP port, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory: `data/`, the server's `log`, its socket.
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("the cluster was removed by Pg::stop")
            .path()
    }

    /// Stops the server (`pg_ctl stop -m fast`: connections are ended,
    /// transactions rolled back) and removes the cluster. Idempotent.
    pub fn stop(&mut self) {
        if self.running {
            self.pg_ctl_stop("fast").unwrap_or_else(|e| panic!("{e}"));
        }
        if let Some(dir) = self.dir.take() {
            dir.close().expect("remove the PostgreSQL directory");
        }
    }

    /// A clean stop and a start of the same cluster on the same port.
    pub fn restart(&mut self) {
        if self.running {
            self.pg_ctl_stop("fast").unwrap_or_else(|e| panic!("{e}"));
        }
        self.start_again();
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`: no
    /// checkpoint, recovery from the WAL at the next start). The cluster
    /// stays for [`Pg::start_again`].
    pub fn kill(&mut self) {
        if self.running {
            self.pg_ctl_stop("immediate")
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// Starts the stopped or killed server again on the same port.
    pub fn start_again(&mut self) {
        if !self.running {
            self.try_start().unwrap_or_else(|e| panic!("{e}"));
        }
    }

    fn initdb(&self) {
        let data = self.dir().join("data");
        run(self
            .as_owner(&self.tool("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync"])
            .args(["-E", "UTF8", "--locale=C"]));
        // Settings for a disposable server; the port is given at each start.
        // fsync and full-page writes guard against an OS crash, which a test
        // never has. synchronous_commit stays on: with it off, a commit that
        // returned can be lost to `kill`, which would fail tests of the
        // store's crash safety for the harness's sake.
        let conf = format!(
            "\n# tests/util/pg.rs\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             fsync = off\n\
             full_page_writes = off\n\
             shared_buffers = 16MB\n\
             max_connections = 100\n",
            self.dir().display()
        );
        let mut file = fs_err::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("open postgresql.conf");
        std::io::Write::write_all(&mut file, conf.as_bytes()).expect("write postgresql.conf");
    }

    /// Certificates, `ssl = on`, and a `pg_hba.conf` that turns away TCP
    /// connections without TLS. In `postgresql.conf` rather than `-c` at
    /// the start, so that restarts keep them.
    fn tls_only(&self) {
        let dir = self.dir();
        let ca_key = rcgen::KeyPair::generate().expect("a CA key");
        let mut ca = rcgen::CertificateParams::default();
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "haul test CA");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).expect("the CA certificate");
        // `localhost` only: a test can check that verify-full refuses the
        // server as 127.0.0.1 while verify-ca takes it.
        let mut server = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("server certificate parameters");
        server
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        server.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = rcgen::KeyPair::generate().expect("a server key");
        let cert = server
            .signed_by(&server_key, &ca)
            .expect("the server certificate");
        fs_err::write(dir.join("ca.pem"), ca.pem()).expect("write ca.pem");
        fs_err::write(dir.join("server.crt"), cert.pem()).expect("write server.crt");
        // PostgreSQL refuses a key that others may read, or that is not
        // its own user's (or root's, with 0640).
        let key = dir.join("server.key");
        {
            use fs_err::os::unix::fs::OpenOptionsExt;
            let mut file = fs_err::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key)
                .expect("create server.key");
            std::io::Write::write_all(&mut file, server_key.serialize_pem().as_bytes())
                .expect("write server.key");
        }
        if self.as_postgres {
            run(Command::new("chown").arg("postgres:").arg(&key));
        }
        let data = dir.join("data");
        let conf = format!(
            "ssl = on
ssl_cert_file = '{}'
ssl_key_file = '{}'
",
            dir.join("server.crt").display(),
            key.display()
        );
        let mut file = fs_err::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("open postgresql.conf");
        std::io::Write::write_all(&mut file, conf.as_bytes()).expect("write postgresql.conf");
        // The unix socket stays open without TLS (PostgreSQL has none
        // there) for the harness's own tools.
        let hba = "local all all trust
                   hostssl all all 127.0.0.1/32 trust
                   hostssl all all ::1/128 trust
";
        fs_err::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
    }

    fn try_start(&mut self) -> Result<(), String> {
        let dir = self.dir().to_owned();
        let out = self
            .as_owner(&self.tool("pg_ctl"))
            .arg("-D")
            .arg(dir.join("data"))
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-o", &format!("-p {}", self.port)])
            .args(["-w", "-t", "30", "-s", "start"])
            .output()
            .map_err(|e| format!("run pg_ctl start: {e}"))?;
        if !out.status.success() {
            // A start that timed out may have left a server behind.
            let _ = self.pg_ctl_stop("immediate");
            return Err(format!(
                "PostgreSQL did not start on port {}: {}\nserver log:\n{}",
                self.port,
                String::from_utf8_lossy(&out.stderr).trim(),
                fs_err::read_to_string(dir.join("log")).unwrap_or_default()
            ));
        }
        self.running = true;
        Ok(())
    }

    fn pg_ctl_stop(&mut self, mode: &str) -> Result<(), String> {
        let out = self
            .as_owner(&self.tool("pg_ctl"))
            .arg("-D")
            .arg(self.dir().join("data"))
            .args(["-m", mode, "-w", "-t", "30", "-s", "stop"])
            .output()
            .map_err(|e| format!("run pg_ctl stop: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pg_ctl stop -m {mode} (port {}): {}",
                self.port,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        self.running = false;
        Ok(())
    }

    /// A server binary: from the directory `initdb` was found in, else PATH.
    fn tool(&self, name: &str) -> PathBuf {
        let path = self.bin.join(name);
        if path.exists() {
            path
        } else {
            PathBuf::from(name)
        }
    }

    /// `program`, run as the cluster's owner, from the cluster's directory
    /// (the `postgres` user may not be able to enter ours).
    fn as_owner(&self, program: &Path) -> Command {
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        };
        cmd.current_dir(self.dir()).stdin(Stdio::null());
        cmd
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if self.running {
            // No panic here: this may run while a failing test unwinds.
            if let Err(e) = self.pg_ctl_stop("fast") {
                eprintln!("{e}; stopping it with -m immediate");
                if let Err(e) = self.pg_ctl_stop("immediate") {
                    eprintln!("{e}");
                }
            }
        }
    }
}

/// The directory holding `initdb`: the newest `/usr/lib/postgresql/N/bin`,
/// else the first on PATH.
fn bin_dir() -> PathBuf {
    let newest = fs_err::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max();
    if let Some((_, bin)) = newest {
        return bin;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL's initdb and pg_ctl are in neither \
                 /usr/lib/postgresql/*/bin nor PATH; {INSTALL}"
            )
        })
}

fn is_root() -> bool {
    let out = run(Command::new("id").arg("-u"));
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn check_postgres_user() {
    let known = Command::new("id")
        .args(["-u", "postgres"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        known,
        "running as root, and PostgreSQL refuses root, but there is no \
         `postgres` user to run it as; {INSTALL} (its package creates the \
         user), or run the tests as another user"
    );
}

/// A port below the ephemeral range that nothing listens on now.
fn free_port() -> u16 {
    loop {
        let port = fastrand::u16(20_000..32_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Runs `cmd` to the end; panics with its stderr if it fails.
fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {:?}: {e}", cmd.get_program()));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
