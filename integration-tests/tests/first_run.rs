//! The Quick start as a new user meets it (issue 15): the demo run from a fresh clone in a directory
//! only its owner can enter, and the demo stopping — naming the service, reaching nothing outside
//! 127.0.0.1 — when the local stack cannot start.
//!
//! Both run the scripts in a clean environment (as CI does), on ports of their own, with their own
//! stack directory, so they neither use nor disturb the stack the other tests run against. They pass
//! the binaries this test build made (`KC_BIN`, `KC_LOCAL_STACK_SERVER`) instead of letting the
//! scripts build them in the clone: a nested cargo would wait on this build's lock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Six ports free on 127.0.0.1 right now (the OS's picks, released again).
fn free_ports() -> Vec<u16> {
    let held: Vec<TcpListener> = (0..6)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A command with the environment of a fresh CI job: no endpoints, no AWS settings, no stack.
fn clean(program: &str, ports: &[u16], stack_dir: &Path) -> Command {
    let mut c = Command::new(program);
    c.env_clear();
    for keep in ["PATH", "HOME", "LANG", "TERM"] {
        if let Ok(v) = std::env::var(keep) {
            c.env(keep, v);
        }
    }
    let names = [
        "KC_KINESIS_PORT",
        "KC_S3_PORT",
        "KC_DYNAMODB_PORT",
        "KC_OPENSEARCH_PORT",
        "KC_POSTGRES_PORT",
        "KC_REDSHIFT_DATA_PORT",
    ];
    for (name, port) in names.iter().zip(ports) {
        c.env(name, port.to_string());
    }
    c.env("KC_STACK_DIR", stack_dir)
        .env("KC_BIN", integration_tests::connector_bin())
        .env(
            "KC_LOCAL_STACK_SERVER",
            env!("CARGO_BIN_EXE_local-stack-server"),
        );
    c
}

fn text(output: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Stops the stack of `dir` (and removes PostgreSQL's data directory outside it), whatever happened.
struct StackGuard {
    script: PathBuf,
    ports: Vec<u16>,
    stack_dir: PathBuf,
}

impl Drop for StackGuard {
    fn drop(&mut self) {
        let _ = clean(self.script.to_str().unwrap(), &self.ports, &self.stack_dir)
            .arg("down")
            .output();
        if let Ok(pg) = std::fs::read_to_string(self.stack_dir.join("pg-dir")) {
            let _ = std::fs::remove_dir_all(pg.trim());
        }
    }
}

/// Defect 1 of issue 15: in a clone under a 0700 directory (root's home, `mktemp -d`), PostgreSQL —
/// running as `postgres` — could not reach `REPO/.local-stack/pg`, and `local-stack up` exited 1
/// without a word. Here the demo runs from such a clone, its stack in the clone's own `.local-stack`.
#[test]
fn the_demo_runs_from_a_fresh_clone_in_a_0700_directory() {
    // Like `mktemp -d` or root's home: only its owner may enter it.
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(
        std::fs::metadata(home.path()).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let clone = home.path().join("kinesis-connectors");
    let status = Command::new("git")
        .args(["clone", "--quiet", "--no-hardlinks"])
        .arg(repo())
        .arg(&clone)
        .status()
        .unwrap();
    assert!(status.success(), "git clone");
    let ports = free_ports();
    let stack_dir = clone.join(".local-stack");
    let _guard = StackGuard {
        script: clone.join("integration-tests/local-stack"),
        ports: ports.clone(),
        stack_dir: stack_dir.clone(),
    };
    let started = Instant::now();
    let output = clean(
        clone.join("integration-tests/demo").to_str().unwrap(),
        &ports,
        &stack_dir,
    )
    .env("KC_DEMO_OUTPUT", home.path().join("demo-output"))
    .current_dir(&clone)
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rows = integration_tests::demo_summary_rows(&stdout);
    assert_eq!(rows.len(), 7, "{stdout}");
    assert!(
        rows.iter()
            .all(|r| r.split_whitespace().nth(8) == Some("yes")),
        "every pipeline's counts match:\n{stdout}"
    );
    eprintln!("demo from a fresh clone: {:?}", started.elapsed());
}

/// Defects 1 and 2 of issue 15: when `local-stack up` fails, it says why in one line naming the
/// service, and the demo stops there — non-zero, before any step that talks to an AWS API. Here the
/// Kinesis port is taken by a listener of this test, and the fallback endpoint the demo gives AWS
/// clients without a local endpoint is another listener of this test: neither may see a request, and
/// nothing may be tried anywhere else (the demo must not reach `streams create`).
#[test]
fn the_demo_stops_naming_the_service_when_the_local_stack_cannot_start() {
    let work = tempfile::tempdir().unwrap();
    let mut ports = free_ports();
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    ports[0] = squatter.local_addr().unwrap().port(); // KC_KINESIS_PORT: already taken
    let fallback = TcpListener::bind("127.0.0.1:0").unwrap();
    let fallback_url = format!("http://{}", fallback.local_addr().unwrap());
    let (probes, fallbacks) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    for (listener, connections) in [(squatter, probes.clone()), (fallback, fallbacks.clone())] {
        listener.set_nonblocking(false).unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if conn.is_ok() {
                    connections.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    }
    let stack_dir = work.path().join("stack");
    let _guard = StackGuard {
        script: repo().join("integration-tests/local-stack"),
        ports: ports.clone(),
        stack_dir: stack_dir.clone(),
    };
    // Settings that would send a careless client to AWS with a user's profile.
    let output = clean(
        repo().join("integration-tests/demo").to_str().unwrap(),
        &ports,
        &stack_dir,
    )
    .env("KC_DEMO_OUTPUT", work.path().join("demo-output"))
    .env("KC_AWS_FALLBACK_ENDPOINT", &fallback_url)
    .env("AWS_PROFILE", "someones-real-account")
    .current_dir(repo())
    .output()
    .unwrap();
    let all = text(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{all}");
    // local-stack's one line names the service.
    let line = stderr
        .lines()
        .find(|l| l.starts_with("local-stack: FAILED"))
        .unwrap_or_else(|| panic!("no FAILED line from local-stack:\n{all}"));
    assert!(line.contains("service kinesis"), "{line}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{} is already taken", ports[0])),
        "the log's tail says why:\n{all}"
    );
    assert!(
        stderr.contains("demo: FAILED at step \"local-stack up\""),
        "{all}"
    );
    assert!(
        !stderr.contains("creating stream") && !stderr.contains("building kinesis-connector"),
        "the demo went on after the failure:\n{all}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        probes.load(Ordering::SeqCst) <= 1,
        "only local-stack's own probe may connect to the taken port\n{all}"
    );
    assert_eq!(
        fallbacks.load(Ordering::SeqCst),
        0,
        "an AWS client fell back to the default endpoint\n{all}"
    );
}
