//! What the engine sees in a segment: streams, codec, size, frame rate, pictures, and whether
//! it can transcode it (and why not).

use crate::codec::H264Decoder;
use crate::error::TranscodeError;
use crate::frame::Frame;
use crate::h264::SpsInfo;
use crate::intake::{Intake, IntakeEvent};
use crate::stats::SegmentReport;
use crate::ts::{DemuxEvent, DemuxStats, Demuxer, Pes, ProgramInfo, stream_type};

/// One stream of the probed program.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StreamReport {
    pub pid: u16,
    pub stream_type: u8,
    pub codec: &'static str,
    pub pes_packets: u64,
    pub first_pts: Option<u64>,
}

/// The result of [`probe`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProbeReport {
    pub program: Option<ProgramInfo>,
    pub streams: Vec<StreamReport>,
    pub sps: Option<SpsInfo>,
    pub access_units: u64,
    pub idr_frames: u64,
    pub frames_decoded: u64,
    pub demux: DemuxStats,
    /// `Ok` when the engine can transcode the input, else the reason it cannot.
    pub verdict: Result<(), TranscodeError>,
}

/// Demuxes every PES of a whole segment in memory.
pub fn demux_all(data: &[u8]) -> (Option<ProgramInfo>, Vec<Pes>, DemuxStats, Result<(), TranscodeError>) {
    let mut d = Demuxer::new();
    d.push(data);
    let fin = d.finish().map_err(TranscodeError::from);
    let mut program = None;
    let mut pes = Vec::new();
    while let Some(ev) = d.poll() {
        match ev {
            DemuxEvent::Program(p) => program = Some((*p).clone()),
            DemuxEvent::Pes(p) => pes.push(p),
        }
    }
    (program, pes, d.stats().clone(), fin)
}

/// Runs a whole segment through the [`Intake`] and the CPU decoder: every picture (display
/// order, PTS on the extended timeline) and the intake, finished (its verdict and report).
fn decode_all(data: &[u8]) -> (Vec<Frame>, Intake, Result<SegmentReport, TranscodeError>) {
    let mut intake = Intake::new();
    intake.push(data);
    let mut frames = Vec::new();
    let mut decoder = None;
    let mut ended = false;
    loop {
        let Some(ev) = intake.poll() else {
            if ended {
                break;
            }
            intake.end_input();
            ended = true;
            continue;
        };
        let IntakeEvent::Video(unit) = ev else { continue };
        let dec = match decoder.as_mut() {
            Some(d) => d,
            None => match H264Decoder::new() {
                Ok(d) => decoder.insert(d),
                Err(e) => {
                    intake.fail(e.into());
                    break;
                }
            },
        };
        if let Err(e) = dec.decode_releasing(&unit.data, unit.pts, unit.releases, &mut |f| frames.push(f)) {
            intake.decode_error(e);
        }
    }
    if intake.error().is_none()
        && let Some(dec) = decoder.as_mut()
        && let Err(e) = dec.flush(&mut |f| frames.push(f))
    {
        intake.decode_error(e);
    }
    for f in &frames {
        intake.picture(f.pts, f.width, f.height);
    }
    let verdict = intake.finish();
    (frames, intake, verdict)
}

/// Decodes the video of a whole segment to pictures (display order, PTS on the extended
/// timeline), through the same intake as a transcode. Tests use it to read back what zerohop
/// wrote.
pub fn decode_video(data: &[u8]) -> Result<Vec<Frame>, TranscodeError> {
    let (frames, _, verdict) = decode_all(data);
    verdict.map(|_| frames)
}

/// Inspects a whole segment: the stream table as the demuxer sees it, then the same intake,
/// decode and verdict as a transcode (the segment is demuxed once, by the intake).
pub fn probe(data: &[u8]) -> ProbeReport {
    let (_, intake, verdict) = decode_all(data);
    let demuxer = intake.demuxer();
    let program = demuxer.program().map(|p| (**p).clone());
    let streams = program
        .iter()
        .flat_map(|p| &p.streams)
        .map(|s| {
            let tally = demuxer.tally(s.pid);
            StreamReport {
                pid: s.pid,
                stream_type: s.stream_type,
                codec: stream_type::name(s.stream_type),
                pes_packets: tally.pes_packets,
                first_pts: tally.first_pts,
            }
        })
        .collect();
    let report = verdict.as_ref().map_or_else(|_| intake.report().clone(), Clone::clone);
    ProbeReport {
        program,
        streams,
        sps: intake.sps().cloned(),
        access_units: report.access_units,
        idr_frames: intake.idr_units(),
        frames_decoded: report.frames_decoded,
        demux: demuxer.stats().clone(),
        verdict: verdict.map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream table from the intake's one demux is the one a separate full demux gives, for
    /// inputs the engine takes and for those it refuses (the intake stops judging at the first
    /// failure, yet its demuxer still reads every byte).
    #[test]
    fn the_stream_table_is_the_full_demuxs_whether_or_not_the_input_can_be_transcoded() {
        for (name, transcodable) in [
            ("h264_1080p30_high_bframes_aac.ts", true),
            ("h264_480p30_4x3_mp3.ts", true),
            ("hevc_320x240.ts", false),
            ("h264_10bit.ts", false),
            ("corrupt_truncated.ts", true),
            ("audio_only.ts", false),
        ] {
            let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name);
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let r = probe(&data);
            assert_eq!(r.verdict.is_ok(), transcodable, "{name}: {:?}", r.verdict);
            let (program, pes, demux, _) = demux_all(&data);
            assert_eq!(r.program, program, "{name}");
            assert_eq!(r.demux, demux, "{name}");
            assert!(!r.streams.is_empty(), "{name}");
            for s in &r.streams {
                let of_stream: Vec<&Pes> = pes.iter().filter(|p| p.pid == s.pid).collect();
                assert_eq!(s.pes_packets, of_stream.len() as u64, "{name} PID {}", s.pid);
                assert_eq!(s.first_pts, of_stream.iter().find_map(|p| p.pts), "{name} PID {}", s.pid);
            }
        }
    }
}
