//! Load-testing and mock-upstream tooling for Sluice.
//!
//! Deliberately independent of `sluice-providers`: the mock is written from the
//! providers' public API references so a misunderstanding shared with the
//! gateway's codecs cannot hide behind a matching mock.

pub mod bench;
pub mod client;
pub mod http1;
pub mod mock;
