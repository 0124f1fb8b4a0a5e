//! The whole CUDA ladder device driven end to end under `AccelSession`, with TEST DOUBLES at
//! every driver boundary: the recording doubles of NVDEC (`nvdec::fake`) and NVENC
//! (`nvenc::fake`), and `FakeGpu` below, a double of the CUDA driver's part (the rung buffers are
//! zerohop's own `DeviceNv12`, allocated by the real code in the context double's memory double,
//! host memory that records how each block was allocated; its "kernel" paints each rung of a
//! picture with a level derived from the picture's PTS, so pictures can be told apart after
//! encoding, and refuses a source picture the NVDEC double does not have mapped). What runs for
//! real is everything of zerohop's: the device's buffer pools, its NVENC and CPU-encode paths,
//! their bookkeeping across segments and size changes, and the pipeline above them. The kernel
//! itself is checked against its reference in `kernels/` and on GPUs by hw-ci.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::*;
use crate::accel::AccelSession;
use crate::cuda::context::double;
use crate::cuda::driver::{download_ladder, downloads};
use crate::cuda::nvdec::fake::{self as cuvid_fake, Format};
use crate::cuda::nvenc::fake as nvenc_fake;
use crate::probe::decode_video;
use crate::{Ladder, MemorySink, StreamSession};

/// 640x360 at 25 fps, baseline, no audio.
const FIXTURE: &str = "h264_360p25_baseline_noaudio.ts";

/// Pictures in the fixture, as the CPU decoder counts them (the NVDEC double makes one per
/// access unit).
fn pictures() -> u64 {
    decode_video(&fixture()).expect("fixture").len() as u64
}

