//! Built-in stages that need no AWS service: the `raw` and `json` transformers, the `all` and `field`
//! filters, and the `stdout`, `file` and `null` emitters, with their [`contract`](crate::contract)
//! (type names, options, checks).

mod configs;
mod file;
mod filters;
mod lines;
mod transformers;

pub use configs::{FieldFilterOptions, FileDeadLetterOptions, FileOptions, StdoutOptions};
pub use file::{DEFAULT_ROTATE_BYTES, FileEmitter, FileEmitterOptions};
pub use filters::{AllFilter, FieldFilter, FieldPredicate};
pub use lines::{LineFormat, NullEmitter, StdoutEmitter};
pub use transformers::{JsonLinesTransformer, JsonTransformer, RawTransformer};
