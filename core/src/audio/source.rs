//! A media source that can be opened a second time as if it could not seek: symphonia's AIFF
//! reader (a chunk's stated size) and Matroska reader (the Segment's size) look for a file's
//! stated end and fail on a truncated download, which they read to its cut without seeking.
//! It can also end early: FLAC files tagged by MP3 tools carry an ID3v1 or APEv2 tag after
//! the last frame, which symphonia reads as part of that frame (and drops it, its checksum
//! failing), so the tag is hidden.

use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

use symphonia::core::io::MediaSource;

/// One underlying source, shared by the views the decoder is opened on in turn, read up to
/// `end` (a seekable source's length less the tags after its audio).
#[derive(Clone)]
pub(crate) struct SharedSource {
    source: Arc<Mutex<Box<dyn MediaSource>>>,
    end: Option<u64>,
}

impl SharedSource {
    /// `end`: where the data stops for the decoder (a seekable source only).
    pub(crate) fn new(source: Box<dyn MediaSource>, end: Option<u64>) -> Self {
        let end = end.filter(|_| source.is_seekable());
        Self {
            source: Arc::new(Mutex::new(source)),
            end,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Box<dyn MediaSource>) -> T) -> T {
        let mut source = self
            .source
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
        let end = self.shared.end;
        self.shared.with(|s| match end {
            Some(end) => {
                let pos = s.stream_position()?;
                let n = buf.len().min(end.saturating_sub(pos) as usize);
                s.read(&mut buf[..n])
            }
            None => s.read(buf),
        })
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
        let pos = match (pos, self.shared.end) {
            (SeekFrom::End(back), Some(end)) => SeekFrom::Start(
                end.checked_add_signed(back)
                    .ok_or_else(|| std::io::Error::other("seek before the start"))?,
            ),
            (pos, _) => pos,
        };
        self.shared.with(|s| s.seek(pos))
    }
}

impl MediaSource for SourceView {
    fn is_seekable(&self) -> bool {
        self.seekable && self.shared.is_seekable()
    }

    fn byte_len(&self) -> Option<u64> {
        if self.seekable {
            self.shared
                .end
                .or_else(|| self.shared.with(|s| s.byte_len()))
        } else {
            None
        }
    }
}

/// Where a FLAC file's audio data ends when tags follow it: an ID3v1 tag (`TAG`, the last 128
/// bytes) and/or an APEv2 tag (its 32-byte `APETAGEX` footer before that). The file may open
/// with an ID3v2 tag, as MP3 taggers write one. `None`: no such
/// tag (or a source that cannot seek). `source` is left at its start.
pub(crate) fn flac_tags_start(source: &mut dyn MediaSource) -> Option<u64> {
    if !source.is_seekable() {
        return None;
    }
    let len = source.byte_len()?;
    let mut at = |pos: u64, buf: &mut [u8]| -> bool {
        source.seek(SeekFrom::Start(pos)).is_ok() && source.read_exact(buf).is_ok()
    };
    // `fLaC` first, or after an ID3v2 tag (10-byte header, synchsafe size, optional footer)
    let mut head = [0u8; 10];
    let mut start = 0u64;
    if at(0, &mut head) && &head[..3] == b"ID3" {
        let size = head[6..10]
            .iter()
            .fold(0u64, |n, &b| (n << 7) | u64::from(b & 0x7f));
        start = 10 + size + if head[5] & 0x10 != 0 { 10 } else { 0 };
    }
    let mut magic = [0u8; 4];
    if !at(start, &mut magic) || &magic != b"fLaC" {
        let _ = source.seek(SeekFrom::Start(0));
        return None;
    }
    let floor = start + 4;
    let mut end = len;
    let mut footer = [0u8; 32];
    let ape_last = end >= floor + 32 && at(end - 32, &mut footer) && &footer[..8] == b"APETAGEX";
    // ID3v1 goes last, after an APEv2 tag; with the APE footer last there is none (and `TAG`
    // 128 bytes from the end would be inside the APE tag)
    let mut id3 = [0u8; 3];
    if !ape_last && end >= floor + 128 && at(end - 128, &mut id3) && &id3 == b"TAG" {
        end -= 128;
    }
    if end >= floor + 32 && at(end - 32, &mut footer) && &footer[..8] == b"APETAGEX" {
        let size = u32::from_le_bytes(footer[12..16].try_into().unwrap_or_default()) as u64;
        let flags = u32::from_le_bytes(footer[20..24].try_into().unwrap_or_default());
        let header = if flags & 0x8000_0000 != 0 { 32 } else { 0 };
        if size >= 32 && size + header + floor <= end {
            end -= size + header;
        }
    }
    let _ = source.seek(SeekFrom::Start(0));
    (end < len).then_some(end)
}
