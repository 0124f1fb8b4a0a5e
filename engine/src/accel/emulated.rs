//! TEST DOUBLE of an accelerated device, for `cargo test` on machines with no GPU: "device
//! memory" is host NV12 buffers, NVDEC is the CPU decoder (its pictures converted to NV12, as
//! NVDEC outputs them), the scaler is the real `kernels/scale_ladder.cu` compiled for the CPU
//! (the emulation that `kernels/tests` checks against its reference), and NVENC is the CPU
//! encoder reading the NV12 surfaces (`host_encode`, the same asynchronous per-rung workers a GPU
//! without NVENC encodes with). Surfaces are pooled per rung and handed out and back as
//! the NVIDIA device does, and nothing copies a picture between "host" and "device" (the
//! conversions here stand for the hardware's own formats), so `frame_bytes` stays 0 unless a
//! test asks for a copy to be counted.

use zerohop_kernels::Nv12;

use super::host_encode::HostEncoders;
use super::{DeviceAu, DeviceError, DevicePicture, DeviceTraffic, EncodeJob, LadderDevice, RungPlan};
use crate::codec::H264Decoder;
use crate::frame::Frame;

pub struct EmulatedDevice {
    decoder: Option<H264Decoder>,
    /// Per rung: its surfaces and which are free.
    pools: Vec<Vec<(Nv12, bool)>>,
    encoders: HostEncoders,
    traffic: DeviceTraffic,
    /// Fail `encode` of this rung with a session-limit error (error-path tests).
    pub fail_encode_rung: Option<usize>,
    /// Scale launches so far (one per picture that some rung keeps).
    launches: u64,
}

impl std::fmt::Debug for EmulatedDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatedDevice").field("in_use", &self.in_use()).finish()
    }
}

impl EmulatedDevice {
    pub fn new(rungs: usize) -> EmulatedDevice {
        EmulatedDevice {
            decoder: None,
            pools: vec![Vec::new(); rungs],
            encoders: HostEncoders::new(rungs).expect("encoder threads"),
            traffic: DeviceTraffic::default(),
            fail_encode_rung: None,
            launches: 0,
        }
    }

    /// As [`EmulatedDevice::new`], its rungs encoded by `encoder` (tests that name theirs).
    pub fn with_encoder(rungs: usize, encoder: crate::codec::CpuEncoder) -> EmulatedDevice {
        let encoders = HostEncoders::with_encoder(rungs, encoder).expect("encoder threads");
        EmulatedDevice { encoders, ..EmulatedDevice::new(rungs) }
    }

    /// Scale launches so far: one per picture that at least one rung keeps.
    pub fn launches(&self) -> u64 {
        self.launches
    }

    /// Surfaces in use (handed out by decode, not yet encoded or released) per rung.
    pub fn in_use(&self) -> Vec<usize> {
        self.pools.iter().map(|p| p.iter().filter(|(_, free)| !free).count()).collect()
    }

    fn err(api: &str, e: impl std::fmt::Display) -> DeviceError {
        DeviceError { code: "gpu_error", api: api.into(), message: e.to_string() }
    }

    fn scale(&mut self, f: &Frame, sizes: &[Option<(u32, u32)>]) -> Result<DevicePicture, DeviceError> {
        // NVDEC's output: NV12 with a padded pitch.
        let pitch = (f.width as usize).next_multiple_of(256);
        let mut src = Nv12::new(f.width, f.height, pitch, 0);
        let (cw, ch) = f.chroma_size();
        for y in 0..f.height as usize {
            let w = f.width as usize;
            src.y[y * pitch..y * pitch + w].copy_from_slice(&f.y[y * w..y * w + w]);
        }
        for y in 0..ch as usize {
            for x in 0..cw as usize {
                src.uv[y * pitch + 2 * x] = f.u[y * cw as usize + x];
                src.uv[y * pitch + 2 * x + 1] = f.v[y * cw as usize + x];
            }
        }
        let mut taken = vec![None; sizes.len()];
        let mut dst = Vec::new();
        for (r, &(w, h)) in sizes.iter().enumerate().filter_map(|(r, s)| Some((r, s.as_ref()?))) {
            let pool = &mut self.pools[r];
            let idx = match pool.iter().position(|(s, free)| *free && (s.width, s.height) == (w, h)) {
                Some(i) => i,
                None => {
                    pool.push((Nv12::new(w, h, (w as usize).next_multiple_of(256), 0), true));
                    pool.len() - 1
                }
            };
            pool[idx].1 = false;
            taken[r] = Some(idx);
            dst.push(std::mem::replace(&mut pool[idx].0, Nv12::new(1, 1, 1, 0)));
        }
        // One "launch" for every rung that keeps the picture, as on the GPU; none when none does.
        let r = if dst.is_empty() {
            Ok(())
        } else {
            zerohop_kernels::emu::scale_ladder(&src, &mut dst, zerohop_kernels::BLOCK)
        };
        self.launches += u64::from(!dst.is_empty());
        let kept = taken.iter().enumerate().filter_map(|(r, idx)| Some((r, (*idx)?)));
        for ((r, idx), pic) in kept.zip(dst) {
            self.pools[r][idx].0 = pic;
        }
        r.map_err(|e| Self::err("cuLaunchKernel", e))?;
        Ok(DevicePicture { pts: f.pts, width: f.width, height: f.height, surfaces: taken })
    }
}

