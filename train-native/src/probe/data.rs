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
        let Some((path, tags)) = line.rsplit_once(',') else {
            bail!(
                "{}:{}: expected `path,tag1;tag2;...`, found `{line}`",
                csv.display(),
                n + 1
            );
        };
        if n == 0 && path.trim() == "path" {
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

/// The tag vocabulary: every tag of the training rows, sorted.
pub fn vocabulary(rows: &[Row]) -> Vec<String> {
    let set: BTreeSet<&String> = rows.iter().flat_map(|r| r.tags.iter()).collect();
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
}