fn fixture() -> Bytes {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(FIXTURE);
    Bytes::from(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

fn format(width: u32, height: u32) -> Format {
    Format { width, height, ..cuvid_fake::H264_1080P }
}

/// The grey level the fake kernel paints a picture with.
fn level(pts: i64) -> u8 {
    40 + 4 * (pts / 3600 % 40) as u8
}

struct FakeGpu {
    ctx: Arc<DeviceContext>,
    /// Launches made while no decoder picture was mapped (must stay 0).
    unmapped_launches: AtomicU64,
}

impl Default for FakeGpu {
    fn default() -> FakeGpu {
        // Handles of its own: the stream and page-locked memory records are process-wide.
        FakeGpu { ctx: double::context(double::handle(), double::handle()), unmapped_launches: AtomicU64::new(0) }
    }
}

impl LadderGpu for FakeGpu {
    type Buffer = DeviceNv12;
    fn context(&self) -> &Arc<DeviceContext> {
        &self.ctx
    }
    fn alloc(&self, width: u32, height: u32) -> Result<DeviceNv12, CudaError> {
        // The real allocator (cuMemAllocPitch in the memory double).
        DeviceNv12::alloc(&self.ctx, width, height)
    }
    fn scale(&self, m: &MappedFrame<'_>, rungs: &mut [ScaleTarget<'_>]) -> Result<u64, CudaError> {
        if cuvid_fake::live("mapping") != 1 {
            self.unmapped_launches.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: only compared with the NVDEC double's mapped addresses.
        if !cuvid_fake::is_mapped(unsafe { m.device_ptr() }) {
            return Err(CudaError::Invalid("the kernel read a picture that is not mapped".into()));
        }
        if !Arc::ptr_eq(m.context(), &self.ctx) {
            return Err(CudaError::Invalid("a picture of another context".into()));
        }
        for d in rungs.iter().map(|t| &*t.device) {
            let luma = d.pitch() * d.height() as usize;
            // SAFETY: only looked up in the memory double.
            double::with_bytes(unsafe { d.allocation().device_ptr() }, |data| {
                data[..luma].fill(level(m.pts()));
                data[luma..].fill(128);
            })?;
        }
        // The real download (driver::download_ladder) into the host pictures, through the
        // context double's cuMemcpy2DAsync and stream, then one sync, as `Gpu` does.
        let mut pairs = downloads(rungs);
        if pairs.is_empty() {
            return self.ctx.sync().map(|()| 0);
        }
        download_ladder(&self.ctx, &mut pairs)
    }
}

fn ladder() -> Ladder {
    r#"[{"name":"a","width":640,"height":360,"bitrate":600000},
        {"name":"b","width":320,"height":180,"bitrate":300000}]"#
        .parse()
        .expect("ladder")
}

fn session(nvenc: bool) -> AccelSession<CudaLadderDevice<FakeGpu>> {
    session_with(nvenc, 0)
}

/// With a parser that holds `delay` pictures back (released together at the end of a segment).
fn session_with(nvenc: bool, delay: usize) -> AccelSession<CudaLadderDevice<FakeGpu>> {
    session_for(nvenc, delay, ladder())
}

fn session_for(nvenc: bool, delay: usize, ladder: Ladder) -> AccelSession<CudaLadderDevice<FakeGpu>> {
    cuvid_fake::reset(format(640, 360), delay);
    nvenc_fake::reset();
    let nvenc = nvenc.then(|| NvencApi::from_table(nvenc_fake::table()));
    let cuvid = CuvidApi::from_fns(cuvid_fake::fns());
    let device =
        CudaLadderDevice::with_parts(FakeGpu::default(), cuvid, nvenc, ladder.len(), Preset::P1).expect("device");
    AccelSession::new(device, ladder)
}

fn calls(log: &[String], prefix: &str) -> usize {
    log.iter().filter(|l| l.starts_with(prefix)).count()
}

#[test]
fn nvenc_path_encodes_every_picture_from_device_buffers_and_keeps_its_sessions_across_segments() {
    let n = pictures();
    let mut s = session(true);
    for seg in 0..2 {
        let (_, k) = MemorySink::ladder(2);
        let r = s.transcode(fixture(), k).expect("segment");
        assert_eq!(r.frames_decoded, n, "segment {seg}");
        for st in &r.renditions {
            assert_eq!(st.frames_out, n, "segment {seg} rendition {}: every picture encoded", st.name);
            assert_eq!(st.keyframe_pts.first(), r.first_pts.as_ref(), "segment {seg}: an IDR first");
        }
        assert_eq!((st_size(&r, 0), st_size(&r, 1)), ((640, 360), (320, 180)));
        let t = r.device_traffic.expect("traffic");
        assert_eq!(t.frame_bytes, 0, "no picture crossed the bus");
        assert_eq!(t.bitstream_out, r.renditions.iter().map(|x| x.video_bytes).sum::<u64>());
        assert_eq!(cuvid_fake::live("mapping"), 0, "every decoder picture unmapped");
        assert_eq!(nvenc_fake::live("mapping"), 0, "every NVENC input unmapped");
    }
    assert_eq!(s.device().gpu.unmapped_launches.load(Ordering::Relaxed), 0, "the kernel ran on mapped pictures");
    let (syncs, copies) = double::stream_syncs(s.device().gpu.ctx.raw_stream() as usize);
    assert_eq!((syncs, copies), (2 * n, 0), "one sync per picture (before its unmap), no picture copied");
    let log = nvenc_fake::log();
    assert_eq!(calls(&log, "nvEncOpenEncodeSessionEx"), 2, "one session per rung, kept across segments");
    // Both rungs' pictures are submitted before the oldest is locked (the output delay).
    let first_lock = log.iter().position(|l| l.starts_with("nvEncLockBitstream")).expect("locked");
    assert!(
        calls(&log[..first_lock], "nvEncEncodePicture(#") > NVENC_OUTPUT_DELAY as usize * 2,
        "every rung submits before the oldest is locked"
    );
    let surfaces = s.device().decoder.format().expect("format").decode_surfaces;
    assert_eq!(calls(&log, "nvEncRegisterResource"), 2 * buffers_per_rung(surfaces), "inputs registered once");
    assert_eq!(calls(&log, "nvEncMapInputResource"), 2 * 2 * n as usize, "mapped per picture");
    assert_eq!(calls(&log, "nvEncEncodePicture(EOS)"), 2 * 2, "each rung drained at each segment's end");
    assert_eq!(s.device().release_failures(), 0);
    // Dropped where the GPU context is not current: every child binds it to release.
    double::unbind();
    let ctx = s.device().gpu.ctx.clone();
    drop(s);
    for kind in ["session", "registration", "bitstream"] {
        assert_eq!(nvenc_fake::live(kind), 0, "{kind} released with the device");
    }
    assert_eq!(cuvid_fake::live("decoder"), 0);
    assert_eq!(ctx.release_failures(), 0, "every release succeeded");
}

fn st_size(r: &crate::SegmentReport, i: usize) -> (u32, u32) {
    (r.renditions[i].width, r.renditions[i].height)
}

/// Defect 8: on the CPU-encode path every rung of a picture is copied into page-locked host
/// memory with `cuMemcpy2DAsync` (the stream double refuses pageable destinations), after the
/// kernel on the same stream, and ONE sync waits for the launch and all the copies (the old
/// path synchronised the launch, then each rung's pageable download again). Host buffers are
/// recycled: page-locked allocations are made once per rung and size, not per picture.
#[test]
fn cpu_encode_path_downloads_each_rung_picture_once_and_encodes_the_right_one() {
    let n = pictures();
    let mut s = session(false);
    let (ctx, stream) = {
        let c = &s.device().gpu.ctx;
        (c.raw_context() as usize, c.raw_stream() as usize)
    };
    for seg in 0..2u64 {
        let (out, k) = MemorySink::ladder(2);
        let r = s.transcode(fixture(), k).expect("segment");
        assert!(nvenc_fake::log().is_empty(), "NVENC is not touched");
        let t = r.device_traffic.expect("traffic");
        // Device pitch (the double's 512) to host pitch (the rows packed): the visible bytes of
        // every row, once per encoded rung picture.
        let per_picture: u64 =
            [(640u32, 360u32), (320, 180)].iter().map(|&(w, h)| HostNv12::len(HostNv12::row_bytes(w), h) as u64).sum();
        assert_eq!(t.frame_bytes, n * per_picture, "segment {seg}: one download per encoded rung picture");
        let (syncs, copies) = double::stream_syncs(stream);
        assert_eq!(copies, 2 * n * (seg + 1), "segment {seg}: a cuMemcpy2DAsync per rung picture, all completed");
        assert_eq!(syncs, n * (seg + 1), "segment {seg}: one stream sync per picture for the launch and every rung");
        for (i, o) in out.iter().enumerate() {
            let frames = decode_video(&o.take()).expect("a real H.264 rendition");
            assert_eq!(frames.len() as u64, n, "rendition {i}");
            for f in &frames {
                assert_eq!((f.width, f.height), st_size(&r, i));
                let mean = f.y.iter().map(|&v| f64::from(v)).sum::<f64>() / f.y.len() as f64;
                let want = f64::from(level(f.pts));
                assert!((mean - want).abs() < 4.0, "rendition {i} pts {}: luma {mean:.1}, painted {want}", f.pts);
            }
        }
    }
    // Per rung, a picture needs a new buffer only while all it has are queued (3), being encoded
    // (1) or just downloaded: at most 5 per rung, whatever the number of pictures.
    let allocs = double::host_allocs(ctx);
    assert!((2..=2 * 5).contains(&allocs), "{allocs} page-locked allocations for {} rung pictures", 4 * n);
    let device_ctx = s.device().gpu.ctx.clone();
    double::unbind();
    drop(s);
    assert_eq!(double::host_live(ctx), 0, "every page-locked buffer freed with the device");
    assert_eq!(device_ctx.release_failures(), 0, "cuMemFreeHost ran with its context pushed");
}

/// A rung at a lower rate keeps only some pictures: each kept rung gets its own host picture
/// (the sizes differ, so a wrong pairing would be refused by the download), and a rung that
/// skips a picture neither downloads nor encodes it.
#[test]
fn cpu_encode_path_pairs_each_kept_rung_with_its_own_host_picture_at_a_lower_rate() {
    let ladder: Ladder = r#"[{"name":"a","width":640,"height":360,"bitrate":600000},
        {"name":"b","width":320,"height":180,"bitrate":300000,"fps":10}]"#
        .parse()
        .expect("ladder");
    let mut s = session_for(false, 0, ladder);
    let stream = s.device().gpu.ctx.raw_stream() as usize;
    let (out, k) = MemorySink::ladder(2);
    let r = s.transcode(fixture(), k).expect("segment");
    let (a, b) = (r.renditions[0].frames_out, r.renditions[1].frames_out);
    assert_eq!(a, pictures(), "the full-rate rung keeps every picture");
    assert!(b > 0 && 3 * b < 2 * a, "the 10 fps rung keeps fewer of the 25 fps pictures: {b} of {a}");
    let (syncs, copies) = double::stream_syncs(stream);
    assert_eq!((syncs, copies), (a, a + b), "one sync per picture, a download per kept rung picture");
    for (i, o) in out.iter().enumerate() {
        let frames = decode_video(&o.take()).expect("a real H.264 rendition");
        assert_eq!(frames.len() as u64, [a, b][i], "rendition {i}");
        for f in &frames {
            assert_eq!((f.width, f.height), st_size(&r, i));
            let mean = f.y.iter().map(|&v| f64::from(v)).sum::<f64>() / f.y.len() as f64;
            let want = f64::from(level(f.pts));
            assert!((mean - want).abs() < 4.0, "rendition {i} pts {}: luma {mean:.1}, painted {want}", f.pts);
        }
    }
}

