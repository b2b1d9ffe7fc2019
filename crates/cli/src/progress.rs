//! What a long command tells the user on stderr while it works: the stages of an engine build with
//! their elapsed time, and notes (which backend `auto` chose and why).
//!
//! On a terminal the stages are one bar redrawn in place; anywhere else (a pipe, a log file, a
//! test) each finished stage is one plain line, `<tool>: [2/4] optimise: 0.012 s`, so logs stay
//! readable and nothing is redrawn.

use std::cell::RefCell;
use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How stages are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// A bar on the terminal.
    Bar,
    /// One line per finished stage.
    Lines,
    /// Stages are not shown (notes still are).
    Quiet,
}

struct Current {
    index: usize,
    name: String,
    started: Instant,
}

/// Stage and note reporter for one command. Methods take `&self` so it can be lent to the
/// functions doing the work.
pub struct Progress {
    tool: &'static str,
    style: Style,
    total: usize,
    started: Instant,
    bar: Option<ProgressBar>,
    current: RefCell<Option<Current>>,
    /// Finished stages and their times, for the bar's closing line.
    finished: RefCell<Vec<(String, Duration)>>,
    /// Every line written in `Lines` style and every note, for tests and summaries.
    written: RefCell<Vec<String>>,
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise. `total` is the number of stages.
    pub fn on_stderr(tool: &'static str, total: usize) -> Progress {
        let style = if std::io::stderr().is_terminal() {
            Style::Bar
        } else {
            Style::Lines
        };
        Progress::with_style(tool, total, style)
    }

    pub fn with_style(tool: &'static str, total: usize, style: Style) -> Progress {
        let bar = (style == Style::Bar).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            let template =
                format!("{tool}: [{{pos}}/{{len}}] {{bar:24.cyan/blue}} {{msg}} ({{elapsed}})");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Progress {
            tool,
            style,
            total,
            started: Instant::now(),
            bar,
            current: RefCell::new(None),
            finished: RefCell::new(Vec::new()),
            written: RefCell::new(Vec::new()),
        }
    }

    pub fn style(&self) -> Style {
        self.style
    }

    /// Ends the running stage (if any) and starts `name`.
    pub fn stage(&self, name: &str) {
        let index = self.end_stage().map_or(1, |i| i + 1);
        if let Some(bar) = &self.bar {
            bar.set_message(name.to_owned());
        }
        *self.current.borrow_mut() = Some(Current {
            index,
            name: name.to_owned(),
            started: Instant::now(),
        });
    }

    /// Ends the last stage; the bar gives way to one summary line.
    pub fn finish(&self) {
        self.end_stage();
        if let Some(bar) = &self.bar {
            if bar.is_finished() {
                return;
            }
            bar.finish_and_clear();
            let stages: Vec<String> = self
                .finished
                .borrow()
                .iter()
                .map(|(name, time)| format!("{name} {}", seconds(*time)))
                .collect();
            self.emit(format!(
                "{}: done in {} ({})",
                self.tool,
                seconds(self.started.elapsed()),
                stages.join(", ")
            ));
        }
    }

    /// Ends the running stage; returns its number.
    fn end_stage(&self) -> Option<usize> {
        let ended = self.current.borrow_mut().take()?;
        let time = ended.started.elapsed();
        self.finished.borrow_mut().push((ended.name.clone(), time));
        if let Some(bar) = &self.bar {
            bar.set_position(ended.index as u64);
        }
        if self.style == Style::Lines {
            self.emit(format!(
                "{}: [{}/{}] {}: {}",
                self.tool,
                ended.index,
                self.total,
                ended.name,
                seconds(time)
            ));
        }
        Some(ended.index)
    }

    /// `<tool>: note: <text>` on stderr, whatever the style (the bar steps aside for it).
    pub fn note(&self, text: &str) {
        self.emit(format!("{}: note: {text}", self.tool));
    }

    /// `<tool>: warning: <text>` on stderr.
    pub fn warn(&self, text: &str) {
        self.emit(format!("{}: warning: {text}", self.tool));
    }

    fn emit(&self, line: String) {
        let print = || {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        };
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
        self.written.borrow_mut().push(line);
    }

    /// The lines written so far (stage lines in `Lines` style, notes and warnings in any).
    pub fn lines(&self) -> Vec<String> {
        self.written.borrow().clone()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // An error mid-build: the bar goes, the error line follows on a clean line.
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_style_writes_one_line_per_finished_stage() {
        let progress = Progress::with_style("tool", 3, Style::Lines);
        progress.stage("read");
        progress.note("auto: something");
        progress.stage("optimise");
        progress.stage("write");
        progress.finish();
        let lines = progress.lines();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[0].starts_with("tool: note: auto: something"));
        assert!(lines[1].starts_with("tool: [1/3] read: "), "{lines:?}");
        assert!(lines[2].starts_with("tool: [2/3] optimise: "), "{lines:?}");
        assert!(lines[3].starts_with("tool: [3/3] write: ") && lines[3].ends_with(" s"));
        // Finishing twice writes nothing more.
        progress.finish();
        assert_eq!(progress.lines().len(), 4);
    }

    #[test]
    fn quiet_style_keeps_notes_only() {
        let progress = Progress::with_style("tool", 2, Style::Quiet);
        progress.stage("read");
        progress.warn("careful");
        progress.finish();
        assert_eq!(progress.lines(), ["tool: warning: careful"]);
    }
}
