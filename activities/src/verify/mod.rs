//! The verification gate: before a job is reported ready, check what the success webhook
//! will point at the way a player and a consumer would. Also `transcoder verify`. By what
//! it checks: the HLS tree ([`hls`]: master, renditions, bandwidths, codecs, keyframes and
//! alignment), the preview and the assets ([`assets`]), from what ffprobe reads of the
//! segments ([`probe`]).

mod assets;
mod hls;
mod probe;

use crate::error::{MediaError, Result};
use crate::storage::Storage;
use m3u8_rs::{MediaPlaylist, MediaPlaylistType};
use std::path::{Path, PathBuf};
use transcoder_workflows::media::{ObjectRef, VerifyInput, VerifyReport};

fn fail(msg: impl Into<String>) -> MediaError {
    MediaError::Verification(msg.into())
}

/// What every check reads with: the job's outputs, where to download them, and the report
/// the checks add to.
struct Gate<'a> {
    storage: &'a Storage,
    input: &'a VerifyInput,
    scratch: &'a Path,
    report: VerifyReport,
}

impl Gate<'_> {
    /// A local path to `bucket/key`, or a failure saying it is missing.
    async fn local(&self, bucket: &str, key: &str) -> Result<PathBuf> {
        self.storage
            .readable_path(&ObjectRef::new(bucket, key), self.scratch)
            .await
            .map_err(|e| fail(format!("{bucket}/{key} is missing or unreadable: {e}")))
    }

    async fn read(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        let path = self.local(bucket, key).await?;
        std::fs::read(&path).map_err(|e| fail(format!("{bucket}/{key}: {e}")))
    }

    /// A media playlist of the media bucket, parsed and checked (see [`parse_media`]).
    async fn media_playlist(&mut self, key: &str) -> Result<MediaPlaylist> {
        let bucket = self.input.media_bucket.clone();
        let playlist = parse_media(key, &self.read(&bucket, key).await?)?;
        self.report.playlists += 1;
        Ok(playlist)
    }

    fn passed(&mut self, check: impl Into<String>) {
        self.report.checks.push(check.into());
    }
}

/// Runs every check; the first failure is returned as a permanent verification error.
pub async fn verify_outputs(
    storage: &Storage,
    input: &VerifyInput,
    scratch: &Path,
) -> Result<VerifyReport> {
    let mut gate = Gate {
        storage,
        input,
        scratch,
        report: VerifyReport::default(),
    };
    hls::check_tree(&mut gate).await?;
    assets::check_preview(&mut gate).await?;
    assets::check_assets(&mut gate).await?;
    Ok(gate.report)
}

/// Joins a playlist-relative URI onto the key of the playlist that names it.
fn sibling_key(playlist_key: &str, uri: &str) -> Result<String> {
    if uri.contains("://") || uri.starts_with('/') || uri.split('/').any(|s| s == ".." || s == ".")
    {
        return Err(fail(format!(
            "{playlist_key} references {uri:?}, which is not a plain relative path"
        )));
    }
    Ok(match playlist_key.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{uri}"),
        None => uri.to_string(),
    })
}

/// A media playlist as players need it: a finished VOD playlist with segments, each EXTINF
/// within TARGETDURATION.
fn parse_media(key: &str, bytes: &[u8]) -> Result<MediaPlaylist> {
    let p = m3u8_rs::parse_media_playlist_res(bytes)
        .map_err(|e| fail(format!("{key} does not parse: {e:?}")))?;
    if p.playlist_type != Some(MediaPlaylistType::Vod) || !p.end_list {
        return Err(fail(format!(
            "{key} is not a finished VOD playlist (PLAYLIST-TYPE:VOD and ENDLIST)"
        )));
    }
    if p.segments.is_empty() {
        return Err(fail(format!("{key} has no segments")));
    }
    for (i, seg) in p.segments.iter().enumerate() {
        // RFC 8216 §4.3.3.1: each EXTINF, rounded to an integer, must not exceed the target.
        if f64::from(seg.duration).round() as u64 > p.target_duration {
            return Err(fail(format!(
                "{key}: segment {i} lasts {:.3} s, over TARGETDURATION {}",
                seg.duration, p.target_duration
            )));
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waveform;

    #[test]
    fn relative_uris_only() {
        assert_eq!(
            sibling_key("c/hls/m/master.m3u8", "720p/playlist.m3u8").unwrap(),
            "c/hls/m/720p/playlist.m3u8"
        );
        assert!(sibling_key("c/hls/m/master.m3u8", "../x.m3u8").is_err());
        assert!(sibling_key("c/hls/m/master.m3u8", "http://evil/x.m3u8").is_err());
        assert!(sibling_key("c/hls/m/master.m3u8", "/etc/passwd").is_err());
    }

    #[test]
    fn waveform_json_rules() {
        let good = serde_json::json!({"version":2,"channels":1,"sample_rate":44100,"samples_per_pixel":4410,"bits":8,"length":3,"data":[0,1,-1,2,-2,3]});
        let bytes = |v: &serde_json::Value| serde_json::to_vec(v).unwrap();
        waveform::check_json_bytes(&bytes(&good), 0.25).unwrap();
        assert!(
            waveform::check_json_bytes(&bytes(&good), 1.0).is_err(),
            "length 3 for 1 s"
        );
        let mut bad = good.clone();
        bad["bits"] = 16.into();
        assert!(waveform::check_json_bytes(&bytes(&bad), 0.25).is_err());
    }
}
