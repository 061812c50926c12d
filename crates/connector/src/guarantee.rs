//! What a pipeline promises about redelivered records, per sink and setting: the table of README's
//! "Delivery guarantees", as `check` prints it for each pipeline.
//!
//! Every pipeline is at least once (a record is checkpointed only after its items were acknowledged
//! or dead-lettered). Whether a record delivered again after a crash, a restart or a lease move is
//! *held* once depends on the sink writing a redelivered batch under the same identity; that is
//! decided here from the emitter's type and the options that change it.

use std::fmt;

/// How often a sink holds a record that was delivered more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Each record is held once: a redelivered batch is written under the same identity.
    HeldOnce(&'static str),
    /// A redelivered record may be held twice.
    AtLeastOnce(&'static str),
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HeldOnce(how) => write!(f, "each record held once ({how})"),
            Self::AtLeastOnce(why) => write!(f, "at least once ({why})"),
        }
    }
}

/// The guarantee of a pipeline writing to `emitter_type` with the emitter's `options` (its TOML
/// table) and `batch_across_shards`.
pub fn delivery(emitter_type: &str, options: &toml::Table, batch_across_shards: bool) -> Delivery {
    let option = |key: &str| options.get(key).and_then(toml::Value::as_str);
    match emitter_type {
        "s3" | "redshift" if batch_across_shards => Delivery::AtLeastOnce(
            "batch_across_shards = true: a batch mixes shards read at different times, so a redelivery may form another",
        ),
        "s3" => Delivery::HeldOnce(
            "keys from each batch's item range; a redelivered batch overwrites its object",
        ),
        "redshift" => Delivery::HeldOnce(
            "staged names from each batch's item range; the loaded-files table skips a batch loaded before",
        ),
        "iceberg" => Delivery::HeldOnce(
            "each commit carries its batch's last position per shard; a redelivered item at or before it is skipped",
        ),
        "elasticsearch" | "opensearch" => match option("document_id") {
            Some("none") => Delivery::AtLeastOnce(
                "document_id = \"none\": the cluster gives each write a new id",
            ),
            _ => Delivery::HeldOnce("a redelivered item overwrites its own document"),
        },
        "dynamodb" => Delivery::HeldOnce("one item per key, at its latest record"),
        "file" => {
            Delivery::AtLeastOnce("the file emitter appends; a redelivered batch is appended again")
        }
        "stdout" => Delivery::AtLeastOnce("stdout cannot take a write back"),
        "null" => Delivery::AtLeastOnce("null discards every record; nothing is held"),
        _ => Delivery::AtLeastOnce(
            "a custom emitter; held once if it writes idempotently by each item's position",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn settings_that_give_up_held_once_say_so() {
        let none = table("document_id = \"none\"");
        assert!(matches!(
            delivery("s3", &none, false),
            Delivery::HeldOnce(_)
        ));
        assert!(matches!(
            delivery("s3", &none, true),
            Delivery::AtLeastOnce(_)
        ));
        assert!(matches!(
            delivery("elasticsearch", &none, false),
            Delivery::AtLeastOnce(_)
        ));
        assert!(matches!(
            delivery("elasticsearch", &table(""), false),
            Delivery::HeldOnce(_)
        ));
        assert!(matches!(
            delivery("webhook", &table(""), false),
            Delivery::AtLeastOnce(_)
        ));
    }
}