impl LadderDevice for EmulatedDevice {
    fn decode(&mut self, au: &[u8], pts: i64, plan: RungPlan<'_>) -> Result<Vec<DevicePicture>, DeviceError> {
        self.traffic.bitstream_in += au.len() as u64;
        let dec = match &mut self.decoder {
            Some(d) => d,
            None => self.decoder.insert(H264Decoder::new().map_err(|e| Self::err("cuvidCreateDecoder", e))?),
        };
        let mut frames = Vec::new();
        // A corrupt picture is dropped, as NVDEC conceals or skips it; the pipeline's picture
        // count check turns missing pictures into `frames_lost`.
        let _ = dec.decode(au, pts, &mut |f| frames.push(f));
        frames.iter().map(|f| self.scale(f, &plan(f.pts, f.width, f.height))).collect()
    }

    fn flush(&mut self, plan: RungPlan<'_>) -> Result<Vec<DevicePicture>, DeviceError> {
        let mut frames = Vec::new();
        if let Some(mut d) = self.decoder.take() {
            let _ = d.flush(&mut |f| frames.push(f));
        }
        frames.iter().map(|f| self.scale(f, &plan(f.pts, f.width, f.height))).collect()
    }

    fn encode(&mut self, job: EncodeJob<'_>) -> Result<Vec<DeviceAu>, DeviceError> {
        let EncodeJob { rung, surface, pts, keyframe, settings: s } = job;
        let (pic, free) = &mut self.pools[rung][surface];
        assert!(!*free, "encode of a surface that was not handed out");
        *free = true;
        if self.fail_encode_rung == Some(rung) {
            return Err(DeviceError {
                code: "gpu_session_limit",
                api: "nvEncOpenEncodeSessionEx".into(),
                message: "NV_ENC_ERR_OUT_OF_MEMORY (emulated session limit)".into(),
            });
        }
        // "NVENC" reads the surface: its samples go to the rung's encoder as they are.
        let mut buf = self.encoders.buffer(rung, pic.width, pic.height, pic.pitch);
        let luma = pic.pitch * pic.height as usize;
        buf.data[..luma].copy_from_slice(&pic.y);
        buf.data[luma..].copy_from_slice(&pic.uv);
        let aus = self.encoders.encode(rung, buf, pts, keyframe, s)?;
        self.traffic.bitstream_out += aus.iter().map(|a| a.data.len() as u64).sum::<u64>();
        Ok(aus)
    }

    fn release(&mut self, rung: usize, surface: usize) {
        self.pools[rung][surface].1 = true;
    }

    fn finish(&mut self, rung: usize) -> Result<Vec<DeviceAu>, DeviceError> {
        let aus = self.encoders.finish(rung)?;
        self.traffic.bitstream_out += aus.iter().map(|a| a.data.len() as u64).sum::<u64>();
        Ok(aus)
    }

    fn traffic(&self) -> DeviceTraffic {
        self.traffic
    }

