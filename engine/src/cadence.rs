//! Which source pictures a rendition keeps, and which of them become keyframes. Sans-IO and
//! backend-free: the CPU rendition workers and the GPU ladder decide the same way, so every
//! rendition of every backend puts its keyframes at the same PTS.
#![forbid(unsafe_code)]

use crate::profile::{Gop, Profile};
use crate::ts::TICKS_PER_SECOND;

/// What to do with one source picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not needed at this rendition's frame rate.
    Drop,
    Keep {
        keyframe: bool,
    },
}

/// The per-rendition state: keyframe grid and frame-rate reduction.
#[derive(Debug, Clone)]
pub struct Cadence {
    gop: Gop,
    frame_rate: Option<f64>,
    /// Frame-rate reduction: where slots are counted from, and the slot of the last kept picture.
    fps_origin: Option<i64>,
    last_slot: Option<i64>,
    next_kf_pts: Option<i64>,
    /// The PTS of the segment's previous source picture.
    last_in_pts: Option<i64>,
    /// Smallest positive PTS step seen in this segment (none before its second picture).
    segment_interval: Option<f64>,
    /// The source's frame interval: this segment's, once it has two pictures, else the last
    /// segment's, so a stream whose rate changes between segments is followed.
    in_interval: Option<f64>,
    /// The interval the next segment's SPS declares (VUI timing), taken at its first picture.
    declared_interval: Option<f64>,
}

impl Cadence {
    pub fn new(profile: &Profile) -> Cadence {
        Cadence {
            gop: profile.gop,
            frame_rate: profile.frame_rate(),
            fps_origin: None,
            last_slot: None,
            next_kf_pts: None,
            last_in_pts: None,
            segment_interval: None,
            in_interval: None,
            declared_interval: None,
        }
    }

    /// The frame rate the next segment's SPS declares (its VUI timing), told before that
    /// segment's first picture: the rate holds from the first picture on, where otherwise the
    /// last segment's would until the second (measured PTS steps still win once there are two).
    pub fn declare_rate(&mut self, fps: f64) {
        if fps.is_finite() && fps > 0.0 {
            self.declared_interval = Some(TICKS_PER_SECOND as f64 / fps);
        }
    }

    /// Decides for the source picture at `pts`. `first`: no picture of this segment has been
    /// encoded yet (it must be a keyframe).
    pub fn decide(&mut self, pts: i64, first: bool) -> Decision {
        if first {
            // A new segment measures its own rate (the last one's stands until it can).
            self.last_in_pts = None;
            self.segment_interval = None;
            // What the segment's SPS declares stands until its pictures can be measured.
            if let Some(d) = self.declared_interval.take() {
                self.in_interval = Some(d);
            }
        }
        if let Some(last) = self.last_in_pts {
            let d = (pts - last) as f64;
            if d > 0.0 {
                let i = self.segment_interval.map_or(d, |i| i.min(d));
                self.segment_interval = Some(i);
                self.in_interval = Some(i);
            }
        }
        self.last_in_pts = Some(pts);

        // Keyframes sit on a grid of GOP-length steps from the segment's first picture, decided
        // on the source pictures, so every rendition (whatever its frame rate) puts them at the
        // same PTS.
        let keyframe = first
            || match self.gop {
                Gop::Intra => true,
                Gop::Seconds(_) => self.next_kf_pts.is_some_and(|k| pts >= k),
            };
        if keyframe && let Gop::Seconds(secs) = self.gop {
            let gop = (secs * TICKS_PER_SECOND as f64).round() as i64;
            // Tolerate timestamps a tenth of a frame early (rounded 29.97 fps PTS).
            let slack = self.in_interval.map_or(300, |i| (i / 10.0) as i64);
            let mut next = self.next_kf_pts.filter(|_| !first).unwrap_or(pts) + gop;
            while next - slack <= pts {
                next += gop;
            }
            self.next_kf_pts = Some(next - slack);
        }

        // Frame-rate reduction: keep the first picture of each output-interval slot, counted
        // from the last keyframe; keyframes are always kept.
        if let Some(r) = self.frame_rate {
            let interval = TICKS_PER_SECOND as f64 / r;
            if keyframe {
                self.fps_origin = Some(pts);
                self.last_slot = Some(0);
            } else {
                let origin = *self.fps_origin.get_or_insert(pts);
                // A small tolerance absorbs PTS rounding (e.g. 29.97 fps timestamps).
                let slot = (((pts - origin) as f64 + interval * 0.05) / interval).floor() as i64;
                if self.last_slot.is_some_and(|l| slot <= l) {
                    return Decision::Drop;
                }
                self.last_slot = Some(slot);
            }
        }
        Decision::Keep { keyframe }
    }

