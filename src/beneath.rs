//! File operations inside the output directory that never follow a symbolic
//! link, whatever is planted there.
//!
//! [`crate::plan::naming`] proves that a destination's *text* stays inside the
//! output directory; this module makes the *filesystem* agree. The output
//! directory is opened once, and every create, open, link, rename and remove
//! below it goes through that handle one component at a time with
//! `O_NOFOLLOW`: a directory component that is a link (`out/sub ->
//! /elsewhere`) fails the item with a message naming it, and a file that is
//! a link or has other hard links (`out/big.bin.part -> /elsewhere/victim`)
//! is unlinked and replaced, never written through. Renames and links name
//! their target relative to the parent's handle, so they replace a link
//! itself, never what it points to.
//!
//! Walking by hand rather than with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`: the walk works on every Unix kernel, and for the
//! common flat layout (every file directly in the output directory) it costs
//! no system call at all beyond the operation itself; a nested name costs one
//! `openat` per directory level.
//!
//! The output directory itself may be a link: the user named it.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// The open output directory.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
    path: PathBuf,
}

/// A directory below the root, held open while a file in it is worked on.
#[derive(Debug)]
pub struct Dir {
    /// `None` for the root itself.
    fd: Option<OwnedFd>,
}

impl Dir {
    fn fd<'a>(&'a self, root: &'a Root) -> BorrowedFd<'a> {
        match &self.fd {
            Some(fd) => fd.as_fd(),
            None => root.dir.as_fd(),
        }
    }
}

/// The error for a path component that is a link.
fn link_error(rel: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{rel:?} in the output directory is a symbolic link, and haul never writes \
             through one (remove the link, or name files elsewhere)"
        ),
    )
}

/// The error for a directory component that is a file.
fn not_dir_error(rel: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{rel:?} in the output directory is a file, not a directory"),
    )
}

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC);

