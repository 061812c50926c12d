//! Fuzzes the configuration loader: `Config::parse` must return `Ok` or `Err` for any text — never
//! panic, never overflow the stack — and both outcomes must format (the error's `Display`, each
//! pipeline's `Debug` parts).
//!
//! The first byte picks where the rest of the input goes: the whole file, or spliced into a valid
//! configuration (the source table, the emitter table, a pipeline's body) so the mutations reach the
//! per-stage validation behind the TOML syntax, not only the TOML parser.
#![no_main]

use std::sync::OnceLock;

use kinesis_connector::{Config, Registry};
use libfuzzer_sys::fuzz_target;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::with_builtins)
}

/// A fixed environment for `${...}` interpolation: some variables set, one empty, the rest unset.
fn env(name: &str) -> Option<String> {
    match name {
        "SET" => Some("value".into()),
        "EMPTY" => Some(String::new()),
        "NUM" => Some("5".into()),
        "URL" => Some("http://127.0.0.1:4567".into()),
        "DOLLAR" => Some("${SET}".into()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let fuzz = String::from_utf8_lossy(rest);
    let text = match mode % 4 {
        0 => fuzz.into_owned(),
        1 => format!(
            "state_dir = \"state\"\n[pipelines.p]\nsource = {{ stream = \"s\", {fuzz} }}\nemitter = {{ type = \"null\" }}\n"
        ),
        2 => format!(
            "state_dir = \"state\"\n[pipelines.p]\nsource = {{ stream = \"s\" }}\nemitter = {{ {fuzz} }}\n"
        ),
        _ => format!(
            "state_dir = \"state\"\n[pipelines.p]\nsource = {{ stream = \"s\" }}\nemitter = {{ type = \"null\" }}\n{fuzz}\n"
        ),
    };
    match Config::parse("fuzz.toml", &text, registry(), &env) {
        Ok(config) => {
            // `Config` holds built stages (not `Debug`); format what it reports about each pipeline.
            for (name, p) in &config.pipelines {
                let _ = format!(
                    "{name} {:?} {:?} {} {} {} {:?} {:?} {:?} {:?}",
                    p.description,
                    p.source,
                    p.transformer_type,
                    p.emitter_type,
                    p.dead_letter_type,
                    p.settings,
                    p.checkpoint,
                    p.leases,
                    p.shutdown_timeout,
                );
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
