//! `kinesis-connector check` rejects malformed configurations with exit code 2 and a message naming
//! the file, the pipeline and the key; nothing is started.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const GOOD: &str = r#"
[pipelines.p]
source = { stream = "clicks", region = "us-east-1" }
transformer = { type = "json" }
emitter = { type = "file", dir = "out" }
"#;

fn check(text: &str) -> (i32, String, String) {
    check_with(text, None)
}

/// `check` with `KC_SOURCE_DECODER` set to `decoder` (removed for `None`).
fn check_with(text: &str, decoder: Option<&str>) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connectors.toml");
    std::fs::write(&path, text).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinesis-connector"));
    match decoder {
        Some(d) => command.env("KC_SOURCE_DECODER", d),
        None => command.env_remove("KC_SOURCE_DECODER"),
    };
    let out = command
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("KC_TEST_UNSET")
        .current_dir(dir.path())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// (what is wrong, the configuration, text the error must contain)
const MALFORMED: &[(&str, &str, &[&str])] = &[
    (
        "a duration too long for any clock (it panicked at run time)",
        "[pipelines.p]\nsource = { stream = \"s\" }\nbuffer = { max_age = \"300000000000y\" }\nemitter = { type = \"null\" }",
        &["pipeline \"p\"", "buffer.max_age", "longer than a year"],
    ),
    (
        "a duration too long in the lease settings",
        "[pipelines.p]\nsource = { stream = \"s\" }\ncheckpoint = { type = \"dynamodb\", table = \"t\", failover_time = \"9999999d\" }\nemitter = { type = \"null\" }",
        &["pipeline \"p\"", "failover_time", "longer than a year"],
    ),
    (
        "unknown top-level key",
        "bogus = 1\n[pipelines.p]\nsource = { stream = \"s\" }\nemitter = { type = \"null\" }",
        &["key \"bogus\"", "unknown field"],
    ),
    (
        "unknown pipeline key",
        "[pipelines.p]\nsourc = { stream = \"s\" }\nsource = { stream = \"s\" }\nemitter = { type = \"null\" }",
        &["pipeline \"p\"", "key \"sourc\""],
    ),
    (
        "missing stream",
        "[pipelines.p]\nsource = { region = \"us-east-1\" }\nemitter = { type = \"null\" }",
        &["pipeline \"p\"", "key \"source\"", "missing field `stream`"],
    ),
    (
        "invalid stream name",
        "[pipelines.p]\nsource = { stream = \"no spaces\" }\nemitter = { type = \"null\" }",
        &["key \"source.stream\""],
    ),
    (
        "invalid region",
        "[pipelines.p]\nsource = { stream = \"s\", region = \"US East\" }\nemitter = { type = \"null\" }",
        &["key \"source.region\""],
    ),
    (
        "endpoint without scheme",
        "[pipelines.p]\nsource = { stream = \"s\", endpoint = \"localhost:4567\" }\nemitter = { type = \"null\" }",
        &["key \"source.endpoint\""],
    ),
    (
        "unknown start position",
        "[pipelines.p]\nsource = { stream = \"s\", start_position = \"earliest\" }\nemitter = { type = \"null\" }",
        &["key \"source.start_position\"", "earliest"],
    ),
    (
        "bad timestamp",
        "[pipelines.p]\nsource = { stream = \"s\", start_position = { at_timestamp = \"yesterday\" } }\nemitter = { type = \"null\" }",
        &["key \"source.start_position.at_timestamp\""],
    ),
    (
        "bad sequence number",
        "[pipelines.p]\nsource = { stream = \"s\", start_position = { after_sequence = { \"shardId-000000000000\" = \"12x\" } } }\nemitter = { type = \"null\" }",
        &["key \"source.start_position.after_sequence.shardId-000000000000\""],
    ),
    (
        "over the GetRecords limit",
        "[pipelines.p]\nsource = { stream = \"s\", max_records_per_call = 20000 }\nemitter = { type = \"null\" }",
        &["key \"source.max_records_per_call\"", "10000"],
    ),
    (
        "no call allowed in flight",
        "[pipelines.p]\nsource = { stream = \"s\", max_concurrent_requests = 0 }\nemitter = { type = \"null\" }",
        &["key \"source.max_concurrent_requests\"", "got 0"],
    ),
    (
        "polling faster than 5/s",
        "[pipelines.p]\nsource = { stream = \"s\", poll_interval = \"50ms\" }\nemitter = { type = \"null\" }",
        &["key \"source.poll_interval\""],
    ),
    (
        "unknown reader",
        "[pipelines.p]\nsource = { stream = \"s\", reader = \"push\" }\nemitter = { type = \"null\" }",
        &["key \"source.reader\""],
    ),
    (
        "unknown decoder",
        "[pipelines.p]\nsource = { stream = \"s\", decoder = \"fast\" }\nemitter = { type = \"null\" }",
        &["key \"source.decoder\"", "\"fast\"", "one of: own, sdk"],
    ),
    (
        "decoder with fan-out",
        "[pipelines.p]\nsource = { stream = \"s\", reader = \"fan_out\", decoder = \"sdk\" }\nemitter = { type = \"null\" }",
        &["key \"source.decoder\"", "polling"],
    ),
    (
        "bad size unit",
        "[pipelines.p]\nsource = { stream = \"s\" }\nbuffer = { max_bytes = \"5XB\" }\nemitter = { type = \"null\" }",
        &["key \"buffer.max_bytes\"", "5XB"],
    ),
    (
        "bad duration",
        "[pipelines.p]\nsource = { stream = \"s\" }\nbuffer = { max_age = \"soon\" }\nemitter = { type = \"null\" }",
        &["key \"buffer.max_age\"", "soon"],
    ),
    (
        "zero batch size",
        "[pipelines.p]\nsource = { stream = \"s\" }\nbuffer = { max_records = 0 }\nemitter = { type = \"null\" }",
        &["key \"buffer.max_records\""],
    ),
    (
        "wrong type for a number",
        "[pipelines.p]\nsource = { stream = \"s\" }\nbuffer = { max_records = \"ten\" }\nemitter = { type = \"null\" }",
        &["key \"buffer.max_records\""],
    ),
    (
        "missing emitter",
        "[pipelines.p]\nsource = { stream = \"s\" }",
        &["pipeline \"p\"", "missing field `emitter`"],
    ),
    (
        "emitter without type",
        "[pipelines.p]\nsource = { stream = \"s\" }\nemitter = { dir = \"out\" }",
        &["key \"emitter.type\"", "file"],
    ),
    (
        "unknown emitter type",
        "[pipelines.p]\nsource = { stream = \"s\" }\nemitter = { type = \"s4\" }",
        &["key \"emitter.type\"", "s4"],
    ),
    (
        "unknown emitter option",
        "[pipelines.p]\nsource = { stream = \"s\" }\nemitter = { type = \"file\", directory = \"out\" }",
        &["key \"emitter.directory\""],
    ),
    (
        "missing emitter option",
        "[pipelines.p]\nsource = { stream = \"s\" }\nemitter = { type = \"file\" }",
        &["key \"emitter\"", "missing field `dir`"],
    ),
    (
        "unknown transformer",
        "[pipelines.p]\nsource = { stream = \"s\" }\ntransformer = { type = \"xml\" }\nemitter = { type = \"null\" }",
        &["key \"transformer.type\"", "xml"],
    ),
    (
        "ambiguous field filter",
        "[pipelines.p]\nsource = { stream = \"s\" }\nfilters = [{ type = \"field\", field = \"a\", equals = 1, exists = true }]\nemitter = { type = \"null\" }",
        &["key \"filters[0].field\"", "exactly one"],
    ),
    (
        "empty field path",
        "[pipelines.p]\nsource = { stream = \"s\" }\nfilters = [{ type = \"all\" }, { type = \"field\", field = \"a..b\", exists = true }]\nemitter = { type = \"null\" }",
        &["key \"filters[1].field\""],
    ),
    (
        "retry cap below base",
        "[pipelines.p]\nsource = { stream = \"s\" }\nretry = { base_delay = \"2s\", max_delay = \"1s\" }\nemitter = { type = \"null\" }",
        &["key \"retry.max_delay\""],
    ),
    (
        "zero attempts",
        "[pipelines.p]\nsource = { stream = \"s\" }\nretry = { max_attempts = 0 }\nemitter = { type = \"null\" }",
        &["key \"retry.max_attempts\""],
    ),
    (
        "unset environment variable",
        "[pipelines.p]\nsource = { stream = \"s\", endpoint = \"${KC_TEST_UNSET}\" }\nemitter = { type = \"null\" }",
        &[
            "pipeline \"p\"",
            "key \"source.endpoint\"",
            "KC_TEST_UNSET is not set",
        ],
    ),
    (
        "unknown checkpoint store",
        "[pipelines.p]\nsource = { stream = \"s\" }\nemitter = { type = \"null\" }\ncheckpoint = { type = \"redis\" }",
        &["key \"checkpoint.type\"", "redis"],
    ),
    (
        "unknown dead-letter target",
        "[pipelines.p]\nsource = { stream = \"s\" }\nemitter = { type = \"null\" }\ndead_letter = { type = \"sqs\" }",
        &["key \"dead_letter.type\"", "sqs"],
    ),
    (
        "invalid pipeline name",
        "[pipelines.\"a b\"]\nsource = { stream = \"s\" }\nemitter = { type = \"null\" }",
        &["pipeline \"a b\"", "invalid pipeline name"],
    ),
    ("no pipelines", "state_dir = \"x\"", &["key \"pipelines\""]),
    ("not TOML", "[pipelines.p\nsource = 1", &["invalid TOML"]),
    (
        "buffer over the memory bound",
        "[pipelines.p]\nsource = { stream = \"s\" }\nbuffer = { max_bytes = \"64MiB\" }\ndelivery = { max_buffered_bytes = \"1MiB\" }\nemitter = { type = \"null\" }",
        &["key \"delivery.max_buffered_bytes\""],
    ),
    (
        "redshift table name with a quote and a semicolon",
        "[pipelines.p]\nsource = { stream = \"s\" }\nemitter = { type = \"redshift\", cluster_identifier = \"c\", database = \"dev\", db_user = \"u\", table = \"clicks\\\"; DROP TABLE users; --\", iam_role = \"default\", staging = { bucket = \"stage\" } }",
        &["key \"emitter.table\"", "not a plain SQL identifier"],
    ),
    (
        "redshift column name with a semicolon",
        "[pipelines.p]\nsource = { stream = \"s\" }\nemitter = { type = \"redshift\", cluster_identifier = \"c\", database = \"dev\", db_user = \"u\", table = \"clicks\", columns = [\"id\", \"a;b\"], iam_role = \"default\", staging = { bucket = \"stage\" } }",
        &["key \"emitter.columns[1]\"", "not a plain SQL identifier"],
    ),
    (
        "dynamodb batch over the BatchWriteItem limit",
        "[pipelines.p]\nsource = { stream = \"s\" }\nemitter = { type = \"dynamodb\", table = \"clicks\", partition_key = { attribute = \"id\", type = \"S\" }, max_batch_items = 26 }",
        &["key \"emitter.max_batch_items\"", "26"],
    ),
    (
        "dynamodb table name too short",
        "[pipelines.p]\nsource = { stream = \"s\" }\nemitter = { type = \"dynamodb\", table = \"t\", partition_key = { attribute = \"id\", type = \"S\" } }",
        &["key \"emitter.table\"", "3 to 255"],
    ),
    (
        "dynamodb sort key equal to the partition key",
        "[pipelines.p]\nsource = { stream = \"s\" }\nemitter = { type = \"dynamodb\", table = \"clicks\", partition_key = { attribute = \"id\", type = \"S\" }, sort_key = { attribute = \"id\", type = \"S\" } }",
        &["key \"emitter.sort_key.attribute\""],
    ),
    (
        "elasticsearch URL with credentials",
        "[pipelines.p]\nsource = { stream = \"s\" }\nemitter = { type = \"elasticsearch\", url = \"http://u:p@127.0.0.1:9200\", index = \"i\" }",
        &["key \"emitter.url\"", "credentials"],
    ),
    (
        "elasticsearch bulk of zero documents",
        "[pipelines.p]\nsource = { stream = \"s\" }\nemitter = { type = \"elasticsearch\", url = \"http://127.0.0.1:9200\", index = \"i\", max_bulk_documents = 0 }",
        &["key \"emitter.max_bulk_documents\""],
    ),
    (
        "opensearch action that needs ids without ids",
        "[pipelines.p]\nsource = { stream = \"s\" }\nemitter = { type = \"opensearch\", url = \"http://127.0.0.1:9200\", index = \"i\", document_id = \"none\", action = \"update\" }",
        &["key \"emitter.action\""],
    ),
    (
        "redshift COPY with access keys instead of a role",
        "[pipelines.p]\nsource = { stream = \"s\" }\nemitter = { type = \"redshift\", cluster_identifier = \"c\", database = \"dev\", db_user = \"u\", table = \"clicks\", iam_role = \"aws_access_key_id=AKIA;aws_secret_access_key=x\", staging = { bucket = \"stage\" } }",
        &["key \"emitter.iam_role\""],
    ),
];

