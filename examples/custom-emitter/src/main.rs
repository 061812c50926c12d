//! `webhook-connector`: the `kinesis-connector` commands with one more emitter, `type = "webhook"`.
//!
//! This is all a binary with custom stages needs: start from the built-in registry, register the
//! stage with the options type it parses (validated at load, so `check` reports mistakes by key) and
//! the future that builds it when a pipeline runs, and hand the registry to `main_with`.

use std::sync::Arc;

use example_custom_emitter::{WebhookEmitter, WebhookOptions};
use kinesis_connector::registry::{Registry, StageError};
use kinesis_connectors_core::{Emitter, Item};

fn main() {
    let mut registry = Registry::with_builtins();
    registry.emitter_validated(
        "webhook",
        |_ctx, options: WebhookOptions| {
            options
                .validate()
                .map_err(|(key, message)| StageError::at(key, message))
        },
        |_ctx, settings| async move {
            Ok(Arc::new(WebhookEmitter::new(settings)?) as Arc<dyn Emitter<Item>>)
        },
    );
    std::process::exit(kinesis_connector::main_with(registry));
}