    fn describe(&self) -> String {
        "emulated (test double: CPU codec + the CUDA kernel compiled for the CPU)".into()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::accel::AccelSession;
    use crate::probe::decode_video;
    use crate::{ChannelSink, MemorySink, RenditionEvent, RenditionSink, Session, SessionConfig};
    use crate::{Ladder, StreamSession, TranscodeError};

    const LADDER: &str = "P360p30fps16x9,P240p30fps16x9";

    fn fixture(name: &str) -> Bytes {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name);
        Bytes::from(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
    }

    /// Mean luma PSNR of `a` against `b` (same sizes, same picture count).
    fn psnr(a: &[Frame], b: &[Frame]) -> f64 {
        assert_eq!(a.len(), b.len());
        let mut total = 0.0;
        for (x, y) in a.iter().zip(b) {
            assert_eq!((x.width, x.height), (y.width, y.height));
            let mse = x.y.iter().zip(&y.y).map(|(p, q)| (f64::from(*p) - f64::from(*q)).powi(2)).sum::<f64>()
                / x.y.len() as f64;
            total += if mse == 0.0 { 99.0 } else { 10.0 * (255.0 * 255.0 / mse).log10() };
        }
        total / a.len() as f64
    }

    #[test]
    fn the_device_ladder_matches_the_cpu_session_and_copies_no_pictures() {
        let ladder: Ladder = LADDER.parse().expect("ladder");
        for name in ["h264_720p30_main_slices_aac.ts", "h264_360p25_baseline_noaudio.ts"] {
            let input = fixture(name);
            let mut accel = AccelSession::new(EmulatedDevice::new(ladder.len()), ladder.clone());
            let (gpu_out, s) = MemorySink::ladder(ladder.len());
            let report = accel.transcode(input.clone(), s).expect(name);
            let mut cpu = Session::open(SessionConfig::new(ladder.clone())).expect("cpu session");
            let (cpu_out, s) = MemorySink::ladder(ladder.len());
            let cpu_report = cpu.transcode(input.clone(), s).expect("cpu");

            assert_eq!(report.frames_decoded, cpu_report.frames_decoded, "{name}: pictures decoded");
            assert_eq!(report.media_duration, cpu_report.media_duration, "{name}");
            for (i, (g, c)) in gpu_out.iter().zip(&cpu_out).enumerate() {
                let (g, c) = (decode_video(&g.take()).expect("gpu rendition"), decode_video(&c.take()).expect("cpu"));
                let (gs, cs) = (&report.renditions[i], &cpu_report.renditions[i]);
                assert_eq!(g.len(), c.len(), "{name} rendition {i}: same frame count as the CPU session");
                assert_eq!((gs.width, gs.height), (cs.width, cs.height), "{name} rendition {i}: size");
                assert_eq!(gs.keyframe_pts, cs.keyframe_pts, "{name} rendition {i}: keyframes at the same PTS");
                assert_eq!(gs.copied_pes, cs.copied_pes, "{name} rendition {i}: audio copied");
                // Same encoder, a different (but checked) scaler: the pictures agree closely.
                let p = psnr(&g, &c);
                assert!(p > 35.0, "{name} rendition {i}: {p:.1} dB against the CPU session's output");
            }
            for r in [&report, &cpu_report] {
                let first = r.first_picture_after.expect("a first picture");
                for st in &r.renditions {
                    let chunk = st.first_chunk_after.expect("a first chunk");
                    assert!(chunk >= first && chunk <= r.wall_time, "{name}: {chunk:?} vs {first:?}");
                }
            }
            let t = report.device_traffic.expect("device traffic");
            assert_eq!(t.frame_bytes, 0, "{name}: no picture crossed host<->device");
            assert!(t.bitstream_in > 0 && t.bitstream_out > 0, "{name}: {t:?}");
            let video: u64 = report.renditions.iter().map(|r| r.video_bytes).sum();
            assert_eq!(t.bitstream_out, video, "{name}: what came back is exactly the encoded video");
            assert_eq!(accel.device().in_use(), vec![0; ladder.len()], "{name}: every surface returned");
        }
    }

    #[test]
    fn frame_rate_reduction_returns_dropped_surfaces_and_segments_reuse_the_session() {
        // The 25 fps source into a 15 fps rung: pictures are dropped.
        let ladder: Ladder =
            r#"[{"name":"a","width":320,"height":180,"bitrate":300000,"fps":15,"gop":"1"}]"#.parse().expect("ladder");
        let mut accel = AccelSession::new(EmulatedDevice::new(1), ladder.clone());
        let mut kept = 0;
        for seq in 0..2 {
            let (out, s) = MemorySink::ladder(1);
            let r = accel.transcode(fixture("h264_360p25_baseline_noaudio.ts"), s).expect("segment");
            let st = &r.renditions[0];
            assert!(st.frames_dropped > 0 && st.frames_out + st.frames_dropped == st.frames_in, "{seq}: {st:?}");
            assert_eq!(decode_video(&out[0].take()).expect("decode").len() as u64, st.frames_out);
            assert_eq!(accel.device().in_use(), vec![0], "dropped pictures' surfaces came back");
            kept += st.frames_out;
            // The cadence decides before the device scales: a dropped picture costs no launch.
            assert_eq!(accel.device().launches(), kept, "{seq}: one scale launch per kept picture");
        }
    }

    #[test]
    fn an_abandoned_segment_leaves_nothing_behind_for_the_next_one() {
        let ladder: Ladder = LADDER.parse().expect("ladder");
        let input = fixture("h264_720p30_main_slices_aac.ts");
        let fresh = {
            let mut accel = AccelSession::new(EmulatedDevice::new(2), ladder.clone());
            let (out, s) = MemorySink::ladder(2);
            let r = accel.transcode(input.clone(), s).expect("fresh session");
            (r, out.iter().map(|o| decode_video(&o.take()).expect("decode").len()).collect::<Vec<_>>())
        };
        let mut accel = AccelSession::new(EmulatedDevice::new(2), ladder.clone());
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..2).map(|_| crossbeam_channel::unbounded()).unzip();
        let s = txs.into_iter().map(|t| Box::new(ChannelSink(t)) as Box<dyn RenditionSink>).collect();
        let mut seg = accel.begin(s);
        seg.push(input.slice(..input.len() / 2)).expect("first half");
        drop(seg); // the broadcaster hung up: pictures are in the decoder and the encoders
        for rx in &rxs {
            let events: Vec<RenditionEvent> = rx.try_iter().collect();
            assert!(matches!(events.last(), Some(RenditionEvent::Failed(_))), "the sinks were told: {events:?}");
        }
        assert_eq!(accel.device().in_use(), vec![0, 0], "every surface came back");
        let (out, s) = MemorySink::ladder(2);
        let r = accel.transcode(input, s).expect("the next segment");
        for (i, o) in out.iter().enumerate() {
            let (a, b) = (&r.renditions[i], &fresh.0.renditions[i]);
            assert_eq!(a.frames_out, b.frames_out, "rendition {i}: nothing left over came out");
            assert_eq!(a.keyframe_pts, b.keyframe_pts, "rendition {i}");
            assert_eq!(decode_video(&o.take()).expect("decode").len(), fresh.1[i], "rendition {i}");
        }
    }

