//! Which Python callables a pickle names. Every call a pickle can make goes through a callable
//! that a `GLOBAL`, `INST` or `STACK_GLOBAL` opcode brings in, wherever the call sits (inside
//! another object's arguments or state too), so listing those opcodes' names is enough to
//! refuse a hostile file. The pickle is only read, opcode by opcode, never run.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Longest string kept while scanning (a callable's module or name is short).
const MAX_NAME: u64 = 4096;

/// Every callable the pickles of a PyTorch file (`torch.save`'s zip layout, or the legacy
/// layout of concatenated pickles, or one plain pickle) name, in order of appearance.
pub(crate) fn file_globals(path: &Path) -> Result<Vec<String>, String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut head = [0u8; 512];
    let n = read_up_to(&mut file, &mut head).map_err(|e| e.to_string())?;
    if head[..n].starts_with(b"PK\x03\x04") {
        return zip_globals(path);
    }
    if n >= 262 && &head[257..262] == b"ustar" {
        return Err(
            "a tar-layout checkpoint (PyTorch before 0.4) cannot be checked; load it and save it again with torch.save".into(),
        );
    }
    let mut reader = BufReader::new(std::fs::File::open(path).map_err(|e| e.to_string())?);
    // legacy layout: magic number, protocol, system info, the object, the storage keys; the
    // storages' raw bytes follow the fifth pickle
    let mut globals = Vec::new();
    for _ in 0..5 {
        if reader.fill_buf().map_err(|e| e.to_string())?.is_empty() {
            break;
        }
        scan(&mut reader, &mut globals)?;
    }
    Ok(globals)
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The callables of `*/data.pkl` in a zip checkpoint.
fn zip_globals(path: &Path) -> Result<Vec<String>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("not a readable zip: {e}"))?;
    let name = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .find(|n| n == "data.pkl" || n.ends_with("/data.pkl"))
        .ok_or("the zip holds no data.pkl")?;
    let entry = zip.by_name(&name).map_err(|e| e.to_string())?;
    let mut globals = Vec::new();
    scan(&mut BufReader::new(entry), &mut globals)?;
    Ok(globals)
}

