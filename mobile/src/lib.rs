//! `mert-mobile`: MERT on device through a C ABI over `mert-core` (CPU, burn Flex).
//!
//! Every fallible function returns 0 on success or a non-zero [`MertStatus`]; the message is
//! then in [`mert_last_error`] (thread-local, valid until the next call on that thread).
//! No panic crosses the boundary: each entry point runs under `catch_unwind`.
//! A `MertModel` may be shared across threads for reading; `mert_embed` takes it by const
//! pointer and does not mutate it.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use burn::tensor::Device;
use mert_core::Mert;
use mert_core::audio::MonoAudio;
use mert_core::embed::{EmbedOptions, embed_audio_layers};

/// Status codes returned by the C functions.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MertStatus {
    Ok = 0,
    /// A null pointer or an out-of-range argument.
    InvalidArgument = 1,
    /// The model file could not be read or is not a valid MERT model.
    ModelLoad = 2,
    /// The audio could not be processed (too short, NaN, ...).
    Audio = 3,
    /// An internal error (a caught panic).
    Internal = 4,
}

/// A loaded model (opaque to C).
pub struct MertModel {
    model: Mert,
    device: Device,
}

/// An embedding `[frames, dim]`, row-major (opaque to C).
pub struct MertEmbedding {
    frames: usize,
    dim: usize,
    data: Vec<f32>,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// [`guard`] as the C `int` the ABI returns.
fn status(f: impl FnOnce() -> Result<(), (MertStatus, String)>) -> c_int {
    guard(f) as c_int
}

/// Run `f`, turning errors and panics into a status code plus message.
fn guard(f: impl FnOnce() -> Result<(), (MertStatus, String)>) -> MertStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => MertStatus::Ok,
        Ok(Err((status, msg))) => {
            set_error(&msg);
            status
        }
        Err(_) => {
            set_error("internal error (panic caught at the C boundary)");
            MertStatus::Internal
        }
    }
}

/// Load a model (kit `.safetensors` file or Hugging Face folder) from `path` into `*out`.
///
/// # Safety
/// `path` must be a NUL-terminated string and `out` a valid pointer to write to.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mert_model_load(path: *const c_char, out: *mut *mut MertModel) -> c_int {
    status(|| {
        if path.is_null() || out.is_null() {
            return Err((
                MertStatus::InvalidArgument,
                "mert_model_load: null argument".into(),
            ));
        }
        // SAFETY: non-null and NUL-terminated per the contract.
        let path = unsafe { CStr::from_ptr(path) }.to_str().map_err(|_| {
            (
                MertStatus::InvalidArgument,
                "mert_model_load: path is not UTF-8".to_string(),
            )
        })?;
        let device = Device::flex();
        let checkpoint = mert_core::load_path(Path::new(path))
            .map_err(|e| (MertStatus::ModelLoad, e.to_string()))?;
        let (_, model) = checkpoint
            .into_model(&device)
            .map_err(|e| (MertStatus::ModelLoad, e.to_string()))?;
        let boxed = Box::new(MertModel { model, device });
        // SAFETY: `out` is valid for writes per the contract.
        unsafe { *out = Box::into_raw(boxed) };
        Ok(())
    })
}

/// Free a model from [`mert_model_load`]. Null is ignored.
///
/// # Safety
/// `m` must come from `mert_model_load` and not be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mert_model_free(m: *mut MertModel) {
    if !m.is_null() {
        // SAFETY: allocated by Box::into_raw in mert_model_load.
        drop(unsafe { Box::from_raw(m) });
    }
}

/// Embed interleaved PCM (`n_frames` frames of `channels` samples at `sample_rate`): the last
/// hidden layer, `[frames, dim]`, as `mert embed --layers last` (5 s windows, normalised).
///
/// # Safety
/// `m` must be a loaded model, `pcm` must hold `n_frames * channels` floats, `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mert_embed(
    m: *const MertModel,
    pcm: *const f32,
    n_frames: usize,
    sample_rate: u32,
    channels: u32,
    out: *mut *mut MertEmbedding,
) -> c_int {
    status(|| {
        if m.is_null() || pcm.is_null() || out.is_null() {
            return Err((
                MertStatus::InvalidArgument,
                "mert_embed: null argument".into(),
            ));
        }
        if channels == 0 || sample_rate == 0 {
            return Err((
                MertStatus::InvalidArgument,
                "mert_embed: channels and sample_rate must be positive".into(),
            ));
        }
        let ch = channels as usize;
        let len = n_frames.checked_mul(ch).ok_or((
            MertStatus::InvalidArgument,
            "mert_embed: n_frames * channels overflows".to_string(),
        ))?;
        // SAFETY: the caller guarantees `pcm` holds `len` floats and `m` is a live model.
        let (pcm, model) = unsafe { (std::slice::from_raw_parts(pcm, len), &*m) };
        let scale = 1.0 / ch as f32;
        let audio = MonoAudio {
            samples: pcm
                .chunks_exact(ch)
                .map(|f| f.iter().sum::<f32>() * scale)
                .collect(),
            sample_rate,
            source_channels: ch,
        };
        let last = model.model.encoder.layers.len();
        let emb = embed_audio_layers(
            &model.model,
            &audio,
            &EmbedOptions::default(),
            &[last],
            &model.device,
        )
        .map_err(|e| (MertStatus::Audio, e.to_string()))?;
        let boxed = Box::new(MertEmbedding {
            frames: emb.frames,
            dim: emb.dim,
            data: emb.data,
        });
        // SAFETY: `out` is valid for writes per the contract.
        unsafe { *out = Box::into_raw(boxed) };
        Ok(())
    })
}

