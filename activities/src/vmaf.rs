//! The one place that calls libvmaf (`vmaf-head-sys`, built from vendored sources with the
//! standard models inside): a [`Scorer`] takes pairs of 4:2:0 pictures (8-bit, or 10-bit in
//! little-endian 16-bit words) and gives the per-frame and pooled VMAF of one built-in model
//! (`transcoder_workflows::task::VMAF_MODELS`).
#![allow(unsafe_code)] // FFI to libvmaf; every call's contract is noted where it is made.

use std::ffi::CString;
use std::ptr;
use vmaf_head_sys as sys;

/// The standard model (1080p viewing at 3H), what VMAF users mean by "the VMAF score".
pub const MODEL: &str = "vmaf_v0.6.1";

/// A libvmaf context with the model's feature extractors registered.
pub struct Scorer {
    context: *mut sys::VmafContext,
    model: *mut sys::VmafModel,
    width: u32,
    height: u32,
    /// Bits per sample of the pictures pushed: 8, or 10 (two bytes a sample).
    bits: u32,
    frames: u32,
}

// SAFETY: the context and model are used by one thread at a time (the scorer is moved, not
// shared); libvmaf's own worker threads are internal to it.
unsafe impl Send for Scorer {}

/// Per-frame scores and their pooled values.
#[derive(Clone, Debug)]
pub struct Scores {
    pub per_frame: Vec<f64>,
    pub mean: f64,
    pub harmonic_mean: f64,
    pub min: f64,
    pub max: f64,
}

impl Scorer {
    /// A scorer of `width`x`height` pictures of `bits` (8 or 10) per sample with the
    /// built-in model `model_name`.
    pub fn new(
        width: u32,
        height: u32,
        bits: u32,
        model_name: &str,
        threads: u32,
    ) -> Result<Self, String> {
        if bits != 8 && bits != 10 {
            return Err(format!("{bits}-bit pictures are not scored (8 or 10)"));
        }
        let config = sys::VmafConfiguration {
            log_level: sys::VmafLogLevel_VMAF_LOG_LEVEL_NONE,
            n_threads: threads,
            n_subsample: 1,
            cpumask: 0,
            gpumask: 0,
        };
        let mut context = ptr::null_mut();
        // SAFETY: `context` is a valid out-pointer; the config is passed by value.
        let rc = unsafe { sys::vmaf_init(&mut context, config) };
        if rc != 0 || context.is_null() {
            return Err(format!("vmaf_init failed ({rc})"));
        }
        let name = CString::new(model_name).map_err(|e| e.to_string())?;
        let mut model_config = sys::VmafModelConfig {
            name: name.as_ptr(),
            flags: u64::from(sys::VmafModelFlags_VMAF_MODEL_FLAGS_DEFAULT),
        };
        let mut model = ptr::null_mut();
        // SAFETY: out-pointer and config are valid for the call; `name` outlives it.
        let rc = unsafe { sys::vmaf_model_load(&mut model, &mut model_config, name.as_ptr()) };
        if rc != 0 || model.is_null() {
            // SAFETY: the context was opened above and is closed once.
            unsafe { sys::vmaf_close(context) };
            return Err(format!("loading the {model_name} model failed ({rc})"));
        }
        let scorer = Scorer {
            context,
            model,
            width,
            height,
            bits,
            frames: 0,
        };
        // SAFETY: both pointers are live (owned by `scorer`).
        let rc = unsafe { sys::vmaf_use_features_from_model(scorer.context, scorer.model) };
        if rc != 0 {
            return Err(format!("registering the model's features failed ({rc})"));
        }
        Ok(scorer)
    }

    /// Bytes of one 4:2:0 picture of the scorer's size and depth.
    pub fn frame_bytes(&self) -> usize {
        let (w, h) = (self.width as usize, self.height as usize);
        (w * h + 2 * (w.div_ceil(2) * h.div_ceil(2))) * self.sample_bytes()
    }

