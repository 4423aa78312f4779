//! Sluice gateway: Pingora server, config, the LLM request pipeline, admin API.

pub mod admin;
pub mod cli;
pub mod config;
pub mod conn;
pub mod errors;
pub mod govern;
pub mod lookup;
pub mod metrics;
pub mod mock_service;
pub mod peer;
pub mod pipeline;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod snapshot;
pub mod upstream;
