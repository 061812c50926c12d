//! Prints every configuration key by section: `cargo run -p kinesis-connector --example keys`.

fn main() {
    let registry = kinesis_connector::Registry::with_builtins();
    for (section, keys) in kinesis_connector::config::reference_keys(&registry) {
        println!("[{section}]");
        for k in keys {
            println!("  {:40} {}", k.path, k.kind);
        }
    }
}
