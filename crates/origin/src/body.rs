//! The response body type: small fixed texts, and generated content streamed
//! in chunks.
//!
//! Generated bodies are produced lazily from [`crate::content::fill`], one
//! chunk per poll, so a 10 GB benchmark file costs one chunk of memory. The
//! same streaming loop implements the slow `/drip/` route (a timer between
//! chunks) and the injected mid-body reset: after half the bytes the body
//! trips its connection's [`ResetSwitch`] and stops, and the connection is
//! dropped with the declared `Content-Length` unmet (see [`crate::conn`] for
//! why it takes both halves). Every body carries the request's [`InFlight`] guard, which is how
//! "in flight until the body is sent or dropped" is measured.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::conn::ResetSwitch;
use crate::content::fill;
use crate::stats::InFlight;

/// Chunk size for ordinary generated bodies: large enough that framing costs
/// nothing, small enough that a slow reader does not pin much memory.
pub(crate) const DEFAULT_CHUNK: usize = 64 * 1024;

/// How long a reset body waits for the socket wrapper to drop the connection
/// before failing by itself. Only a safety net: the wrapper acts on the very
/// next flush, so this fires only if the connection is somehow not flushed.
const RESET_FALLBACK: Duration = Duration::from_secs(2);

/// A response body, with the in-flight guard of its request.
#[derive(Debug)]
pub(crate) struct OriginBody {
    kind: Kind,
    in_flight: InFlight,
}

/// What a body sends.
#[derive(Debug)]
pub(crate) enum Kind {
    /// Nothing (HEAD, 204, 304, 416, redirects).
    Empty,
    /// A short fixed text, sent as one frame.
    Text(Option<Bytes>),
    /// Deterministic content, generated chunk by chunk.
    Generated(Generated),
}

/// State of a generated body.
#[derive(Debug)]
pub(crate) struct Generated {
    seed: u64,
    pos: u64,
    end: u64,
    /// Offset at which to stop and reset the connection (injected reset).
    abort_at: Option<u64>,
    reset: Option<ResetSwitch>,
    chunk: usize,
    /// Pause before every chunk but the first (`/drip/`).
    delay: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    started: bool,
    /// Whether the length is announced; otherwise hyper uses chunked encoding.
    length_known: bool,
}

impl Generated {
    /// Bytes `start..end` of the content stream for `seed`.
    pub(crate) fn new(seed: u64, start: u64, end: u64) -> Generated {
        Generated {
            seed,
            pos: start,
            end,
            abort_at: None,
            reset: None,
            chunk: DEFAULT_CHUNK,
            delay: Duration::ZERO,
            sleep: None,
            started: false,
            length_known: true,
        }
    }

    /// Send `chunk`-byte frames with `delay` between them.
    pub(crate) fn drip(mut self, chunk: usize, delay: Duration) -> Generated {
        self.chunk = chunk.max(1);
        self.delay = delay;
        self
    }

    /// Reset the connection through `switch` once the body reaches
    /// `offset` (absolute).
    pub(crate) fn reset_at(mut self, offset: u64, switch: ResetSwitch) -> Generated {
        self.abort_at = Some(offset);
        self.reset = Some(switch);
        self
    }

    /// Do not announce the length, so the response is sent chunked.
    pub(crate) fn without_length(mut self) -> Generated {
        self.length_known = false;
        self
    }

    /// Bytes still to send: the announced `Content-Length` before any poll.
    pub(crate) fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    pub(crate) fn length_known(&self) -> bool {
        self.length_known
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        in_flight: &InFlight,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        if self.abort_at == Some(self.pos) {
            if let Some(switch) = self.reset.take() {
                switch.trip();
                // Normally the connection is dropped while we wait here.
                self.sleep = Some(Box::pin(tokio::time::sleep(RESET_FALLBACK)));
            }
            if let Some(sleep) = &mut self.sleep {
                ready!(sleep.as_mut().poll(cx));
                self.sleep = None;
            }
            // Fuse, so a stray poll after the error ends the stream.
            self.abort_at = None;
            self.end = self.pos;
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "haul-origin: injected mid-body reset",
            ))));
        }
        if self.pos >= self.end {
            return Poll::Ready(None);
        }
        if self.started && !self.delay.is_zero() {
            let delay = self.delay;
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            ready!(sleep.as_mut().poll(cx));
            self.sleep = None;
        }
        self.started = true;
        let limit = self.abort_at.unwrap_or(self.end).min(self.end);
        // `limit > pos` here, and the chunk size bounds the cast.
        let n = (limit - self.pos).min(self.chunk as u64) as usize;
        let mut buf = vec![0; n];
        fill(self.seed, self.pos, &mut buf);
        self.pos += n as u64;
        in_flight.counters().count_sent(n);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
    }
}

impl OriginBody {
    pub(crate) fn new(kind: Kind, in_flight: InFlight) -> OriginBody {
        OriginBody { kind, in_flight }
    }
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        // Every field is Unpin (the timer is boxed), so no pin projection is needed.
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Text(text) => Poll::Ready(text.take().map(|text| {
                this.in_flight.counters().count_sent(text.len());
                Ok(Frame::data(text))
            })),
            Kind::Generated(generated) => generated.poll_next(cx, &this.in_flight),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Text(text) => text.is_none(),
            Kind::Generated(g) => g.pos >= g.end && g.abort_at.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Text(text) => SizeHint::with_exact(text.as_ref().map_or(0, |t| t.len() as u64)),
            // Must equal the Content-Length header even for a body that will
            // be cut short: hyper checks the two agree.
            Kind::Generated(g) if g.length_known => SizeHint::with_exact(g.remaining()),
            Kind::Generated(_) => SizeHint::default(),
        }
    }
}
