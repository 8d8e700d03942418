//! Startup configuration through the real binary: exit code 2, one line naming the variable,
//! and never a password on stdout or stderr.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const PASSWORD: &str = "s3cretpw";

/// Runs the binary in `dir` with only `vars` (plus dead Bybit URLs and a private SQLite file,
/// so a binary that wrongly starts touches nothing); kills it after 15 s. Returns the exit code
/// (`None` when it had to be killed) and stdout + stderr.
fn run(dir: &Path, vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ws-gateway"));
    cmd.env_clear()
        .current_dir(dir)
        .env("WS_GATEWAY_PORT", "0")
        .env("BYBIT_WS_URL", "ws://127.0.0.1:9")
        .env("BYBIT_REST_URL", "http://127.0.0.1:9")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.join("t.db").display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run the binary");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut code = None;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            code = status.code();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if code.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (code, text)
}

#[test]
fn a_service_name_too_long_for_amqp_queue_names_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let name = "a".repeat(245);
    let (code, out) = run(
        dir.path(),
        &[
            ("WS_GATEWAY_SERVICE_NAME", &name),
            ("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
        ],
    );
    assert_eq!(code, Some(2), "{out}");
    assert_eq!(out.trim().lines().count(), 1, "{out}");
    assert!(out.contains("WS_GATEWAY_SERVICE_NAME"), "{out}");
    assert!(!out.contains("panicked"), "{out}");
}

#[test]
fn a_malformed_database_url_exits_2_without_its_password() {
    for url in [
        format!("postgres://user:{PASSWORD}@127.0.0.1:notaport/test"),
        format!("postgres://user:{PASSWORD}@/test"),
        format!("postgres://user:{PASSWORD}@127.0.0.1:5432/test?sslmode=bogus"),
        format!("postgresql://user:{PASSWORD}%zz@127.0.0.1:5432/test"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (code, out) = run(dir.path(), &[("DATABASE_URL", &url)]);
        assert_eq!(code, Some(2), "{url}: {out}");
        assert!(out.contains("DATABASE_URL"), "{url}: {out}");
        assert!(!out.contains(PASSWORD), "{url}: {out}");
    }
}

#[test]
fn a_malformed_amqp_url_exits_2_without_its_password() {
    for url in [
        format!("amqp://guest:{PASSWORD}@127.0.0.1:notaport/%2f"),
        format!("amqp://guest:{PASSWORD}@127.0.0.1:5672/%2f,amqp://guest:{PASSWORD}@:x"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (code, out) = run(dir.path(), &[("AMQP_URL", &url)]);
        assert_eq!(code, Some(2), "{url}: {out}");
        assert!(out.contains("AMQP_URL"), "{url}: {out}");
        assert!(!out.contains(PASSWORD), "{url}: {out}");
    }
}

#[test]
fn a_malformed_dot_env_line_is_named_by_number_not_content() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        format!("# comment\nWS_GATEWAY_LOG_FORMAT=json\nthis line has {PASSWORD} in it\n"),
    )
    .unwrap();
    let (code, out) = run(dir.path(), &[]);
    assert_eq!(code, Some(2), "{out}");
    assert_eq!(out.trim().lines().count(), 1, "{out}");
    assert!(out.contains(".env") && out.contains("line 3"), "{out}");
    assert!(!out.contains(PASSWORD), "{out}");
}

#[test]
fn dot_env_is_read_from_the_working_directory_only() {
    let parent = tempfile::tempdir().unwrap();
    std::fs::write(parent.path().join(".env"), "WS_GATEWAY_LOG_FORMAT=bogus\n").unwrap();
    let child = parent.path().join("work");
    std::fs::create_dir(&child).unwrap();
    // The working directory's own error is reported; the parent's `.env` is never read.
    let (code, out) = run(&child, &[("WS_GATEWAY_SERVICE_NAME", "bad name")]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("WS_GATEWAY_SERVICE_NAME"), "{out}");
    assert!(!out.contains("WS_GATEWAY_LOG_FORMAT"), "{out}");
}