#[test]
fn a_size_change_mid_segment_flushes_the_old_sessions_and_loses_no_picture() {
    let mut s = session(true);
    let input = fixture();
    let (_, k) = MemorySink::ladder(2);
    let mut seg = s.begin(k);
    // TS packets are 188 bytes: cut on a packet boundary near the middle.
    let half = input.len() / 2 / 188 * 188;
    seg.push(input.slice(..half)).expect("first half");
    cuvid_fake::change_format(format(480, 360)); // 4:3 from here on: every rung changes size
    seg.push(input.slice(half..)).expect("second half");
    let r = seg.finish().expect("segment");
    assert_eq!(r.frames_decoded, pictures());
    for st in &r.renditions {
        assert_eq!(st.frames_out, r.frames_decoded, "rendition {}: no picture lost", st.name);
    }
    assert_eq!((st_size(&r, 0), st_size(&r, 1)), ((480, 360), (240, 180)), "the new size at the end");
    let log = nvenc_fake::log();
    assert_eq!(calls(&log, "nvEncOpenEncodeSessionEx"), 4, "a session per rung and size");
    // The old sessions were drained before the new ones encoded anything.
    let first_new = log.iter().position(|l| l.starts_with("nvEncInitializeEncoder(480x360")).expect("new size");
    let new_pictures = log[first_new..].iter().position(|l| l.starts_with("nvEncEncodePicture(#")).expect("encodes");
    assert!(
        calls(&log[..first_new + new_pictures], "nvEncEncodePicture(EOS)") >= 1,
        "an old session drained first: {log:?}"
    );
    assert_eq!(nvenc_fake::live("session"), 2, "the old sizes' sessions are gone");
    assert_eq!(nvenc_fake::live("mapping"), 0);
}

/// Defect 4: the end of a segment releases every picture the parser holds in one call; each is
/// scaled into a buffer of every rung before any is encoded, so a rung needs as many buffers as
/// the decoder has surfaces (plus what the encoder holds), not a fixed 4.
#[test]
fn a_flush_that_releases_the_whole_dpb_finds_a_buffer_for_every_picture() {
    for nvenc in [true, false] {
        // The double's stream needs 5 decode surfaces (min_num_decode_surfaces): the DPB.
        let mut s = session_with(nvenc, 5);
        let (_, k) = MemorySink::ladder(2);
        let r = s.transcode(fixture(), k).expect("segment");
        assert_eq!(r.frames_decoded, pictures(), "nvenc {nvenc}");
        for st in &r.renditions {
            assert_eq!(st.frames_out, r.frames_decoded, "nvenc {nvenc}, rendition {}", st.name);
        }
    }
}
