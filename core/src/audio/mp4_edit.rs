//! The priming an MP4/M4A audio track's edit list skips (`moov/trak/edts/elst`): AAC encoders
//! put 1024 to 2112 samples of encoder delay before the audio, and the edit list's media time
//! says so. symphonia 0.6.1 reads the list but does not apply it; ffmpeg (and so torchaudio
//! and every reference pipeline built on it) drops those samples, so the kit does too, and an
//! M4A file's frames line up with the reference decode's. (Like ffmpeg, the end is not cut.)

use std::io::SeekFrom;

use symphonia::core::io::MediaSource;

/// Largest `moov` read (a few kB for music; long files' sample tables reach megabytes).
const MOOV_MAX: u64 = 64 << 20;

/// Whether `head` (a file's first bytes) opens an ISO media file (`ftyp` first).
pub(crate) fn is_mp4(head: &[u8]) -> bool {
    head.len() >= 8 && &head[4..8] == b"ftyp"
}

/// One audio track's priming from its edit list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Edit {
    /// `tkhd` track ID (symphonia's track id).
    pub track: u32,
    /// Media time of the first real edit, in `timescale` units.
    pub media_time: u64,
    pub timescale: u32,
}

/// The priming of every audio track with an edit list (none: not an MP4 file, or no list).
/// `source` is left at its start.
pub(crate) fn priming(source: &mut dyn MediaSource) -> Vec<Edit> {
    if !source.is_seekable() {
        return Vec::new();
    }
    let mut head = [0u8; 8];
    let mp4 = source.read_exact(&mut head).is_ok() && is_mp4(&head);
    let found = match mp4.then(|| find_moov(source)).flatten() {
        Some(moov) => boxes(&moov)
            .filter(|(t, _)| *t == b"trak")
            .filter_map(|(_, trak)| audio_edit(trak))
            .collect(),
        None => Vec::new(),
    };
    let _ = source.seek(SeekFrom::Start(0));
    found
}

/// The `moov` box's payload, found among the top-level boxes (it may follow the media data).
fn find_moov(source: &mut dyn MediaSource) -> Option<Vec<u8>> {
    let len = source.byte_len()?;
    let mut at = 0u64;
    while at + 8 <= len {
        source.seek(SeekFrom::Start(at)).ok()?;
        let mut head = [0u8; 16];
        source.read_exact(&mut head[..8]).ok()?;
        let mut size = u32::from_be_bytes(head[..4].try_into().ok()?) as u64;
        let mut header = 8;
        if size == 1 {
            source.read_exact(&mut head[8..16]).ok()?;
            size = u64::from_be_bytes(head[8..16].try_into().ok()?);
            header = 16;
        } else if size == 0 {
            size = len - at;
        }
        if size < header || at.checked_add(size)? > len {
            return None;
        }
        if &head[4..8] == b"moov" {
            let body = size - header;
            if body > MOOV_MAX {
                return None;
            }
            let mut moov = vec![0u8; body as usize];
            source.read_exact(&mut moov).ok()?;
            return Some(moov);
        }
        at += size;
    }
    None
}

/// The boxes directly inside `data`: (type, payload).
fn boxes(data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let rest = data.get(at..)?;
        if rest.len() < 8 {
            return None;
        }
        let size32 = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
        let (size, header) = match size32 {
            0 => (rest.len(), 8),
            1 => (
                usize::try_from(u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?)).ok()?,
                16,
            ),
            n => (n, 8),
        };
        if size < header || size > rest.len() {
            return None;
        }
        at += size;
        Some((&rest[4..8], &rest[header..size]))
    })
}

