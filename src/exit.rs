//! Exit statuses, the same for every command: one list, from which `--help` says them (doc/cli.md,
//! Commands, repeats it).

use std::process::ExitCode;

/// Why a command ended other than ok (0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// A runtime error (the message says what).
    Error = 1,
    /// A usage error: a flag or argument clap cannot take (clap's own status), or a setting from
    /// the environment or the config file that cannot be taken.
    Usage = 2,
    /// No usable GPU (`gpu-info`, `hw-ci`): distinct from failures.
    NoGpu = 3,
    /// The input cannot be transcoded (`probe`).
    NotTranscodable = 4,
    /// Some segments failed (`transcode`, `push`, `demo`); the others were written.
    SegmentsFailed = 5,
}

impl Exit {
    pub const ALL: [Exit; 5] = [Exit::Error, Exit::Usage, Exit::NoGpu, Exit::NotTranscodable, Exit::SegmentsFailed];

    /// What it means, as `--help` says it.
    fn meaning(self) -> &'static str {
        match self {
            Exit::Error => "runtime error",
            Exit::Usage => "usage error (a flag, a ZEROHOP_* variable or a config file setting)",
            Exit::NoGpu => "no usable GPU (gpu-info, hw-ci)",
            Exit::NotTranscodable => "the input cannot be transcoded (probe)",
            Exit::SegmentsFailed => "some segments failed (transcode, push, demo)",
        }
    }

    /// `Exit status: 0 ok; 1 runtime error; ...`, for `--help`.
    pub fn statuses() -> String {
        let each: Vec<String> = Exit::ALL.iter().map(|e| format!("{} {}", *e as u8, e.meaning())).collect();
        format!("Exit status: 0 ok; {}.", each.join("; "))
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_exit_status_once_in_order() {
        let text = Exit::statuses();
        assert!(text.starts_with("Exit status: 0 ok; 1 runtime error; 2 usage error"), "{text}");
        for (i, e) in Exit::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i + 1, "{e:?}");
            assert_eq!(text.matches(&format!("; {} ", *e as u8)).count(), 1, "{e:?} in {text}");
        }
    }
}
