//! The clean-up of a job's original after its retention period: the one policy for when
//! an uploaded original may go.

use crate::error::Result;
use crate::storage::Storage;
use transcoder_workflows::keys::may_delete;
use transcoder_workflows::media::{CleanupInput, CleanupOutcome};

/// Deletes the original only when it is one we archived (under `originals/`) and the
/// mezzanine that replaces it exists; otherwise keeps it and says why.
pub async fn delete_original(storage: &Storage, input: &CleanupInput) -> Result<CleanupOutcome> {
    let kept = |why: String| CleanupOutcome {
        deleted: false,
        kept_because: Some(why),
    };
    if !may_delete(&input.original.key) {
        return Ok(kept(format!(
            "{} is not under originals/",
            input.original.key
        )));
    }
    if !storage.exists(&input.mezzanine).await? {
        tracing::warn!(mezzanine = %input.mezzanine, "mezzanine missing: keeping the original");
        return Ok(kept(format!(
            "mezzanine {} does not exist",
            input.mezzanine
        )));
    }
    storage.delete(&input.original).await?;
    tracing::info!(original = %input.original, "original deleted after its retention period");
    Ok(CleanupOutcome {
        deleted: true,
        kept_because: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use transcoder_workflows::media::ObjectRef;

    #[tokio::test]
    async fn an_original_goes_only_from_originals_and_only_once_its_mezzanine_exists() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path());
        let put = |key: &str| {
            let path = dir.path().join("media").join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
            ObjectRef::new("media", key)
        };
        let original = put("originals/c1/m1.mp4");
        let elsewhere = put("uploads/c1/m1.mp4");
        let mezzanine = ObjectRef::new("media", "mezzanine/c1/m1.mp4");
        let input = |original: &ObjectRef| CleanupInput {
            original: original.clone(),
            mezzanine: mezzanine.clone(),
            retention_seconds: 0,
        };

        let outside = delete_original(&storage, &input(&elsewhere)).await.unwrap();
        assert!(!outside.deleted);
        assert!(storage.exists(&elsewhere).await.unwrap());

        let early = delete_original(&storage, &input(&original)).await.unwrap();
        assert!(!early.deleted);
        assert!(early.kept_because.unwrap().contains("does not exist"));
        assert!(storage.exists(&original).await.unwrap());

        put("mezzanine/c1/m1.mp4");
        let done = delete_original(&storage, &input(&original)).await.unwrap();
        assert!(done.deleted, "{:?}", done.kept_because);
        assert!(!storage.exists(&original).await.unwrap());
    }
}
