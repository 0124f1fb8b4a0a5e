//! The CPU encoder of a rendition, whichever it is, and the one function that opens it or
//! retunes it ([`ensure`]), used by the CPU session's rendition workers and by the host
//! encoders of GPUs without NVENC alike.

use super::x264::X264Encoder;
use super::{CodecError, CpuEncoder, EncodedFrame, EncoderSettings, H264Encoder};
use crate::frame::Frame;

/// An open CPU H.264 encoder: the one [`EncoderSettings::encoder`] names.
#[derive(Debug)]
pub enum Encoder {
    /// Boxed: OpenH264's encoder is kilobytes, x264's a pointer.
    OpenH264(Box<H264Encoder>),
    X264(X264Encoder),
}

impl Encoder {
    pub fn open(settings: EncoderSettings) -> Result<Encoder, CodecError> {
        Ok(match settings.encoder {
            CpuEncoder::OpenH264 => Encoder::OpenH264(Box::new(H264Encoder::new(settings)?)),
            CpuEncoder::X264 { preset } => Encoder::X264(X264Encoder::new(settings, preset)?),
        })
    }

    pub fn settings(&self) -> &EncoderSettings {
        match self {
            Encoder::OpenH264(e) => e.settings(),
            Encoder::X264(e) => e.settings(),
        }
    }

    /// Rate control follows `fps` from the next picture on, without a new encoder or an IDR.
    pub fn set_frame_rate(&mut self, fps: f64) -> Result<(), CodecError> {
        match self {
            Encoder::OpenH264(e) => e.set_frame_rate(fps),
            Encoder::X264(e) => e.set_frame_rate(fps),
        }
    }

    /// Whether, at an IDR, this encoder is best replaced by a new one for `fps`: x264 opened at
    /// another rate (even if since retuned to `fps`); never OpenH264, which retunes cleanly.
    fn reopens_at_idr_for(&self, fps: f64) -> bool {
        match self {
            Encoder::OpenH264(_) => false,
            Encoder::X264(e) => e.opened_at_other_rate(fps),
        }
    }

    /// Encodes one picture of the configured size; `keyframe` forces an IDR.
    pub fn encode(&mut self, frame: &Frame, keyframe: bool) -> Result<Option<EncodedFrame>, CodecError> {
        match self {
            Encoder::OpenH264(e) => e.encode(frame, keyframe),
            Encoder::X264(e) => e.encode(frame, keyframe),
        }
    }
}

