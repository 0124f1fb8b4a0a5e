//! The encoder's life cycle against the recording NVENC double (see `fake`), on a context
//! double, with input buffer doubles (`fake::FakeInput`).

use super::fake::{self, FakeInput};
use super::*;
use crate::cuda::context::double;
use crate::cuda::error::thread_release_failures;
use nvidia_video_codec_sdk::sys::nvEncodeAPI::NVENCSTATUS;

fn cfg() -> EncoderConfig {
    EncoderConfig {
        width: 1280,
        height: 720,
        fps_num: 30,
        fps_den: 1,
        bitrate: 4_000_000,
        preset: Preset::P3,
        low_latency: true,
        b_frames: 0,
        profile_idc: 100,
        output_delay: 0,
    }
}

fn ctx() -> Arc<DeviceContext> {
    double::context(0xC0, 0x5EA)
}

fn inputs(n: u64) -> Vec<FakeInput> {
    (0..n).map(|_| FakeInput::new(1280, 720, 1536)).collect()
}

fn open_with(c: EncoderConfig, inputs: &[FakeInput]) -> Result<Encoder, CudaError> {
    Encoder::open(NvencApi::from_table(fake::table()), &ctx(), c, &inputs.iter().collect::<Vec<_>>())
}

fn open(c: EncoderConfig) -> Result<Encoder, CudaError> {
    open_with(c, &inputs(2))
}

/// A fresh double that holds back the first `b_frames` pictures, as a B-frame encoder does, and
/// a session configured for them.
fn open_holding_back(b_frames: u32) -> Encoder {
    fake::reset();
    fake::hold_back(b_frames);
    open(EncoderConfig { b_frames, ..cfg() }).expect("open")
}

#[test]
fn a_session_runs_in_nvencs_documented_order_and_releases_everything() {
    fake::reset();
    let mut enc = open(cfg()).expect("open");
    let mut got = Vec::new();
    let mut out = |f: EncodedFrame<'_>| got.push((f.pts, f.keyframe, f.data.to_vec()));
    enc.encode(0, 3000, true, &mut out).expect("frame 0");
    enc.encode(1, 6000, false, &mut out).expect("frame 1");
    enc.set_bitrate(2_000_000).expect("reconfigure");
    enc.encode(0, 9000, true, &mut out).expect("frame 2");
    enc.flush(&mut out).expect("flush");
    drop(enc);
    assert_eq!(
        got,
        vec![
            (3000, true, vec![0, 0, 0, 1, 0x65, 0]),
            (6000, false, vec![0, 0, 0, 1, 0x41, 1]),
            (9000, true, vec![0, 0, 0, 1, 0x65, 2])
        ]
    );
    let log = fake::log();
    let expected = [
        "nvEncOpenEncodeSessionEx(cuda=true)",
        "nvEncGetEncodePresetConfigEx(NV_ENC_TUNING_INFO_LOW_LATENCY)",
        "nvEncInitializeEncoder(1280x720 30/1 cbr=4000000 gop=inf)",
        "nvEncSetIOCudaStreams(0x5ea,0x5ea)",
        "nvEncRegisterResource(pitch 1536)",
        "nvEncRegisterResource(pitch 1536)",
        "nvEncCreateBitstreamBuffer",
        "nvEncCreateBitstreamBuffer",
        "nvEncMapInputResource",
        "nvEncEncodePicture(#0 pts 3000 IDR)",
        "nvEncLockBitstream",
        "nvEncUnlockBitstream",
        "nvEncUnmapInputResource",
        "nvEncMapInputResource",
        "nvEncEncodePicture(#1 pts 6000)",
        "nvEncLockBitstream",
        "nvEncUnlockBitstream",
        "nvEncUnmapInputResource",
        "nvEncReconfigureEncoder(30/1 cbr=2000000)",
        "nvEncMapInputResource",
        "nvEncEncodePicture(#2 pts 9000 IDR)",
        "nvEncLockBitstream",
        "nvEncUnlockBitstream",
        "nvEncUnmapInputResource",
        "nvEncEncodePicture(EOS)",
        "nvEncUnregisterResource",
        "nvEncUnregisterResource",
        "nvEncDestroyBitstreamBuffer",
        "nvEncDestroyBitstreamBuffer",
        "nvEncDestroyEncoder",
    ];
    assert_eq!(log, expected);
    for kind in ["session", "registration", "bitstream", "mapping"] {
        assert_eq!(fake::live(kind), 0, "{kind} leaked");
    }
}

