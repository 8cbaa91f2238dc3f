//! Output to object storage: `-o s3://bucket/prefix/` (and `gs://`,
//! `az://`), through the `object_store` crate.
//!
//! A file's key is the prefix and the same relative name a local run would
//! give it, so names, templates and crawl folders behave as on a disk. A key
//! is checked as strictly as a local name: [`Path::parse`] refuses empty,
//! `.` and `..` segments, so nothing is written outside the prefix whatever
//! a name says.
//!
//! A file appears under its key only when whole: a body that fits one part
//! is one PUT (atomic), a larger one a multipart upload completed only once
//! every byte has arrived and been checked. The upload of an interrupted
//! transfer is aborted, never resumed: a resume would need the parts' tags
//! kept with the item, and the bytes are fetched again anyway unless the
//! origin allows a Range. The journal ([`Journal`]) names every upload begun
//! and not yet completed or aborted, so that a run killed outright has its
//! uploads aborted by the next run instead of left to accrue cost.
//!
//! What is already under the prefix is listed once at the start (as a local
//! run looks at its directory), and that listing answers "is this file
//! there" for the planner: one request per thousand keys instead of a HEAD
//! per item.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// The schemes `-o` takes as object storage.
pub const SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "azure", "abfs", "abfss"];

/// The journal of uploads begun, in the job's state folder.
const JOURNAL: &str = "uploads";

