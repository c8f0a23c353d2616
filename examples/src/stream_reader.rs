//! Streaming from a reader: raw interleaved PCM read from standard input (or any `Read`) in
//! 100 ms chunks is pushed into a session; each chunk of embedding frames is printed as soon
//! as it is final, and at the end the whole stream's tags (for a tagging model). The chunks
//! concatenate to the one-shot embedding of the same audio, and the tags equal `mert tag`'s.
//!
//!     ffmpeg -i song.mp3 -f f32le -ar 44100 -ac 2 - \
//!         | cargo run --release -p mert-examples --bin stream-reader -- MODEL 44100 2 [f32|s16]
//!
//! The sample format is little-endian `f32` (default) or `s16`.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use mert_mobile::{Model, Session};

mod common;

/// Decode little-endian samples; `bytes` holds whole samples.
fn samples(bytes: &[u8], s16: bool) -> Vec<f32> {
    if s16 {
        bytes
            .chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
            .collect()
    } else {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

fn print_ready(session: &mut Session, rate: f64) {
    while let Some(chunk) = session.next_chunk() {
        let top = chunk
            .tags
            .as_ref()
            .and_then(|t| t.first())
            .map_or(String::new(), |t| {
                format!("  top tag: {} {:.2}", t.name, t.p)
            });
        println!(
            "frames {:>6}..{:<6} ({:7.2}-{:7.2} s) x {}{top}",
            chunk.first_frame,
            chunk.first_frame + chunk.frames,
            chunk.first_frame as f64 / rate,
            (chunk.first_frame + chunk.frames) as f64 / rate,
            chunk.dim
        );
    }
}

/// Pump `reader` through a session until it ends.
fn stream(
    model: Arc<Model>,
    rate: u32,
    channels: u32,
    s16: bool,
    mut reader: impl Read,
) -> Result<(), String> {
    let frame_rate = 75.0 * f64::from(model.sample_rate()) / 24_000.0;
    let mut session = Session::new(model, rate, channels).map_err(|e| e.to_string())?;
    let width = if s16 { 2 } else { 4 };
    let frame_bytes = width * channels as usize;
    let chunk_bytes = (rate as usize / 10).max(1) * frame_bytes;
    let mut buf = vec![0u8; chunk_bytes];
    let mut pending = Vec::new();
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| format!("reading the input: {e}"))?;
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        let whole = pending.len() - pending.len() % frame_bytes;
        let pcm = samples(&pending[..whole], s16);
        pending.drain(..whole);
        session.push(&pcm).map_err(|e| e.to_string())?;
        print_ready(&mut session, frame_rate);
    }
    if !pending.is_empty() {
        eprintln!(
            "note: {} trailing bytes (a partial frame) ignored",
            pending.len()
        );
    }
    session.finish().map_err(|e| e.to_string())?;
    print_ready(&mut session, frame_rate);
    if let Ok(tags) = session.tags() {
        let best: Vec<String> = tags
            .iter()
            .take(5)
            .map(|t| format!("{} {:.3}", t.name, t.p))
            .collect();
        println!("whole stream: {}", best.join(", "));
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [m, r, c] => Some((m, r.parse::<u32>(), c.parse::<u32>(), "f32")),
        [m, r, c, f] => Some((m, r.parse::<u32>(), c.parse::<u32>(), f.as_str())),
        _ => None,
    };
    let Some((model_path, Ok(rate), Ok(channels), format @ ("f32" | "s16"))) = parsed else {
        eprintln!("usage: stream-reader MODEL RATE CHANNELS [f32|s16] < raw-pcm");
        return ExitCode::from(2);
    };
    let result = Model::from_path(Path::new(model_path))
        .map_err(|e| e.to_string())
        .and_then(|m| {
            stream(
                Arc::new(m),
                rate,
                channels,
                format == "s16",
                std::io::stdin().lock(),
            )
        });
    common::exit(result)
}
