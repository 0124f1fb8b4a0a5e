//! A progress bar for long bench runs (soaks, capacity searches): redrawn in place on a
//! terminal, one plain line per 10 % otherwise, so CI logs stay readable.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub struct Progress {
    label: String,
    total: u64,
    tty: bool,
    started: Instant,
    /// Last redraw (terminal) and last decile printed (log).
    state: Mutex<(Option<Instant>, u64)>,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: u64) -> Progress {
        Progress {
            label: label.into(),
            total: total.max(1),
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            state: Mutex::new((None, 0)),
        }
    }

    /// `done` of the total are finished; `detail` is appended (counts, RSS, ...).
    pub fn update(&self, done: u64, detail: &str) {
        let mut st = self.state.lock();
        let line = self.line(done, detail);
        if self.tty {
            let now = Instant::now();
            if st.0.is_some_and(|t| now - t < Duration::from_millis(250)) && done < self.total {
                return;
            }
            st.0 = Some(now);
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K{line}");
            let _ = e.flush();
        } else {
            let decile = done * 10 / self.total;
            if decile > st.1 {
                st.1 = decile;
                eprintln!("{line}");
            }
        }
    }

    /// Ends the bar's line on a terminal.
    pub fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }

    fn line(&self, done: u64, detail: &str) -> String {
        const WIDTH: u64 = 24;
        let filled = (done.min(self.total) * WIDTH / self.total) as usize;
        let elapsed = self.started.elapsed();
        let left = if done > 0 && done < self.total {
            let per = elapsed.as_secs_f64() / done as f64;
            format!(", ~{} left", clock(Duration::from_secs_f64(per * (self.total - done) as f64)))
        } else {
            String::new()
        };
        format!(
            "{} [{}{}] {done}/{} {:>3}% {}{left}  {detail}",
            self.label,
            "#".repeat(filled),
            ".".repeat(WIDTH as usize - filled),
            self.total,
            done * 100 / self.total,
            clock(elapsed),
        )
    }
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_the_fraction_and_the_bar() {
        let p = Progress::new("soak", 200);
        let l = p.line(50, "ok 50");
        assert!(l.starts_with("soak [######..................] 50/200  25% 00:00"), "{l}");
        assert!(l.ends_with("ok 50"));
        assert!(p.line(200, "").contains("[########################] 200/200 100%"));
        assert!(Progress::new("x", 0).line(0, "").contains("0/1"), "a zero total does not divide by zero");
    }
}
