//! `webhook-connector`: the `kinesis-connector` commands with one more emitter, `type = "webhook"`.
//!
//! This is all a binary with custom stages needs: start from the built-in registry, register the
//! stage (its checked config, which declares its type name, options and build through the stage
//! contract of `core`), and hand the registry to `main_with`.

use example_custom_emitter::WebhookSettings;
use kinesis_connector::registry::Registry;

fn main() {
    let mut registry = Registry::with_builtins();
    registry.emitter::<WebhookSettings>();
    std::process::exit(kinesis_connector::main_with(registry));
}
