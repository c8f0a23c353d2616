//! The JS-facing layer (wasm-bindgen), used by the page's Web Worker: pick a device, load a
//! model, tag a file. Results and progress cross as JSON strings; errors as one-line `Error`s.
//! All state lives in this worker's thread, so a page can run several workers side by side.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Function;
use mert_core::burn::tensor::Device;
use wasm_bindgen::prelude::*;

use crate::tagger::{Progress, Tagger, Tags};

thread_local! {
    static DEVICE: RefCell<Option<(Device, &'static str)>> = const { RefCell::new(None) };
    static TAGGER: RefCell<Option<Rc<Tagger>>> = const { RefCell::new(None) };
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A panic aborts the module (wasm traps); keep its message so the worker can show it.
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        let message = info.to_string().lines().collect::<Vec<_>>().join(" ");
        PANIC.with(|p| *p.borrow_mut() = Some(message));
    }));
}

/// The message of the panic that trapped the module, if one did.
#[wasm_bindgen]
pub fn last_panic() -> Option<String> {
    PANIC.with(|p| p.borrow().clone())
}

/// Choose the device once per worker: `webgpu` (burn-wgpu on the browser's WebGPU, initialised
/// asynchronously) or `wasm` (burn's Flex backend on the CPU, WASM SIMD). Returns the name of
/// the backend in use.
#[wasm_bindgen]
pub async fn init_backend(backend: String) -> Result<String, JsError> {
    if let Some((_, name)) = DEVICE.with(|d| d.borrow().clone()) {
        return Ok(name.to_string());
    }
    let (device, name) = match backend.as_str() {
        "webgpu" => {
            let device = Device::wgpu_options()
                .init_async()
                .await
                .map_err(|e| JsError::new(&format!("WebGPU could not start: {e}")))?;
            (device, "webgpu")
        }
        "wasm" => (Device::flex(), "wasm"),
        other => {
            return Err(JsError::new(&format!(
                "backend `{other}`: expected `webgpu` or `wasm`"
            )));
        }
    };
    DEVICE.with(|d| *d.borrow_mut() = Some((device, name)));
    Ok(name.to_string())
}

/// Load a kit model file with a tagging head onto the chosen device (replacing any loaded
/// one). Returns JSON: `{"tags": [...], "description": {...}}`.
#[wasm_bindgen]
pub fn load_model(bytes: Vec<u8>, name: String) -> Result<String, JsError> {
    let device = DEVICE
        .with(|d| d.borrow().clone())
        .map(|(d, _)| d)
        .ok_or_else(|| JsError::new("no backend: call init_backend first"))?;
    let description = crate::describe_model(&bytes, &name).map_err(|e| JsError::new(&e))?;
    let tagger = Tagger::from_bytes(&bytes, &name, &device).map_err(|e| JsError::new(&e))?;
    let out = serde_json::json!({
        "tags": tagger.tag_names(),
        "description": serde_json::from_str::<serde_json::Value>(&description).unwrap_or_default(),
    });
    TAGGER.with(|t| *t.borrow_mut() = Some(Rc::new(tagger)));
    Ok(out.to_string())
}

/// Tag an audio file (its bytes and file name), and segments of `timeline` seconds (0: none).
/// `on_progress` is called with JSON progress events: `{"stage":"decoded","seconds":S,
/// "windows":N}`, `{"stage":"windows","done":i,"total":N}`. Returns JSON `{"seconds": S,
/// "tags": [{"tag","p"}...], "names": [...], "timeline": [{"start","end","p": [...]}],
/// "waveform": {"rate","min","max"}}`: tags highest probability first, timeline probabilities
/// in the order of `names`, the waveform's peaks in `rate` buckets per second.
#[wasm_bindgen]
pub async fn tag(
    audio: Vec<u8>,
    name: String,
    timeline: f64,
    on_progress: Function,
) -> Result<String, JsError> {
    let tagger = loaded()?;
    let tags = tagger
        .tag(audio, &name, timeline, &mut reporter(&on_progress))
        .await
        .map_err(|e| JsError::new(&e))?;
    Ok(to_json(&tagger, &tags))
}

