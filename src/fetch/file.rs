//! The file side of a transfer: the `.part` a body streams to (or the
//! unnamed `O_TMPFILE` a body held whole is written to), written on the
//! disk threads while the next chunks arrive, hashed on the way, and put in
//! place under its final name only once complete. Every operation goes
//! through the output directory's handle ([`crate::beneath`]).

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::{FetchError, FLUSH_AT, FLUSH_EVERY};
use crate::beneath::Root;
use crate::plan::naming::{self, Dest};

use crate::check::hex;

/// The file side of a transfer (its `.part`, or the unnamed file of a body
/// held whole), moved to a disk thread for each write. Every operation goes
/// through the output directory's handle, never through a link.
struct PartFile {
    root: Arc<Root>,
    /// The final name, relative to the output directory.
    rel: String,
    /// The partial's relative name.
    part_rel: String,
    /// The partial's full path, for messages.
    part: PathBuf,
    file: Option<std::fs::File>,
    // ring's SHA-256 uses the CPU's vector units; measured about twice as
    // fast as sha2's portable code on CPUs without SHA extensions.
    hasher: Option<ring::digest::Context>,
    /// Bytes of an earlier partial to keep and append to.
    append_from: u64,
}

impl PartFile {
    fn write(&mut self, chunks: &[Bytes]) -> Result<(), FetchError> {
        if self.file.is_none() {
            let f = if self.append_from > 0 {
                self.reopen()
            } else {
                self.root.create(&self.part_rel)
            };
            let f = f.map_err(|source| FetchError::Disk {
                path: self.part.clone(),
                source,
            })?;
            self.file = Some(f);
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        for c in chunks {
            if let Some(h) = &mut self.hasher {
                h.update(c);
            }
        }
        let result = write_all_vectored(file, chunks);
        result.map_err(|source| FetchError::Disk {
            path: self.part.clone(),
            source,
        })
    }
}

/// Whether `O_TMPFILE` works in the output directory: 0 not tried yet,
/// 1 yes, 2 no (the filesystem or the kernel lacks it, or `/proc` is not
/// mounted to name the file with).
#[cfg(target_os = "linux")]
static TMPFILE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

impl PartFile {
    /// Writes a body held whole in memory to an unnamed file (`O_TMPFILE`)
    /// and links it in under `dest` once complete: one directory operation
    /// per file instead of the two of create-`.part`-then-rename, which is
    /// most of what a small file costs the kernel (measured on ext4,
    /// 10,000 × 10 KiB: the rename alone was 13% of haul's CPU). A file
    /// never stands under its final name before it is whole, and an
    /// interrupted write leaves nothing behind at all.
    ///
    /// `None` when `O_TMPFILE` is not available here: the caller then takes
    /// the `.part` route, with nothing written yet.
    #[cfg(target_os = "linux")]
    fn place_whole(
        &mut self,
        chunks: &[Bytes],
        expect: Option<&str>,
    ) -> Option<Result<Option<String>, FetchError>> {
        use std::sync::atomic::Ordering::Relaxed;
        if TMPFILE.load(Relaxed) == 2 {
            return None;
        }
        let disk_error = |path: &std::path::Path, e: io::Error| FetchError::Disk {
            path: path.to_path_buf(),
            source: e,
        };
        let dest = self.root.display(&self.rel);
        let (mut file, dir, name) = match self.root.tmpfile(&self.rel) {
            Ok(f) => f,
            Err(e) if tmpfile_unsupported(&e) => {
                TMPFILE.store(2, Relaxed);
                return None;
            }
            Err(e) => return Some(Err(disk_error(&self.part, e))),
        };
        if let Err(e) = write_all_vectored(&mut file, chunks) {
            return Some(Err(disk_error(&self.part, e)));
        }
        let got = self.hasher.take().map(|mut h| {
            for c in chunks {
                h.update(c);
            }
            hex(h.finish().as_ref())
        });
        if let Some(expected) =
            expect.filter(|e| got.as_ref().is_some_and(|g| !e.eq_ignore_ascii_case(g)))
        {
            // Nothing was ever named: dropping the file frees it.
            return Some(Err(FetchError::Checksum {
                expected: expected.to_string(),
                got: got.unwrap_or_default(),
            }));
        }
        match self.root.link_in(&file, &dir, &name) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A file the plan replaces (`--overwrite`, or an earlier run's
                // file that did not check out): linking cannot replace, so
                // link as the partial and rename over it, atomically.
                let part_name = format!("{name}{}", naming::PART_SUFFIX);
                let _ = self.root.remove(&self.part_rel);
                let replaced = self
                    .root
                    .link_in(&file, &dir, &part_name)
                    .and_then(|()| self.root.rename_in(&dir, &part_name, &name));
                if let Err(e) = replaced {
                    let _ = self.root.remove(&self.part_rel);
                    return Some(Err(disk_error(&dest, e)));
                }
            }
            Err(e) if TMPFILE.load(Relaxed) == 0 && tmpfile_unsupported(&e) => {
                TMPFILE.store(2, Relaxed);
                // The hash was taken: the `.part` route computes it again.
                self.hasher = got
                    .is_some()
                    .then(|| ring::digest::Context::new(&ring::digest::SHA256));
                return None;
            }
            Err(e) => return Some(Err(disk_error(&dest, e))),
        }
        TMPFILE.store(1, Relaxed);
        Some(Ok(got))
    }
}