#[test]
fn malformed_configurations_are_rejected_with_exit_2_naming_the_key() {
    assert!(MALFORMED.len() >= 15);
    for (what, text, expected) in MALFORMED {
        let (code, stdout, stderr) = check(text);
        assert_eq!(code, 2, "{what}: exit code {code}, stderr: {stderr}");
        assert!(stdout.is_empty(), "{what}: printed {stdout}");
        assert!(
            stderr.contains("connectors.toml"),
            "{what}: the file is not named: {stderr}"
        );
        for e in *expected {
            assert!(stderr.contains(e), "{what}: {e:?} not in: {stderr}");
        }
    }
}

#[test]
fn the_decoder_default_comes_from_the_environment_and_a_bad_one_is_named() {
    let (code, _, stderr) = check_with(GOOD, Some("sdk"));
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = check_with(GOOD, Some("quick"));
    assert_eq!(code, 2, "{stdout}{stderr}");
    for e in [
        "connectors.toml",
        "pipeline \"p\"",
        "key \"source.decoder\"",
        "\"quick\" (from $KC_SOURCE_DECODER)",
    ] {
        assert!(stderr.contains(e), "{e:?} not in: {stderr}");
    }
    // The file's key wins over the environment.
    let explicit = GOOD.replace(
        "region = \"us-east-1\"",
        "region = \"us-east-1\", decoder = \"own\"",
    );
    let (code, _, stderr) = check_with(&explicit, Some("quick"));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_good_configuration_passes() {
    let (code, stdout, stderr) = check(GOOD);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("ok: pipeline p: clicks → json (0 filters) → file"),
        "{stdout}"
    );
}