impl Root {
    /// Opens (and first creates) the output directory.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        if std::fs::metadata(&path).is_ok_and(|m| !m.is_dir()) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "it is a file, not a directory (-o names the directory files go to)",
            ));
        }
        std::fs::create_dir_all(&path)?;
        let dir = rustix::fs::open(
            &path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self { dir, path })
    }

    /// The output directory's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The full path of `rel`, for messages.
    pub fn display(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Opens the directory that holds `rel` (a `/`-separated relative path
    /// of plain names), creating missing directories when `create` is set;
    /// returns it with `rel`'s last component. No component may be a link.
    pub fn parent<'r>(&self, rel: &'r str, create: bool) -> io::Result<(Dir, &'r str)> {
        let Some((dirs, name)) = rel.rsplit_once('/') else {
            return Ok((Dir { fd: None }, rel));
        };
        let mut cur: Option<OwnedFd> = None;
        let mut walked = 0;
        for comp in dirs.split('/') {
            walked += comp.len() + 1;
            let here = &dirs[..walked - 1];
            let at = cur.as_ref().map_or(self.dir.as_fd(), AsFd::as_fd);
            let next = match rustix::fs::openat(at, comp, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(at, comp, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    rustix::fs::openat(at, comp, DIR_FLAGS, Mode::empty())
                        .map_err(|e| self.component_error(at, comp, here, e))?
                }
                Err(e) => return Err(self.component_error(at, comp, here, e)),
            };
            cur = Some(next);
        }
        Ok((Dir { fd: cur }, name))
    }

    /// Turns a failed directory open into a message that says why.
    fn component_error(&self, at: BorrowedFd<'_>, comp: &str, here: &str, e: Errno) -> io::Error {
        if matches!(e, Errno::LOOP | Errno::NOTDIR) {
            if let Ok(st) = rustix::fs::statat(at, comp, AtFlags::SYMLINK_NOFOLLOW) {
                match FileType::from_raw_mode(st.st_mode) {
                    FileType::Symlink => return link_error(here),
                    FileType::Directory => {}
                    _ => return not_dir_error(here),
                }
            }
        }
        e.into()
    }

    /// Creates `rel` afresh for writing. Whatever stood under that name (a
    /// stale partial, a link planted there, a hard link to another file) is
    /// unlinked first, never opened: the new file is always one of our own.
    pub fn create(&self, rel: &str) -> io::Result<std::fs::File> {
        let (dir, name) = self.parent(rel, true)?;
        let at = dir.fd(self);
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let mode = Mode::from_raw_mode(0o666);
        let fd = match rustix::fs::openat(at, name, flags | OFlags::CLOEXEC, mode) {
            Err(Errno::EXIST) => {
                rustix::fs::unlinkat(at, name, AtFlags::empty())?;
                rustix::fs::openat(at, name, flags | OFlags::CLOEXEC, mode)?
            }
            other => other?,
        };
        Ok(std::fs::File::from(fd))
    }

    /// Opens the partial `rel` to read and append to, only if it is a
    /// regular file of our own: not a link, and no other name for it.
    pub fn open_partial(&self, rel: &str) -> io::Result<std::fs::File> {
        let (dir, name) = self.parent(rel, false)?;
        let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(dir.fd(self), name, flags, Mode::empty()).map_err(|e| {
            if e == Errno::LOOP {
                link_error(rel)
            } else {
                e.into()
            }
        })?;
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_nlink != 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{rel:?} is not a plain file of haul's own; not resuming it"),
            ));
        }
        Ok(std::fs::File::from(fd))
    }

    /// The size of `rel` if it is a regular file reached without a link,
    /// with no other hard link when `sole` is set; `None` otherwise.
    pub fn file_len(&self, rel: &str, sole: bool) -> Option<u64> {
        let (dir, name) = self.parent(rel, false).ok()?;
        let st = rustix::fs::statat(dir.fd(self), name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        let plain = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile;
        (plain && (!sole || st.st_nlink == 1)).then_some(st.st_size as u64)
    }

    /// Whether anything (a file, a directory, a link) stands at `rel`. Not
    /// when a link stands on the way there: writing there fails with a
    /// message that says so.
    pub fn exists(&self, rel: &str) -> bool {
        self.parent(rel, false).is_ok_and(|(dir, name)| {
            rustix::fs::statat(dir.fd(self), name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
        })
    }

    /// Opens `rel` to read, not through a link.
    pub fn open_read(&self, rel: &str) -> io::Result<std::fs::File> {
        let (dir, name) = self.parent(rel, false)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(dir.fd(self), name, flags, Mode::empty())?;
        Ok(std::fs::File::from(fd))
    }

    /// Renames `from` to `to`, both in the directory `dir` holds. A link at
    /// `to` is replaced, not followed.
    pub fn rename_in(&self, dir: &Dir, from: &str, to: &str) -> io::Result<()> {
        let at = dir.fd(self);
        rustix::fs::renameat(at, from, at, to)?;
        Ok(())
    }

    /// Renames `from` to `to` (relative paths in one directory).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (dir, from_name) = self.parent(from, false)?;
        let to_name = to.rsplit_once('/').map_or(to, |(_, n)| n);
        self.rename_in(&dir, from_name, to_name)
    }

    /// Syncs the directory that holds `rel`, so a rename or a new name in
    /// it survives a power cut.
    pub fn sync_dir_of(&self, rel: &str) -> io::Result<()> {
        let (dir, _) = self.parent(rel, false)?;
        rustix::fs::fsync(dir.fd(self))?;
        Ok(())
    }

    /// Removes the file `rel` (a link itself, never its target).
    pub fn remove(&self, rel: &str) -> io::Result<()> {
        let (dir, name) = self.parent(rel, false)?;
        rustix::fs::unlinkat(dir.fd(self), name, AtFlags::empty())?;
        Ok(())
    }

    /// Puts the file at `from` at `to` as well: a hard link when the file
    /// system allows one (no space used), else a copy written under a
    /// temporary name and renamed into place. The file linked is the one
    /// `from` names when it is opened (without following a link there), so
    /// a name swapped meanwhile cannot redirect it; whatever stands at `to`
    /// is replaced, never written through. Says whether it linked.
    pub fn place(&self, from: &str, to: &str, bytes: u64) -> io::Result<bool> {
        let src = self.open_read(from)?;
        let st = rustix::fs::fstat(&src)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
            || st.st_size as u64 != bytes
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{from:?} is no longer the file downloaded"),
            ));
        }
        let (dir, name) = self.parent(to, true)?;
        let at = dir.fd(self);
        match rustix::fs::unlinkat(at, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let proc = format!("/proc/self/fd/{}", src.as_raw_fd());
            let linked = rustix::fs::linkat(
                rustix::fs::CWD,
                proc.as_str(),
                at,
                name,
                AtFlags::SYMLINK_FOLLOW,
            );
            match linked {
                Ok(()) => return Ok(true),
                // Across devices, or a file system without hard links (or
                // /proc): copy instead.
                Err(Errno::XDEV | Errno::PERM | Errno::MLINK | Errno::NOTSUP | Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let tmp = format!("{to}.part");
        let mut dst = self.create(&tmp)?;
        let copied = io::copy(&mut &src, &mut dst).and_then(|n| {
            if n == bytes {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("copied {n} bytes of {bytes}"),
                ))
            }
        });
        if let Err(e) = copied.and_then(|()| {
            drop(dst);
            self.rename(&tmp, to)
        }) {
            let _ = self.remove(&tmp);
            return Err(e);
        }
        Ok(false)
    }

    /// Opens an unnamed file (`O_TMPFILE`) in the directory that will hold
    /// `rel`, returning it with that directory for [`Root::link_in`].
    #[cfg(target_os = "linux")]
    pub fn tmpfile(&self, rel: &str) -> io::Result<(std::fs::File, Dir, String)> {
        let (dir, name) = self.parent(rel, true)?;
        let fd = rustix::fs::openat(
            dir.fd(self),
            ".",
            OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )?;
        let name = name.to_string();
        Ok((std::fs::File::from(fd), dir, name))
    }

    /// Gives the unnamed `file` the name `name` in `dir` (fails if the name
    /// is taken, by a link too), through its `/proc/self/fd` link as open(2)
    /// describes: `AT_EMPTY_PATH` would need a capability most users lack.
    #[cfg(target_os = "linux")]
    pub fn link_in(&self, file: &std::fs::File, dir: &Dir, name: &str) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let from = format!("/proc/self/fd/{}", file.as_raw_fd());
        rustix::fs::linkat(
            rustix::fs::CWD,
            from.as_str(),
            dir.fd(self),
            name,
            AtFlags::SYMLINK_FOLLOW,
        )?;
        Ok(())
    }
}

