//! A one-line progress bar on stderr: redrawn in place on a terminal,
//! a line every few seconds otherwise (CI logs).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    label: String,
    total: usize,
    done: usize,
    last: Option<Instant>,
    tty: bool,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: usize) -> Progress {
        Progress {
            label: label.into(),
            total,
            done: 0,
            last: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn inc(&mut self, n: usize) {
        self.done += n;
        let every = if self.tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(2)
        };
        if self.last.is_none_or(|t| t.elapsed() >= every) || self.done >= self.total {
            self.draw();
        }
    }

    fn draw(&mut self) {
        self.last = Some(Instant::now());
        let line = bar(&self.label, self.done, self.total);
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r{line}")
        } else {
            writeln!(err, "{line}")
        };
    }

    pub fn finish(mut self) {
        self.draw();
        if self.tty {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// `label [#####.....] done/total`
fn bar(label: &str, done: usize, total: usize) -> String {
    const WIDTH: usize = 30;
    // Nothing to do counts as done.
    let filled = (done.min(total) * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH);
    format!(
        "{label} [{}{}] {done}/{total}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn bar_fills_with_progress() {
        assert_eq!(
            super::bar("keys", 0, 10),
            format!("keys [{}] 0/10", ".".repeat(30))
        );
        assert_eq!(
            super::bar("keys", 5, 10),
            format!("keys [{}{}] 5/10", "#".repeat(15), ".".repeat(15))
        );
        assert_eq!(
            super::bar("keys", 0, 0),
            format!("keys [{}] 0/0", "#".repeat(30))
        );
    }
}
