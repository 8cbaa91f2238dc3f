//! TLS to PostgreSQL with libpq's meanings of `sslmode` and `sslrootcert`,
//! so a URL that works with `psql` works with `--state`.
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | - |
//! | `prefer` (the default) | if the server offers it | not checked, unless `sslrootcert` is given: then its chain |
//! | `require` | always | the same as `prefer` |
//! | `verify-ca` | always | its chain, against `sslrootcert` or the system's roots |
//! | `verify-full` | always | its chain and that it names the host in the URL |
//!
//! `sslrootcert=system` is the system's roots and needs `verify-full` (and
//! is its default), as in libpq 16. An `sslrootcert` that cannot be used
//! is an error in every mode that may use TLS, where libpq skips a missing
//! file under `prefer` and `require`: a user who names a CA means it to be
//! checked, and a typo should not quietly turn the check off.
//!
//! The `postgres` crate knows only `disable`, `prefer` and `require` and
//! rejects keys it does not know, so [`connect`] takes `sslmode` and
//! `sslrootcert` out of the URL's query and sets the crate's mode itself.
//! Only the URL form is read that way (the form `--state` accepts); a
//! `key=value` string goes to the crate as it is.
//!
//! A setting that cannot be used (an unknown mode, an unreadable
//! `sslrootcert`) fails the connection the first time the crate asks for a
//! TLS connector, which is after it reached the server, as libpq reads its
//! root file during the handshake: that is the one way to hand it back as
//! the `postgres::Error` the store reports.

use std::error::Error as StdError;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use percent_encoding::percent_decode_str;
use postgres::config::{Host, SslMode};
use postgres::tls::{MakeTlsConnect, TlsConnect};
use postgres::{Client, Socket};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Connects to the database at `url` (a `postgres://` URL, or the crate's
/// `key=value` form), with TLS as its `sslmode` and `sslrootcert` say.
pub(super) fn connect(url: &str) -> Result<Client, postgres::Error> {
    let (rest, asked) = split(url);
    let mut config: postgres::Config = rest.parse()?;
    let settings = match asked {
        Some(asked) => Settings::new(asked.mode.as_deref(), asked.root.as_deref()),
        None => Settings::new(Some(crate_mode_name(config.get_ssl_mode())), None),
    };
    // With only `hostaddr=` the crate has no host name for the handshake
    // and refuses to start one; libpq names the server by its address.
    if config.get_hosts().is_empty() {
        for addr in config.get_hostaddrs().to_vec() {
            config.host(&addr.to_string());
        }
    }
    // libpq ignores sslmode over a unix socket, where PostgreSQL offers no
    // TLS: `require` there would fail where psql connects.
    let unix_only = !config.get_hosts().is_empty()
        && config
            .get_hosts()
            .iter()
            .all(|h| !matches!(h, Host::Tcp(_)));
    config.ssl_mode(match &settings {
        _ if unix_only => SslMode::Disable,
        Ok(s) => s.mode.for_crate(),
        // Any: the connector fails before the mode matters.
        Err(_) => SslMode::Require,
    });
    config.connect(MakeTls::new(settings))
}

/// What the URL asked for, as written.
#[derive(Debug, Default, PartialEq)]
struct Asked {
    mode: Option<String>,
    root: Option<String>,
}

/// `url` without `sslmode` and `sslrootcert` in its query, and their
/// values (the last of each, as the crate takes a repeated key); `None`
/// when `url` is not in the URL form.
fn split(url: &str) -> (String, Option<Asked>) {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return (url.to_string(), None);
    }
    let mut asked = Asked::default();
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), Some(asked));
    };
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || Some(percent_decode_str(value).decode_utf8_lossy().into_owned());
        match percent_decode_str(key).decode_utf8_lossy().as_ref() {
            "sslmode" => asked.mode = decoded(),
            "sslrootcert" => asked.root = decoded(),
            _ => kept.push(pair),
        }
    }
    let rest = match kept.is_empty() {
        true => base.to_string(),
        false => format!("{base}?{}", kept.join("&")),
    };
    (rest, Some(asked))
}

