//! `zerohop bench --live-edge`: how far behind a live input the renditions end. Each segment
//! goes into the engine at its real-time rate (times `--pace`), in 10 ms pieces as a live
//! encoder's output arrives, with a [`Timeline`]; the tail is the last rendition byte after the
//! last input byte. Beside it: the same paced upload through a combined node over HTTP/2 + TLS
//! on loopback (tail = last result byte after the last upload byte), and `ffmpeg -re` encoding
//! the same ladder with libx264 (tail = its wall time after the segment's duration, process
//! start included), where ffmpeg is installed. Nothing here asserts a time.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use serde_json::{Value, json};
use zerohop_engine::{Ladder, MemorySink, SegmentOptions, Stage, StreamSession, Timeline};

use super::args::BenchArgs;
use super::quantile::of_sorted;

/// Pieces of a paced upload go in every this often.
pub(super) const TICK: Duration = Duration::from_millis(10);

/// One paced run through the engine.
#[derive(Debug, Clone)]
pub struct EdgeRun {
    pub timeline: Timeline,
    pub last_input: Duration,
    pub last_out: Duration,
    /// The segment's frame rate, as the engine reported it.
    pub fps: f64,
    /// The first chunk out after the first access unit left the intake (its bytes were in).
    pub first_out_after_unit: Duration,
    /// The first chunk out after the first picture was decoded.
    pub first_out_after_picture: Duration,
    /// One picture's encode in the largest rung: the time from its scaled to its encoded mark,
    /// median over the segment.
    pub largest_encode: Duration,
}

impl EdgeRun {
    pub fn tail(&self) -> Duration {
        self.last_out.saturating_sub(self.last_input)
    }
}

/// Feeds `data` to `session` in pieces of `piece` bytes every [`TICK`], and waits for the end.
pub fn paced_engine_run(session: &mut dyn StreamSession, data: &Bytes, piece: usize) -> Result<EdgeRun> {
    let timeline = Timeline::new();
    let (_, sinks) = MemorySink::ladder(session.ladder().len());
    let options = SegmentOptions { timeline: Some(timeline.clone()), ..Default::default() };
    let mut seg = session.begin_segment_with(sinks, options)?;
    let origin = timeline.origin();
    let mut off = 0;
    let mut n = 0u32;
    while off < data.len() {
        let due = origin + TICK * n;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let end = (off + piece).min(data.len());
        seg.push(data.slice(off..end))?;
        off = end;
        n += 1;
    }
    let report = seg.finish()?;
    // The SPS's rate, else the pictures over the media's duration.
    let media = report.media_duration.as_secs_f64();
    let fps = if report.input.fps > 0.0 {
        report.input.fps
    } else if media > 0.0 {
        report.frames_decoded as f64 / media
    } else {
        30.0
    };
    let need = |s: Stage, first: bool| {
        if first { timeline.first(s) } else { timeline.last(s) }
            .with_context(|| format!("the timeline has no {} mark", s.name()))
    };
    let first_out = need(Stage::Chunk, true)?;
    Ok(EdgeRun {
        last_input: need(Stage::Input, false)?,
        last_out: need(Stage::Chunk, false)?,
        fps,
        first_out_after_unit: first_out.saturating_sub(need(Stage::Unit, true)?),
        first_out_after_picture: first_out.saturating_sub(need(Stage::Decoded, true)?),
        largest_encode: encode_time(&timeline, 0),
        timeline,
    })
}

