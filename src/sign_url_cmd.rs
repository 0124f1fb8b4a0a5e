//! `zerohop sign-url`: a playback URL signed with the node's `--playback-key-file`, for players
//! that cannot send a token (see `zerohop_control::signed_url`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use zerohop_control::signed_url::{self, PlaybackKey};

#[derive(clap::Args, Debug)]
pub struct SignUrlArgs {
    /// The node's --playback-key-file.
    #[arg(long, value_name = "FILE")]
    pub playback_key_file: PathBuf,
    /// How long the URL admits playback, from now.
    #[arg(long, default_value = "3600", value_name = "SECONDS")]
    pub valid_for: u64,
    /// A playback URL of the stream: http(s)://HOST:PORT/stream/STREAM.m3u8, or any URL under
    /// /stream/STREAM/. The signature admits every playlist and segment of that stream.
    pub url: String,
}

/// Prints `url` with the signature's query.
pub fn sign_url(a: SignUrlArgs) -> Result<ExitCode> {
    let key = read_key(&a.playback_key_file)?;
    let Some(stream) = signed_url::stream_of_url(&a.url) else {
        bail!("{:?} is no playback URL: write http(s)://HOST:PORT/stream/STREAM.m3u8", a.url);
    };
    let exp = (SystemTime::now() + Duration::from_secs(a.valid_for))
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let sep = if a.url.contains('?') { '&' } else { '?' };
    println!("{}{sep}{}", a.url, key.query(&stream, exp));
    Ok(ExitCode::SUCCESS)
}

/// A playback key file (the node's and `sign-url`'s).
pub fn read_key(path: &std::path::Path) -> Result<PlaybackKey> {
    let bytes = std::fs::read(path).with_context(|| format!("reading the playback key {}", path.display()))?;
    PlaybackKey::from_file_contents(&bytes).with_context(|| format!("in {}", path.display()))
}