/// The encoder in `slot`, made to encode `want`: a new one (which starts with an IDR) when
/// there is none or anything but the frame rate differs (size, bitrate, encoder, threads); the
/// frame rate alone goes to the open encoder's rate control in place. `idr`: the next picture
/// is an IDR anyway; x264 then takes a new rate by a new encoder, which costs nothing there,
/// because its rate control carries the old rate's history across `x264_encoder_reconfig`
/// (a 25 fps segment after a 60 fps one came out at 0.73x its bitrate, retuned in place).
pub fn ensure(slot: &mut Option<Encoder>, want: EncoderSettings, idr: bool) -> Result<&mut Encoder, CodecError> {
    let same_but_rate = |have: &EncoderSettings| EncoderSettings { fps: have.fps, ..want } == *have;
    let fresh_for_rate = |e: &Encoder| idr && e.reopens_at_idr_for(want.fps);
    match slot {
        Some(e) if same_but_rate(e.settings()) && !fresh_for_rate(e) => e.set_frame_rate(want.fps)?,
        _ => {
            *slot = None; // the old one closes before the new one opens
            *slot = Some(Encoder::open(want)?);
        }
    }
    Ok(slot.as_mut().expect("set above"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::codec::X264Preset;
    use crate::codec::x264::sys;

    /// Every encoder this machine has, for one test body per encoder; x264 is left out, with
    /// the reason printed, where libx264 build 164 does not load.
    pub(crate) fn encoders() -> Vec<CpuEncoder> {
        let mut v = vec![CpuEncoder::OpenH264];
        match sys::library() {
            Ok(_) => v.push(CpuEncoder::X264 { preset: X264Preset::Superfast }),
            Err(e) => zerohop_testkit::skip("libx264 build 164", format_args!("the x264 case: {e}")),
        }
        v
    }

    /// Pictures of fresh noise (every one costs bits): the encoder is held by its bitrate.
    pub(crate) fn noise(width: u32, height: u32, n: usize, seed: u64) -> Vec<Frame> {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n)
            .map(|i| {
                let mut f = Frame::new(width, height, i as i64);
                for p in f.y.iter_mut().chain(f.u.iter_mut()).chain(f.v.iter_mut()) {
                    *p = 112 + (next() % 32) as u8;
                }
                f
            })
            .collect()
    }

    /// A smooth pattern moving two samples per picture, `interval` PTS ticks apart.
    pub(crate) fn moving(width: u32, height: u32, n: usize, interval: i64) -> Vec<Frame> {
        (0..n)
            .map(|i| {
                let mut f = Frame::new(width, height, i as i64 * interval);
                for y in 0..height as usize {
                    for x in 0..width as usize {
                        let v = ((x + 2 * i) as f64 / 9.0).sin() * 60.0 + ((y + i) as f64 / 13.0).cos() * 50.0;
                        f.y[y * width as usize + x] = (128.0 + v) as u8;
                    }
                }
                let (cw, _) = f.chroma_size();
                for (j, (u, v)) in f.u.iter_mut().zip(f.v.iter_mut()).enumerate() {
                    *u = 100 + ((j % cw as usize + i) % 40) as u8;
                    *v = 140 - ((j / cw as usize) % 30) as u8;
                }
                f
            })
            .collect()
    }

    pub(crate) fn settings(encoder: CpuEncoder, width: u32, height: u32, bitrate: u32, fps: f64) -> EncoderSettings {
        EncoderSettings { width, height, bitrate, fps, threads: 1, encoder }
    }

    /// x264 opened at 60 fps and retuned in place to 25 (a rate measured mid-segment) is
    /// replaced by a 25 fps encoder at the next IDR: comparing with the rate it was retuned to
    /// would keep the 60 fps rate-control history for the rest of the stream.
    #[test]
    fn x264_opened_at_another_rate_is_replaced_at_the_next_idr_even_after_a_retune() {
        let Some(x264) = encoders().into_iter().find(|e| matches!(e, CpuEncoder::X264 { .. })) else { return };
        let opened_at_25 = |slot: &Option<Encoder>| match slot {
            Some(Encoder::X264(e)) => !e.opened_at_other_rate(25.0),
            _ => panic!("an x264 encoder"),
        };
        let mut slot = None;
        ensure(&mut slot, settings(x264, 64, 64, 300_000, 60.0), true).expect("open at 60");
        ensure(&mut slot, settings(x264, 64, 64, 300_000, 25.0), false).expect("retune");
        assert_eq!(slot.as_ref().map(|e| e.settings().fps), Some(25.0), "retuned in place");
        assert!(!opened_at_25(&slot), "still the encoder opened at 60");
        ensure(&mut slot, settings(x264, 64, 64, 300_000, 25.0), true).expect("at an IDR");
        assert!(opened_at_25(&slot), "a new encoder at the IDR");
    }

    /// Bits per second of `frames` (PTS `90000 / fps` apart) encoded at `fps` by a fresh
    /// encoder opened at `opened_at`, told `fps` after the first picture when they differ (as
    /// the rendition workers are).
    fn bitrate(encoder: CpuEncoder, frames: &[Frame], fps: f64, opened_at: f64) -> f64 {
        let mut slot = None;
        let mut bytes = 0;
        for (i, f) in frames.iter().enumerate() {
            let mut f = f.clone();
            f.pts = (i as f64 * 90_000.0 / fps).round() as i64;
            let rate = if i == 0 { opened_at } else { fps };
            let e = ensure(&mut slot, settings(encoder, 160, 96, 600_000, rate), false).expect("encoder");
            let au = e.encode(&f, i == 0).expect("encode").expect("no skipped pictures");
            bytes += au.data.len();
        }
        bytes as f64 * 8.0 / (frames.len() as f64 / fps)
    }

    #[test]
    fn bitrate_holds_at_every_rate_opened_with_or_set_later_on_every_encoder() {
        let frames = noise(160, 96, 300, 7);
        for encoder in encoders() {
            // x264 is held to the rates streams have (23.976 to 60): at 120 fps opened at 30 it
            // gives 1.16x (its buffer is then 4 of its own seconds long).
            let rates: &[f64] =
                if encoder == CpuEncoder::OpenH264 { &[25.0, 50.0, 60.0, 120.0] } else { &[25.0, 50.0, 60.0] };
            for &fps in rates {
                for opened_at in [fps, 30.0] {
                    let bps = bitrate(encoder, &frames, fps, opened_at);
                    let ratio = bps / 600_000.0;
                    // x264's VBV buffer starts full at the opening rate's size: told a new rate
                    // after its first picture, it spends that start once (measured 1.104x at
                    // 60 fps opened at 30, 5 s of noise; the stream's next segments open at
                    // their real rate).
                    let slack = if opened_at == fps { 0.1 } else { 0.12 };
                    assert!(
                        (ratio - 1.0).abs() < slack,
                        "{} at {fps} fps, opened at {opened_at}: {:.0} kbps ({ratio:.3}x)",
                        encoder.name(),
                        bps / 1000.0
                    );
                }
            }
        }
    }

    /// Each encoder's output, muxed and decoded by the engine's decoder: every picture, at its
    /// size, IDRs exactly where asked with SPS and PPS before each, close to the source.
    #[test]
    fn output_decodes_with_idrs_where_asked_on_every_encoder() {
        let (w, h) = (192, 108);
        let frames = moving(w, h, 30, 3000);
        let asked: Vec<i64> = vec![0, 30_000, 60_000];
        for encoder in encoders() {
            let mut slot = None;
            let mut aus = Vec::new();
            for f in &frames {
                let e = ensure(&mut slot, settings(encoder, w, h, 400_000, 30.0), false).expect("encoder");
                aus.push(e.encode(f, asked.contains(&f.pts)).expect("encode").expect("a picture per picture"));
            }
            let name = encoder.name();
            let pts: Vec<i64> = aus.iter().map(|a| a.pts).collect();
            assert_eq!(pts, frames.iter().map(|f| f.pts).collect::<Vec<_>>(), "{name}: one unit per picture, in order");
            let keys: Vec<i64> = aus.iter().filter(|a| a.keyframe).map(|a| a.pts).collect();
            assert_eq!(keys, asked, "{name}: IDRs where asked and nowhere else");
            for a in &aus {
                let info = crate::h264::inspect_access_unit(&a.data);
                assert_eq!(info.idr, a.keyframe, "{name} at {}: the IDR flag says what the unit is", a.pts);
                if a.keyframe {
                    let types: Vec<u8> = crate::h264::nal_units(&a.data).map(|n| n[0] & 0x1f).collect();
                    let (sps, pps, idr) = (
                        types.iter().position(|&t| t == 7),
                        types.iter().position(|&t| t == 8),
                        types.iter().position(|&t| t == 5),
                    );
                    assert!(
                        sps < pps && pps < idr && sps.is_some(),
                        "{name} at {}: SPS, PPS, then IDR: {types:?}",
                        a.pts
                    );
                }
            }
            let mut m = crate::ts::Muxer::new(crate::ts::MuxerConfig { tracks: Vec::new() });
            let mut ts = Vec::new();
            for a in &aus {
                m.write_video(&a.data, a.pts as u64, a.pts as u64, a.keyframe, &mut ts);
            }
            let decoded = crate::probe::decode_video(&ts).expect("decodable");
            assert_eq!(decoded.len(), frames.len(), "{name}");
            for (d, f) in decoded.iter().zip(&frames) {
                assert_eq!((d.width, d.height), (w, h), "{name}");
                let psnr = crate::quality::psnr_frame(d, f).y;
                assert!(psnr > 30.0, "{name} at {}: PSNR-Y {psnr:.1} dB", f.pts);
            }
        }
    }

    #[test]
    fn ensure_retunes_the_rate_in_place_and_reopens_for_anything_else() {
        for encoder in encoders() {
            let frames = moving(64, 48, 3, 3000);
            let mut slot = None;
            let name = encoder.name();
            let e = ensure(&mut slot, settings(encoder, 64, 48, 100_000, 30.0), true).expect("open");
            assert!(e.encode(&frames[0], true).expect("encode").expect("picture").keyframe);
            // A new rate: the same encoder, no IDR.
            let e = ensure(&mut slot, settings(encoder, 64, 48, 100_000, 50.0), false).expect("retune");
            assert_eq!(e.settings().fps, 50.0, "{name}");
            assert!(!e.encode(&frames[1], false).expect("encode").expect("picture").keyframe, "{name}");
            // A new bitrate: a new encoder, which starts with an IDR.
            let e = ensure(&mut slot, settings(encoder, 64, 48, 200_000, 50.0), false).expect("reopen");
            assert_eq!(e.settings().bitrate, 200_000, "{name}");
            assert!(e.encode(&frames[2], false).expect("encode").expect("picture").keyframe, "{name}: a new encoder");
        }
    }

    #[test]
    fn x264_holds_no_picture_back() {
        if let Err(e) = sys::library() {
            zerohop_testkit::skip("libx264 build 164", e);
            return;
        }
        let s = settings(CpuEncoder::X264 { preset: X264Preset::Superfast }, 64, 48, 100_000, 30.0);
        let mut e = crate::codec::x264::X264Encoder::new(s, X264Preset::Superfast).expect("x264");
        for f in &moving(64, 48, 5, 3000) {
            assert!(e.encode(f, f.pts == 0).expect("encode").is_some());
            assert_eq!(e.delayed_frames(), 0);
        }
    }
}
