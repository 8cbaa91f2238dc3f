//! TLS to the shared job state: `sslmode` and `sslrootcert` as libpq means
//! them, against a real PostgreSQL that refuses TCP without TLS
//! (`Pg::start_tls`), so a command that gets through went encrypted.

use std::path::Path;
use std::process::Output;

use crate::util::pg::Pg;
use crate::util::{assert_exit, haul, stderr, Scratch};

/// The test cluster's URL at `host`, with `query`.
fn url(pg: &Pg, host: &str, query: &str) -> String {
    let url = format!("postgres://postgres@{host}:{}/haul", pg.port());
    match query {
        "" => url,
        q => format!("{url}?{q}"),
    }
}

/// `haul ARGS…` with its job state at `url`.
async fn with_state(url: &str, args: &[&str]) -> Output {
    let mut cmd = haul(args);
    cmd.env("HAUL_STATE", url);
    cmd.output().await.expect("run haul")
}

/// Submits three items as job `job`; submitting downloads nothing, so
/// the URLs need no server.
async fn submit(url: &str, s: &Scratch, job: &str) -> Output {
    let urls: Vec<String> = (0..3)
        .map(|i| format!("http://127.0.0.1:9/{job}/{i}.bin"))
        .collect();
    let list = s.list(&format!("{job}.txt"), &urls);
    with_state(url, &["submit", "--job", job, "-i", list.to_str().unwrap()]).await
}

/// `haul status --job JOB --json` at `url`.
async fn status(url: &str, job: &str) -> serde_json::Value {
    let o = with_state(url, &["status", "--job", job, "--json"]).await;
    assert_exit(&o, 0);
    serde_json::from_slice(&o.stdout).expect("status --json")
}

/// A CA of its own, which signed nothing the server shows.
fn other_ca(path: &Path) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "some other CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(path, params.self_signed(&key).unwrap().pem()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_goes_through_tls_and_disable_is_turned_away() {
    let (pg, _ca) = Pg::start_tls();
    let s = Scratch::new();
    let require = url(&pg, "127.0.0.1", "sslmode=require");
    assert_exit(&submit(&require, &s, "enc").await, 0);
    let st = status(&require, "enc").await;
    assert_eq!(
        (st["items"].clone(), st["pending"].clone()),
        (3.into(), 3.into()),
        "{st}"
    );

    let disable = url(&pg, "127.0.0.1", "sslmode=disable");
    let o = submit(&disable, &s, "plain").await;
    assert_exit(&o, 2);
    let server = format!("127.0.0.1:{}", pg.port());
    assert!(
        stderr(&o).contains(&server) && stderr(&o).contains("no encryption"),
        "names the server and why: {}",
        stderr(&o)
    );
    let o = with_state(&disable, &["status", "--job", "enc"]).await;
    assert_exit(&o, 2);

    // And require means it: a server without TLS is refused, not used
    // in the clear.
    let plain = Pg::start();
    let o = submit(&url(&plain, "127.0.0.1", "sslmode=require"), &s, "clear").await;
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("server does not support TLS"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_checks_the_ca_and_the_host_name() {
    let (pg, ca) = Pg::start_tls();
    let s = Scratch::new();
    let ca = ca.to_str().unwrap();
    let other = s.path("other-ca.pem");
    other_ca(&other);
    let other = other.to_str().unwrap();

    let full = url(
        &pg,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    assert_exit(&submit(&full, &s, "full").await, 0);
    assert_eq!(status(&full, "full").await["items"], 3);

    // Signed by a CA the user did not name.
    let wrong = url(
        &pg,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={other}"),
    );
    let o = submit(&wrong, &s, "wrong").await;
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("invalid peer certificate") && stderr(&o).contains(other),
        "says the certificate was refused, and against what: {}",
        stderr(&o)
    );
    // libpq's require with a root file checks the chain too.
    let o = submit(
        &url(
            &pg,
            "localhost",
            &format!("sslmode=require&sslrootcert={other}"),
        ),
        &s,
        "wrong",
    )
    .await;
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("invalid peer certificate"),
        "{}",
        stderr(&o)
    );

    // The certificate names localhost only: verify-full refuses the same
    // server as 127.0.0.1, verify-ca (the chain only) takes it.
    let by_ip = url(
        &pg,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let o = submit(&by_ip, &s, "ip").await;
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("not valid for name") && stderr(&o).contains("sslmode=verify-ca"),
        "{}",
        stderr(&o)
    );
    let ca_only = url(
        &pg,
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    );
    assert_exit(&submit(&ca_only, &s, "ip").await, 0);
    assert_eq!(status(&ca_only, "ip").await["items"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_uses_tls_when_the_server_requires_it() {
    let (pg, _ca) = Pg::start_tls();
    let s = Scratch::new();
    let default = url(&pg, "127.0.0.1", "");
    assert_exit(&submit(&default, &s, "dflt").await, 0);
    assert_eq!(status(&default, "dflt").await["items"], 3);

    // Only an address, no host name: the handshake names it by that.
    let bare = format!(
        "postgres://postgres@/haul?hostaddr=127.0.0.1&port={}",
        pg.port()
    );
    assert_eq!(status(&bare, "dflt").await["items"], 3);
    // Over the unix socket PostgreSQL has no TLS, and libpq ignores
    // sslmode there: so does haul.
    let socket = url(
        &pg,
        &pg.dir().to_str().unwrap().replace('/', "%2F"),
        "sslmode=require",
    );
    assert_eq!(status(&socket, "dflt").await["items"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_tls_settings_are_explained() {
    let (pg, _ca) = Pg::start_tls();
    let s = Scratch::new();
    let missing = s.path("nope.pem");
    let missing = missing.to_str().unwrap();
    let o = submit(
        &url(
            &pg,
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={missing}"),
        ),
        &s,
        "bad",
    )
    .await;
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains(missing) && stderr(&o).contains("PEM file"),
        "{}",
        stderr(&o)
    );

    let empty = s.path("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let empty = empty.to_str().unwrap();
    let o = submit(
        &url(
            &pg,
            "localhost",
            &format!("sslmode=verify-ca&sslrootcert={empty}"),
        ),
        &s,
        "bad",
    )
    .await;
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains(empty) && stderr(&o).contains("no usable certificate"),
        "{}",
        stderr(&o)
    );

    let o = submit(&url(&pg, "localhost", "sslmode=verify_full"), &s, "bad").await;
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("\"verify_full\"") && stderr(&o).contains("verify-full"),
        "names the value and the ones there are: {}",
        stderr(&o)
    );
    assert!(
        !stderr(&o).contains("handshake"),
        "no handshake was tried: {}",
        stderr(&o)
    );
}