/// Errors that mean "no `O_TMPFILE` here", as opposed to a disk problem.
#[cfg(target_os = "linux")]
fn tmpfile_unsupported(e: &io::Error) -> bool {
    matches!(
        rustix::io::Errno::from_io_error(e),
        Some(
            rustix::io::Errno::OPNOTSUPP
                | rustix::io::Errno::ISDIR
                | rustix::io::Errno::INVAL
                | rustix::io::Errno::NOENT
                | rustix::io::Errno::XDEV
                | rustix::io::Errno::PERM
        )
    )
}

/// Writes every chunk with as few `writev` calls as the kernel allows: one
/// system call for a body in several chunks, and no copy to join them.
fn write_all_vectored(file: &mut std::fs::File, chunks: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = chunks.iter().map(|c| io::IoSlice::new(c)).collect();
    let mut slices = &mut slices[..];
    // Skip empty chunks up front so an empty write is not taken for EOF.
    while slices.first().is_some_and(|s| s.is_empty()) {
        slices = &mut slices[1..];
    }
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl PartFile {
    /// Opens the partial to append to it, hashing the bytes kept so the
    /// final SHA-256 covers the whole file.
    fn reopen(&mut self) -> io::Result<std::fs::File> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = self.root.open_partial(&self.part_rel)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut left = self.append_from;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = f.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "partial file is shorter than recorded",
                ));
            }
            if let Some(h) = &mut self.hasher {
                h.update(&buf[..n]);
            }
            left -= n as u64;
        }
        f.set_len(self.append_from)?;
        f.seek(SeekFrom::Start(self.append_from))?;
        Ok(f)
    }
}

type Pending = crate::fetch::disk::Pending<(PartFile, Result<(), FetchError>)>;

/// Streams a body to `NAME.part`, overlapping disk writes with the network.
pub(super) struct PartWriter {
    disk: Option<PartFile>,
    pending: Option<Pending>,
    buf: Vec<Bytes>,
    buffered: usize,
    pool: crate::fetch::disk::Pool,
    /// Flush by time ([`FLUSH_EVERY`]), not only by size: the body goes
    /// to `.part` anyway. Set once a first flush by size has happened too.
    pub(super) eager: bool,
    last_flush: std::time::Instant,
    /// An abandoned `.part` of this name may stand: remove it if the body
    /// lands without one (the in-memory path).
    pub(super) stale_part: bool,
    /// The portable path: every body through `NAME.part`, each file and its
    /// directory synced before the rename counts (no `O_TMPFILE`, no group
    /// `syncfs`). Always on where those Linux calls do not exist.
    pub(super) portable: bool,
}

fn join_error(part: &std::path::Path, e: crate::fetch::disk::Lost) -> FetchError {
    FetchError::Disk {
        path: part.to_path_buf(),
        source: io::Error::other(e),
    }
}

impl PartWriter {
    pub(super) fn new(
        root: Arc<Root>,
        dest: &Dest,
        append_from: u64,
        hash: bool,
        pool: crate::fetch::disk::Pool,
    ) -> Self {
        Self {
            pool,
            disk: Some(PartFile {
                root,
                rel: dest.rel.clone(),
                part_rel: dest.part_rel(),
                part: dest.part_path(),
                file: None,
                hasher: hash.then(|| ring::digest::Context::new(&ring::digest::SHA256)),
                append_from,
            }),
            pending: None,
            buf: Vec::new(),
            buffered: 0,
            eager: false,
            last_flush: std::time::Instant::now(),
            stale_part: false,
            portable: cfg!(not(target_os = "linux")),
        }
    }

    pub(super) async fn push(&mut self, chunk: Bytes) -> Result<(), FetchError> {
        self.buffered += chunk.len();
        self.buf.push(chunk);
        if self.buffered >= FLUSH_AT || (self.eager && self.last_flush.elapsed() >= FLUSH_EVERY) {
            self.eager = true;
            self.last_flush = std::time::Instant::now();
            self.flush().await?;
        }
        Ok(())
    }

