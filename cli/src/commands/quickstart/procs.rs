//! The processes quickstart runs: finding the binaries, checking their
//! ports, starting them with their logs in files, waiting until they are
//! ready, and stopping them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use tokio::process::{Child, Command};

/// `tero-control-plane` or `tero-edge`: next to this executable, else on
/// the PATH.
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "{name} not found next to tero or on the PATH: build the workspace first \
         (cargo build --release) and run target/release/tero quickstart"
    )
}

/// Fails, naming the port and its flag, when something already listens
/// there: a server left from an earlier run would otherwise answer in
/// place of the one started now (with other credentials, and nothing in
/// the new one's log).
pub fn check_free(port: u16, flag: &str) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "port {port} on 127.0.0.1 is already in use (another tero quickstart or \
             control plane still running?): stop it, or choose a free port with {flag} {}",
            port.wrapping_add(1000)
        ),
        Err(e) => bail!("cannot listen on {addr} ({flag}): {e}"),
    }
}

/// Starts `binary` with stdout and stderr into `log` (the binaries write
/// no colour codes to a file).
pub fn spawn(
    binary: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    log: &Path,
) -> anyhow::Result<Child> {
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file))
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

pub async fn http_get(url: &str) -> anyhow::Result<(u16, Bytes)> {
    let fetched = crate::http_get::get(url, &[], Duration::from_secs(10)).await?;
    Ok((fetched.status, fetched.body))
}

pub async fn wait_ready(
    url: &str,
    what: &str,
    child: &mut Child,
    log: &Path,
) -> anyhow::Result<()> {
    for _ in 0..200 {
        if let Ok((200, _)) = http_get(url).await {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            bail!(
                "{what} exited ({status}) before it was ready; its log ({}):\n{tail}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what} was not ready within 20 s; see {}", log.display())
}

/// 24 random bytes from the OS, hex-encoded.
pub fn random_token() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for the admin token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// SIGTERM, then up to 15 s for a clean exit (the edge drains and sends
/// its last statistics), then SIGKILL.
pub async fn terminate(child: &mut Child, what: &str) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .is_ok()
        {
            println!("{what} stopped");
            return;
        }
    }
    let _ = child.kill().await;
}

pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_named_with_its_flag() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = check_free(port, "--control-plane-port").unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("port {port}")), "{text}");
        assert!(text.contains("already in use"), "{text}");
        assert!(text.contains("--control-plane-port"), "{text}");
        drop(taken);
        check_free(port, "--control-plane-port").unwrap();
    }
}
