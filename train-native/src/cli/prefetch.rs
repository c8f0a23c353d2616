//! Decoding on worker threads: each file is decoded and resampled on its own thread while the
//! model runs on the previous window (or the previous file). The channel between them is
//! bounded, so memory stays a few chunks deep whatever the file's length.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use anyhow::{Result, anyhow};
use mert_core::embed::FileSource;

/// Chunks a decoder may run ahead of the model (a chunk is one decoded packet, resampled:
/// a few thousand samples, so this is a few MB at most).
const DEPTH: usize = 256;

enum Message {
    /// The file opened; its length in samples at the model's rate.
    Opened(usize),
    Chunk(Vec<f32>),
    End,
    Failed(anyhow::Error),
}

/// One file being decoded ahead on a worker thread.
pub struct Prefetch {
    rx: Receiver<Message>,
    worker: Option<JoinHandle<()>>,
    done: bool,
}

impl Prefetch {
    /// Start decoding `path` at `sample_rate` on a new thread.
    pub fn spawn(path: PathBuf, sample_rate: u32) -> Self {
        let (tx, rx) = sync_channel(DEPTH);
        let worker = std::thread::Builder::new()
            .name("mert-decode".into())
            .spawn(move || decode(path, sample_rate, tx))
            .ok();
        Self {
            rx,
            worker,
            done: false,
        }
    }

    /// Wait until the file is opened: its length at the model's rate, or why it failed.
    pub fn total(&mut self) -> Result<usize> {
        match self.recv()? {
            Message::Opened(total) => Ok(total),
            Message::Failed(e) => Err(e),
            _ => Err(anyhow!("the decoder sent audio before opening the file")),
        }
    }

    /// The next chunk of samples; `None` at the end of the file.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<f32>>> {
        if self.done {
            return Ok(None);
        }
        match self.recv()? {
            Message::Chunk(c) => Ok(Some(c)),
            Message::End => {
                self.done = true;
                Ok(None)
            }
            Message::Failed(e) => Err(e),
            Message::Opened(_) => Err(anyhow!("the decoder opened the file twice")),
        }
    }

    fn recv(&mut self) -> Result<Message> {
        self.rx
            .recv()
            .map_err(|_| anyhow!("the decoding thread stopped unexpectedly"))
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // Closing the channel first makes a worker blocked on `send` stop.
        let (_, closed) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, closed));
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

fn decode(path: PathBuf, sample_rate: u32, tx: SyncSender<Message>) {
    let (mut source, total) = match FileSource::open(&path, sample_rate) {
        Ok(opened) => opened,
        Err(e) => {
            let _ = tx.send(Message::Failed(e.into()));
            return;
        }
    };
    if tx.send(Message::Opened(total)).is_err() {
        return;
    }
    loop {
        let message = match source.next_chunk() {
            Ok(Some(chunk)) => Message::Chunk(chunk),
            Ok(None) => Message::End,
            Err(e) => Message::Failed(e.into()),
        };
        let last = !matches!(message, Message::Chunk(_));
        // A closed channel means the model side gave up on this file.
        if tx.send(message).is_err() || last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_fails_at_open_and_names_it() {
        let mut p = Prefetch::spawn(PathBuf::from("/no/such/file.wav"), 24_000);
        let e = p.total().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("/no/such/file.wav"), "{e}");
    }

    #[test]
    fn dropping_early_stops_the_worker() {
        let wav = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/audio/phrase.wav");
        let mut p = Prefetch::spawn(PathBuf::from(wav), 24_000);
        assert!(p.total().is_ok_and(|n| n > 0));
        assert!(p.next_chunk().is_ok_and(|c| c.is_some()));
        drop(p); // must return: the worker sees the closed channel
    }
}
