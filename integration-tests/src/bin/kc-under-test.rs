//! The `kinesis-connector` binary, built inside this package so tests can find it through
//! `CARGO_BIN_EXE_kc-under-test` (the same `main_with` the real binary calls).

fn main() {
    std::process::exit(kinesis_connector::main_with(
        kinesis_connector::Registry::with_builtins(),
    ));
}
