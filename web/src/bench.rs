//! The backbone alone, for timing the kit's WASM build against another runtime on the same
//! weights and input (`scripts/bench-web`): the first window of a file prepared as the tagger
//! prepares it, the last hidden state of one forward pass over it, and the conv feature encoder
//! alone (to tell which part of the backbone a gap comes from).

use mert_core::audio::normalize;
use mert_core::burn::tensor::{Tensor, TensorData};
use mert_core::embed::FileSource;

use crate::tagger::{Tagger, one_line, read};

/// The first window of `audio` (an audio file's bytes) as the tagger feeds it to the model:
/// decoded, resampled to the model's rate, cut to the head's window length (the whole clip
/// when it is shorter or the head runs whole clips) and normalised when the head asks for it.
pub fn first_window(tagger: &Tagger, audio: Vec<u8>, name: &str) -> Result<Vec<f32>, String> {
    let rate = tagger.model().sample_rate;
    let (mut source, total) = FileSource::from_bytes(audio, name, rate).map_err(one_line)?;
    let config = tagger.head_config();
    let window = match config.window_seconds {
        s if s > 0.0 => ((s * rate as f64).round() as usize).min(total),
        _ => total,
    };
    let mut samples = Vec::with_capacity(window);
    while samples.len() < window {
        match source.next_chunk().map_err(one_line)? {
            Some(chunk) => samples.extend(chunk),
            None => break,
        }
    }
    samples.truncate(window);
    if config.normalize {
        normalize(&mut samples);
    }
    Ok(samples)
}

/// One forward pass of the backbone over `samples` (already prepared, at the model's rate):
/// the last hidden state `[frames, hidden]` row-major, read back asynchronously.
pub async fn last_hidden(tagger: &Tagger, samples: &[f32]) -> Result<Vec<f32>, String> {
    let model = tagger.model();
    if model.frames_for(samples.len()) == 0 {
        return Err(format!(
            "{} samples: too short for one frame",
            samples.len()
        ));
    }
    let n = samples.len();
    let input = Tensor::<2>::from_data(TensorData::new(samples.to_vec(), [1, n]), tagger.device());
    let last = model.encoder.layers.len();
    let Some(hidden) = model.forward_layers(input, &[last]).pop() else {
        return Err("the model gave no hidden state".into());
    };
    read(hidden)
        .await?
        .try_into_vec::<f32>()
        .map_err(|e| format!("cannot read the hidden state: {e:?}"))
}

/// The conv feature encoder alone over prepared samples: `[channels, frames]` row-major, as
/// the reference `HubertFeatureEncoder` gives it (the part of the backbone timed apart).
pub async fn conv_features(tagger: &Tagger, samples: &[f32]) -> Result<Vec<f32>, String> {
    let model = tagger.model();
    if model.frames_for(samples.len()) == 0 {
        return Err(format!(
            "{} samples: too short for one frame",
            samples.len()
        ));
    }
    let n = samples.len();
    let input = Tensor::<2>::from_data(TensorData::new(samples.to_vec(), [1, n]), tagger.device());
    read(model.feature_extractor.forward(input))
        .await?
        .try_into_vec::<f32>()
        .map_err(|e| format!("cannot read the features: {e:?}"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use mert_core::burn::tensor::Device;

    use super::*;

    fn ready<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("a CPU read-back did not resolve at once"),
        }
    }

    #[test]
    fn first_window_and_last_hidden_state_match_the_model() {
        let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        let device = Device::flex();
        let model =
            std::fs::read(root.join("models/default/mert-tag-default.safetensors")).unwrap();
        let tagger = Tagger::from_bytes(&model, "default", &device).unwrap();
        let wav = std::fs::read(root.join("examples/audio/phrase.wav")).unwrap();
        let x = first_window(&tagger, wav, "phrase.wav").unwrap();
        // 5 s windows at 24 kHz; the 6 s clip fills one.
        assert_eq!(x.len(), 120_000);
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
        assert!(mean.abs() < 1e-5, "{mean}");

        let got = ready(last_hidden(&tagger, &x)).unwrap();
        let input = Tensor::<2>::from_data(TensorData::new(x.clone(), [1, x.len()]), &device);
        let out = tagger.model().forward(input);
        let want: Vec<f32> = out
            .last_hidden_state()
            .unwrap()
            .clone()
            .into_data()
            .try_into_vec()
            .unwrap();
        assert_eq!(got.len(), tagger.model().frames_for(x.len()) * 128);
        assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5));
        assert!(ready(last_hidden(&tagger, &[0.0; 10])).is_err());
        let features = ready(conv_features(&tagger, &x)).unwrap();
        assert_eq!(features.len(), 64 * tagger.model().frames_for(x.len()));
        let want: Vec<f32> = out.extract_features.into_data().try_into_vec().unwrap();
        // extract_features is [1, frames, channels]; the conv output is [1, channels, frames].
        let frames = tagger.model().frames_for(x.len());
        for (c, row) in features.chunks_exact(frames).enumerate() {
            for (t, v) in row.iter().enumerate() {
                assert!((v - want[t * 64 + c]).abs() < 1e-5);
            }
        }
    }
}