/// Scan one pickle (up to its STOP), adding the callables it names to `globals`.
fn scan(r: &mut impl BufRead, globals: &mut Vec<String>) -> Result<(), String> {
    // the values on the stack as far as names go: a string, or anything else
    let mut stack: Vec<Option<String>> = Vec::new();
    let mut memo: std::collections::HashMap<u64, Option<String>> = Default::default();
    loop {
        let op = byte(r)?;
        match op {
            b'.' => return Ok(()),
            b'c' | b'i' => {
                let module = line(r)?;
                let name = line(r)?;
                globals.push(format!("{module}.{name}"));
                stack.push(None);
            }
            0x93 => {
                let name = stack.pop().flatten();
                let module = stack.pop().flatten();
                match (module, name) {
                    (Some(m), Some(n)) => globals.push(format!("{m}.{n}")),
                    _ => {
                        return Err(
                            "a callable whose name is not a plain string (STACK_GLOBAL)".into()
                        );
                    }
                }
                stack.push(None);
            }
            0x82..=0x84 => return Err("a callable from the extension registry (EXT)".into()),
            // strings
            0x8c | b'U' => {
                let n = u64::from(byte(r)?);
                stack.push(text(r, n)?);
            }
            b'X' | b'T' => {
                let n = u64::from(u32::from_le_bytes(array(r)?));
                stack.push(text(r, n)?);
            }
            0x8d => {
                let n = u64::from_le_bytes(array(r)?);
                stack.push(text(r, n)?);
            }
            b'V' | b'S' => {
                let s = line(r)?;
                stack.push(Some(s.trim_matches(|c| c == '\'' || c == '"').to_string()));
            }
            // memo
            b'h' => {
                let i = u64::from(byte(r)?);
                stack.push(memo.get(&i).cloned().flatten());
            }
            b'j' => {
                let i = u64::from(u32::from_le_bytes(array(r)?));
                stack.push(memo.get(&i).cloned().flatten());
            }
            b'g' => {
                let i = line(r)?.parse::<u64>().map_err(|_| "a bad GET index")?;
                stack.push(memo.get(&i).cloned().flatten());
            }
            b'q' => {
                let i = u64::from(byte(r)?);
                memo.insert(i, stack.last().cloned().flatten());
            }
            b'r' => {
                let i = u64::from(u32::from_le_bytes(array(r)?));
                memo.insert(i, stack.last().cloned().flatten());
            }
            b'p' => {
                let i = line(r)?.parse::<u64>().map_err(|_| "a bad PUT index")?;
                memo.insert(i, stack.last().cloned().flatten());
            }
            0x94 => {
                let i = memo.len() as u64;
                memo.insert(i, stack.last().cloned().flatten());
            }
            // framing: no value
            0x80 => skip(r, 1)?,
            0x95 => skip(r, 8)?,
            // other values
            b'K' => push_after(r, &mut stack, 1)?,
            b'M' => push_after(r, &mut stack, 2)?,
            b'J' => push_after(r, &mut stack, 4)?,
            b'G' => push_after(r, &mut stack, 8)?,
            b'F' | b'I' | b'L' | b'P' => {
                line(r)?;
                stack.push(None);
            }
            0x8a | b'C' => {
                let n = u64::from(byte(r)?);
                push_after(r, &mut stack, n)?;
            }
            0x8b | b'B' => {
                let n = u64::from(u32::from_le_bytes(array(r)?));
                push_after(r, &mut stack, n)?;
            }
            0x8e | 0x96 => {
                let n = u64::from_le_bytes(array(r)?);
                push_after(r, &mut stack, n)?;
            }
            // no argument
            b'('
            | b'0'
            | b'1'
            | b'2'
            | b'N'
            | b'R'
            | b'a'
            | b'b'
            | b'd'
            | b'}'
            | b'e'
            | b'l'
            | b']'
            | b'o'
            | b's'
            | b't'
            | b')'
            | b'u'
            | b'Q'
            | 0x81
            | 0x85..=0x89
            | 0x8f..=0x92
            | 0x97
            | 0x98 => stack.push(None),
            other => return Err(format!("unknown pickle opcode 0x{other:02x}")),
        }
        // (the stack is a record of names, not a faithful stack: bound it)
        if stack.len() > 1 << 16 {
            stack.drain(..1 << 15);
        }
    }
}

fn byte(r: &mut impl BufRead) -> Result<u8, String> {
    Ok(array::<1>(r)?[0])
}

fn array<const N: usize>(r: &mut impl BufRead) -> Result<[u8; N], String> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)
        .map_err(|_| "the pickle ends early".to_string())?;
    Ok(b)
}

fn line(r: &mut impl BufRead) -> Result<String, String> {
    let mut buf = Vec::new();
    r.take(MAX_NAME)
        .read_until(b'\n', &mut buf)
        .map_err(|e| e.to_string())?;
    if buf.pop() != Some(b'\n') {
        return Err("the pickle ends early or holds an overlong line".into());
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// A string argument of `n` bytes: kept when short, skipped otherwise.
fn text(r: &mut impl BufRead, n: u64) -> Result<Option<String>, String> {
    if n > MAX_NAME {
        skip(r, n)?;
        return Ok(None);
    }
    let mut buf = vec![0u8; n as usize];
    r.read_exact(&mut buf)
        .map_err(|_| "the pickle ends early".to_string())?;
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn skip(r: &mut impl BufRead, n: u64) -> Result<(), String> {
    let copied = std::io::copy(&mut r.take(n), &mut std::io::sink()).map_err(|e| e.to_string())?;
    if copied != n {
        return Err("the pickle ends early".into());
    }
    Ok(())
}

fn push_after(r: &mut impl BufRead, stack: &mut Vec<Option<String>>, n: u64) -> Result<(), String> {
    skip(r, n)?;
    stack.push(None);
    Ok(())
}
