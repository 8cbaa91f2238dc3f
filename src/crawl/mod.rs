//! Crawl: the pure, synchronous parts of `haul crawl`.
//!
//! A crawl fetches pages, picks file URLs out of them by CSS selector, and
//! follows links to more pages. Fetching, scheduling and naming belong to the
//! rest of the crate: pages go through the same scheduler as files. What lives
//! here is what can be decided from bytes alone, with no I/O and no async, so
//! it can be tested exhaustively and run inside `spawn_blocking`:
//!
//! * [`extract`](extract::extract) turns one HTML page (raw bytes, its
//!   Content-Type and its final URL) into a [`Page`]: its title, the file
//!   URLs the [`Rules`] select, and the links to crawl next. It finds the
//!   charset the way browsers do (BOM, header, `<meta>` prescan), decodes with
//!   `encoding_rs`, and selects elements with `lol_html`, a streaming selector
//!   engine several times faster than a DOM parser.
//! * [`Robots`] answers whether a path may be fetched and how long to wait
//!   between requests, per RFC 9309.
//!
//! [`scope`] holds the crawl's scope (hosts, include and exclude patterns).
//! Fetching each site's robots.txt, and spacing requests by its
//! crawl-delay, is the schedule's (`schedule::robots`, `schedule::rate`):
//! everything here is pure.

pub mod extract;
pub mod robots;
pub mod scope;

pub use extract::{extract, Rules};
pub use robots::Robots;