/// Why the object store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    /// The URL or an option is wrong.
    #[error("-o {url}: {message}")]
    Setup {
        /// The output URL.
        url: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The store answered the start-up checks with an error.
    #[error("-o {url}: {message} ({})", said(error))]
    Refused {
        /// The output URL.
        url: String,
        /// What could not be done, and what to do.
        message: String,
        /// What the store said. Not a `source`: the message quotes the
        /// part of it worth reading (an S3 error's code and message), and
        /// a printed chain would repeat all of it.
        error: object_store::Error,
    },
    /// The upload journal could not be read or written.
    #[error("the upload journal {path}: {source}")]
    Journal {
        /// The journal.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// A failed write of one object.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {source}")]
pub struct WriteError {
    /// The object's URL.
    pub url: String,
    /// What the store said.
    #[source]
    pub source: object_store::Error,
}

/// The output prefix in an object store.
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    parts: Arc<dyn MultipartStore>,
    prefix: Path,
    /// `scheme://bucket/prefix`, without a trailing `/`, for messages.
    url: String,
    /// Every key under the prefix, relative to it, with its size: the
    /// listing at the start, then what this run wrote.
    listing: Mutex<HashMap<Box<str>, u64>>,
    journal: Mutex<Journal>,
}

/// Whether `text` is an object-store URL `-o` takes (`Some(scheme)`), or a
/// URL of a scheme it does not (`Some` too: the caller refuses it).
pub fn scheme_of(text: &str) -> Option<&str> {
    let (scheme, rest) = text.split_once("://")?;
    let ok = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
    (ok && !rest.is_empty()).then_some(scheme)
}

/// Where the job state of an object-store output lives by default: a
/// folder named for the URL under `.haul-jobs/` in the current directory,
/// so that the same command run again from there resumes.
pub fn default_state_dir(url: &str) -> PathBuf {
    let mut dir = PathBuf::from(".haul-jobs");
    let (scheme, rest) = url.split_once("://").unwrap_or(("store", url));
    dir.push(scheme);
    for part in rest.split('/').filter(|p| !p.is_empty()) {
        // A segment is a name of its own here, never a way out.
        let part = match part {
            "." | ".." => "_",
            p => p,
        };
        dir.push(sanitize_filename::sanitize(part));
    }
    dir
}

impl Objects {
    /// Connects to the store `url` names with credentials from the
    /// environment, and `options` (`aws_endpoint`, `google_service_account`,
    /// …: the `object_store` configuration keys) over them. Nothing is
    /// sent yet.
    pub fn open(
        url: &str,
        options: &[(String, String)],
        state_dir: &FsPath,
    ) -> Result<Objects, ObjectsError> {
        let setup = |message: String| ObjectsError::Setup {
            url: url.to_string(),
            message,
        };
        let parsed = url::Url::parse(url).map_err(|e| setup(format!("not a URL: {e}")))?;
        let bucket = parsed.host_str().unwrap_or_default();
        if bucket.is_empty() {
            return Err(setup("no bucket: write -o s3://BUCKET/PREFIX/".into()));
        }
        let prefix_text = percent_encoding::percent_decode_str(parsed.path())
            .decode_utf8()
            .map_err(|_| setup("the prefix is not UTF-8".into()))?
            .to_string();
        let prefix = Path::parse(&prefix_text).map_err(|e| {
            setup(format!(
                "the prefix {prefix_text:?} is not a plain key prefix ({e}): no empty, . or .. parts"
            ))
        })?;
        // The store's HTTP client takes the process's TLS provider, as ours
        // does (see crate::http).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bad_option =
            |k: &str, e: &dyn std::fmt::Display| setup(format!("--store-option {k}: {e}"));
        let (store, parts): (Arc<dyn ObjectStore>, Arc<dyn MultipartStore>) = match parsed.scheme()
        {
            "s3" | "s3a" => {
                use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
                let mut b = AmazonS3Builder::from_env().with_url(url);
                if let Some(creds) = aws_profile(options) {
                    b = creds.apply(b);
                }
                for (k, v) in options {
                    let key: AmazonS3ConfigKey = k.parse().map_err(|e| bad_option(k, &e))?;
                    b = b.with_config(key, v);
                }
                let s = Arc::new(b.build().map_err(|e| setup(e.to_string()))?);
                (s.clone(), s)
            }
            "gs" => {
                use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
                let mut b = GoogleCloudStorageBuilder::from_env().with_url(url);
                for (k, v) in options {
                    let key: GoogleConfigKey = k.parse().map_err(|e| bad_option(k, &e))?;
                    b = b.with_config(key, v);
                }
                let s = Arc::new(b.build().map_err(|e| setup(e.to_string()))?);
                (s.clone(), s)
            }
            "az" | "azure" | "abfs" | "abfss" => {
                use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
                let mut b = MicrosoftAzureBuilder::from_env().with_url(url);
                for (k, v) in options {
                    let key: AzureConfigKey = k.parse().map_err(|e| bad_option(k, &e))?;
                    b = b.with_config(key, v);
                }
                let s = Arc::new(b.build().map_err(|e| setup(e.to_string()))?);
                (s.clone(), s)
            }
            other => {
                return Err(setup(format!(
                    "{other}:// is not an object store haul writes to (s3://, gs://, az://)"
                )))
            }
        };
        Ok(Objects {
            store,
            parts,
            prefix,
            url: url.trim_end_matches('/').to_string(),
            listing: Mutex::new(HashMap::new()),
            journal: Mutex::new(Journal {
                path: state_dir.join(JOURNAL),
            }),
        })
    }

    /// `scheme://bucket/prefix`, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The start of a run, before any transfer: aborts the uploads an
    /// earlier run left (see [`Journal`]), lists what is under the prefix,
    /// and writes and deletes a probe object, so that a wrong bucket,
    /// refused credentials or a missing permission stop the job here with
    /// one clear message instead of failing every item. Returns how many
    /// uploads were aborted.
    pub async fn prepare(&self) -> Result<usize, ObjectsError> {
        let refused = |message: &str, error| ObjectsError::Refused {
            url: self.url.clone(),
            message: message.to_string(),
            error,
        };
        let left = self.journal().open_uploads()?;
        let mut aborted = 0;
        for (id, key) in &left {
            let Ok(key) = Path::parse(key) else { continue };
            match self.parts.abort_multipart(&key, id).await {
                Ok(()) => aborted += 1,
                // Completed or aborted already.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    return Err(refused(
                        "cannot abort an upload an earlier run left unfinished",
                        e,
                    ))
                }
            }
        }
        self.journal().clear()?;

        let mut listing = HashMap::new();
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let mut stream = self.store.list(prefix);
        while let Some(meta) = stream.next().await {
            let meta =
                meta.map_err(|e| refused(&why(&e, "cannot list the prefix (s3:ListBucket)"), e))?;
            if let Some(rel) = self.rel_of(&meta.location) {
                listing.insert(rel.into(), meta.size);
            }
        }
        drop(stream);

        let probe = self.key(&format!(
            ".haul-write-check-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let Ok(probe) = probe else {
            unreachable!("a plain name is a key")
        };
        self.store
            .put(&probe, PutPayload::default())
            .await
            .map_err(|e| refused(&why(&e, "cannot write under the prefix (s3:PutObject)"), e))?;
        // Not being allowed to delete leaves an empty object: a nuisance
        // worth a message, not a reason to stop.
        let _ = self.store.delete(&probe).await;
        *lock(&self.listing) = listing;
        Ok(aborted)
    }

    /// The key of the relative name `rel`, refused unless every part is a
    /// plain name (the naming never makes another; this is the backstop).
    pub fn key(&self, rel: &str) -> Result<Path, object_store::path::Error> {
        let rel = Path::parse(rel)?;
        if rel.as_ref().is_empty() {
            return Err(object_store::path::Error::EmptySegment {
                path: String::new(),
            });
        }
        Ok(self.prefix.parts().chain(rel.parts()).collect())
    }

    /// The URL of `rel`, for messages.
    pub fn display(&self, rel: &str) -> String {
        format!("{}/{rel}", self.url)
    }

    fn rel_of(&self, key: &Path) -> Option<String> {
        let rest: Vec<_> = key.prefix_match(&self.prefix)?.collect();
        (!rest.is_empty()).then(|| {
            rest.iter()
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/")
        })
    }

    /// The size of the object `rel`, if it was there at the start or this
    /// run wrote it.
    pub fn len(&self, rel: &str) -> Option<u64> {
        lock(&self.listing).get(rel).copied()
    }

    fn written(&self, rel: &str, size: u64) {
        lock(&self.listing).insert(rel.into(), size);
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        lock(&self.journal)
    }

    fn write_error(&self, rel: &str, source: object_store::Error) -> WriteError {
        WriteError {
            url: self.display(rel),
            source,
        }
    }

    /// Writes a whole body as one object: one PUT, atomic.
    pub async fn put(&self, rel: &str, chunks: Vec<Bytes>) -> Result<(), WriteError> {
        let key = self.key(rel).map_err(|e| self.write_error(rel, e.into()))?;
        let size = chunks.iter().map(|c| c.len() as u64).sum();
        self.store
            .put(&key, chunks.into_iter().collect())
            .await
            .map_err(|e| self.write_error(rel, e))?;
        self.written(rel, size);
        Ok(())
    }

    /// Copies the object `from` to `to` inside the store (a crawl's file
    /// shown on several pages), without fetching it again.
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), WriteError> {
        let (a, b) = (
            self.key(from)
                .map_err(|e| self.write_error(from, e.into()))?,
            self.key(to).map_err(|e| self.write_error(to, e.into()))?,
        );
        self.store
            .copy(&a, &b)
            .await
            .map_err(|e| self.write_error(to, e))?;
        if let Some(n) = self.len(from) {
            self.written(to, n);
        }
        Ok(())
    }

    /// Begins a multipart upload of `rel`, named in the journal before its
    /// first part is sent.
    pub async fn begin(self: &Arc<Self>, rel: &str) -> Result<Upload, WriteError> {
        let key = self.key(rel).map_err(|e| self.write_error(rel, e.into()))?;
        let id = self
            .parts
            .create_multipart(&key)
            .await
            .map_err(|e| self.write_error(rel, e))?;
        let noted = self.journal().add(&id, key.as_ref());
        if let Err(e) = noted {
            let _ = self.parts.abort_multipart(&key, &id).await;
            return Err(self.write_error(
                rel,
                object_store::Error::Generic {
                    store: "haul",
                    source: Box::new(e),
                },
            ));
        }
        Ok(Upload {
            objects: self.clone(),
            rel: rel.to_string(),
            key,
            id,
            parts: Vec::new(),
            sending: None,
            size: 0,
        })
    }
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects").field("url", &self.url).finish()
    }
}

