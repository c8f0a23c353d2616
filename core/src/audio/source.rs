//! A media source that can be opened a second time as if it could not seek: symphonia's AIFF
//! reader (a chunk's stated size) and Matroska reader (the Segment's size) look for a file's
//! stated end and fail on a truncated download, which they read to its cut without seeking.

use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

use symphonia::core::io::MediaSource;

/// One underlying source, shared by the views the decoder is opened on in turn.
#[derive(Clone)]
pub(crate) struct SharedSource(Arc<Mutex<Box<dyn MediaSource>>>);

impl SharedSource {
    pub(crate) fn new(source: Box<dyn MediaSource>) -> Self {
        Self(Arc::new(Mutex::new(source)))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Box<dyn MediaSource>) -> T) -> T {
        let mut source = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut source)
    }

    pub(crate) fn is_seekable(&self) -> bool {
        self.with(|s| s.is_seekable())
    }

    /// A view from the start of the source (a source that cannot seek is viewed where it
    /// is, once); `seekable: false` hides seeking and the length.
    pub(crate) fn view(&self, seekable: bool) -> std::io::Result<SourceView> {
        self.with(|s| {
            if s.is_seekable() {
                s.seek(SeekFrom::Start(0)).map(|_| ())
            } else {
                Ok(())
            }
        })?;
        Ok(SourceView {
            shared: self.clone(),
            seekable,
        })
    }
}

pub(crate) struct SourceView {
    shared: SharedSource,
    seekable: bool,
}

impl Read for SourceView {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.shared.with(|s| s.read(buf))
    }
}

impl Seek for SourceView {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        // a relative seek of 0 only asks for the position, which a stream can answer
        if !self.seekable && pos != SeekFrom::Current(0) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "the source is read as a stream",
            ));
        }
        self.shared.with(|s| s.seek(pos))
    }
}

impl MediaSource for SourceView {
    fn is_seekable(&self) -> bool {
        self.seekable && self.shared.is_seekable()
    }

    fn byte_len(&self) -> Option<u64> {
        if self.seekable {
            self.shared.with(|s| s.byte_len())
        } else {
            None
        }
    }
}
