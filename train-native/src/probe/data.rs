//! Probe datasets: CSV rows `path,tag1;tag2;...` (paths relative to the CSV's folder; blank
//! lines and `#` comments skipped; an optional `path,tags` header).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone)]
pub struct Row {
    pub path: PathBuf,
    pub tags: Vec<String>,
}

pub fn read_csv(csv: &Path) -> Result<Vec<Row>> {
    let text = std::fs::read_to_string(csv).with_context(|| format!("{}", csv.display()))?;
    let base = csv.parent().unwrap_or(Path::new("."));
    // a byte-order mark (spreadsheet exports) is not part of the first path
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((path, tags)) = split_row(line) else {
            bail!(
                "{}:{}: expected `path,tag1;tag2;...`, found `{line}`",
                csv.display(),
                n + 1
            );
        };
        // a header row (`path,tags`, `file,labels`, ...)
        let header = |field: &str, names: &[&str]| {
            names.iter().any(|h| field.trim().eq_ignore_ascii_case(h))
        };
        if n == 0
            && header(&path, &["path", "file", "filename", "audio"])
            && header(&tags, &["tags", "tag", "labels", "label"])
        {
            continue;
        }
        let path = PathBuf::from(path.trim());
        // Relative paths: from the CSV's folder (the usual layout), else the working folder.
        let path = if path.is_relative() && (base.join(&path).exists() || !path.exists()) {
            base.join(path)
        } else {
            path
        };
        let tags = tags
            .split(';')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect();
        rows.push(Row { path, tags });
    }
    if rows.is_empty() {
        bail!("{}: no rows", csv.display());
    }
    Ok(rows)
}

/// A row's path and tag fields. A path in double quotes may hold commas (`""` is a quote);
/// otherwise the path runs to the last comma, so unquoted paths may hold commas too. Empty
/// trailing fields (`a.wav,piano,`) are ignored; the tag field may be quoted.
fn split_row(line: &str) -> Option<(String, String)> {
    let unquote = |f: &str| {
        let f = f.trim();
        match f.strip_prefix('"').and_then(|f| f.strip_suffix('"')) {
            Some(inner) => inner.replace("\"\"", "\""),
            None => f.to_string(),
        }
    };
    if let Some(rest) = line.strip_prefix('"') {
        // the closing quote is the first one not doubled
        let mut path = String::new();
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if chars.peek().is_some_and(|&(_, d)| d == '"') {
                    chars.next();
                    path.push('"');
                    continue;
                }
                let tags = rest[i + 1..].trim_start().strip_prefix(',')?;
                return Some((path, unquote(tags.trim_end_matches(','))));
            }
            path.push(c);
        }
        return None;
    }
    let trimmed = line.trim_end_matches([',', ' ', '\t']);
    match trimmed.rsplit_once(',') {
        Some((path, tags)) => Some((path.to_string(), unquote(tags))),
        // `a.wav,` (no tags): its only comma was trailing
        None if line.contains(',') => Some((trimmed.to_string(), String::new())),
        None => None,
    }
}

/// The tag vocabulary: every tag of the training rows, sorted.
pub fn vocabulary(rows: &[Row]) -> Vec<String> {
    let set: BTreeSet<&String> = rows.iter().flat_map(|r| r.tags.iter()).collect();
    set.into_iter().cloned().collect()
}

/// Tags of `rows` that the vocabulary lacks (seen only outside the training rows), sorted:
/// the head cannot learn them, so their labels are ignored.
pub fn unseen_tags(rows: &[Row], tags: &[String]) -> Vec<String> {
    let set: BTreeSet<&String> = rows
        .iter()
        .flat_map(|r| r.tags.iter())
        .filter(|t| !tags.contains(t))
        .collect();
    set.into_iter().cloned().collect()
}

/// `[rows, tags]` 0/1 targets.
pub fn targets(rows: &[Row], tags: &[String]) -> Vec<f32> {
    let mut y = vec![0.0; rows.len() * tags.len()];
    for (i, r) in rows.iter().enumerate() {
        for t in &r.tags {
            if let Some(j) = tags.iter().position(|x| x == t) {
                y[i * tags.len() + j] = 1.0;
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_bom_header_and_comments() {
        let dir = std::env::temp_dir().join(format!("mert-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("t.csv");
        std::fs::write(
            &csv,
            "\u{feff}path,tags\n# note\na.wav,piano; fast\n/abs/b.wav,\n",
        )
        .unwrap();
        let rows = read_csv(&csv).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].path, dir.join("a.wav"));
        assert_eq!(rows[0].tags, ["piano", "fast"]);
        assert_eq!(rows[1].path, PathBuf::from("/abs/b.wav"));
        assert!(rows[1].tags.is_empty());
        std::fs::write(&csv, "a.wav piano\n").unwrap();
        let e = read_csv(&csv).unwrap_err().to_string();
        assert!(e.contains("t.csv:1"), "{e}");
    }

    #[test]
    fn tags_outside_training_rows() {
        let row = |tags: &[&str]| Row {
            path: PathBuf::from("a.wav"),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        };
        let vocab = vocabulary(&[row(&["piano", "drums"]), row(&["piano"])]);
        assert_eq!(vocab, ["drums", "piano"]);
        let valid = [row(&["piano", "harp"]), row(&["zither", "harp"])];
        assert_eq!(unseen_tags(&valid, &vocab), ["harp", "zither"]);
        assert!(unseen_tags(&[row(&["drums"])], &vocab).is_empty());
    }

    #[test]
    fn csv_quotes_trailing_commas_and_other_headers() {
        for (line, path, tags) in [
            ("a.wav,piano;drums,", "a.wav", "piano;drums"),
            ("\"a,b.wav\",piano", "a,b.wav", "piano"),
            (
                "\"say \"\"hi\"\".wav\",\"piano;drums\"",
                "say \"hi\".wav",
                "piano;drums",
            ),
            ("x,y.wav,piano", "x,y.wav", "piano"),
            ("b.wav,", "b.wav", ""),
        ] {
            assert_eq!(
                split_row(line),
                Some((path.to_string(), tags.to_string())),
                "{line}"
            );
        }
        assert_eq!(split_row("\"open.wav,piano"), None);
        let dir = std::env::temp_dir().join(format!("mert-csv2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("h.csv");
        std::fs::write(&csv, "File,Labels\na.wav,piano\n").unwrap();
        assert_eq!(read_csv(&csv).unwrap().len(), 1);
    }
}
