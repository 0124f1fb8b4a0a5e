//! HLS playback of what the node made: for each stream, the renditions of its last `window`
//! segments, and the playlists a player reads (`/stream/{stream}.m3u8`, one variant per
//! rendition, and `/stream/{stream}/{rendition}.m3u8`, a live media playlist).
//!
//! Sans-IO: [`HlsStore`] takes finished segments ([`SegmentRecorder`] builds one from the
//! result-stream records as they pass) and renders playlists; time is passed in. Bounded: at
//! most `window` segments per stream and `max_streams` streams (recording a new stream beyond
//! that drops the one updated longest ago); a stream with no new segment for longer than its
//! window lasts (at least 30 s) is dropped.
//!
//! Numbering: a stream's first recorded segment has its pushed `seq` as its media sequence
//! number, each next one the number after (HLS numbers are consecutive); where the pushed seq
//! does not follow the last one (a skipped or repeated segment, an encoder restart) the entry
//! carries `EXT-X-DISCONTINUITY`.
#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::framing::{Kind, Record};

/// Segments kept per stream by default (`--hls-window`).
pub const DEFAULT_WINDOW: usize = 6;
/// Streams kept by default (`--hls-max-streams`).
pub const DEFAULT_MAX_STREAMS: usize = 32;
/// The shortest time a stream without new segments is kept.
const MIN_LINGER: Duration = Duration::from_secs(30);

/// What a rendition is, for the master playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// The ladder's target bitrate (bits/s), used until segments are measured.
    pub target_bitrate: u32,
}

/// One finished segment: every rendition's bytes.
#[derive(Debug, Clone)]
pub struct HlsSegment {
    pub seq: u64,
    /// Media duration.
    pub duration: Duration,
    /// Each rendition's TS bytes, in ladder order.
    pub renditions: Vec<Bytes>,
    /// Each rendition's frames and size (from its done record).
    pub frames: Vec<u64>,
    pub sizes: Vec<(u32, u32)>,
}

#[derive(Debug)]
struct Entry {
    segment: HlsSegment,
    /// Its HLS media sequence number.
    number: u64,
    discontinuity: bool,
}

#[derive(Debug)]
struct HlsStream {
    variants: Vec<Variant>,
    entries: VecDeque<Entry>,
    /// Discontinuities that slid out of the window (EXT-X-DISCONTINUITY-SEQUENCE).
    discontinuities_gone: u64,
    /// Codecs of each rendition (`avc1.PPCCLL[,mp4a.40.2]`), from its first segment.
    codecs: Vec<String>,
    ended: bool,
    updated: Instant,
}

/// The recorded streams.
#[derive(Debug)]
pub struct HlsStore {
    window: usize,
    max_streams: usize,
    streams: HashMap<String, HlsStream>,
}

impl HlsStore {
    pub fn new(window: usize, max_streams: usize) -> HlsStore {
        HlsStore { window: window.max(1), max_streams, streams: HashMap::new() }
    }

