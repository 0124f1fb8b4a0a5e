//! The ladder on the command line: `--profiles` (presets or JSON), `--profiles-file`, and
//! `zerohop presets`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use zerohop_engine::{Ladder, Profile};

/// `--profiles` (comma-separated preset names, or JSON), else `--profiles-file` (JSON), else
/// `default`.
pub fn read_ladder(
    profiles: Option<&str>,
    profiles_file: Option<&Path>,
    default: impl FnOnce() -> Result<Ladder>,
) -> Result<Ladder> {
    match (profiles, profiles_file) {
        (Some(p), _) => Ok(p.parse()?),
        (None, Some(f)) => {
            Ok(Ladder::from_json(&std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?)?)
        }
        (None, None) => default(),
    }
}

/// `zerohop presets`: the profile presets as a table.
pub fn presets() -> Result<ExitCode> {
    println!("{:<16} {:>9} {:>8} {:>5}", "name", "size", "kbps", "fps");
    for p in Profile::presets() {
        println!("{:<16} {:>9} {:>8} {:>5}", p.name, format!("{}x{}", p.width, p.height), p.bitrate / 1000, p.fps);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_win_over_the_file_and_the_default_comes_last() {
        let default = || Ok(Ladder::default_ladder());
        let l = read_ladder(Some("P240p30fps16x9"), Some(Path::new("/nonexistent")), default).expect("presets");
        assert_eq!(l.len(), 1);
        assert_eq!(read_ladder(None, None, default).expect("default").len(), Ladder::default_ladder().len());
        let e = read_ladder(None, Some(Path::new("/nonexistent.json")), default).expect_err("no file");
        assert!(format!("{e:#}").contains("/nonexistent.json"), "{e:#}");
    }
}
