//! The test fixtures bundled into the binary, one copy each: the sample `transcode` and `bench`
//! use without input, the segments `demo` pushes and the clean inputs of the fault soak.

/// 2 s of 1080p30 H.264 High (B-frames) + AAC, made by x264.
pub const SAMPLE: &[u8] = include_bytes!("../tests/fixtures/h264_1080p30_high_bframes_aac.ts");
/// The sample's name in output files and reports.
pub const SAMPLE_NAME: &str = "sample_1080p30";
/// Two consecutive 720p30 Main + AAC segments of one stream.
pub const STREAM_SEQ0: &[u8] = include_bytes!("../tests/fixtures/stream_seq0.ts");
pub const STREAM_SEQ1: &[u8] = include_bytes!("../tests/fixtures/stream_seq1.ts");
/// 360p25 Constrained Baseline, no audio.
pub const BASELINE_360P25: &[u8] = include_bytes!("../tests/fixtures/h264_360p25_baseline_noaudio.ts");

/// Segments named on the command line, read whole, each labelled with its path.
pub fn read_segments(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<(String, bytes::Bytes)>> {
    use anyhow::Context;
    paths
        .iter()
        .map(|p| {
            let data = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            Ok((p.display().to_string(), bytes::Bytes::from(data)))
        })
        .collect()
}