/// The device and mount point holding `path`, for messages ("/dev/sda1
/// at /data"); the path itself where they cannot be found.
pub fn device_of(path: &Path) -> String {
    let fallback = || format!("the device holding {}", path.display());
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return fallback();
        };
        let (major, minor) = (rustix::fs::major(meta.dev()), rustix::fs::minor(meta.dev()));
        let want = format!("{major}:{minor}");
        let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return fallback();
        };
        // Fields: id parent major:minor root mount-point options... - fstype source ...
        for line in info.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.get(2) != Some(&want.as_str()) {
                continue;
            }
            let mount = fields.get(4).copied().unwrap_or("?");
            let source = fields
                .iter()
                .position(|f| *f == "-")
                .and_then(|i| fields.get(i + 2))
                .copied()
                .unwrap_or("?");
            return format!("{source} (mounted at {mount})");
        }
    }
    fallback()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, Root, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let root = Root::open(tmp.path().join("out")).unwrap();
        (tmp, root, elsewhere)
    }

    #[test]
    fn place_links_the_file_itself_and_never_writes_through_a_link() {
        use std::os::unix::fs::MetadataExt;
        let (_tmp, root, elsewhere) = setup();
        let out = root.path().to_path_buf();
        std::fs::create_dir(out.join("A")).unwrap();
        std::fs::write(out.join("A/x.jpg"), b"image").unwrap();
        // A link planted where the placement goes is replaced, not followed.
        std::fs::write(elsewhere.join("victim"), b"keep").unwrap();
        std::fs::create_dir(out.join("B")).unwrap();
        symlink(elsewhere.join("victim"), out.join("B/x.jpg")).unwrap();
        assert!(root.place("A/x.jpg", "B/x.jpg", 5).unwrap(), "linked");
        assert_eq!(std::fs::read(elsewhere.join("victim")).unwrap(), b"keep");
        let (a, b) = (
            std::fs::symlink_metadata(out.join("A/x.jpg")).unwrap(),
            std::fs::symlink_metadata(out.join("B/x.jpg")).unwrap(),
        );
        assert!(b.file_type().is_file());
        assert_eq!(a.ino(), b.ino());
        // New folders are made as needed.
        assert!(root.place("A/x.jpg", "C/D/x.jpg", 5).unwrap());
        // A source that changed size, or that is now a link, is refused.
        assert!(root.place("A/x.jpg", "E/x.jpg", 6).is_err());
        std::fs::remove_file(out.join("A/x.jpg")).unwrap();
        symlink(elsewhere.join("victim"), out.join("A/x.jpg")).unwrap();
        assert!(root.place("A/x.jpg", "F/x.jpg", 4).is_err());
        assert!(!out.join("F/x.jpg").exists());
    }

    #[test]
    fn create_replaces_a_planted_link_and_leaves_its_target() {
        let (_t, root, elsewhere) = setup();
        let victim = elsewhere.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        symlink(&victim, root.path().join("a.part")).unwrap();
        let mut f = root.create("a.part").unwrap();
        f.write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let meta = root.path().join("a.part").symlink_metadata().unwrap();
        assert!(meta.is_file());
        assert_eq!(std::fs::read(root.path().join("a.part")).unwrap(), b"new");
    }

    #[test]
    fn create_replaces_a_hard_link_and_leaves_the_other_name() {
        let (_t, root, elsewhere) = setup();
        let victim = elsewhere.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::fs::hard_link(&victim, root.path().join("a.part")).unwrap();
        root.create("a.part").unwrap().write_all(b"x").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(root.open_partial("a.part").is_ok());
        std::fs::hard_link(&victim, root.path().join("b.part")).unwrap();
        assert!(root.open_partial("b.part").is_err());
        assert_eq!(root.file_len("b.part", true), None);
        assert_eq!(root.file_len("b.part", false), Some(8));
    }

    #[test]
    fn a_linked_directory_is_refused_with_its_name() {
        let (_t, root, elsewhere) = setup();
        symlink(&elsewhere, root.path().join("sub")).unwrap();
        let err = root.create("sub/x.bin.part").unwrap_err();
        assert!(err.to_string().contains("\"sub\""), "{err}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = root.tmpfile("sub/deeper/x.bin").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(!root.exists("sub/x.bin"));
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn a_file_in_the_way_of_a_directory_is_named() {
        let (_t, root, _) = setup();
        std::fs::write(root.path().join("sub"), b"").unwrap();
        let err = root.create("sub/x").unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn nested_directories_are_made_and_files_renamed_and_linked() {
        let (_t, root, _) = setup();
        root.create("a/b/c.part").unwrap().write_all(b"12").unwrap();
        root.rename("a/b/c.part", "a/b/c").unwrap();
        assert_eq!(root.file_len("a/b/c", true), Some(2));
        let mut s = String::new();
        root.open_read("a/b/c")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "12");
        let (mut f, dir, name) = root.tmpfile("a/d/e").unwrap();
        f.write_all(b"345").unwrap();
        root.link_in(&f, &dir, &name).unwrap();
        assert_eq!(std::fs::read(root.path().join("a/d/e")).unwrap(), b"345");
        root.remove("a/d/e").unwrap();
        assert!(!root.exists("a/d/e"));
    }

    #[test]
    fn rename_replaces_a_link_at_the_target() {
        let (_t, root, elsewhere) = setup();
        let victim = elsewhere.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        symlink(&victim, root.path().join("x")).unwrap();
        root.create("x.part").unwrap().write_all(b"ours").unwrap();
        root.rename("x.part", "x").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(root.path().join("x").symlink_metadata().unwrap().is_file());
    }
}