    /// Records a finished segment of `stream` made with `variants`. A ladder different from
    /// the stream's restarts its window.
    pub fn record(&mut self, stream: &str, variants: Vec<Variant>, segment: HlsSegment, now: Instant) {
        if self.max_streams == 0 || segment.renditions.len() != variants.len() {
            return;
        }
        self.expire(now);
        if !self.streams.contains_key(stream) && self.streams.len() >= self.max_streams {
            let oldest = self.streams.iter().min_by_key(|(_, s)| s.updated).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                tracing::info!(stream = %k, "HLS: stream dropped to make room (--hls-max-streams)");
                self.streams.remove(&k);
            }
        }
        let s = self.streams.entry(stream.to_string()).or_insert_with(|| HlsStream {
            variants: variants.clone(),
            entries: VecDeque::new(),
            discontinuities_gone: 0,
            codecs: Vec::new(),
            ended: false,
            updated: now,
        });
        if s.variants.iter().map(|v| &v.name).ne(variants.iter().map(|v| &v.name)) {
            s.variants = variants;
            s.entries.clear();
            s.codecs.clear();
        }
        if s.codecs.is_empty() {
            s.codecs = segment.renditions.iter().map(|b| codecs(b)).collect();
        }
        let (number, discontinuity) = match s.entries.back() {
            Some(last) => (last.number + 1, segment.seq != last.segment.seq + 1),
            None => (segment.seq, false),
        };
        s.entries.push_back(Entry { segment, number, discontinuity });
        while s.entries.len() > self.window {
            if let Some(e) = s.entries.pop_front()
                && e.discontinuity
            {
                s.discontinuities_gone += 1;
            }
        }
        // The oldest entry cannot start with a discontinuity tag that has nothing before it.
        if let Some(first) = s.entries.front_mut()
            && first.discontinuity
        {
            first.discontinuity = false;
            s.discontinuities_gone += 1;
        }
        s.ended = false;
        s.updated = now;
    }

    /// Marks `stream` ended (its playlists get `EXT-X-ENDLIST`); false if it is not recorded.
    pub fn end(&mut self, stream: &str) -> bool {
        self.streams.get_mut(stream).map(|s| s.ended = true).is_some()
    }

    /// Drops streams that had no new segment for longer than their window lasts.
    pub fn expire(&mut self, now: Instant) {
        self.streams.retain(|_, s| {
            let window: Duration = s.entries.iter().map(|e| e.segment.duration).sum();
            now.saturating_duration_since(s.updated) <= window.max(MIN_LINGER)
        });
    }

    /// How many streams are recorded.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// The master playlist of `stream`: one variant per rendition.
    pub fn master(&self, stream: &str) -> Option<String> {
        let s = self.streams.get(stream)?;
        let mut m = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
        for (i, v) in s.variants.iter().enumerate() {
            let (mut width, mut height) = (v.width, v.height);
            let (mut peak, mut frames, mut secs) = (0f64, 0u64, 0f64);
            for e in &s.entries {
                let d = e.segment.duration.as_secs_f64();
                if d > 0.0 {
                    peak = peak.max(e.segment.renditions[i].len() as f64 * 8.0 / d);
                }
                frames += e.segment.frames[i];
                secs += d;
                (width, height) = e.segment.sizes[i];
            }
            let bandwidth = if peak > 0.0 { peak.ceil() as u64 } else { u64::from(v.target_bitrate) };
            m.push_str(&format!("#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},RESOLUTION={width}x{height}"));
            if secs > 0.0 && frames > 0 {
                m.push_str(&format!(",FRAME-RATE={:.3}", frames as f64 / secs));
            }
            m.push_str(&format!(",CODECS=\"{}\"\n{}/{}.m3u8\n", s.codecs[i], url_part(stream), url_part(&v.name)));
        }
        Some(m)
    }

    /// The live media playlist of `rendition` of `stream`.
    pub fn media(&self, stream: &str, rendition: &str) -> Option<String> {
        let s = self.streams.get(stream)?;
        s.variants.iter().position(|v| v.name == rendition)?;
        let target = s.entries.iter().map(|e| e.segment.duration.as_secs_f64().ceil() as u64).max().unwrap_or(1);
        let first = s.entries.front().map_or(0, |e| e.number);
        let mut m = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{first}\n",
            target.max(1)
        );
        if s.discontinuities_gone > 0 {
            m.push_str(&format!("#EXT-X-DISCONTINUITY-SEQUENCE:{}\n", s.discontinuities_gone));
        }
        for e in &s.entries {
            if e.discontinuity {
                m.push_str("#EXT-X-DISCONTINUITY\n");
            }
            m.push_str(&format!(
                "#EXTINF:{:.3},\n{}/{}.ts\n",
                e.segment.duration.as_secs_f64(),
                url_part(rendition),
                e.segment.seq
            ));
        }
        if s.ended {
            m.push_str("#EXT-X-ENDLIST\n");
        }
        Some(m)
    }

    /// Whether `stream` was ended (its playlists will not change).
    pub fn ended(&self, stream: &str) -> bool {
        self.streams.get(stream).is_some_and(|s| s.ended)
    }

    /// Rendition `rendition`'s bytes of segment `seq` of `stream`, while in the window.
    pub fn segment(&self, stream: &str, rendition: &str, seq: u64) -> Option<Bytes> {
        let s = self.streams.get(stream)?;
        let i = s.variants.iter().position(|v| v.name == rendition)?;
        s.entries.iter().rev().find(|e| e.segment.seq == seq).map(|e| e.segment.renditions[i].clone())
    }
}