#[test]
fn held_back_pictures_come_out_in_order_with_a_later_one_or_at_eos() {
    let mut enc = open_holding_back(1);
    let pts = std::cell::RefCell::new(Vec::new());
    let mut out = |f: EncodedFrame<'_>| pts.borrow_mut().push(f.pts);
    enc.encode(0, 100, true, &mut out).expect("0");
    assert!(pts.borrow().is_empty(), "NEED_MORE_INPUT: nothing yet");
    enc.encode(1, 200, false, &mut out).expect("1");
    assert_eq!(*pts.borrow(), vec![100, 200]);
    fake::hold_back(1);
    enc.encode(0, 300, false, &mut out).expect("2");
    assert_eq!(*pts.borrow(), vec![100, 200]);
    enc.flush(&mut out).expect("eos");
    assert_eq!(*pts.borrow(), vec![100, 200, 300]);
    drop(enc);
    assert_eq!(fake::live("mapping"), 0);
}

#[test]
fn the_session_limit_is_a_typed_error_and_nothing_leaks() {
    fake::reset();
    fake::fail("nvEncOpenEncodeSessionEx", 1, NVENCSTATUS::NV_ENC_ERR_OUT_OF_MEMORY);
    let e = open(cfg()).expect_err("over the limit");
    assert!(matches!(e, CudaError::SessionLimit { ordinal: 0, .. }), "{e}");
    assert_eq!(e.code(), "gpu_session_limit");
    assert_eq!(fake::live("session"), 0);
}

#[test]
fn a_failure_half_way_through_open_releases_what_was_made() {
    for (api, nth) in [
        ("nvEncInitializeEncoder", 1),
        ("nvEncSetIOCudaStreams", 1),
        ("nvEncRegisterResource", 2),
        ("nvEncCreateBitstreamBuffer", 2),
    ] {
        fake::reset();
        fake::fail(api, nth, NVENCSTATUS::NV_ENC_ERR_INVALID_PARAM);
        let e = open(cfg()).expect_err(api);
        assert_eq!(e, CudaError::Nvenc { api, status: "NV_ENC_ERR_INVALID_PARAM".into() });
        assert!(e.to_string().contains(api), "{e}");
        for kind in ["session", "registration", "bitstream"] {
            assert_eq!(fake::live(kind), 0, "{api}: {kind} leaked");
        }
        assert_eq!(fake::log().last().map(String::as_str), Some("nvEncDestroyEncoder"), "{api}");
    }
}

#[test]
fn encode_errors_fail_the_frame_and_unmap_its_input() {
    fake::reset();
    let mut enc = open(cfg()).expect("open");
    let n = std::cell::Cell::new(0);
    let mut out = |_: EncodedFrame<'_>| n.set(n.get() + 1);
    fake::fail("nvEncLockBitstream", 1, NVENCSTATUS::NV_ENC_ERR_GENERIC);
    let e = enc.encode(0, 0, true, &mut out).expect_err("lock fails");
    assert!(e.to_string().contains("nvEncLockBitstream"), "{e}");
    assert_eq!(fake::live("mapping"), 0, "the input was unmapped");
    // The session is still usable for the next frame.
    enc.encode(1, 1, false, &mut out).expect("next frame");
    assert_eq!(n.get(), 1);
    assert!(matches!(enc.encode(7, 2, false, &mut out), Err(CudaError::Invalid(_))), "no such input");
}

#[test]
fn bad_configs_are_refused_before_the_driver_is_called() {
    fake::reset();
    for c in [EncoderConfig { width: 1279, ..cfg() }, EncoderConfig { fps_num: 0, ..cfg() }] {
        assert!(matches!(open(c), Err(CudaError::Invalid(_))));
    }
    // No input, an input smaller than the picture, the same input twice (NVENC refuses a second
    // registration of a buffer): refused before the driver.
    assert!(matches!(open_with(cfg(), &[]), Err(CudaError::Invalid(_))));
    let small = [FakeInput::new(640, 360, 768)];
    assert!(matches!(open_with(cfg(), &small), Err(CudaError::Invalid(_))));
    let one = &inputs(1)[0];
    let e = Encoder::open(NvencApi::from_table(fake::table()), &ctx(), cfg(), &[one, one]);
    assert!(matches!(e, Err(CudaError::Invalid(_))));
    assert!(fake::log().is_empty());
}

