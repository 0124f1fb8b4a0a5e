//! The encoder's life cycle against the recording NVENC double (see `fake`).

use std::ffi::c_void;

use super::fake;
use super::*;

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
    }
}

const CTX: *mut c_void = 0xC0 as *mut c_void;
const STREAM: *mut c_void = 0x5EA as *mut c_void;

fn inputs(n: u64) -> Vec<InputSurface> {
    (0..n).map(|i| InputSurface { ptr: 0x7000_0000 + i * 0x20_0000, pitch: 1536 }).collect()
}

fn open(c: EncoderConfig) -> Result<Encoder, CudaError> {
    Encoder::open(NvencApi::from_table(fake::table()), 0, CTX, STREAM, c, &inputs(2))
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
        "nvEncRegisterResource(0x70000000 pitch 1536)",
        "nvEncRegisterResource(0x70200000 pitch 1536)",
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
        "nvEncReconfigureEncoder(cbr=2000000)",
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
    fake::reset();
    fake::hold_back(1);
    let mut enc = open(EncoderConfig { b_frames: 1, ..cfg() }).expect("open");
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
    let e = Encoder::open(NvencApi::from_table(fake::table()), 0, std::ptr::null_mut(), STREAM, cfg(), &inputs(1));
    assert!(matches!(e, Err(CudaError::Invalid(_))));
    assert!(fake::log().is_empty());
}

#[test]
fn a_table_without_an_entry_is_a_typed_error() {
    fake::reset();
    let mut t = fake::table();
    t.nvEncSetIOCudaStreams = None;
    let e = Encoder::open(NvencApi::from_table(t), 0, CTX, STREAM, cfg(), &inputs(1)).expect_err("missing");
    assert!(matches!(e, CudaError::MissingSymbol { symbol: "nvEncSetIOCudaStreams", .. }), "{e}");
    assert_eq!(fake::live("session"), 0);
}

#[test]
fn presets_parse() {
    assert_eq!(Preset::parse("P1"), Some(Preset::P1));
    assert_eq!(Preset::parse("p7"), Some(Preset::P7));
    assert_eq!(Preset::parse("p8"), None);
}