#[test]
fn the_repository_connectors_toml_passes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../connectors.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_kinesis-connector"))
        .args(["check", "--offline", "--config", path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 16: `check` says per pipeline whether a redelivered record is held once or may be held
/// twice, following the settings that decide it (README, "Delivery guarantees").
#[test]
fn check_says_per_pipeline_what_delivery_holds() {
    let text = r#"
[pipelines.archive]
source = { stream = "s", region = "us-east-1" }
emitter = { type = "s3", bucket = "archive-bucket", endpoint = "http://127.0.0.1:9" }

[pipelines.mixed]
source = { stream = "s", region = "us-east-1" }
buffer = { batch_across_shards = true }
emitter = { type = "s3", bucket = "archive-bucket", endpoint = "http://127.0.0.1:9" }

[pipelines.search]
source = { stream = "s", region = "us-east-1" }
transformer = { type = "json" }
emitter = { type = "elasticsearch", url = "http://127.0.0.1:9", index = "i" }

[pipelines.search_auto_ids]
source = { stream = "s", region = "us-east-1" }
transformer = { type = "json" }
emitter = { type = "elasticsearch", url = "http://127.0.0.1:9", index = "i", document_id = "none" }

[pipelines.files]
source = { stream = "s", region = "us-east-1" }
emitter = { type = "file", dir = "out" }
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connectors.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kinesis-connector"))
        .args(["check", "--offline", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |p: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("ok: pipeline {p}: ")))
            .unwrap_or_else(|| panic!("no line for {p}: {stdout}"))
            .to_owned()
    };
    for (pipeline, says) in [
        ("archive", "delivery: each record held once"),
        (
            "mixed",
            "delivery: at least once (batch_across_shards = true",
        ),
        ("search", "delivery: each record held once"),
        (
            "search_auto_ids",
            "delivery: at least once (document_id = \"none\"",
        ),
        ("files", "delivery: at least once"),
    ] {
        assert!(
            line(pipeline).contains(says),
            "{pipeline}: {}",
            line(pipeline)
        );
    }
}
