//! Per-connection state, and the socket wrapper that carries out injected
//! resets.
//!
//! An injected reset must deliver the response headers and half the body,
//! then drop the connection. Failing the body is not enough on its own:
//! hyper abandons its unflushed write buffer when a body errors, so the
//! client would see nothing at all. Instead the body trips this
//! connection's [`ResetSwitch`] and waits; hyper goes on to write everything
//! it has buffered and then flushes the socket, and [`ResettableIo`] answers
//! that flush with an error. hyper then closes the connection, and the
//! kernel delivers the written half followed by FIN: a body that stops short
//! of its `Content-Length`, which is what a client must detect and resume.
//!
//! Over HTTP/2 (h2c) the same switch drops the whole connection, with every
//! stream on it, after whatever the flow-control window let through: a
//! coarser fault, but still one a client must survive.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::stats::HostCache;

/// State of one client connection, shared by its requests.
#[derive(Debug, Default)]
pub(crate) struct ConnState {
    pub(crate) hosts: HostCache,
    pub(crate) reset: ResetSwitch,
}

/// Once tripped, the connection's next socket flush fails.
#[derive(Debug, Default, Clone)]
pub(crate) struct ResetSwitch(Arc<AtomicBool>);

impl ResetSwitch {
    pub(crate) fn trip(&self) {
        self.0.store(true, Relaxed);
    }

    fn is_tripped(&self) -> bool {
        self.0.load(Relaxed)
    }
}

/// A `TcpStream` whose flush fails once its [`ResetSwitch`] is tripped.
/// Everything else passes straight through.
#[derive(Debug)]
pub(crate) struct ResettableIo {
    stream: TcpStream,
    switch: ResetSwitch,
}

impl ResettableIo {
    pub(crate) fn new(stream: TcpStream, switch: ResetSwitch) -> ResettableIo {
        ResettableIo { stream, switch }
    }
}

impl AsyncRead for ResettableIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.stream).poll_flush(cx))?;
        // hyper flushes the socket only after writing its whole buffer, so
        // by now the partial body is with the kernel.
        if this.switch.is_tripped() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "haul-origin: injected reset",
            )));
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