#[test]
fn a_table_without_an_entry_is_a_typed_error() {
    fake::reset();
    let mut t = fake::table();
    t.nvEncSetIOCudaStreams = None;
    let e = Encoder::open(NvencApi::from_table(t), &ctx(), cfg(), &inputs(1).iter().collect::<Vec<_>>())
        .expect_err("missing");
    assert!(matches!(e, CudaError::MissingSymbol { symbol: "nvEncSetIOCudaStreams", .. }), "{e}");
    assert_eq!(fake::live("session"), 0);
}

#[test]
fn presets_parse() {
    assert_eq!(Preset::parse("P1"), Some(Preset::P1));
    assert_eq!(Preset::parse("p7"), Some(Preset::P7));
    assert_eq!(Preset::parse("p8"), None);
}

/// NVIDIA's order at the end of a session (NvEncoder::DestroyEncoder): a picture still held by
/// the encoder is unmapped, every input unregistered, every bitstream buffer destroyed, then the
/// session; the double refuses any other order (and a refused destroy leaves the session live).
#[test]
fn dropping_a_session_with_a_picture_in_flight_releases_in_nvidias_order() {
    fake::reset();
    fake::hold_back(1);
    let bufs = inputs(2);
    let mut enc = open_with(EncoderConfig { b_frames: 1, ..cfg() }, &bufs).expect("open");
    enc.encode(0, 100, true, &mut |_| panic!("held back")).expect("0");
    assert_eq!((enc.in_flight(), fake::live("mapping")), (1, 1));
    let failures = thread_release_failures();
    // The context is not current on the dropping thread: Drop binds it first.
    double::unbind();
    drop(enc);
    assert_eq!(thread_release_failures(), failures, "every release succeeded");
    for kind in ["session", "registration", "bitstream", "mapping"] {
        assert_eq!(fake::live(kind), 0, "{kind} leaked");
    }
    let log = fake::log();
    let at = |call: &str| log.iter().rposition(|l| l.starts_with(call)).expect(call);
    assert!(at("nvEncUnmapInputResource") < at("nvEncUnregisterResource"), "{log:?}");
    assert!(at("nvEncUnregisterResource") < at("nvEncDestroyBitstreamBuffer"), "{log:?}");
    assert!(at("nvEncDestroyBitstreamBuffer") < at("nvEncDestroyEncoder"), "{log:?}");
    assert_eq!(double::current(), 0, "the encoder's context was pushed to release it, then popped");
}

/// A registration keeps its buffer's allocation until it is unregistered: a pool that drops its
/// buffers before its encoder frees nothing under NVENC.
#[test]
fn registrations_keep_their_buffers_until_unregistered() {
    fake::reset();
    let bufs = inputs(2);
    let weak = std::sync::Arc::downgrade(&bufs[0].allocation);
    let enc = open_with(cfg(), &bufs).expect("open");
    drop(bufs);
    assert!(weak.upgrade().is_some(), "still registered: still allocated");
    drop(enc);
    assert!(weak.upgrade().is_none(), "unregistered, then freed");
    assert_eq!(fake::live("registration"), 0);
}

/// A release that fails in Drop is recorded (on the context and process-wide), not discarded.
#[test]
fn a_failed_release_in_drop_is_recorded() {
    fake::reset();
    let c = ctx();
    let bufs = inputs(1);
    let enc = Encoder::open(NvencApi::from_table(fake::table()), &c, cfg(), &[&bufs[0]]).expect("open");
    fake::fail("nvEncDestroyEncoder", 1, NVENCSTATUS::NV_ENC_ERR_GENERIC);
    let before = (thread_release_failures(), crate::cuda::error::release_failures().count);
    drop(enc);
    assert_eq!(thread_release_failures(), before.0 + 1);
    assert!(crate::cuda::error::release_failures().count > before.1);
    assert_eq!(c.release_failures(), 1, "counted on the encoder's context");
    assert_eq!(fake::live("session"), 1, "the double keeps a session whose destroy failed");
}

