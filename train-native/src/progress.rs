//! Progress on stderr for long work: a bar per file, advanced as frames are written. Off when
//! stderr is not a terminal or with `--quiet`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use mert_core::embed::FrameSink;

/// A bar counting `unit`, or nothing when progress is off.
fn counting(quiet: bool, unit: &str) -> Option<ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(0);
    let template = format!("{{msg}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{eta}})");
    let style = ProgressStyle::with_template(&template)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    Some(bar)
}

/// A bar for one file, or nothing when progress is off.
pub fn bar(quiet: bool, label: &str) -> Option<ProgressBar> {
    let bar = counting(quiet, "frames")?;
    bar.set_message(label.to_string());
    Some(bar)
}

/// A bar over the files of a run with several inputs, or nothing when progress is off.
pub fn files_bar(quiet: bool, files: usize) -> Option<ProgressBar> {
    if files < 2 {
        return None;
    }
    let bar = counting(quiet, "files")?;
    bar.set_length(files as u64);
    Some(bar)
}

/// A spinner naming the stage a one-file job is in (for work with no frame count to show),
/// or nothing when progress is off.
pub fn stages(quiet: bool, label: &str) -> Option<ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    let style =
        ProgressStyle::with_template(&format!("{{spinner}} {label}: {{msg}} ({{elapsed}})"))
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(bar)
}

/// A bar over a training run's steps, or nothing when progress is off.
pub fn steps_bar(quiet: bool) -> Option<ProgressBar> {
    counting(quiet, "steps")
}

/// Wraps a sink and advances the bar by the frames written.
pub struct WithProgress<'a> {
    pub inner: &'a mut dyn FrameSink,
    pub bar: Option<ProgressBar>,
}

impl FrameSink for WithProgress<'_> {
    fn begin(&mut self, layers: usize, frames: usize, dim: usize) -> mert_core::Result<()> {
        if let Some(b) = &self.bar {
            b.set_length(frames as u64);
        }
        self.inner.begin(layers, frames, dim)
    }

    fn write(&mut self, dest: usize, n: usize, data: &[f32]) -> mert_core::Result<()> {
        self.inner.write(dest, n, data)?;
        if let Some(b) = &self.bar {
            b.inc(n as u64);
        }
        Ok(())
    }
}

impl Drop for WithProgress<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