    #[test]
    fn bad_input_and_device_errors_fail_the_segment_with_typed_codes() {
        let ladder: Ladder = LADDER.parse().expect("ladder");
        let mut accel = AccelSession::new(EmulatedDevice::new(2), ladder.clone());
        for (name, code) in [
            ("h264_10bit.ts", "unsupported_bit_depth"),
            ("hevc_320x240.ts", "unsupported_codec"),
            ("audio_only.ts", "no_video"),
            ("garbage.ts", "not_transport_stream"),
        ] {
            let (_, s) = MemorySink::ladder(2);
            let e = accel.transcode(fixture(name), s).expect_err(name);
            assert_eq!(e.code(), code, "{name}: {e}");
        }
        // The device refuses a session: a typed error naming the API; the next segment works.
        accel.device.fail_encode_rung = Some(1);
        let (_, s) = MemorySink::ladder(2);
        let e = accel.transcode(fixture("h264_360p25_baseline_noaudio.ts"), s).expect_err("session limit");
        assert_eq!(e.code(), "gpu_session_limit");
        assert!(matches!(&e, TranscodeError::Device { api, .. } if api == "nvEncOpenEncodeSessionEx"), "{e}");
        accel.device.fail_encode_rung = None;
        let (out, s) = MemorySink::ladder(2);
        accel.transcode(fixture("h264_360p25_baseline_noaudio.ts"), s).expect("recovered");
        assert!(!out[1].take().is_empty());
    }
}
