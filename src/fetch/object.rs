//! The object-store side of a transfer (`-o s3://…`): a body that fits one
//! part is held and stored with one PUT once complete and checked; a larger
//! one becomes a multipart upload, a part sent while the next arrives, and
//! is completed only at the end. Either way no object stands under its key
//! before it is whole, and a transfer holds at most two parts in memory.

use std::sync::Arc;

use bytes::Bytes;

use super::FetchError;
use crate::check::hex;
use crate::objects::{Objects, Upload};
use crate::plan::naming::Dest;

/// The size of a part: above S3's 5 MiB minimum, and small enough that
/// two per transfer keep a job of large files within a modest memory.
const PART: usize = 8 << 20;

pub(super) struct ObjectWriter {
    objects: Arc<Objects>,
    rel: String,
    buf: Vec<Bytes>,
    buffered: usize,
    // Hashed on the runtime, unlike a disk body (hashed on the disk
    // threads): there is no disk thread on this path, and the parts are
    // sent in order from here.
    hasher: Option<ring::digest::Context>,
    upload: Option<Upload>,
}

impl ObjectWriter {
    pub(super) fn new(objects: Arc<Objects>, dest: &Dest, hash: bool) -> Self {
        Self {
            objects,
            rel: dest.rel.clone(),
            buf: Vec::new(),
            buffered: 0,
            hasher: hash.then(|| ring::digest::Context::new(&ring::digest::SHA256)),
            upload: None,
        }
    }

    pub(super) async fn push(&mut self, chunk: Bytes) -> Result<(), FetchError> {
        if let Some(h) = &mut self.hasher {
            h.update(&chunk);
        }
        self.buffered += chunk.len();
        self.buf.push(chunk);
        if self.buffered >= PART {
            let chunks = std::mem::take(&mut self.buf);
            self.buffered = 0;
            if self.upload.is_none() {
                self.upload = Some(self.objects.begin(&self.rel).await?);
            }
            if let Some(u) = &mut self.upload {
                u.part(chunks).await?;
            }
        }
        Ok(())
    }

    /// Stores what is left and completes the object, unless its SHA-256
    /// is not the `expect`ed one (then nothing is stored).
    pub(super) async fn finish(
        mut self,
        expect: Option<String>,
    ) -> Result<Option<String>, FetchError> {
        let got = self.hasher.take().map(|h| hex(h.finish().as_ref()));
        if let Some(expected) =
            expect.filter(|e| got.as_ref().is_some_and(|g| !e.eq_ignore_ascii_case(g)))
        {
            self.discard().await;
            return Err(FetchError::Checksum {
                expected,
                got: got.unwrap_or_default(),
            });
        }
        let chunks = std::mem::take(&mut self.buf);
        match self.upload.take() {
            None => self.objects.put(&self.rel, chunks).await?,
            Some(u) => u.complete(chunks).await?,
        }
        Ok(got)
    }

    /// Drops what was received and aborts the upload, if one began.
    pub(super) async fn discard(mut self) {
        if let Some(u) = self.upload.take() {
            u.abort().await;
        }
    }
}