/// A name as a URL path segment: kept as is when it is URL-safe (stream and rendition names
/// usually are), else percent-encoded.
pub fn url_part(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Collects one segment's renditions from its result-stream records as they pass.
#[derive(Debug)]
pub struct SegmentRecorder {
    seq: u64,
    parts: Vec<BytesMut>,
    frames: Vec<u64>,
    sizes: Vec<(u32, u32)>,
    done: Vec<bool>,
    failed: bool,
}

impl SegmentRecorder {
    /// A recorder for segment `seq` with `renditions` renditions.
    pub fn new(seq: u64, renditions: usize) -> SegmentRecorder {
        SegmentRecorder {
            seq,
            parts: vec![BytesMut::new(); renditions],
            frames: vec![0; renditions],
            sizes: vec![(0, 0); renditions],
            done: vec![false; renditions],
            failed: false,
        }
    }

    /// Takes one record; at the end record, the finished segment when every rendition was made.
    pub fn push(&mut self, r: &Record) -> Option<HlsSegment> {
        let i = usize::from(r.rendition);
        match r.kind {
            Kind::Chunk if i < self.parts.len() => self.parts[i].extend_from_slice(&r.payload),
            Kind::Done if i < self.parts.len() => {
                let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap_or_default();
                let n = |k: &str| v[k].as_u64().unwrap_or(0);
                self.frames[i] = n("frames");
                self.sizes[i] = (n("width") as u32, n("height") as u32);
                self.done[i] = true;
            }
            Kind::Error => self.failed = true,
            Kind::End => {
                let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap_or_default();
                if self.failed || v["status"] != "ok" || !self.done.iter().all(|d| *d) {
                    return None;
                }
                return Some(HlsSegment {
                    seq: self.seq,
                    duration: Duration::from_millis(v["media_ms"].as_u64().unwrap_or(0)),
                    renditions: self.parts.drain(..).map(BytesMut::freeze).collect(),
                    frames: std::mem::take(&mut self.frames),
                    sizes: std::mem::take(&mut self.sizes),
                });
            }
            _ => {}
        }
        None
    }
}

/// The RFC 6381 codecs of a rendition's TS: `avc1.PPCCLL` from its SPS, and `mp4a.40.2` (AAC)
/// or `mp4a.40.34` (MP3) when its PMT lists such audio.
pub fn codecs(ts: &[u8]) -> String {
    let mut c = match ts.windows(7).find(|w| w[..4] == [0, 0, 1, 0x67] || w[..4] == [0, 0, 1, 0x27]) {
        Some(w) => format!("avc1.{:02x}{:02x}{:02x}", w[4], w[5], w[6]),
        None => "avc1.42e01f".to_string(),
    };
    match pmt_audio(ts) {
        Some(0x0f | 0x11) => c.push_str(",mp4a.40.2"),
        Some(0x03 | 0x04) => c.push_str(",mp4a.40.34"),
        _ => {}
    }
    c
}

/// The stream type of the first audio stream the PMT lists.
fn pmt_audio(ts: &[u8]) -> Option<u8> {
    let payload = |p: &[u8]| -> Option<(u16, bool, usize)> {
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let start = p[1] & 0x40 != 0;
        let off = match (p[3] >> 4) & 3 {
            1 => 4,
            3 => 5 + usize::from(p[4]),
            _ => return None,
        };
        (off < 188).then_some((pid, start, off))
    };
    let packets = || ts.chunks_exact(188).filter(|p| p[0] == 0x47);
    let section = |p: &[u8], off: usize| -> Option<(usize, usize)> {
        let s = off + 1 + usize::from(p[off]);
        let len = (usize::from(p.get(s + 1)? & 0x0f) << 8) | usize::from(*p.get(s + 2)?);
        Some((s, (s + 3 + len).min(188)))
    };
    let mut pmt_pid = None;
    for p in packets() {
        if let Some((0, true, off)) = payload(p) {
            let (s, end) = section(p, off)?;
            let prog = p.get(s + 8..end.saturating_sub(4))?;
            pmt_pid = prog
                .chunks_exact(4)
                .find(|e| e[..2] != [0, 0])
                .map(|e| (u16::from(e[2] & 0x1f) << 8) | u16::from(e[3]));
            break;
        }
    }
    let pmt_pid = pmt_pid?;
    for p in packets() {
        if let Some((pid, true, off)) = payload(p)
            && pid == pmt_pid
        {
            let (s, end) = section(p, off)?;
            let info = (usize::from(*p.get(s + 10)? & 0x0f) << 8) | usize::from(*p.get(s + 11)?);
            let mut i = s + 12 + info;
            while i + 5 <= end.saturating_sub(4) {
                let t = p[i];
                if matches!(t, 0x03 | 0x04 | 0x0f | 0x11) {
                    return Some(t);
                }
                i += 5 + ((usize::from(p[i + 3] & 0x0f) << 8) | usize::from(p[i + 4]));
            }
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(seq: u64, ms: u64) -> HlsSegment {
        HlsSegment {
            seq,
            duration: Duration::from_millis(ms),
            renditions: vec![Bytes::from(vec![0u8; 1000]), Bytes::from(vec![0u8; 250])],
            frames: vec![60, 60],
            sizes: vec![(640, 360), (426, 240)],
        }
    }

    fn variants() -> Vec<Variant> {
        ["360p", "240p"]
            .iter()
            .map(|n| Variant { name: n.to_string(), width: 640, height: 360, target_bitrate: 1_000_000 })
            .collect()
    }

    #[test]
    fn the_window_slides_and_numbers_follow_the_pushed_seq() {
        let mut h = HlsStore::new(3, 8);
        let t = Instant::now();
        for seq in [5, 6, 7, 8] {
            h.record("s", variants(), seg(seq, 2000), t);
        }
        let m = h.media("s", "240p").expect("media");
        assert!(m.contains("#EXT-X-MEDIA-SEQUENCE:6\n"), "{m}");
        assert!(m.contains("#EXT-X-TARGETDURATION:2\n"), "{m}");
        assert_eq!(m.matches("#EXTINF:2.000,").count(), 3, "{m}");
        assert!(m.contains("240p/8.ts") && !m.contains("240p/5.ts") && !m.contains("ENDLIST"), "{m}");
        assert!(h.segment("s", "360p", 5).is_none() && h.segment("s", "360p", 8).is_some());
        let master = h.master("s").expect("master");
        assert!(
            master.contains("BANDWIDTH=4000,RESOLUTION=640x360,FRAME-RATE=30.000,CODECS=\"avc1.42e01f\"\ns/360p.m3u8"),
            "{master}"
        );
        assert!(h.end("s"));
        assert!(h.media("s", "360p").expect("media").ends_with("#EXT-X-ENDLIST\n"));
        assert!(h.media("s", "720p").is_none() && h.master("t").is_none());
    }

    #[test]
    fn a_seq_jump_is_a_discontinuity_and_idle_or_surplus_streams_go() {
        let mut h = HlsStore::new(2, 2);
        let t = Instant::now();
        h.record("s", variants(), seg(0, 2000), t);
        h.record("s", variants(), seg(1, 2000), t);
        h.record("s", variants(), seg(9, 2000), t);
        let m = h.media("s", "360p").expect("media");
        assert!(m.contains("#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:2.000,\n360p/1.ts\n#EXT-X-DISCONTINUITY\n#EXTINF"), "{m}");
        h.record("s", variants(), seg(10, 2000), t);
        let m = h.media("s", "360p").expect("media");
        assert!(m.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n") && !m.contains("#EXT-X-DISCONTINUITY\n"), "{m}");
        h.record("a", variants(), seg(0, 2000), t + Duration::from_secs(1));
        h.record("b", variants(), seg(0, 2000), t + Duration::from_secs(2));
        assert_eq!(h.len(), 2, "at most 2 streams");
        assert!(h.master("s").is_none(), "the one updated longest ago made room");
        h.expire(t + Duration::from_secs(40));
        assert!(h.is_empty(), "idle past 30 s");
    }

    #[test]
    fn codecs_come_from_the_sps_and_the_pmt() {
        let p =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/h264_720p30_main_slices_aac.ts");
        let ts = std::fs::read(p).expect("fixture");
        assert_eq!(codecs(&ts), "avc1.4d401f,mp4a.40.2");
        let p =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/h264_360p25_baseline_noaudio.ts");
        let c = codecs(&std::fs::read(p).expect("fixture"));
        assert!(c.starts_with("avc1.42") && !c.contains("mp4a"), "{c}");
    }
}
