//! Socket-level tests of the mock's Anthropic, Gemini and Azure formats and
//! of the tool-call rule shared by every format.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod anthropic;
mod azure;
mod gemini;
mod support;
mod tools;