/// The double is as strict as NVENC: a buffer registered twice, a session destroyed with its
/// resources still there, an unregister of a mapped input, an unmap of nothing are refused.
#[test]
fn the_nvenc_double_refuses_what_nvenc_forbids() {
    fake::reset();
    let api = NvencApi::from_table(fake::table());
    let c = ctx();
    let _current = c.push().expect("push");
    let buf = FakeInput::new(64, 64, 256);
    // SAFETY: the double's context and the memory double's addresses: nothing is dereferenced.
    unsafe {
        let enc = result::open_session(&api, 0, c.raw_context()).expect("open");
        let reg = result::register_resource(&api, enc, buf.addr, (64, 64, 256)).expect("register");
        let twice = result::register_resource(&api, enc, buf.addr, (64, 64, 256));
        assert_eq!(
            twice.expect_err("registered twice"),
            CudaError::Nvenc { api: "nvEncRegisterResource", status: "NV_ENC_ERR_RESOURCE_REGISTER_FAILED".into() }
        );
        let (mapped, _) = result::map_input_resource(&api, enc, reg).expect("map");
        assert!(result::map_input_resource(&api, enc, reg).is_err(), "mapped twice");
        assert!(result::unregister_resource(&api, enc, reg).is_err(), "unregistered while mapped");
        assert!(result::destroy_encoder(&api, enc).is_err(), "destroyed with a mapped input");
        result::unmap_input_resource(&api, enc, mapped).expect("unmap");
        assert!(result::unmap_input_resource(&api, enc, mapped).is_err(), "unmapped twice");
        assert!(result::destroy_encoder(&api, enc).is_err(), "destroyed with a registered input");
        result::unregister_resource(&api, enc, reg).expect("unregister");
        let bs = result::create_bitstream_buffer(&api, enc).expect("bitstream");
        assert!(result::destroy_encoder(&api, enc).is_err(), "destroyed with a bitstream buffer");
        result::destroy_bitstream_buffer(&api, enc, bs).expect("destroy bitstream");
        assert_eq!(fake::live("session"), 1, "refused destroys leave the session open");
        result::destroy_encoder(&api, enc).expect("destroy");
        assert!(result::destroy_encoder(&api, enc).is_err(), "a session destroyed twice");
    }
    assert_eq!(fake::live("session"), 0);
}

/// An input whose picture NVENC still holds is not mapped again (NVENC refuses a second map).
#[test]
fn an_input_still_being_encoded_is_refused_before_the_driver() {
    let mut enc = open_holding_back(1);
    enc.encode(0, 100, true, &mut |_| ()).expect("held back");
    let maps = fake::log().iter().filter(|l| l.starts_with("nvEncMapInputResource")).count();
    let e = enc.encode(0, 200, false, &mut |_| ()).expect_err("input 0 is NVENC's");
    assert!(matches!(e, CudaError::Invalid(_)), "{e}");
    assert_eq!(fake::log().iter().filter(|l| l.starts_with("nvEncMapInputResource")).count(), maps);
    enc.encode(1, 200, false, &mut |_| ()).expect("the other input");
    assert_eq!(enc.in_flight(), 0);
}

/// Defect 1's rules in the double: NVENC registers `cuMemAllocPitch` / `cuMemAlloc` memory with
/// its own pitch (a multiple of 4), never stream-ordered (pool) memory.
#[test]
fn the_nvenc_double_refuses_stream_ordered_memory_and_wrong_pitches() {
    use crate::cuda::context::double::Alloc;
    let refused = |input: FakeInput, status: &str| {
        fake::reset();
        let e = open_with(cfg(), &[input]).expect_err(status);
        assert_eq!(e, CudaError::Nvenc { api: "nvEncRegisterResource", status: status.into() });
        assert!(!matches!(e, CudaError::NoEncoder { .. }), "a refused buffer is not a missing NVENC");
        for kind in ["session", "registration", "bitstream"] {
            assert_eq!(fake::live(kind), 0, "{kind} leaked");
        }
    };
    refused(FakeInput::allocated(1280, 720, 1536, Alloc::StreamOrdered), "NV_ENC_ERR_RESOURCE_REGISTER_FAILED");
    // Registered with another pitch than cuMemAllocPitch returned.
    refused(FakeInput::allocated(1280, 720, 1280, Alloc::Pitched { pitch: 1536 }), "NV_ENC_ERR_INVALID_PARAM");
    // cuMemAlloc memory with a pitch that is not a multiple of 4.
    refused(FakeInput::allocated(1280, 720, 1282, Alloc::Linear), "NV_ENC_ERR_INVALID_PARAM");
    // What NVIDIA's sample does is accepted: cuMemAllocPitch with its pitch, or cuMemAlloc.
    fake::reset();
    open_with(cfg(), &[FakeInput::new(1280, 720, 1536)]).expect("pitched");
    open_with(cfg(), &[FakeInput::allocated(1280, 720, 1280, Alloc::Linear)]).expect("linear");
}

