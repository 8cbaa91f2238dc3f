//! Why a request failed, as the HTTP layer sees it. The fetch stage turns
//! each kind into its own error (`From<HttpError> for FetchError`), where
//! retries and reasons are decided.

/// Why a request, or reading its response, failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No connection could be made.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The host name did not resolve.
    #[error("cannot resolve the host name: {detail}")]
    Dns {
        /// What the resolver said.
        detail: String,
        /// The resolver may answer next time (`EAI_AGAIN`), unlike a name
        /// that does not exist.
        transient: bool,
    },
    /// The TLS handshake failed, not for the certificate.
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// The server's certificate is not trusted.
    #[error("the server's certificate is not trusted: {0}")]
    Certificate(String),
    /// The server went quiet for longer than the timeout.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The connection broke during the exchange.
    #[error("connection broke: {0}")]
    Network(String),
    /// A redirect could not be followed.
    #[error("redirect failed: {0}")]
    Redirect(String),
    /// The request could not be made at all.
    #[error("bad request: {0}")]
    Request(String),
}