    fn sample_bytes(&self) -> usize {
        if self.bits > 8 {
            2
        } else {
            1
        }
    }

    /// Scores one pair of pictures (planar Y, U, V, no padding).
    pub fn push(&mut self, reference: &[u8], distorted: &[u8]) -> Result<(), String> {
        let mut pictures = [self.picture(reference)?, self.picture(distorted)?];
        let [reference, distorted] = &mut pictures;
        // SAFETY: both pictures were allocated by libvmaf and filled; it takes ownership
        // of them (and unrefs them) whatever it returns.
        let rc =
            unsafe { sys::vmaf_read_pictures(self.context, reference, distorted, self.frames) };
        if rc != 0 {
            return Err(format!(
                "vmaf_read_pictures failed at frame {} ({rc})",
                self.frames
            ));
        }
        self.frames += 1;
        Ok(())
    }

    fn picture(&self, planes: &[u8]) -> Result<sys::VmafPicture, String> {
        if planes.len() != self.frame_bytes() {
            return Err(format!(
                "a picture of {} bytes, {} expected",
                planes.len(),
                self.frame_bytes()
            ));
        }
        // SAFETY: a zeroed VmafPicture is the "empty" value vmaf_picture_alloc fills.
        let mut picture: sys::VmafPicture = unsafe { std::mem::zeroed() };
        // SAFETY: `picture` is a valid out-value; format, depth and size are supported.
        let rc = unsafe {
            sys::vmaf_picture_alloc(
                &mut picture,
                sys::VmafPixelFormat_VMAF_PIX_FMT_YUV420P,
                self.bits,
                self.width,
                self.height,
            )
        };
        if rc != 0 {
            return Err(format!("vmaf_picture_alloc failed ({rc})"));
        }
        let mut at = 0;
        for plane in 0..3 {
            let (w, h) = (picture.w[plane] as usize, picture.h[plane] as usize);
            // A row's bytes: samples of one byte, or of two (little-endian, as libvmaf's
            // 16-bit words are on the little-endian machines we build for).
            let row_bytes = w * self.sample_bytes();
            let stride = picture.stride[plane] as usize;
            let base = picture.data[plane].cast::<u8>();
            for row in 0..h {
                let line = &planes[at..at + row_bytes];
                // SAFETY: libvmaf allocated `h` rows of `stride >= row_bytes` bytes here.
                unsafe {
                    ptr::copy_nonoverlapping(line.as_ptr(), base.add(row * stride), row_bytes)
                };
                at += row_bytes;
            }
        }
        Ok(picture)
    }

    /// Flushes the extractors and reads the scores of every frame pushed.
    pub fn finish(self) -> Result<Scores, String> {
        if self.frames == 0 {
            return Err("no frame to score".into());
        }
        // SAFETY: null pictures are the documented flush.
        let rc =
            unsafe { sys::vmaf_read_pictures(self.context, ptr::null_mut(), ptr::null_mut(), 0) };
        if rc != 0 {
            return Err(format!("flushing libvmaf failed ({rc})"));
        }
        let mut per_frame = Vec::with_capacity(self.frames as usize);
        for index in 0..self.frames {
            let mut score = 0.0;
            // SAFETY: live context and model; `score` is a valid out-pointer.
            let rc =
                unsafe { sys::vmaf_score_at_index(self.context, self.model, &mut score, index) };
            if rc != 0 {
                return Err(format!("no score for frame {index} ({rc})"));
            }
            per_frame.push(score);
        }
        let pooled = |method| -> Result<f64, String> {
            let mut score = 0.0;
            // SAFETY: as above, over the frames pushed.
            let rc = unsafe {
                sys::vmaf_score_pooled(
                    self.context,
                    self.model,
                    method,
                    &mut score,
                    0,
                    self.frames - 1,
                )
            };
            if rc == 0 {
                Ok(score)
            } else {
                Err(format!("pooling failed ({rc})"))
            }
        };
        Ok(Scores {
            mean: pooled(sys::VmafPoolingMethod_VMAF_POOL_METHOD_MEAN)?,
            harmonic_mean: pooled(sys::VmafPoolingMethod_VMAF_POOL_METHOD_HARMONIC_MEAN)?,
            min: pooled(sys::VmafPoolingMethod_VMAF_POOL_METHOD_MIN)?,
            max: pooled(sys::VmafPoolingMethod_VMAF_POOL_METHOD_MAX)?,
            per_frame,
        })
    }
}