/// Defect 5 in the encoder: every call pushes the session's context and pops it after, so a
/// session works, and is released, on a thread with no context or another GPU's current.
#[test]
fn every_call_pushes_the_sessions_context_and_restores_the_callers() {
    fake::reset();
    let other = double::context(0xD0, 0x5EB);
    other.bind().expect("bind");
    let mut enc = open(cfg()).expect("open with another context current");
    assert_eq!(double::current(), 0xD0, "open restored the caller's context");
    enc.encode(0, 0, true, &mut |_| ()).expect("encode");
    enc.set_bitrate(1_000_000).expect("reconfigure");
    enc.flush(&mut |_| ()).expect("flush");
    assert_eq!(double::current(), 0xD0);
    let failures = thread_release_failures();
    drop(enc);
    assert_eq!(thread_release_failures(), failures, "every release succeeded");
    assert_eq!(double::current(), 0xD0, "drop restored the caller's context");
    assert_eq!(fake::live("session"), 0);
    assert!(!fake::log().iter().any(|l| l.starts_with("refused")), "{:?}", fake::log());
}

/// The double refuses a call made without the session's context current.
#[test]
fn the_nvenc_double_refuses_calls_without_the_sessions_context() {
    fake::reset();
    let api = NvencApi::from_table(fake::table());
    let c = ctx();
    let enc = {
        let _current = c.push().expect("push");
        // SAFETY: the double's context.
        unsafe { result::open_session(&api, 0, c.raw_context()) }.expect("open")
    };
    double::unbind();
    // SAFETY: a live session of the double.
    let e = unsafe { result::create_bitstream_buffer(&api, enc) }.expect_err("no context current");
    assert_eq!(e, CudaError::Nvenc { api: "nvEncCreateBitstreamBuffer", status: "NV_ENC_ERR_INVALID_CALL".into() });
    let _current = c.push().expect("push");
    // SAFETY: as above, destroyed once.
    unsafe { result::destroy_encoder(&api, enc) }.expect("destroy");
}

/// Defect 9: a picture NVENC refused leaves nothing pending (the next drain would lock a buffer
/// never submitted) and its input is unmapped.
#[test]
fn a_failed_encode_leaves_no_pending_picture() {
    fake::reset();
    let mut enc = open(cfg()).expect("open");
    fake::fail("nvEncEncodePicture", 1, NVENCSTATUS::NV_ENC_ERR_GENERIC);
    let e = enc.encode(0, 0, true, &mut |_| ()).expect_err("refused");
    assert!(e.to_string().contains("NV_ENC_ERR_GENERIC"), "{e}");
    assert_eq!((enc.in_flight(), fake::live("mapping")), (0, 0));
    let got = std::cell::RefCell::new(Vec::new());
    enc.encode(1, 3000, true, &mut |f| got.borrow_mut().push(f.pts)).expect("next picture");
    assert_eq!(*got.borrow(), vec![3000], "only the submitted picture is read back");
    let locks = fake::log().iter().filter(|l| l.starts_with("nvEncLockBitstream")).count();
    assert_eq!(locks, 1, "{:?}", fake::log());
}

/// Defect 9: statuses are `u32`; one this SDK does not know is reported with its number.
#[test]
fn an_unknown_status_is_reported_by_number() {
    fake::reset();
    let mut enc = open(cfg()).expect("open");
    fake::fail_raw("nvEncEncodePicture", 1, 1000);
    let e = enc.encode(0, 0, true, &mut |_| ()).expect_err("unknown status");
    assert_eq!(
        e,
        CudaError::Nvenc { api: "nvEncEncodePicture", status: "NVENCSTATUS 1000 (unknown to NVENC API 12.1)".into() }
    );
    assert_eq!(enc.in_flight(), 0);
}

