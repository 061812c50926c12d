//! An example of a custom [`Emitter`](kinesis_connectors_core::Emitter) crate: an HTTP webhook that
//! receives batches of records as JSON.
//!
//! The emitter depends only on the core crate and its HTTP client (`reqwest`); the binary
//! (`src/main.rs`, feature `cli`) registers it with the connector's stage registry as
//! `type = "webhook"`, so a `connectors.toml` can use it with the normal commands:
//!
//! ```toml
//! [pipelines.clicks-to-webhook]
//! source = { stream = "clicks" }
//! transformer = { type = "json" }
//! emitter = { type = "webhook", url = "https://hooks.example.com/clicks", bearer_token = "${HOOK_TOKEN}" }
//! ```
//!
//! ```sh
//! cargo run -p example-custom-emitter -- run --config connectors.toml --pipeline clicks-to-webhook
//! ```
//!
//! How it is built, which is how any emitter crate is built:
//!
//! * [`config`]: the TOML options (`deny_unknown_fields`), checked through the stage contract of
//!   `core` ([`StageConfig`](kinesis_connectors_core::contract::StageConfig)) into settings whose
//!   errors name the key, so `kinesis-connector check` catches mistakes without sending anything;
//! * [`request`]: a batch becomes requests within the configured caps, each with an id that depends
//!   only on its records (`Idempotency-Key`), so a receiver can drop redeliveries;
//! * [`retry`]: which answers are retryable (429, 5xx, timeouts) and which permanent (other 4xx); the
//!   emitter reports them and the pipeline retries with its one policy or dead-letters;
//! * [`WebhookEmitter`]: the [`Emitter`](kinesis_connectors_core::Emitter) itself, built by
//!   [`EmitterConfig`](kinesis_connectors_core::contract::EmitterConfig).
//!
//! What every emitter needs (a secret type, bounded options, the count-and-bytes chunker, `Retry-After`,
//! folding per-request verdicts into an outcome) comes from
//! [`kinesis_connectors_core::kit`]; what is left here is what is particular to a webhook.
#![warn(missing_docs, unreachable_pub)]

pub mod config;
mod emitter;
pub mod request;
pub mod retry;

pub use config::{WebhookOptions, WebhookSettings};
pub use emitter::WebhookEmitter;
