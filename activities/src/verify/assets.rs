//! The gate's checks of what is not the ladder: the preview's length, the thumbnail, and the
//! waveform's JSON and picture (by the same rules their generators check).

use super::hls::check_length;
use super::{fail, sibling_key, Gate};
use crate::error::Result;
use crate::thumbnail::verify_jpeg;
use crate::waveform;
use transcoder_workflows::workflow::THUMBNAIL_SIZE;

/// The preview: a playlist whose segments exist and last about the planned length.
pub(super) async fn check_preview(gate: &mut Gate<'_>) -> Result<()> {
    let Some(preview_key) = gate.input.preview_key.clone() else {
        return Ok(());
    };
    let playlist = gate.media_playlist(&preview_key).await?;
    let bucket = gate.input.media_bucket.clone();
    for seg in &playlist.segments {
        gate.local(&bucket, &sibling_key(&preview_key, &seg.uri)?)
            .await?;
    }
    let total: f64 = playlist
        .segments
        .iter()
        .map(|s| f64::from(s.duration))
        .sum();
    if (total - gate.input.preview_seconds).abs() > 1.5 {
        return Err(fail(format!(
            "preview lasts {total:.2} s, expected about {:.2} s",
            gate.input.preview_seconds
        )));
    }
    gate.passed(format!("preview lasts {total:.2} s"));
    Ok(())
}

/// The storyboard: its cues cover the programme from 0 without a gap, and each names a
/// rectangle inside a sprite sheet beside it that decodes.
async fn check_storyboard(gate: &mut Gate<'_>, assets: &str, key: &str) -> Result<()> {
    let text = gate.read(assets, key).await?;
    let cues =
        crate::storyboard::parse_storyboard(&String::from_utf8_lossy(&text)).map_err(fail)?;
    let folder = key.rsplit_once('/').map(|(d, _)| d).unwrap_or_default();
    let mut sheets: std::collections::HashMap<String, (u32, u32)> = Default::default();
    let mut at = 0.0;
    for cue in &cues {
        if (cue.start - at).abs() > 0.001 || cue.end <= cue.start {
            return Err(fail(format!(
                "storyboard {key}: a cue at {:.3} s leaves a gap or overlaps",
                cue.start
            )));
        }
        at = cue.end;
        if cue.sheet.contains('/') || cue.sheet.contains("..") {
            return Err(fail(format!(
                "storyboard {key}: {} is not beside it",
                cue.sheet
            )));
        }
        let size = match sheets.get(&cue.sheet) {
            Some(size) => *size,
            None => {
                let path = gate
                    .local(assets, &format!("{folder}/{}", cue.sheet))
                    .await?;
                let size = image::image_dimensions(&path)
                    .map_err(|e| fail(format!("storyboard sheet {}: {e}", cue.sheet)))?;
                sheets.insert(cue.sheet.clone(), size);
                size
            }
        };
        let (x, y, w, h) = cue.rect;
        if w == 0 || h == 0 || x + w > size.0 || y + h > size.1 {
            return Err(fail(format!(
                "storyboard {key}: {}#xywh={x},{y},{w},{h} lies outside its {}x{} sheet",
                cue.sheet, size.0, size.1
            )));
        }
    }
    check_length("the storyboard covers", at, gate.input.duration_seconds)?;
    gate.passed(format!(
        "storyboard: {} tiles in {} sheets cover the programme",
        cues.len(),
        sheets.len()
    ));
    Ok(())
}

/// The thumbnail and the waveform, where the job made them.
pub(super) async fn check_assets(gate: &mut Gate<'_>) -> Result<()> {
    let assets = gate.input.assets_bucket.clone();
    if let Some(key) = gate.input.thumbnail_key.clone() {
        let path = gate.local(&assets, &key).await?;
        let (w, h) = THUMBNAIL_SIZE;
        verify_jpeg(&path, w, h)?;
        gate.passed(format!("thumbnail is a {w}x{h} JPEG"));
    }
    if let Some(key) = gate.input.storyboard_key.clone() {
        check_storyboard(gate, &assets, &key).await?;
    }
    if let Some(key) = gate.input.waveform_json_key.clone() {
        let bytes = gate.read(&assets, &key).await?;
        waveform::check_json_bytes(&bytes, gate.input.duration_seconds)?;
        gate.passed("waveform JSON is audiowaveform v2, 8-bit, 10 points/s");
    }
    if let Some(key) = gate.input.waveform_png_key.clone() {
        waveform::check_png(&gate.local(&assets, &key).await?)?;
        gate.passed(format!(
            "waveform PNG is {}x{}",
            waveform::IMAGE_WIDTH,
            waveform::IMAGE_HEIGHT
        ));
    }
    Ok(())
}