/// Defect 9: a refused reconfiguration leaves the session's config as NVENC last accepted it.
#[test]
fn a_refused_bitrate_change_keeps_the_config() {
    fake::reset();
    let mut enc = open(cfg()).expect("open");
    fake::fail("nvEncReconfigureEncoder", 1, NVENCSTATUS::NV_ENC_ERR_INVALID_PARAM);
    enc.set_bitrate(1_000_000).expect_err("refused");
    assert_eq!((enc.bitrate(), enc.cfg.bitrate), (4_000_000, 4_000_000));
    enc.set_bitrate(2_000_000).expect("accepted");
    assert_eq!((enc.bitrate(), enc.cfg.bitrate), (2_000_000, 2_000_000));
}

/// Defect 9: a session dropped with pictures in flight sends EOS before unmapping their inputs
/// (the double refuses to unmap an input whose picture the encoder holds).
#[test]
fn drop_sends_eos_before_unmapping_inputs_in_flight() {
    let mut enc = open_holding_back(2);
    enc.encode(0, 0, true, &mut |_| ()).expect("held");
    enc.encode(1, 1, false, &mut |_| ()).expect("held");
    let failures = thread_release_failures();
    drop(enc);
    assert_eq!(thread_release_failures(), failures, "every release succeeded");
    let log = fake::log();
    let eos = log.iter().position(|l| l == "nvEncEncodePicture(EOS)").expect("EOS sent");
    let unmap = log.iter().position(|l| l.starts_with("nvEncUnmapInputResource")).expect("unmapped");
    assert!(eos < unmap, "{log:?}");
    assert_eq!(fake::live("mapping"), 0);
}

/// Defect 6: with an output delay, pictures stay in flight after NVENC reports them ready and are
/// locked only once `output_delay` newer ones were submitted (NvEncoder's output delay); EOS
/// reads back the rest.
#[test]
fn pictures_stay_in_flight_up_to_the_output_delay() {
    fake::reset();
    let bufs = inputs(4);
    let mut enc = open_with(EncoderConfig { output_delay: 2, ..cfg() }, &bufs).expect("open");
    let got = std::cell::RefCell::new(Vec::new());
    let mut out = |f: EncodedFrame<'_>| got.borrow_mut().push(f.pts);
    for (i, pts) in [100, 200, 300, 400].into_iter().enumerate() {
        enc.encode(i, pts, i == 0, &mut out).expect("encode");
    }
    assert_eq!(*got.borrow(), vec![100, 200], "two kept in flight");
    assert_eq!(enc.in_flight(), 2);
    let log = fake::log();
    let first_lock = log.iter().position(|l| l.starts_with("nvEncLockBitstream")).expect("locked");
    let encodes_before = log[..first_lock].iter().filter(|l| l.starts_with("nvEncEncodePicture(#")).count();
    assert_eq!(encodes_before, 3, "the oldest is locked only after two newer were submitted: {log:?}");
    enc.flush(&mut out).expect("eos");
    assert_eq!(*got.borrow(), vec![100, 200, 300, 400]);
    drop(enc);
    assert_eq!(fake::live("mapping"), 0);
}

/// A session opened at a guessed rate (30 fps) is told the stream's real one without a new
/// session: rate control budgets each picture for the rate it really comes at (issue 15's 2x
/// bitrate at 60 fps, on NVENC).
#[test]
fn the_frame_rate_is_reconfigured_in_place() {
    fake::reset();
    let mut enc = open(cfg()).expect("open");
    enc.set_rate(4_000_000, 60_000, 1000).expect("reconfigure");
    assert!(fake::log().iter().any(|c| c == "nvEncReconfigureEncoder(60000/1000 cbr=4000000)"), "{:?}", fake::log());
    assert_eq!((enc.cfg.fps_num, enc.cfg.fps_den), (60_000, 1000));
    // A later bitrate change keeps the rate NVENC accepted.
    enc.set_bitrate(2_000_000).expect("reconfigure");
    assert!(fake::log().iter().any(|c| c == "nvEncReconfigureEncoder(60000/1000 cbr=2000000)"), "{:?}", fake::log());
    assert_eq!(fake::live("session"), 1, "one session throughout");
}
