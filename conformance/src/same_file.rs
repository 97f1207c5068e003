//! `--stats` must not name the file `--output` writes: the stats are
//! written second, and opening the file again truncates it, so the
//! filtered document would be lost. `--output - --stats /dev/stdout` does
//! exactly that when stdout is redirected to a file (on a terminal or a
//! pipe nothing is truncated, and both arrive in order).

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use anyhow::{Result, bail};

/// Fails when `stats` would overwrite what `output` (`-` for stdout)
/// receives.
pub fn refuse_shared_target(output: &Path, stats: &Path) -> Result<()> {
    let to_stdout = output.as_os_str() == "-";
    if !to_stdout && output == stats {
        bail!(
            "--output and --stats are both {}: the statistics would overwrite the output; give --stats its own file",
            output.display()
        );
    }
    let (Some(out), Some(st)) = (target_of(output, to_stdout), metadata(stats)) else {
        return Ok(());
    };
    if out.is_file() && out.dev() == st.dev() && out.ino() == st.ino() {
        let what = if to_stdout {
            "standard output".to_owned()
        } else {
            output.display().to_string()
        };
        bail!(
            "--stats {} is the file {what} is written to: the statistics would overwrite the output; give --stats its own file (or /dev/stderr)",
            stats.display()
        );
    }
    Ok(())
}

fn metadata(path: &Path) -> Option<Metadata> {
    std::fs::metadata(path).ok()
}

/// What the output goes to: standard output's file, or the path's.
fn target_of(output: &Path, to_stdout: bool) -> Option<Metadata> {
    if !to_stdout {
        return metadata(output);
    }
    use std::os::fd::AsFd as _;
    let fd = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
    std::fs::File::from(fd).metadata().ok()
}
