//! `apache-log-connector`: the `kinesis-connector` commands with one more transformer,
//! `type = "apache_access_log"` (see [`example_custom_transformer::register`]).

fn main() {
    let mut registry = kinesis_connector::Registry::with_builtins();
    example_custom_transformer::register(&mut registry);
    std::process::exit(kinesis_connector::main_with(registry));
}
