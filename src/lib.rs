//! haul: a fast, resumable bulk downloader and image crawler.
//!
//! The library's surface is small: a [`Config`] built from plain values,
//! [`run`], and a [`Reporter`] that hears every [`Outcome`]. Inside, data
//! flows one way, through modules named for its stages: `source` reads
//! URLs (lists, `source::table` datasets, `template` patterns) → `plan`
//! decides what to fetch and where it goes (`plan::naming` builds every
//! path) → `schedule` waits for a slot, times retries and admits requests
//! under robots.txt → `fetch` runs one transfer over the `http` client
//! (`check` on its content, its file work on `fetch::disk` threads, every
//! file opened through `beneath`) → `ledger` records the outcome in the
//! `store` and the `report`. `job` wires them; `crawl` reads pages.
//!
//! # Embedding
//!
//! A program runs a job with [`run`] and hears of it through a
//! [`Reporter`] of its own: every item's [`Outcome`], the counters a few
//! times a second, messages for people, and the end.
//!
//! ```no_run
//! use haul::{InputSpec, Outcome, Reporter, Status};
//!
//! struct Print;
//!
//! impl Reporter for Print {
//!     fn on_outcome(&self, o: &Outcome) {
//!         if o.status == Status::Ok {
//!             println!("{} -> {}", o.url, o.path.as_deref().unwrap_or("?"));
//!         }
//!     }
//! }
//!
//! # async fn demo() -> Result<(), haul::JobError> {
//! let urls = vec!["https://example.org/a.jpg".to_string()];
//! let config = haul::Config::new(vec![InputSpec::Args(urls)], "downloads").with_reporter(Print);
//! let finished = haul::run(config, tokio_util::sync::CancellationToken::new()).await?;
//! println!("{} done, {} failed", finished.tally.ok, finished.tally.failed);
//! # Ok(())
//! # }
//! ```
//!
//! `examples/embed.rs` is a whole program; `examples/demo.rs` runs the
//! `haul` command's job on a local server.
#![warn(missing_docs)]

mod beneath;
mod check;
mod config;
mod crawl;
mod fetch;
mod http;
mod job;
mod ledger;
mod objects;
mod plan;
mod report;
mod schedule;
mod source;
mod store;
mod template;
mod worker;

#[cfg(feature = "cli")]
pub mod cli;

pub use check::parse_size;
pub use config::ConfigError;
pub use config::{Config, Crawl};
pub use job::{run, Finished, JobError};
pub use report::status;
pub use report::{
    Found, HostWindow, Level, Outcome, OutcomeKind, ProgressMode, ReportError, Reporter, Silent,
    Snapshot, Status, Summary, Tally,
};
pub use source::{InputSpec, SourceError};

/// The errors a job's parts can end it with, kept with their sources.
pub mod error {
    pub use crate::http::ClientError;
    pub use crate::ledger::LedgerError;
    pub use crate::store::StoreError;
}