    /// Takes the disk back from the write in flight, if any.
    async fn settle(&mut self) -> Result<PartFile, FetchError> {
        if let Some(pending) = self.pending.take() {
            let part = self
                .disk
                .as_ref()
                .map(|d| d.part.clone())
                .unwrap_or_default();
            let (disk, result) = pending.await.map_err(|e| join_error(&part, e))?;
            result?;
            return Ok(disk);
        }
        self.disk.take().ok_or_else(|| FetchError::Disk {
            path: PathBuf::new(),
            source: io::Error::other("file writer used after a failed write"),
        })
    }

    async fn flush(&mut self) -> Result<(), FetchError> {
        let mut disk = self.settle().await?;
        let chunks = std::mem::take(&mut self.buf);
        self.buffered = 0;
        self.pending = Some(self.pool.spawn(move || {
            let r = disk.write(&chunks);
            (disk, r)
        }));
        Ok(())
    }

    /// Writes what is buffered to the `.part` file and leaves it there.
    pub(super) async fn park(mut self) -> Result<(), FetchError> {
        if !self.buf.is_empty() {
            self.flush().await?;
        }
        self.settle().await.map(drop)
    }

    /// Drops what was received and removes the `.part` file.
    pub(super) async fn discard(mut self) {
        self.buf.clear();
        if let Ok(mut disk) = self.settle().await {
            let created = disk.file.is_some() || disk.append_from > 0;
            drop(disk.file.take());
            if created {
                let _ = self
                    .pool
                    .run(move || disk.root.remove(&disk.part_rel))
                    .await;
            }
        }
    }

    /// Writes what is left, closes the file and renames it into place, unless
    /// its SHA-256 is not the `expect`ed one (then the partial is removed).
    pub(super) async fn finish(
        mut self,
        expect: Option<String>,
    ) -> Result<Option<String>, FetchError> {
        let mut disk = self.settle().await?;
        let chunks = std::mem::take(&mut self.buf);
        let part = disk.part.clone();
        let stale_part = self.stale_part;
        let portable = self.portable;
        self.pool
            .run(move || {
                if disk.file.is_none() && disk.append_from == 0 && !portable {
                    // The whole body is in memory: no partial to keep for a
                    // resume, so it need not ever have a name of its own.
                    #[cfg(target_os = "linux")]
                    if let Some(done) = disk.place_whole(&chunks, expect.as_deref()) {
                        if stale_part && done.is_ok() {
                            let _ = disk.root.remove(&disk.part_rel);
                        }
                        return done;
                    }
                }
                if disk.file.is_none() || !chunks.is_empty() {
                    disk.write(&chunks)?;
                }
                if let (true, Some(f)) = (portable, &disk.file) {
                    // No group sync on this path: each file is made durable
                    // before it is put in place.
                    f.sync_all().map_err(|source| FetchError::Disk {
                        path: disk.part.clone(),
                        source,
                    })?;
                }
                drop(disk.file.take());
                let got = disk.hasher.take().map(|h| hex(h.finish().as_ref()));
                if let Some(expected) =
                    expect.filter(|e| got.as_ref().is_some_and(|g| !e.eq_ignore_ascii_case(g)))
                {
                    let _ = disk.root.remove(&disk.part_rel);
                    return Err(FetchError::Checksum {
                        expected,
                        got: got.unwrap_or_default(),
                    });
                }
                disk.root
                    .rename(&disk.part_rel, &disk.rel)
                    .map_err(|source| FetchError::Disk {
                        path: disk.root.display(&disk.rel),
                        source,
                    })?;
                if portable {
                    // And the rename itself, in its directory.
                    disk.root
                        .sync_dir_of(&disk.rel)
                        .map_err(|source| FetchError::Disk {
                            path: disk.root.display(&disk.rel),
                            source,
                        })?;
                }
                Ok(got)
            })
            .await
            .map_err(|e| join_error(&part, e))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::naming::OutputDir;

    struct Setup {
        _tmp: tempfile::TempDir,
        root: Arc<Root>,
        pool: crate::fetch::disk::Pool,
    }

    fn setup() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let root = Arc::new(Root::open(tmp.path().join("out")).unwrap());
        Setup {
            _tmp: tmp,
            root,
            pool: crate::fetch::disk::Pool::new(2).unwrap(),
        }
    }

    fn dest(s: &Setup, rel: &str) -> Dest {
        let parts: Vec<&str> = rel.split('/').collect();
        OutputDir::new(s.root.path()).resolve(&parts).unwrap()
    }