    /// The output frame rate: the profile's, capped by the source's measured rate (this
    /// segment's; the last segment's until this one has two pictures; 30 until a stream's
    /// second picture). Encoders follow it as it changes.
    pub fn output_fps(&self) -> f64 {
        let input = self.in_interval.map(|i| TICKS_PER_SECOND as f64 / i).unwrap_or(30.0);
        self.frame_rate.map_or(input, |r| r.min(input))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Ladder;

    fn profile(json: &str) -> Profile {
        json.parse::<Ladder>().expect("ladder").profiles()[0].clone()
    }

    #[test]
    fn sixty_fps_into_thirty_keeps_every_other_picture_and_keyframes_on_the_grid() {
        let p = profile(r#"[{"name":"a","width":640,"height":360,"bitrate":800000,"fps":30,"gop":"1"}]"#);
        let mut c = Cadence::new(&p);
        let step = 1500; // 60 fps in 90 kHz ticks
        let mut kept = Vec::new();
        let mut keys = Vec::new();
        for i in 0..120i64 {
            if let Decision::Keep { keyframe } = c.decide(i * step, i == 0) {
                kept.push(i);
                if keyframe {
                    keys.push(i);
                }
            }
        }
        assert_eq!(kept.len(), 60, "30 of every 60 pictures");
        assert!(kept.iter().all(|i| i % 2 == 0), "{kept:?}");
        assert_eq!(keys, [0, 60], "a keyframe every second, at the same source pictures");
        assert!((c.output_fps() - 30.0).abs() < 1e-9);
    }

    #[test]
    fn a_declared_rate_holds_from_the_segments_first_picture_until_pictures_are_measured() {
        let p = profile(r#"[{"name":"a","width":640,"height":360,"bitrate":800000,"gop":"1"}]"#);
        let mut c = Cadence::new(&p);
        c.declare_rate(25.0);
        c.decide(0, true);
        assert!((c.output_fps() - 25.0).abs() < 1e-9, "declared, before a second picture");
        c.decide(3600, false);
        // The next segment declares 60 but its pictures come 30 a second: measurement wins.
        c.declare_rate(60.0);
        c.decide(100_000, true);
        assert!((c.output_fps() - 60.0).abs() < 1e-9, "the new declaration at the first picture");
        c.decide(103_000, false);
        assert!((c.output_fps() - 30.0).abs() < 1e-9, "{}", c.output_fps());
        // A declaration is used once: a segment that declares nothing starts at the last rate.
        c.decide(200_000, true);
        assert!((c.output_fps() - 30.0).abs() < 1e-9);
        c.declare_rate(f64::NAN);
        c.decide(300_000, true);
        assert!((c.output_fps() - 30.0).abs() < 1e-9, "a nonsense rate is ignored");
    }

    #[test]
    fn the_rate_follows_the_stream_from_segment_to_segment() {
        let p = profile(r#"[{"name":"a","width":640,"height":360,"bitrate":800000,"gop":"1"}]"#);
        let mut c = Cadence::new(&p);
        assert!((c.output_fps() - 30.0).abs() < 1e-9, "30 before anything is known");
        let mut pts = 0;
        for (step, n, fps) in [(3600, 50, 25.0), (1500, 120, 60.0), (3600, 50, 25.0), (1501, 120, 90000.0 / 1501.0)] {
            for i in 0..n {
                c.decide(pts, i == 0);
                if i == 0 && pts > 0 {
                    assert!(c.output_fps() != fps, "the first picture of a segment keeps the last rate");
                }
                pts += step;
            }
            assert!((c.output_fps() - fps).abs() < 1e-9, "{} for {fps}", c.output_fps());
            pts += 5 * step; // a gap between segments is not a frame interval
        }
        // A reduced rate is the profile's, below the source's, from the first picture on.
        let p = profile(r#"[{"name":"a","width":640,"height":360,"bitrate":800000,"fps":30,"gop":"1"}]"#);
        let mut c = Cadence::new(&p);
        c.decide(0, true);
        assert!((c.output_fps() - 30.0).abs() < 1e-9);
        for i in 1..60 {
            c.decide(i * 1500, false);
        }
        assert!((c.output_fps() - 30.0).abs() < 1e-9);
        // ... and the source's when that is lower.
        for i in 0..25 {
            c.decide(1_000_000 + i * 3600, i == 0);
        }
        assert!((c.output_fps() - 25.0).abs() < 1e-9);
    }

    #[test]
    fn intra_and_no_frame_rate_keep_everything() {
        let p = profile(r#"[{"name":"a","width":640,"height":360,"bitrate":800000,"gop":"intra"}]"#);
        let mut c = Cadence::new(&p);
        for i in 0..10i64 {
            assert_eq!(c.decide(i * 3003, i == 0), Decision::Keep { keyframe: true });
        }
        assert!((c.output_fps() - 90000.0 / 3003.0).abs() < 1e-6, "the source's 29.97 fps");
    }
}
