//! End-to-end tests: the real `haul` binary against the in-process,
//! fault-injecting origin (`haul-origin`) on 127.0.0.1. Every test starts its
//! own origin and stops it.

mod util;

mod core;
mod crawl;
mod dataset;
mod fidelity;
mod first_contact;
mod hostile;
mod library;
mod objects;
mod pg_harness;
mod pgtls;
mod politeness;
mod resume;
mod safety;
mod shared;
mod symlinks;
