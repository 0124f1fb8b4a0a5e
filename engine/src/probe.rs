//! What the engine sees in a segment: streams, codec, size, frame rate, pictures, and whether
//! it can transcode it (and why not).

use crate::codec::H264Decoder;
use crate::error::TranscodeError;
use crate::frame::Frame;
use crate::h264::{SpsInfo, Unsupported, inspect_access_unit};
use crate::ts::{DemuxEvent, DemuxStats, Demuxer, Pes, ProgramInfo, Unwrapper, stream_type};

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

/// Decodes the video of a whole segment to pictures (display order, PTS on the extended
/// timeline). Tests use it to read back what zerohop wrote.
pub fn decode_video(data: &[u8]) -> Result<Vec<Frame>, TranscodeError> {
    let (program, pes, _, fin) = demux_all(data);
    fin?;
    let program = program.ok_or(TranscodeError::NoVideo { streams: "no program".into() })?;
    let video = program.video().ok_or(TranscodeError::NoVideo { streams: "none".into() })?.pid;
    let mut dec = H264Decoder::new()?;
    let mut frames = Vec::new();
    let mut unwrap = Unwrapper::new();
    for p in pes.iter().filter(|p| p.pid == video) {
        let pts = unwrap.unwrap(p.pts.unwrap_or(0));
        dec.decode(&p.payload, pts, &mut |f| frames.push(f))?;
    }
    dec.flush(&mut |f| frames.push(f))?;
    Ok(frames)
}

/// Inspects a whole segment.
pub fn probe(data: &[u8]) -> ProbeReport {
    let (program, pes, demux, fin) = demux_all(data);
    let mut report = ProbeReport {
        program: program.clone(),
        streams: Vec::new(),
        sps: None,
        access_units: 0,
        idr_frames: 0,
        frames_decoded: 0,
        demux,
        verdict: fin,
    };
    let Some(program) = program else {
        return report;
    };
    for s in &program.streams {
        let of_stream = pes.iter().filter(|p| p.pid == s.pid);
        report.streams.push(StreamReport {
            pid: s.pid,
            stream_type: s.stream_type,
            codec: stream_type::name(s.stream_type),
            pes_packets: of_stream.clone().count() as u64,
            first_pts: of_stream.filter_map(|p| p.pts).next(),
        });
    }
    let video = match program.video() {
        None => {
            report.verdict = report.verdict.and(Err(TranscodeError::NoVideo {
                streams: report.streams.iter().map(|s| s.codec).collect::<Vec<_>>().join(", "),
            }));
            return report;
        }
        Some(v) if v.stream_type != stream_type::H264 => {
            report.verdict = report.verdict.and(Err(Unsupported::Codec {
                found: stream_type::name(v.stream_type),
                stream_type: v.stream_type,
            }
            .into()));
            return report;
        }
        Some(v) => v.pid,
    };
    for p in pes.iter().filter(|p| p.pid == video) {
        let info = inspect_access_unit(&p.payload);
        report.access_units += u64::from(info.has_picture);
        report.idr_frames += u64::from(info.idr);
        if report.sps.is_none() {
            match info.sps {
                Some(Ok(sps)) => {
                    if let Err(e) = sps.check_supported() {
                        report.verdict = report.verdict.and(Err(e.into()));
                    }
                    report.sps = Some(sps);
                }
                Some(Err(e)) => report.verdict = report.verdict.and(Err(e.into())),
                None => {}
            }
        }
    }
    if report.verdict.is_ok() {
        match decode_video(data) {
            Ok(frames) => {
                report.frames_decoded = frames.len() as u64;
                if report.frames_decoded < report.access_units {
                    report.verdict = Err(TranscodeError::FramesLost {
                        expected: report.access_units,
                        decoded: report.frames_decoded,
                        first_error: None,
                    });
                }
            }
            Err(e) => report.verdict = Err(e),
        }
    }
    report
}