    fn writer(s: &Setup, d: &Dest, append_from: u64, portable: bool) -> PartWriter {
        let mut w = PartWriter::new(s.root.clone(), d, append_from, true, s.pool.clone());
        w.portable = portable;
        w
    }

    fn body(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn sha256(data: &[u8]) -> String {
        hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
    }

    async fn push_all(w: &mut PartWriter, data: &[u8]) {
        for c in data.chunks(16 * 1024) {
            w.push(Bytes::copy_from_slice(c)).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_small_body_lands_whole_without_a_partial_on_either_path() {
        for portable in [false, true] {
            let s = setup();
            let d = dest(&s, "dir/small.bin");
            let data = body(10_000, 1);
            let mut w = writer(&s, &d, 0, portable);
            push_all(&mut w, &data).await;
            // Nothing on disk before the end: the body is still in memory.
            assert!(!s.root.path().join("dir/small.bin.part").exists());
            let got = w.finish(None).await.unwrap();
            assert_eq!(got.as_deref(), Some(sha256(&data).as_str()));
            assert_eq!(std::fs::read(&d.path).unwrap(), data, "portable={portable}");
            assert!(!d.part_path().exists());
        }
    }

    #[tokio::test]
    async fn a_large_body_streams_to_its_partial_and_is_renamed() {
        let s = setup();
        let d = dest(&s, "large.bin");
        let data = body(3 * FLUSH_AT + 123, 2);
        let mut w = writer(&s, &d, 0, false);
        push_all(&mut w, &data[..2 * FLUSH_AT]).await;
        w.settle_for_test().await;
        assert!(d.part_path().metadata().unwrap().len() >= FLUSH_AT as u64);
        assert!(!d.path.exists(), "no final name before the end");
        push_all(&mut w, &data[2 * FLUSH_AT..]).await;
        let got = w.finish(None).await.unwrap();
        assert_eq!(got.as_deref(), Some(sha256(&data).as_str()));
        assert_eq!(std::fs::read(&d.path).unwrap(), data);
        assert!(!d.part_path().exists());
    }

    #[tokio::test]
    async fn park_keeps_what_arrived_and_a_resume_appends_to_it() {
        let s = setup();
        let d = dest(&s, "resume.bin");
        let data = body(FLUSH_AT + 5000, 3);
        let (head, tail) = data.split_at(7000);
        let mut w = writer(&s, &d, 0, false);
        push_all(&mut w, head).await;
        w.park().await.unwrap();
        assert_eq!(std::fs::read(d.part_path()).unwrap(), head);
        // The next attempt appends, and the hash covers the whole file.
        let mut w = writer(&s, &d, head.len() as u64, false);
        push_all(&mut w, tail).await;
        let got = w.finish(Some(sha256(&data))).await.unwrap();
        assert_eq!(got.as_deref(), Some(sha256(&data).as_str()));
        assert_eq!(std::fs::read(&d.path).unwrap(), data);
    }

    #[tokio::test]
    async fn discard_leaves_nothing() {
        let s = setup();
        let d = dest(&s, "gone.bin");
        let mut w = writer(&s, &d, 0, false);
        push_all(&mut w, &body(FLUSH_AT + 1, 4)).await;
        w.discard().await;
        assert!(!d.part_path().exists() && !d.path.exists());
    }

    #[tokio::test]
    async fn a_checksum_mismatch_keeps_no_file_on_either_path() {
        for (len, portable) in [(1000, false), (1000, true), (FLUSH_AT + 10, false)] {
            let s = setup();
            let d = dest(&s, "bad.bin");
            let mut w = writer(&s, &d, 0, portable);
            push_all(&mut w, &body(len, 5)).await;
            let err = w.finish(Some("00".repeat(32))).await.unwrap_err();
            assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
            assert!(
                !d.path.exists() && !d.part_path().exists(),
                "{len} {portable}"
            );
        }
    }

    #[tokio::test]
    async fn a_body_replaces_an_earlier_file_of_its_name() {
        for portable in [false, true] {
            let s = setup();
            let d = dest(&s, "again.bin");
            std::fs::write(&d.path, b"old").unwrap();
            let mut w = writer(&s, &d, 0, portable);
            push_all(&mut w, b"new").await;
            w.finish(None).await.unwrap();
            assert_eq!(std::fs::read(&d.path).unwrap(), b"new");
            assert!(!d.part_path().exists());
        }
    }

    impl PartWriter {
        /// Waits for the write in flight, as the next flush would.
        async fn settle_for_test(&mut self) {
            let disk = self.settle().await.unwrap();
            self.disk = Some(disk);
        }
    }
}