fn child<'a>(data: &'a [u8], kind: &[u8]) -> Option<&'a [u8]> {
    boxes(data).find(|(t, _)| *t == kind).map(|(_, body)| body)
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// A `soun` track's edit: its first real edit's media time (`None`: not audio, no list, or
/// the list starts at 0).
fn audio_edit(trak: &[u8]) -> Option<Edit> {
    let mdia = child(trak, b"mdia")?;
    if child(mdia, b"hdlr").and_then(|hdlr| hdlr.get(8..12)) != Some(b"soun") {
        return None;
    }
    let tkhd = child(trak, b"tkhd")?;
    let track = match tkhd.first()? {
        0 => u32_at(tkhd, 12)?,
        1 => u32_at(tkhd, 20)?,
        _ => return None,
    };
    let mdhd = child(mdia, b"mdhd")?;
    let timescale = match mdhd.first()? {
        0 => u32_at(mdhd, 12)?,
        1 => u32_at(mdhd, 20)?,
        _ => return None,
    };
    let elst = child(child(trak, b"edts")?, b"elst")?;
    let version = *elst.first()?;
    if version > 1 {
        return None;
    }
    let count = u32_at(elst, 4)? as usize;
    let entry = if version == 1 { 20 } else { 12 };
    // empty edits (media time -1) delay the track; the first real one says where it starts
    let mut media_times = (0..count.min(1024)).filter_map(|i| {
        let e = elst.get(8 + i * entry..8 + (i + 1) * entry)?;
        Some(if version == 1 {
            i64::from_be_bytes(e[8..16].try_into().ok()?)
        } else {
            i32::from_be_bytes(e[4..8].try_into().ok()?) as i64
        })
    });
    let start = media_times.find(|&t| t != -1)?;
    (start > 0 && timescale > 0).then_some(Edit {
        track,
        media_time: start as u64,
        timescale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    fn track(id: u32, handler: &[u8], media_times: &[i32]) -> Vec<u8> {
        let mut tkhd = vec![0u8; 12];
        tkhd.extend_from_slice(&id.to_be_bytes());
        tkhd.extend_from_slice(&[0u8; 68]);
        let mut hdlr = vec![0u8; 8];
        hdlr.extend_from_slice(handler);
        hdlr.extend_from_slice(&[0u8; 12]);
        let mut mdhd = vec![0u8; 12];
        mdhd.extend_from_slice(&44_100u32.to_be_bytes());
        mdhd.extend_from_slice(&[0u8; 8]);
        let mdia = [mp4_box(b"mdhd", &mdhd), mp4_box(b"hdlr", &hdlr)].concat();
        let mut elst = vec![0u8; 4];
        elst.extend_from_slice(&(media_times.len() as u32).to_be_bytes());
        for t in media_times {
            elst.extend_from_slice(&500u32.to_be_bytes());
            elst.extend_from_slice(&t.to_be_bytes());
            elst.extend_from_slice(&[0, 1, 0, 0]);
        }
        let edts = mp4_box(b"elst", &elst);
        mp4_box(
            b"trak",
            &[
                mp4_box(b"tkhd", &tkhd),
                mp4_box(b"edts", &edts),
                mp4_box(b"mdia", &mdia),
            ]
            .concat(),
        )
    }

    fn edits(moov: &[u8]) -> Vec<Edit> {
        boxes(moov)
            .filter(|(t, _)| *t == b"trak")
            .filter_map(|(_, trak)| audio_edit(trak))
            .collect()
    }

    #[test]
    fn the_audio_tracks_first_real_edit_gives_the_priming() {
        let moov = [
            track(1, b"vide", &[512]),
            track(2, b"soun", &[-1, 2112]),
            track(3, b"soun", &[1024]),
        ]
        .concat();
        let edit = |track, media_time| Edit {
            track,
            media_time,
            timescale: 44_100,
        };
        assert_eq!(edits(&moov), vec![edit(2, 2112), edit(3, 1024)]);
        assert_eq!(edits(&track(1, b"soun", &[0])), vec![]);
        // cut short anywhere: no edit, no panic
        let whole = track(1, b"soun", &[1024]);
        for n in 0..whole.len() {
            let _ = edits(&whole[..n]);
        }
    }
}
