//! Progress on a terminal: one line at the bottom of the screen (a bar, position, rate, time
//! left, invoices sent and plans needing attention so far), with log lines printed above it
//! rather than through it. Off a terminal there is no bar, and log lines go to stderr as they
//! are.
//!
//! The jobs report through [`crate::jobs::Progress`]; this is its terminal implementation, and
//! [`LogWriter`] is the writer the binary gives the tracing subscriber.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::jobs::Progress;

/// The bar on screen, if any: the log writer prints above it.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Whether stderr is a terminal (where the bar is drawn and INFO lines are held back).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// A progress line of `unit`s ("passes", "plans", "customers"), drawn only on a terminal.
pub struct TerminalProgress {
    bar: Option<ProgressBar>,
}

impl TerminalProgress {
    pub fn start(unit: &str) -> TerminalProgress {
        if !stderr_is_terminal() {
            return TerminalProgress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let template =
            format!("{{bar:30}} {{pos}}/{{len}} {unit} · {{per_sec}} · {{eta}} left · {{msg}}");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("█▉▊▋▌▍▎▏ "));
        }
        bar.set_message("0 invoices sent, 0 plans need attention");
        if let Ok(mut active) = ACTIVE.lock() {
            *active = Some(bar.clone());
        }
        TerminalProgress { bar: Some(bar) }
    }

    /// Clears the line, so that the summary printed next is the last thing on the screen.
    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if let Ok(mut active) = ACTIVE.lock() {
            *active = None;
        }
    }
}

impl Progress for TerminalProgress {
    fn total(&self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    fn done(&self, done: u64, invoices: u64, attention: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(format!(
                "{invoices} invoices sent, {attention} plans need attention"
            ));
        }
    }
}

impl Drop for TerminalProgress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            if let Ok(mut active) = ACTIVE.lock() {
                *active = None;
            }
        }
    }
}

/// The tracing subscriber's writer: stderr, and while a bar is on screen, above the bar.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LineBuffer;

    fn make_writer(&'a self) -> LineBuffer {
        LineBuffer(Vec::with_capacity(256))
    }
}

/// One log event, written out at once when the subscriber is done with it.
pub struct LineBuffer(Vec<u8>);

impl Write for LineBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.0);
        let write = || {
            let _ = std::io::stderr().lock().write_all(&bytes);
        };
        let bar = ACTIVE.lock().ok().and_then(|a| a.clone());
        match bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}