/// The median time from a picture's scaled mark to its encoded mark in `rung` (the ladder's first
/// rung is its largest in every ladder zerohop ships).
fn encode_time(t: &Timeline, rung: usize) -> Duration {
    let marks = t.marks();
    let mut v: Vec<Duration> = marks
        .iter()
        .filter(|m| m.stage == Stage::Encoded && m.rung == Some(rung))
        .filter_map(|e| {
            let s = marks.iter().find(|m| m.stage == Stage::Scaled && m.rung == Some(rung) && m.value == e.value)?;
            Some(e.at.saturating_sub(s.at))
        })
        .collect();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// p50 and p90 of `d`, in ms.
fn p50_90(mut d: Vec<Duration>) -> (f64, f64) {
    d.sort();
    let ms = |p| of_sorted(&d, p).map_or(0.0, |x: Duration| x.as_secs_f64() * 1e3);
    (ms(0.5), ms(0.9))
}

/// The median run of `runs` by tail.
fn median_run(runs: &[EdgeRun]) -> Option<&EdgeRun> {
    let mut by_tail: Vec<&EdgeRun> = runs.iter().collect();
    by_tail.sort_by_key(|r| r.tail());
    by_tail.get(by_tail.len() / 2).copied()
}

/// Per rung, the delay of each kept picture from leaving the intake to leaving the encoder:
/// where a picture waits shows as a long delay at its stage.
fn stage_delays(t: &Timeline, rungs: usize) -> String {
    let marks = t.marks();
    let at = |stage: Stage, rung: Option<usize>, pts: i64| {
        marks.iter().find(|m| m.stage == stage && m.rung == rung && m.value == pts).map(|m| m.at)
    };
    let mut out = String::from("per picture, ms (p50 / max): unit -> decoded, decoded -> encoded per rung\n");
    let units: Vec<i64> = marks.iter().filter(|m| m.stage == Stage::Unit).map(|m| m.value).collect();
    let decode: Vec<Duration> = units
        .iter()
        .filter_map(|&p| Some(at(Stage::Decoded, None, p)?.saturating_sub(at(Stage::Unit, None, p)?)))
        .collect();
    let line = |name: &str, v: Vec<Duration>| {
        let max = v.iter().max().copied().unwrap_or_default();
        let (p50, _) = p50_90(v);
        format!("  {name:<10} {p50:>7.1} / {:>7.1}\n", max.as_secs_f64() * 1e3)
    };
    out += &line("decode", decode);
    for r in 0..rungs {
        let v: Vec<Duration> = marks
            .iter()
            .filter(|m| m.stage == Stage::Encoded && m.rung == Some(r))
            .filter_map(|m| Some(m.at.saturating_sub(at(Stage::Decoded, None, m.value)?)))
            .collect();
        out += &line(&format!("rung {r}"), v);
    }
    out
}

/// `ffmpeg -re` encoding `ladder` from `path` with libx264 as zerohop's x264 is set (zerolatency,
/// no B-frames, CBR by VBV with a one-second buffer), audio copied: its wall time.
fn ffmpeg_re(path: &std::path::Path, ladder: &Ladder, preset: &str, gop_frames: u32) -> Option<Duration> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-nostdin", "-re", "-i"]).arg(path);
    for p in ladder.profiles() {
        let k = p.bitrate / 1000;
        cmd.args(["-map", "0:v:0", "-map", "0:a?", "-vf"])
            .arg(format!("scale={}:{}", p.width, p.height))
            .args(["-c:v", "libx264", "-preset", preset, "-tune", "zerolatency", "-bf", "0"])
            .args(["-b:v", &format!("{k}k"), "-maxrate", &format!("{k}k"), "-bufsize", &format!("{k}k")])
            .args(["-g", &gop_frames.to_string(), "-threads", "1", "-c:a", "copy", "-f", "mpegts", "-y", "/dev/null"]);
    }
    let t = Instant::now();
    let ok = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().ok()?.success();
    ok.then(|| t.elapsed())
}