/// Frames of an embedding (0 for null).
///
/// # Safety
/// `e` must be null or come from `mert_embed`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mert_embedding_frames(e: *const MertEmbedding) -> usize {
    // SAFETY: null-checked; otherwise a live embedding per the contract.
    unsafe { e.as_ref() }.map_or(0, |e| e.frames)
}

/// Width of an embedding (0 for null).
///
/// # Safety
/// `e` must be null or come from `mert_embed`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mert_embedding_dim(e: *const MertEmbedding) -> usize {
    // SAFETY: as above.
    unsafe { e.as_ref() }.map_or(0, |e| e.dim)
}

/// The row-major `[frames, dim]` data, valid until the embedding is freed (null for null).
///
/// # Safety
/// `e` must be null or come from `mert_embed`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mert_embedding_data(e: *const MertEmbedding) -> *const f32 {
    // SAFETY: as above.
    unsafe { e.as_ref() }.map_or(std::ptr::null(), |e| e.data.as_ptr())
}

/// Free an embedding. Null is ignored.
///
/// # Safety
/// `e` must come from `mert_embed` and not be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mert_embedding_free(e: *mut MertEmbedding) {
    if !e.is_null() {
        // SAFETY: allocated by Box::into_raw in mert_embed.
        drop(unsafe { Box::from_raw(e) });
    }
}

/// The last error message on this thread ("" if none).
#[unsafe(no_mangle)]
pub extern "C" fn mert_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> CString {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mert_tiny");
        CString::new(p.to_str().unwrap()).unwrap()
    }

    #[test]
    fn load_embed_and_free_through_the_c_surface() {
        let mut model = std::ptr::null_mut();
        assert_eq!(
            unsafe { mert_model_load(fixture().as_ptr(), &mut model) },
            MertStatus::Ok as c_int
        );
        // 1 s of a stereo 44.1 kHz tone
        let n = 44_100;
        let pcm: Vec<f32> = (0..n)
            .flat_map(|i| {
                let v = (i as f32 * 0.05).sin() * 0.3;
                [v, -v * 0.5]
            })
            .collect();
        let mut emb = std::ptr::null_mut();
        let st = unsafe { mert_embed(model, pcm.as_ptr(), n, 44_100, 2, &mut emb) };
        assert_eq!(st, MertStatus::Ok as c_int, "{:?}", unsafe {
            CStr::from_ptr(mert_last_error())
        });
        let (frames, dim) = unsafe { (mert_embedding_frames(emb), mert_embedding_dim(emb)) };
        assert_eq!((frames, dim), ((24_000 - 400) / 320 + 1, 64));
        let data = unsafe { std::slice::from_raw_parts(mert_embedding_data(emb), frames * dim) };
        assert!(data.iter().all(|v| v.is_finite()));
        unsafe { mert_embedding_free(emb) };

        // too short: an error code and a message, no panic
        let st = unsafe { mert_embed(model, pcm.as_ptr(), 10, 44_100, 2, &mut emb) };
        assert_eq!(st, MertStatus::Audio as c_int);
        let msg = unsafe { CStr::from_ptr(mert_last_error()) }
            .to_string_lossy()
            .into_owned();
        assert!(msg.contains("too short"), "{msg}");
        unsafe { mert_model_free(model) };
    }

    #[test]
    fn bad_paths_and_nulls_are_errors() {
        let mut model = std::ptr::null_mut();
        let missing = CString::new("/nonexistent/model.safetensors").unwrap();
        assert_eq!(
            unsafe { mert_model_load(missing.as_ptr(), &mut model) },
            MertStatus::ModelLoad as c_int
        );
        let msg = unsafe { CStr::from_ptr(mert_last_error()) }
            .to_string_lossy()
            .into_owned();
        assert!(msg.contains("/nonexistent/model.safetensors"), "{msg}");
        assert_eq!(
            unsafe { mert_model_load(std::ptr::null(), &mut model) },
            MertStatus::InvalidArgument as c_int
        );
        assert!(model.is_null());
    }
}