/// As [`tag`], for a `File` (or `Blob`) read slice by slice in this worker (`FileReaderSync`):
/// no copy of the file is made, so memory does not grow with the file's size.
#[wasm_bindgen]
pub async fn tag_file(
    file: JsValue,
    name: String,
    timeline: f64,
    on_progress: Function,
) -> Result<String, JsError> {
    let tagger = loaded()?;
    crate::blob::BlobSource::new(&file).map_err(|e| JsError::new(&format!("{name}: {e}")))?;
    let open = || -> mert_core::Result<Box<dyn mert_core::audio::decode::MediaSource>> {
        crate::blob::BlobSource::new(&file)
            .map(|s| Box::new(s) as Box<dyn mert_core::audio::decode::MediaSource>)
            .map_err(mert_core::MertError::Invalid)
    };
    let tags = tagger
        .tag_sources(open, &name, timeline, &mut reporter(&on_progress))
        .await
        .map_err(|e| JsError::new(&e))?;
    Ok(to_json(&tagger, &tags))
}

/// As [`tag`], for audio the browser decoded itself (formats symphonia lacks): interleaved
/// samples of `channels` channels at `sample_rate` Hz.
#[wasm_bindgen]
pub async fn tag_pcm(
    interleaved: Vec<f32>,
    channels: u32,
    sample_rate: u32,
    name: String,
    timeline: f64,
    on_progress: Function,
) -> Result<String, JsError> {
    let tagger = loaded()?;
    let tags = tagger
        .tag_pcm(
            &interleaved,
            channels as usize,
            sample_rate,
            &name,
            timeline,
            &mut reporter(&on_progress),
        )
        .await
        .map_err(|e| JsError::new(&e))?;
    Ok(to_json(&tagger, &tags))
}

/// The first window of an audio file as the model sees it (decoded, resampled, cut to the
/// head's window, normalised): the input of [`bench_forward`], to hand to other runtimes too.
#[wasm_bindgen]
pub fn bench_input(audio: Vec<u8>, name: String) -> Result<Vec<f32>, JsError> {
    let tagger = loaded()?;
    crate::bench::first_window(&tagger, audio, &name).map_err(|e| JsError::new(&e))
}

/// One forward pass of the loaded model's backbone over prepared samples: the last hidden
/// state `[frames, hidden]`, row-major (for timing and checking against other runtimes).
#[wasm_bindgen]
pub async fn bench_forward(samples: Vec<f32>) -> Result<Vec<f32>, JsError> {
    let tagger = loaded()?;
    crate::bench::last_hidden(&tagger, &samples)
        .await
        .map_err(|e| JsError::new(&e))
}

/// The loaded backbone's conv feature encoder alone over prepared samples: `[channels,
/// frames]`, row-major.
#[wasm_bindgen]
pub async fn bench_features(samples: Vec<f32>) -> Result<Vec<f32>, JsError> {
    let tagger = loaded()?;
    crate::bench::conv_features(&tagger, &samples)
        .await
        .map_err(|e| JsError::new(&e))
}

fn loaded() -> Result<Rc<Tagger>, JsError> {
    TAGGER
        .with(|t| t.borrow().clone())
        .ok_or_else(|| JsError::new("no model loaded"))
}

/// Progress events as JSON strings to a JS callback.
fn reporter(on_progress: &Function) -> impl FnMut(Progress) + '_ {
    move |p| {
        let event = match p {
            Progress::Decoded { seconds, windows } => {
                serde_json::json!({"stage": "decoded", "seconds": seconds, "windows": windows})
            }
            Progress::Windows { done, total } => {
                serde_json::json!({"stage": "windows", "done": done, "total": total})
            }
        };
        // A failing progress callback must not fail the tagging.
        let _ = on_progress.call1(&JsValue::NULL, &JsValue::from_str(&event.to_string()));
    }
}

fn to_json(tagger: &Tagger, tags: &Tags) -> String {
    serde_json::json!({
        "seconds": tags.seconds,
        "tags": tags.tags.iter().map(|(t, p)| serde_json::json!({"tag": t, "p": p})).collect::<Vec<_>>(),
        "names": tagger.tag_names(),
        "timeline": tags.timeline.iter().map(|(a, b, p)| serde_json::json!({"start": a, "end": b, "p": p})).collect::<Vec<_>>(),
        "waveform": {"rate": tags.waveform.rate, "min": tags.waveform.min, "max": tags.waveform.max},
    })
    .to_string()
}
