//! haul: a fast, resumable bulk downloader and image crawler.
//!
//! Data flows one way, and the modules follow it:
//! [`source`] reads URLs (with [`table`] for datasets and [`template`] for
//! patterns) → [`plan`] decides what to fetch and where it goes →
//! [`schedule`] waits for a slot and times retries → [`fetch`] runs one
//! transfer (over the [`http`] client, with [`check`] on its content, its
//! file work on [`disk`] threads) → [`ledger`] records the outcome
//! in the [`store`] and the [`report`]. [`job`] wires them together;
//! [`naming`] is the one place paths are built, [`beneath`] the one place
//! files under the output directory are opened; [`crawl`] reads pages.
#![warn(missing_docs)]

pub mod beneath;
pub mod check;
pub mod cli;
pub mod crawl;
pub mod disk;
pub mod fetch;
pub mod http;
pub mod job;
pub mod ledger;
pub mod naming;
pub mod plan;
pub mod report;
pub mod schedule;
pub mod source;
pub mod store;
pub mod table;
pub mod template;

pub use job::{run, Config, Finished, JobError};
