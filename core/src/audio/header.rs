//! What a file's first bytes say before symphonia reads it: containers it has no reader for
//! (named in the refusal), and WAV headers it would misreport or overflow on.

use symphonia::core::io::MediaSource;

/// Refuse, with a message naming the cause, what symphonia 0.6.1 would misreport: containers
/// it has no reader for (named), WAV files with more channels than it positions (it says
/// "invalid channel count"), and WAVE_FORMAT_EXTENSIBLE channel masks naming fewer channels than the header
/// states, which it repairs by shifting in ones; that shift overflows when 32 or more are
/// missing or the mask's top bit is set (a panic where overflow checks are on, a made-up
/// layout elsewhere). The source is left at its start.
/// Returns whether the header's length is a placeholder (a WAV written to a pipe: sox states
/// 0x7ffff000 bytes, others 0xffffffff), which says nothing about the real length.
pub(crate) fn check_header(source: &mut dyn MediaSource) -> std::result::Result<bool, String> {
    use std::io::{Read, SeekFrom};
    if !source.is_seekable() {
        return Ok(false);
    }
    let mut head = Vec::with_capacity(4096);
    let read = Read::take(&mut *source, 4096).read_to_end(&mut head);
    source
        .seek(SeekFrom::Start(0))
        .and(read)
        .map_err(|e| format!("cannot read the file ({e})"))?;
    if let Some(format) = unsupported_container(&head) {
        return Err(format!(
            "{format} files are not supported; convert to WAV, FLAC or Ogg Vorbis"
        ));
    }
    // symphonia 0.6.1 positions at most 26 channels, 18 in a WAVE_FORMAT_EXTENSIBLE mask
    let extensible = wave_extensible_mask(&head).is_some();
    let limit = if extensible { 18 } else { 26 };
    if let Some(channels) = wave_channels(&head).filter(|&c| c > limit) {
        let kind = if extensible {
            "WAVE_FORMAT_EXTENSIBLE"
        } else {
            "WAV"
        };
        return Err(format!(
            "{channels} channels: {kind} files with more than {limit} channels are not supported"
        ));
    }
    if let Some((channels, mask)) = wave_extensible_mask(&head) {
        let missing = i64::from(channels) - i64::from(mask.count_ones());
        if missing > 0 && (missing >= 32 || mask & 0x8000_0000 != 0) {
            return Err(format!(
                "the WAVE channel mask {mask:#010x} cannot describe {channels} channels"
            ));
        }
    }
    let riff_size = head
        .get(4..8)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    Ok(head.starts_with(b"RIFF") && riff_size.is_some_and(|n| n >= 0x7fff_f000))
}

/// Containers the decoder has no reader for, told by their first bytes, so the error can
/// name them.
fn unsupported_container(head: &[u8]) -> Option<&'static str> {
    const W64_RIFF: [u8; 16] = [
        b'r', b'i', b'f', b'f', 0x2E, 0x91, 0xCF, 0x11, 0xA5, 0xD6, 0x28, 0xDB, 0x04, 0xC1, 0x00,
        0x00,
    ];
    // the ASF header object's GUID (WMA, WMV)
    const ASF: [u8; 16] = [
        0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11, 0xA6, 0xD9, 0x00, 0xAA, 0x00, 0x62, 0xCE,
        0x6C,
    ];
    match head {
        _ if head.starts_with(&ASF) => Some("Windows Media (WMA/ASF)"),
        [0x0B, 0x77, ..] => Some("Dolby Digital (AC-3)"),
        [b'R', b'F', b'6', b'4', ..] | [b'B', b'W', b'6', b'4', ..] => Some("RF64 (large WAV)"),
        [b'R', b'I', b'F', b'X', ..] => Some("big-endian WAV (RIFX)"),
        _ if head.starts_with(&W64_RIFF) => Some("Sony Wave64"),
        [b'.', b's', b'n', b'd', ..] => Some("Sun/NeXT AU"),
        [b'w', b'v', b'p', b'k', ..] => Some("WavPack"),
        [b'M', b'A', b'C', b' ', ..] => Some("Monkey's Audio"),
        _ => None,
    }
}

/// The channel count a RIFF/WAVE `fmt ` chunk states, when `head` holds one.
fn wave_channels(head: &[u8]) -> Option<u16> {
    wave_fmt(head).and_then(|fmt| Some(u16::from_le_bytes(fmt.get(2..4)?.try_into().ok()?)))
}

/// The body of a RIFF/WAVE header's `fmt ` chunk, when `head` (the file's first bytes) holds
/// one.
fn wave_fmt(head: &[u8]) -> Option<&[u8]> {
    let u32_at = |b: &[u8], i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
    if head.get(0..4)? != b"RIFF" || head.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut at = 12usize;
    while at < head.len()
        && let Some(id) = head.get(at..at + 4)
    {
        let size = u32_at(head, at + 4)? as usize;
        let body = at + 8;
        if id == b"fmt " {
            return head.get(body..);
        }
        // chunks are padded to an even size
        at = body.checked_add(size)?.checked_add(size & 1)?;
    }
    None
}

/// The channel count and channel mask of a RIFF/WAVE header's WAVE_FORMAT_EXTENSIBLE `fmt `
/// chunk, when `head` (the file's first bytes) holds one.
fn wave_extensible_mask(head: &[u8]) -> Option<(u16, u32)> {
    let u16_at = |b: &[u8], i: usize| Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?));
    let u32_at = |b: &[u8], i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
    let fmt = wave_fmt(head)?;
    if u16_at(fmt, 0)? != 0xFFFE {
        return None;
    }
    Some((u16_at(fmt, 2)?, u32_at(fmt, 20)?))
}
