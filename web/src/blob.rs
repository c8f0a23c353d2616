//! A browser `File` (a `Blob`) as a seekable byte source for the decoder, read slice by slice
//! with `FileReaderSync` (Web Workers only): a file is decoded without its bytes ever being
//! held in memory whole.

use std::io::{Read, Seek, SeekFrom};

use js_sys::{ArrayBuffer, Uint8Array};
use mert_core::audio::decode::MediaSource;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// The part of the DOM `Blob` this needs.
    #[wasm_bindgen(js_name = Blob)]
    pub type JsBlob;
    #[wasm_bindgen(method, getter)]
    fn size(this: &JsBlob) -> f64;
    #[wasm_bindgen(method)]
    fn slice(this: &JsBlob, start: f64, end: f64) -> JsBlob;

    type FileReaderSync;
    #[wasm_bindgen(constructor, catch)]
    fn new() -> Result<FileReaderSync, JsValue>;
    #[wasm_bindgen(method, catch, js_name = readAsArrayBuffer)]
    fn read_as_array_buffer(this: &FileReaderSync, blob: &JsBlob) -> Result<ArrayBuffer, JsValue>;
}

/// Bytes read from the file per call into JavaScript (the decoder asks for far less at a time).
const CHUNK: u64 = 4 << 20;

pub struct BlobSource {
    blob: JsBlob,
    reader: FileReaderSync,
    pos: u64,
    len: u64,
    /// The last chunk read and where it starts in the file.
    chunk: Vec<u8>,
    chunk_start: u64,
}

// SAFETY: the kit's WASM module is built without threads (no `atomics`), so a value can never
// be reached from a second thread; the decoder's `Send + Sync` bound is met vacuously.
unsafe impl Send for BlobSource {}
unsafe impl Sync for BlobSource {}

impl BlobSource {
    /// A reader over `blob`; fails outside a Web Worker (no `FileReaderSync` there).
    pub fn new(blob: &JsValue) -> Result<Self, String> {
        let blob: JsBlob = blob.clone().unchecked_into();
        let reader = FileReaderSync::new().map_err(|_| {
            "reading a File in slices needs a Web Worker (FileReaderSync)".to_string()
        })?;
        let len = blob.size();
        if !(len.is_finite() && len >= 0.0) {
            return Err("not a File or Blob".into());
        }
        Ok(Self {
            blob,
            reader,
            pos: 0,
            len: len as u64,
            chunk: Vec::new(),
            chunk_start: 0,
        })
    }
}

impl Read for BlobSource {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.len || out.is_empty() {
            return Ok(0);
        }
        let in_chunk =
            self.pos >= self.chunk_start && self.pos < self.chunk_start + self.chunk.len() as u64;
        if !in_chunk {
            let end = (self.pos + CHUNK).min(self.len);
            let part = self.blob.slice(self.pos as f64, end as f64);
            let buf = self
                .reader
                .read_as_array_buffer(&part)
                .map_err(|e| std::io::Error::other(format!("the file cannot be read: {e:?}")))?;
            self.chunk = Uint8Array::new(&buf).to_vec();
            self.chunk_start = self.pos;
            if self.chunk.is_empty() {
                return Ok(0);
            }
        }
        let at = (self.pos - self.chunk_start) as usize;
        let n = (self.chunk.len() - at).min(out.len());
        out[..n].copy_from_slice(&self.chunk[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BlobSource {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match pos {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )),
        }
    }
}

impl MediaSource for BlobSource {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.len)
    }
}
