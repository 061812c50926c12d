//! The `kinesis-connector` binary.

fn main() {
    std::process::exit(kinesis_connector::main_with(
        kinesis_connector::Registry::with_builtins(),
    ));
}