fn crate_mode_name(mode: SslMode) -> &'static str {
    match mode {
        SslMode::Disable => "disable",
        SslMode::Require => "require",
        _ => "prefer",
    }
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "disable" => Mode::Disable,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            _ => return None,
        })
    }

    /// The crate's mode: whether TLS is tried, and whether it must be.
    fn for_crate(self) -> SslMode {
        match self {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }
}

/// The CA certificates a server's chain is checked against.
#[derive(Debug, Clone, PartialEq)]
enum Roots {
    /// `sslrootcert=PATH`: a PEM file, one certificate or several.
    File(PathBuf),
    /// `sslrootcert=system`, or `verify-*` without `sslrootcert`.
    System,
}

/// The message of a TLS setting that could not be used, when `e` is that
/// failure: said without the crate's "error performing TLS handshake"
/// before it, since no handshake was tried.
pub(super) fn unusable(e: &postgres::Error) -> Option<String> {
    let mut source = StdError::source(e);
    while let Some(s) = source {
        if let Some(setup) = s.downcast_ref::<Arc<SetupError>>() {
            return Some(setup.to_string());
        }
        if let Some(setup) = s.downcast_ref::<SetupError>() {
            return Some(setup.to_string());
        }
        source = s.source();
    }
    None
}

/// What to do, from the URL.
#[derive(Debug, PartialEq)]
struct Settings {
    mode: Mode,
    /// `None`: the certificate is not checked (libpq's `prefer` and
    /// `require` without a root file).
    roots: Option<Roots>,
}

impl Settings {
    fn new(mode: Option<&str>, root: Option<&str>) -> Result<Settings, SetupError> {
        // An empty value is no value, as in libpq.
        let root = root.filter(|r| !r.is_empty()).map(|r| match r {
            "system" => Roots::System,
            path => Roots::File(PathBuf::from(path)),
        });
        let mode = match mode.filter(|m| !m.is_empty()) {
            Some(m) => Mode::parse(m).ok_or_else(|| SetupError::Mode(m.to_string()))?,
            None if root == Some(Roots::System) => Mode::VerifyFull,
            None => Mode::Prefer,
        };
        if root == Some(Roots::System) && mode != Mode::VerifyFull {
            // The system's roots vouch for any name they signed: without
            // the name checked, any such server would pass.
            return Err(SetupError::WeakSystem(mode));
        }
        let roots = match mode {
            Mode::Disable => None,
            Mode::Prefer | Mode::Require => root,
            Mode::VerifyCa | Mode::VerifyFull => Some(root.unwrap_or(Roots::System)),
        };
        Ok(Settings { mode, roots })
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Disable => "disable",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        })
    }
}

/// A TLS setting in the URL that cannot be used.
#[derive(Debug, thiserror::Error)]
enum SetupError {
    /// `sslmode` is none of libpq's.
    #[error(
        "unknown sslmode={0:?} in the URL; use disable, prefer, require, verify-ca or verify-full"
    )]
    Mode(String),
    /// `sslrootcert=system` with a mode that does not check the host name.
    #[error(
        "sslmode={0} may not be used with sslrootcert=system (as in libpq): use \
         sslmode=verify-full, or give the server's CA with sslrootcert=PATH"
    )]
    WeakSystem(Mode),
    /// The `sslrootcert` file cannot be read.
    #[error(
        "sslrootcert: {source}; give the path of a PEM file with the CA certificate that \
         signed the server's"
    )]
    Read {
        /// What the OS said, with the path.
        source: std::io::Error,
    },
    /// The `sslrootcert` file is not PEM.
    #[error(
        "sslrootcert={path}: not a PEM file ({source}); give the CA certificate in PEM \
         (-----BEGIN CERTIFICATE-----)"
    )]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        source: rustls::pki_types::pem::Error,
    },
    /// The `sslrootcert` file holds no certificate, or one that is not usable.
    #[error(
        "sslrootcert={path} holds no usable certificate{}; give the CA certificate that \
         signed the server's, in PEM (-----BEGIN CERTIFICATE-----)",
        source.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// Why the certificate found was refused.
        source: Option<rustls::Error>,
    },
    /// `verify-*` without `sslrootcert` on a system without root certificates.
    #[error(
        "no system root certificates to check the server's against{0}; give the server's \
         CA with sslrootcert=PATH"
    )]
    NoSystemRoots(String),
    /// rustls refused the configuration.
    #[error("cannot set up TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// rustls refused the roots.
    #[error("cannot set up TLS: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
}

