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
    #[arg(long, default_value = "3600", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
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
    let exp = SystemTime::now()
        .checked_add(Duration::from_secs(a.valid_for))
        .with_context(|| format!("--valid-for {} reaches past what the clock holds", a.valid_for))?
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    // The query goes before any #fragment (which no request carries).
    let (url, fragment) = a.url.split_once('#').map_or((a.url.as_str(), None), |(u, f)| (u, Some(f)));
    let sep = if url.contains('?') { '&' } else { '?' };
    let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
    println!("{url}{sep}{}{fragment}", key.query(&stream, exp));
    Ok(ExitCode::SUCCESS)
}

/// A playback key file (the node's and `sign-url`'s).
pub fn read_key(path: &std::path::Path) -> Result<PlaybackKey> {
    let bytes = std::fs::read(path).with_context(|| format!("reading the playback key {}", path.display()))?;
    PlaybackKey::from_file_contents(&bytes).with_context(|| format!("in {}", path.display()))
}