/// What the store said: the code and message of an S3 error document,
/// which is most of a long error's text, else the error itself.
fn said(e: &object_store::Error) -> String {
    let text = e.to_string();
    let element = |name: &str| {
        let (open, close) = (format!("<{name}>"), format!("</{name}>"));
        let rest = &text[text.find(&open)? + open.len()..];
        Some(rest[..rest.find(&close)?].to_string())
    };
    match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => text,
    }
}

/// Why a start-up request failed, in the user's terms: `doing` is what
/// was being done ("cannot list the prefix (s3:ListBucket)").
fn why(e: &object_store::Error, doing: &str) -> String {
    use object_store::Error as E;
    // S3 names these in the body of an answer that object_store reports
    // as a generic error.
    let text = e.to_string();
    let has = |code: &str| text.contains(code);
    if has("NoSuchBucket") || matches!(e, E::NotFound { .. }) {
        "the bucket does not exist (check its name, and --endpoint for an S3-compatible store)"
            .into()
    } else if has("InvalidAccessKeyId")
        || has("SignatureDoesNotMatch")
        || matches!(e, E::Unauthenticated { .. })
    {
        "the store did not accept the credentials (AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY or ~/.aws/credentials; GOOGLE_APPLICATION_CREDENTIALS; \
         AZURE_STORAGE_ACCOUNT_KEY)"
            .into()
    } else if has("AccessDenied") || matches!(e, E::PermissionDenied { .. }) {
        format!("the credentials lack a permission haul needs: {doing}")
    } else {
        doing.to_string()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A multipart upload under way: parts are sent one at a time while the
/// next fills, so a transfer holds at most two parts in memory.
pub struct Upload {
    objects: Arc<Objects>,
    rel: String,
    key: Path,
    id: String,
    parts: Vec<PartId>,
    sending: Option<tokio::task::JoinHandle<object_store::Result<PartId>>>,
    size: u64,
}

impl Upload {
    /// Sends `chunks` as the next part, once the part before it is in.
    pub async fn part(&mut self, chunks: Vec<Bytes>) -> Result<(), WriteError> {
        self.settle().await?;
        self.size += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
        let (parts, key, id, idx) = (
            self.objects.parts.clone(),
            self.key.clone(),
            self.id.clone(),
            self.parts.len(),
        );
        let payload: PutPayload = chunks.into_iter().collect();
        self.sending = Some(tokio::spawn(async move {
            parts.put_part(&key, &id, idx, payload).await
        }));
        Ok(())
    }

    async fn settle(&mut self) -> Result<(), WriteError> {
        if let Some(sending) = self.sending.take() {
            let part = match sending.await {
                Ok(r) => r,
                Err(e) => Err(e.into()),
            };
            let part = part.map_err(|e| self.objects.write_error(&self.rel, e))?;
            self.parts.push(part);
        }
        Ok(())
    }

    /// Sends the last part and completes the object: it appears under its
    /// key now, whole.
    pub async fn complete(mut self, last: Vec<Bytes>) -> Result<(), WriteError> {
        if !last.is_empty() {
            self.part(last).await?;
        }
        if let Err(e) = self.settle().await {
            self.abort().await;
            return Err(e);
        }
        let parts = std::mem::take(&mut self.parts);
        let done = self
            .objects
            .parts
            .complete_multipart(&self.key, &self.id, parts)
            .await;
        if let Err(e) = done {
            let e = self.objects.write_error(&self.rel, e);
            self.abort().await;
            return Err(e);
        }
        self.objects.written(&self.rel, self.size);
        let _ = self.objects.journal().remove(&self.id);
        Ok(())
    }

    /// Drops the upload and what it sent.
    pub async fn abort(mut self) {
        if let Some(sending) = self.sending.take() {
            let _ = sending.await;
        }
        if self
            .objects
            .parts
            .abort_multipart(&self.key, &self.id)
            .await
            .is_ok()
        {
            let _ = self.objects.journal().remove(&self.id);
        }
    }
}

/// The uploads begun and not yet completed or aborted, one line each in a
/// file of the job's state folder: `+ ID KEY` when begun, `- ID` when done.
/// The line is written (not synced: a kill leaves the page cache) before
/// any part is sent, so a run killed outright leaves its uploads named for
/// the next one to abort. Only the few large files use it.
struct Journal {
    path: PathBuf,
}

impl Journal {
    fn error(&self, source: std::io::Error) -> ObjectsError {
        ObjectsError::Journal {
            path: self.path.clone(),
            source,
        }
    }

    fn append(&self, line: &str) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(line.as_bytes())
    }

    fn add(&self, id: &str, key: &str) -> std::io::Result<()> {
        self.append(&format!("+ {} {key}\n", escape(id)))
    }

    fn remove(&self, id: &str) -> std::io::Result<()> {
        self.append(&format!("- {}\n", escape(id)))
    }

    /// The uploads begun and not ended, as (id, key).
    fn open_uploads(&self) -> Result<Vec<(String, String)>, ObjectsError> {
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error(e)),
        };
        let mut open: Vec<(String, String)> = Vec::new();
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|e| self.error(e))?;
            let mut it = line.splitn(3, ' ');
            match (it.next(), it.next(), it.next()) {
                (Some("+"), Some(id), Some(key)) => open.push((unescape(id), key.to_string())),
                (Some("-"), Some(id), _) => {
                    let id = unescape(id);
                    open.retain(|(i, _)| *i != id);
                }
                // A line cut short by a kill: its upload, if any, was never
                // sent a part.
                _ => {}
            }
        }
        Ok(open)
    }

    fn clear(&self) -> Result<(), ObjectsError> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.error(e)),
            _ => Ok(()),
        }
    }
}

