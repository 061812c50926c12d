//! The `kinesis-connector` binary as a library: configuration, the stage registry, the commands.
//!
//! The binary is `main_with(Registry::with_builtins())`. A binary of your own can register custom
//! stages (see [`registry`]) and call [`main_with`] to get the same commands and configuration.
#![warn(missing_docs, unreachable_pub)]

pub mod cli;
pub mod config;
pub mod guarantee;
pub mod interpolate;
pub mod keys;
pub mod metrics;
pub mod progress;
pub mod registry;
pub mod replay;
pub mod run;
pub mod sample;
pub mod status;
pub mod streams;

pub use cli::main_with;
pub use config::{Config, ConfigError};
pub use registry::Registry;