/// Reads the CA certificates the server's chain must lead to.
fn load(roots: &Roots) -> Result<RootCertStore, SetupError> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            let pem = fs_err::read(path).map_err(|source| SetupError::Read { source })?;
            let mut refused = None;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|source| SetupError::Pem {
                    path: path.clone(),
                    source,
                })?;
                if let Err(e) = store.add(cert) {
                    refused = Some(e);
                }
            }
            if store.is_empty() {
                return Err(SetupError::NoCertificate {
                    path: path.clone(),
                    source: refused,
                });
            }
        }
        Roots::System => {
            // rustls-native-certs rather than webpki-roots: an operator's
            // own CA, installed on the machine, is trusted as psql trusts
            // it, and the crate is already built for reqwest.
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                let why = match found.errors.first() {
                    Some(e) => format!(" ({e})"),
                    None => String::new(),
                };
                return Err(SetupError::NoSystemRoots(why));
            }
        }
    }
    Ok(store)
}

/// The rustls client configuration for `s`.
fn client_config(s: &Settings) -> Result<ClientConfig, SetupError> {
    // Our own provider rather than the process-wide default, which the
    // library's caller may not have installed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let verifier: Arc<dyn ServerCertVerifier> = match (s.mode, &s.roots) {
        (Mode::VerifyFull, Some(roots)) => {
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(load(roots)?),
                provider.clone(),
            )
            .build()?
        }
        (_, roots) => Arc::new(NoNameCheck {
            roots: roots.as_ref().map(load).transpose()?,
            algorithms,
        }),
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // What libpq 17 sends: PostgreSQL 17 requires it with
    // sslnegotiation=direct, and older servers ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

/// The server's certificate checked as libpq checks it in every mode but
/// `verify-full`: never its name; its chain against `roots` if there are
/// any (`verify-ca`, or `sslrootcert` with `prefer` or `require`), else not
/// at all (libpq's `require`: encryption against an eavesdropper, with no
/// claim about who answers). The handshake's signatures are still checked,
/// so the server holds the key of the certificate it showed.
#[derive(Debug)]
struct NoNameCheck {
    roots: Option<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NoNameCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

type RustlsConnect = <MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect;
type RustlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;
type BoxError = Box<dyn StdError + Send + Sync>;

/// The connector the crate asks for at each connection: rustls, or the
/// setting that could not be used, reported then.
struct MakeTls {
    tls: Result<MakeRustlsConnect, Arc<SetupError>>,
    /// What the certificate was checked against, for a refusal's message.
    checked: Option<Roots>,
}

impl MakeTls {
    fn new(settings: Result<Settings, SetupError>) -> MakeTls {
        let checked = settings.as_ref().ok().and_then(|s| s.roots.clone());
        let tls = settings
            .and_then(|s| client_config(&s))
            .map(MakeRustlsConnect::new)
            .map_err(Arc::new);
        MakeTls { tls, checked }
    }
}

impl MakeTlsConnect<Socket> for MakeTls {
    type Stream = RustlsStream;
    type TlsConnect = Connect;
    type Error = BoxError;

    fn make_tls_connect(&mut self, host: &str) -> Result<Connect, BoxError> {
        let make = self.tls.as_mut().map_err(|e| e.clone())?;
        // A unix socket has no host name; PostgreSQL offers no TLS there
        // and the crate does not ask for it, but wants a connector.
        if host.is_empty() {
            return Ok(Connect::NoHost);
        }
        Ok(Connect::Tls {
            inner: MakeTlsConnect::<Socket>::make_tls_connect(make, host)?,
            checked: self.checked.clone(),
        })
    }
}

/// One connection's TLS handshake.
enum Connect {
    Tls {
        inner: RustlsConnect,
        checked: Option<Roots>,
    },
    NoHost,
}

impl TlsConnect<Socket> for Connect {
    type Stream = RustlsStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream, BoxError>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        match self {
            Connect::Tls { inner, checked } => {
                Box::pin(
                    async move { inner.connect(stream).await.map_err(|e| refused(e, checked)) },
                )
            }
            Connect::NoHost => Box::pin(std::future::ready(Err(
                "no host name for the TLS handshake".into(),
            ))),
        }
    }
}