/// Upload ids are opaque: spaces and newlines must not split a line.
fn escape(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, percent_encoding::CONTROLS)
        .to_string()
        .replace(' ', "%20")
}

fn unescape(id: &str) -> String {
    percent_encoding::percent_decode_str(id)
        .decode_utf8_lossy()
        .into_owned()
}

/// Credentials from the AWS shared files (`~/.aws/credentials`, and the
/// region from `~/.aws/config`) for the profile `AWS_PROFILE` (default
/// `default`), which `object_store` does not read. The environment wins:
/// these fill only what it left unset.
struct Profile {
    key: Option<String>,
    secret: Option<String>,
    token: Option<String>,
    region: Option<String>,
}

impl Profile {
    fn apply(self, b: object_store::aws::AmazonS3Builder) -> object_store::aws::AmazonS3Builder {
        use object_store::aws::AmazonS3ConfigKey as K;
        let mut b = b;
        for (key, env, value) in [
            (K::AccessKeyId, "AWS_ACCESS_KEY_ID", self.key),
            (K::SecretAccessKey, "AWS_SECRET_ACCESS_KEY", self.secret),
            (K::Token, "AWS_SESSION_TOKEN", self.token),
            (K::Region, "AWS_REGION", self.region),
        ] {
            if let (None, Some(v)) = (std::env::var_os(env), value) {
                if env == "AWS_REGION" && std::env::var_os("AWS_DEFAULT_REGION").is_some() {
                    continue;
                }
                b = b.with_config(key, v);
            }
        }
        b
    }
}