impl Drop for Scorer {
    fn drop(&mut self) {
        // SAFETY: both were created in `new` and are released once, here.
        unsafe {
            sys::vmaf_model_destroy(self.model);
            sys::vmaf_close(self.context);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A picture scored against itself is near 100; against a blurred copy, lower.
    #[test]
    fn a_picture_scores_high_against_itself_and_lower_against_a_damaged_copy() {
        let (w, h) = (160u32, 96u32);
        let mut scorer = Scorer::new(w, h, 8, MODEL, 1).unwrap();
        let size = scorer.frame_bytes();
        let luma = (w * h) as usize;
        let frame = |k: usize| -> Vec<u8> {
            (0..size)
                .map(|i| {
                    if i < luma {
                        let (x, y) = (i % w as usize, i / w as usize);
                        (((x * 7 + y * 13 + k * 5) % 251) as u8)
                            ^ (((x / 8 + y / 8) % 2) as u8 * 200)
                    } else {
                        128
                    }
                })
                .collect()
        };
        for k in 0..4 {
            scorer.push(&frame(k), &frame(k)).unwrap();
        }
        let same = scorer.finish().unwrap();
        assert!(same.mean > 95.0, "{same:?}");
        let mut scorer = Scorer::new(w, h, 8, MODEL, 1).unwrap();
        for k in 0..4 {
            let original = frame(k);
            // A 5x5 box blur of the luma: the detail VMAF weighs is gone.
            let mut blurred = original.clone();
            let (wi, hi) = (w as i64, h as i64);
            for y in 0..hi {
                for x in 0..wi {
                    let (mut sum, mut n) = (0u32, 0u32);
                    for dy in -2..=2 {
                        for dx in -2..=2 {
                            let (xx, yy) = (x + dx, y + dy);
                            if (0..wi).contains(&xx) && (0..hi).contains(&yy) {
                                sum += u32::from(original[(yy * wi + xx) as usize]);
                                n += 1;
                            }
                        }
                    }
                    blurred[(y * wi + x) as usize] = (sum / n) as u8;
                }
            }
            scorer.push(&original, &blurred).unwrap();
        }
        let damaged = scorer.finish().unwrap();
        assert!(damaged.mean < same.mean - 10.0, "{damaged:?} vs {same:?}");
        assert_eq!(damaged.per_frame.len(), 4);

        // The same pictures in 10 bits (each sample times 4, as ffmpeg widens 8-bit video)
        // score as they do in 8, with every model.
        let widen = |eight: &[u8]| -> Vec<u8> {
            eight
                .iter()
                .flat_map(|&v| (u16::from(v) << 2).to_le_bytes())
                .collect()
        };
        for model in transcoder_workflows::task::VMAF_MODELS {
            let mut scorer = Scorer::new(w, h, 10, model, 1).unwrap();
            assert_eq!(scorer.frame_bytes(), 2 * size);
            for k in 0..4 {
                scorer.push(&widen(&frame(k)), &widen(&frame(k))).unwrap();
            }
            let deep = scorer.finish().unwrap();
            assert!(deep.mean > 95.0, "{model}: {deep:?}");
        }
        assert!(Scorer::new(w, h, 12, MODEL, 1).is_err());
        assert!(Scorer::new(w, h, 8, "vmaf_v9", 1).is_err());
    }
}