/// A failed handshake, with what to do when the server's certificate was
/// refused.
fn refused(e: std::io::Error, checked: Option<Roots>) -> BoxError {
    let Some(rustls::Error::InvalidCertificate(why)) =
        e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return e.into();
    };
    let against = match &checked {
        Some(Roots::File(path)) => format!("the CA certificates in {}", path.display()),
        Some(Roots::System) | None => "the system's root certificates".into(),
    };
    let hint = match why {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "sslmode=verify-full needs the host in the URL to be one the certificate names: \
             connect by that name, or use sslmode=verify-ca to check only who signed it"
                .to_string()
        }
        _ => format!(
            "the server's certificate was checked against {against}: give the CA that signed \
             it with sslrootcert=PATH, or use sslmode=require without sslrootcert to not check it"
        ),
    };
    Box::new(Refused { source: e, hint })
}

/// The server's certificate was refused.
#[derive(Debug, thiserror::Error)]
#[error("{source}; {hint}")]
struct Refused {
    source: std::io::Error,
    hint: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(mode: Option<&str>, root: Option<&str>) -> Option<Asked> {
        Some(Asked {
            mode: mode.map(String::from),
            root: root.map(String::from),
        })
    }

    #[test]
    fn ssl_keys_come_out_of_the_query_and_the_rest_stays() {
        assert_eq!(
            split("postgres://u:p@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ft%2Fca%20b.pem"),
            (
                "postgres://u:p@h:5/db?application_name=x".to_string(),
                asked(Some("verify-full"), Some("/t/ca b.pem"))
            )
        );
        assert_eq!(
            split("postgresql://h/db?sslmode=require"),
            (
                "postgresql://h/db".to_string(),
                asked(Some("require"), None)
            )
        );
        assert_eq!(
            split("postgres://h/db"),
            ("postgres://h/db".to_string(), asked(None, None))
        );
        // The last of a repeated key, as the crate takes it.
        assert_eq!(
            split("postgres://h/db?sslmode=disable&sslmode=verify-ca").1,
            asked(Some("verify-ca"), None)
        );
        assert_eq!(split("host=h sslmode=require").1, None);
    }

    #[test]
    fn modes_mean_what_they_mean_in_libpq() {
        let s = |m, r| Settings::new(m, r).unwrap();
        let file = || Some(Roots::File("ca.pem".into()));
        assert_eq!(s(None, None).mode, Mode::Prefer);
        assert_eq!(s(Some("require"), None).roots, None);
        assert_eq!(s(Some("require"), Some("ca.pem")).roots, file());
        assert_eq!(s(Some("prefer"), Some("ca.pem")).roots, file());
        assert_eq!(s(Some("disable"), Some("ca.pem")).roots, None);
        assert_eq!(s(Some("verify-ca"), None).roots, Some(Roots::System));
        assert_eq!(s(Some("verify-full"), Some("ca.pem")).roots, file());
        assert_eq!(
            s(None, Some("system")),
            Settings {
                mode: Mode::VerifyFull,
                roots: Some(Roots::System)
            }
        );
        let e = Settings::new(Some("require"), Some("system")).unwrap_err();
        assert!(e.to_string().contains("verify-full"), "{e}");
        let e = Settings::new(Some("verify_full"), None).unwrap_err();
        assert!(e.to_string().contains("\"verify_full\""), "{e}");
    }

    #[test]
    fn a_bad_sslrootcert_says_which_file_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = load(&Roots::File(missing.clone())).unwrap_err().to_string();
        assert!(e.contains(&missing.display().to_string()), "{e}");
        assert!(e.contains("PEM file with the CA"), "{e}");
        let key = dir.path().join("key.pem");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = load(&Roots::File(key.clone())).unwrap_err().to_string();
        assert!(e.contains("holds no usable certificate"), "{e}");
    }
}