fn aws_profile(options: &[(String, String)]) -> Option<Profile> {
    let given = options
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("aws_access_key_id"));
    if given || std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        return None;
    }
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let creds = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".aws/credentials"));
    let config = std::env::var_os("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".aws/config"));
    let c = ini_section(&creds, &profile);
    let section = if profile == "default" {
        profile.clone()
    } else {
        format!("profile {profile}")
    };
    let f = ini_section(&config, &section);
    let get = |m: &HashMap<String, String>, k: &str| m.get(k).cloned();
    let p = Profile {
        key: get(&c, "aws_access_key_id").or_else(|| get(&f, "aws_access_key_id")),
        secret: get(&c, "aws_secret_access_key").or_else(|| get(&f, "aws_secret_access_key")),
        token: get(&c, "aws_session_token").or_else(|| get(&f, "aws_session_token")),
        region: get(&f, "region").or_else(|| get(&c, "region")),
    };
    (p.key.is_some() || p.region.is_some()).then_some(p)
}

/// The `key = value` lines of `[section]` in an INI file (empty when the
/// file or the section is missing).
fn ini_section(path: &FsPath, section: &str) -> HashMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    let mut inside = false;
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            continue;
        }
        if let (true, Some((k, v))) = (inside, line.split_once('=')) {
            out.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_state_dirs_are_named_for_the_url_and_stay_beneath() {
        assert_eq!(
            default_state_dir("s3://bucket/run/2026/"),
            PathBuf::from(".haul-jobs/s3/bucket/run/2026")
        );
        assert_eq!(
            default_state_dir("s3://b/../x"),
            PathBuf::from(".haul-jobs/s3/b/_/x")
        );
    }

    #[test]
    fn the_journal_names_the_uploads_begun_and_not_ended() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal {
            path: dir.path().join(JOURNAL),
        };
        assert!(j.open_uploads().unwrap().is_empty());
        j.add("id one", "p/a.bin").unwrap();
        j.add("two", "p/b c.bin").unwrap();
        j.remove("id one").unwrap();
        j.append("+ cut").unwrap();
        assert_eq!(
            j.open_uploads().unwrap(),
            vec![("two".to_string(), "p/b c.bin".to_string())]
        );
        j.clear().unwrap();
        assert!(j.open_uploads().unwrap().is_empty());
    }

    #[test]
    fn keys_stay_under_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let o = Objects::open(
            "s3://bucket/run/",
            &[
                ("aws_access_key_id".into(), "k".into()),
                ("aws_secret_access_key".into(), "s".into()),
                ("aws_endpoint".into(), "http://127.0.0.1:9".into()),
                ("aws_allow_http".into(), "true".into()),
            ],
            dir.path(),
        )
        .unwrap();
        assert_eq!(o.key("a/b.jpg").unwrap().as_ref(), "run/a/b.jpg");
        for bad in ["../x", "a/../../x", "a//b", "./a", ""] {
            assert!(o.key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            o.rel_of(&Path::from("run/a/b.jpg")).as_deref(),
            Some("a/b.jpg")
        );
        assert_eq!(o.rel_of(&Path::from("runner/a")), None);
    }

    #[test]
    fn ini_sections_are_read_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("credentials");
        std::fs::write(
            &p,
            "[default]\naws_access_key_id = A\n\n[profile work]\nregion=eu-west-1\n# c\n",
        )
        .unwrap();
        assert_eq!(ini_section(&p, "default")["aws_access_key_id"], "A");
        assert_eq!(ini_section(&p, "profile work")["region"], "eu-west-1");
        assert!(ini_section(&p, "missing").is_empty());
    }
}
