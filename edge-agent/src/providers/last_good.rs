//! The last policy set a sync provider applied, kept on disk so that an
//! Edge restarted while its control plane is down still filters.
//!
//! The file is the `SyncResponse` as binary protobuf, written to a
//! temporary file, synced and renamed over the old one: a crash leaves the
//! old set or the new one, never half of either.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use prost::Message;
use tero_proto::policy::SyncResponse;

pub struct LastGood {
    path: PathBuf,
}

impl LastGood {
    pub fn new(dir: &Path, provider: &str) -> Self {
        // Provider ids are free text; keep the file name portable.
        let safe: String = provider
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        LastGood {
            path: dir.join(format!("{safe}.last-good.pb")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The persisted response, if there is a readable one.
    pub fn load(&self) -> Result<Option<SyncResponse>, String> {
        match std::fs::read(&self.path) {
            Ok(bytes) => SyncResponse::decode(bytes.as_slice())
                .map(Some)
                .map_err(|e| {
                    format!(
                        "{} is not a valid policy snapshot: {e}",
                        self.path.display()
                    )
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", self.path.display())),
        }
    }

    /// Replaces the persisted response atomically.
    pub fn store(&self, response: &SyncResponse) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = self.path.with_extension("pb.tmp");
        {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&response.encode_to_vec())?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        // The rename is durable once the directory entry is.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tero_proto::policy::Policy;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = LastGood::new(dir.path(), "cp/main");
        assert!(store.path().ends_with("cp_main.last-good.pb"));
        assert_eq!(store.load().unwrap(), None);
        let response = SyncResponse {
            policies: vec![Policy {
                id: "p".into(),
                enabled: true,
                ..Default::default()
            }],
            hash: "h1".into(),
            ..Default::default()
        };
        store.store(&response).unwrap();
        assert_eq!(store.load().unwrap(), Some(response.clone()));
        let newer = SyncResponse {
            hash: "h2".into(),
            ..response
        };
        store.store(&newer).unwrap();
        assert_eq!(store.load().unwrap().unwrap().hash, "h2");
        std::fs::write(store.path(), b"\xff\xff garbage").unwrap();
        assert!(store.load().is_err());
    }
}
