//! The real `tero` command line, run as a child process with only the
//! `TERO_*` environment a test gives it.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{binary, set_env};

/// What one `tero` run left behind.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    /// Asserts exit 0 and returns stdout.
    pub fn ok(self) -> String {
        assert_eq!(self.code, 0, "expected success:\n{self}");
        self.stdout
    }

    /// Asserts exit 0 and parses stdout as JSON.
    pub fn json(self) -> Value {
        assert_eq!(self.code, 0, "expected success:\n{self}");
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }

    /// Asserts `code` and returns stderr.
    pub fn fails(self, code: i32) -> String {
        assert_eq!(self.code, code, "expected exit {code}:\n{self}");
        self.stderr
    }
}

/// [`tero_with_timeout`] with a minute to finish.
pub fn tero(args: &[&str], env: &[(&str, &str)]) -> Run {
    tero_with_timeout(args, env, Duration::from_secs(60))
}

/// Runs `tero args` with only `env` of the `TERO_*` variables (the caller's
/// are removed, as are its `OTEL_*` ones), killing it after `timeout`.
pub fn tero_with_timeout(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Run {
    let mut cmd = Command::new(binary("tero"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TERO_") {
            cmd.env_remove(key);
        }
    }
    set_env(&mut cmd, env);
    let mut child = cmd.spawn().expect("start tero");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for tero") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tero {args:?} did not finish within {timeout:?}; stderr so far:\n{}",
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// `tero args --endpoint … --token …` against `cp` with its admin token,
/// without the caller's `TERO_*` (or `OTEL_*`) variables, killed after a
/// minute.
pub fn tero_at(cp: &crate::control_plane::ControlPlane, args: &[&str]) -> Run {
    let endpoint = cp.endpoint();
    let mut args = args.to_vec();
    args.extend(["--endpoint", &endpoint, "--token", &cp.admin_token]);
    tero(&args, &[])
}

/// [`tero_at`] with `-o json`, asserting success and parsing stdout.
pub fn tero_json_at(cp: &crate::control_plane::ControlPlane, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    tero_at(cp, &args).json()
}

/// A proto3 JSON 64-bit unsigned integer (a string) or a plain number;
/// absent (null) is 0, as proto3 JSON leaves zeros out.
pub fn json_u64(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("not a number: {v}")),
        Value::Number(n) => n.as_u64().unwrap_or_else(|| panic!("not a u64: {v}")),
        Value::Null => 0,
        other => panic!("not a number: {other}"),
    }
}