/// The paced figures for every segment through the engine alone, with `ffmpeg -re`'s beside
/// them.
pub fn report(a: &BenchArgs, ladder: &Ladder, segments: &[(String, Bytes)], media: &[Duration]) -> Result<Value> {
    let mut session = super::engine_session(a, ladder)?;
    let names: Vec<String> = ladder.profiles().iter().map(|p| p.name.clone()).collect();
    let mut rows = Vec::new();
    let mut marks = String::from("segment,ms,stage,rung,value\n");
    for (i, (label, data)) in segments.iter().enumerate() {
        let dur = media[i * a.repeat].max(Duration::from_millis(1));
        let rate = data.len() as f64 / dur.as_secs_f64() * a.pace;
        let piece = super::paced_piece(data.len(), dur, a.pace, TICK);
        let mut runs = Vec::new();
        for _ in 0..a.repeat {
            runs.push(paced_engine_run(&mut *session, data, piece)?);
        }
        let fps = runs[0].fps;
        let goal = Duration::from_millis(100).max(Duration::from_secs_f64(3.0 / fps.max(1.0)));
        let (tail50, tail90) = p50_90(runs.iter().map(EdgeRun::tail).collect());
        let (first50, _) = p50_90(runs.iter().map(|r| r.first_out_after_unit).collect());
        let (picture50, _) = p50_90(runs.iter().map(|r| r.first_out_after_picture).collect());
        let (encode50, _) = p50_90(runs.iter().map(|r| r.largest_encode).collect());
        let (last_in, _) = p50_90(runs.iter().map(|r| r.last_input).collect());
        println!(
            "{label}: engine, input at {:.2}x real time ({:.1} Mbit/s): last input byte {last_in:.0} ms, tail p50 \
             {tail50:.1} ms p90 {tail90:.1} ms (goal <= {:.0} ms); first chunk {first50:.1} ms after the first access unit, \
             {picture50:.1} ms after the first decoded picture (goal <= one picture's encode in the largest rung, {encode50:.1} ms, \
             + 10 ms)",
            a.pace,
            rate * 8.0 / 1e6,
            goal.as_secs_f64() * 1e3
        );
        if let Some(r) = median_run(&runs) {
            println!("timeline of the median run (ms from the first byte):\n{}", r.timeline.table(&names));
            print!("{}", stage_delays(&r.timeline, names.len()));
            for m in r.timeline.marks() {
                let rung = m.rung.and_then(|i| names.get(i)).map_or("", String::as_str);
                marks += &format!("{label},{:.3},{},{rung},{}\n", m.at.as_secs_f64() * 1e3, m.stage.name(), m.value);
            }
        }
        let mut row = json!({"segment": label, "pace": a.pace, "mbit_s": rate * 8.0 / 1e6, "fps": fps,
            "engine_tail_ms": {"p50": tail50, "p90": tail90}, "goal_ms": goal.as_secs_f64() * 1e3,
            "engine_first_chunk_after_first_unit_ms_p50": first50,
            "engine_first_chunk_after_first_picture_ms_p50": picture50, "largest_rung_encode_ms_p50": encode50});
        if let Some((f50, f90)) = ffmpeg_tails(data, dur, ladder, fps, a.repeat)? {
            println!(
                "{label}: ffmpeg -re, the same ladder with libx264 (process start included): tail p50 {f50:.1} ms p90 {f90:.1} ms"
            );
            row["ffmpeg_re_tail_ms"] = json!({"p50": f50, "p90": f90});
        }
        rows.push(row);
    }
    if let Some(path) = &a.marks {
        std::fs::write(path, marks).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(Value::Array(rows))
}

/// `ffmpeg -re`'s tails (wall time after the segment's duration), `repeat` runs; `None` where
/// ffmpeg with libx264 is not installed (said once).
fn ffmpeg_tails(data: &Bytes, media: Duration, ladder: &Ladder, fps: f64, repeat: usize) -> Result<Option<(f64, f64)>> {
    let path = std::env::temp_dir().join(format!("zerohop-live-edge-{}.ts", std::process::id()));
    std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
    let preset = match zerohop_engine::codec::CpuEncoder::process_default() {
        zerohop_engine::codec::CpuEncoder::X264 { preset } => preset.name(),
        zerohop_engine::codec::CpuEncoder::OpenH264 => "superfast",
    };
    let gop = fps.round().max(1.0) as u32;
    let mut tails = Vec::new();
    for _ in 0..repeat {
        match ffmpeg_re(&path, ladder, preset, gop) {
            Some(wall) => tails.push(wall.saturating_sub(media)),
            None => {
                eprintln!("ffmpeg -re left out: `ffmpeg` with libx264 did not run here (Debian: ffmpeg)");
                break;
            }
        }
    }
    std::fs::remove_file(&path).ok();
    Ok((!tails.is_empty()).then(|| p50_90(tails)))
}

/// The combined node's paced tails (per run: TTLB and upload time) beside each row.
pub fn beside(rows: &mut Value, combined: &[(Duration, Duration)], repeat: usize) {
    let Some(rows) = rows.as_array_mut() else { return };
    for (i, row) in rows.iter_mut().enumerate() {
        let per = combined.iter().skip(i * repeat).take(repeat).map(|(ttlb, upload)| ttlb.saturating_sub(*upload));
        let (c50, c90) = p50_90(per.collect());
        println!("{}: combined node over HTTP/2 + TLS, paced: tail p50 {c50:.1} ms p90 {c90:.1} ms", row["segment"]);
        row["combined_tail_ms"] = json!({"p50": c50, "p90": c90});
    }
}
