//! The decoder's life cycle against the recording NVDEC double (see `fake`), on a context
//! double.

use super::fake::{self, Format, H264_1080P};
use super::*;
use crate::cuda::context::double;
use crate::cuda::error::thread_release_failures;

fn ctx() -> Arc<DeviceContext> {
    double::context(0xC0, 0x5EA)
}

fn decoder() -> NvDecoder {
    NvDecoder::new(CuvidApi::from_fns(fake::fns()), &ctx()).expect("parser")
}

/// What a test keeps of a mapped picture (the picture itself cannot outlive its mapping).
#[derive(Debug, Clone, Copy)]
struct Seen {
    pts: i64,
    width: u32,
    height: u32,
    pitch: u32,
    surface_height: u32,
}

fn collect(frames: &mut Vec<Seen>) -> impl FnMut(&MappedFrame<'_>) -> Result<(), CudaError> + '_ {
    move |f| {
        assert!(fake::is_mapped(f.ptr), "lent while mapped");
        frames.push(Seen {
            pts: f.pts(),
            width: f.width(),
            height: f.height(),
            pitch: f.pitch(),
            surface_height: f.surface_height(),
        });
        Ok(())
    }
}

#[test]
fn pictures_come_out_mapped_with_their_pts_and_everything_is_released() {
    fake::reset(H264_1080P, 2);
    let mut d = decoder();
    let mut frames = Vec::new();
    for (i, pts) in [3000i64, 6000, 9000, 12000].into_iter().enumerate() {
        d.push(&[0, 0, 0, 1, 0x65, i as u8], pts, &mut collect(&mut frames)).expect("push");
    }
    // A display delay of 2: two pictures are still held until the end of the segment.
    assert_eq!(frames.len(), 2);
    d.flush(&mut collect(&mut frames)).expect("flush");
    assert_eq!(frames.iter().map(|f| f.pts).collect::<Vec<_>>(), vec![3000, 6000, 9000, 12000]);
    let f = frames[0];
    assert_eq!((f.width, f.height, f.pitch, f.surface_height), (1920, 1080, 2048, 1080));
    assert_eq!(d.format().map(|f| (f.coded_width, f.coded_height, f.decode_surfaces)), Some((1920, 1088, 9)));
    assert_eq!(d.pictures_decoded(), 4);
    drop(d);
    let log = fake::log();
    assert_eq!(log[0], "cuvidCreateVideoParser(clock 90000)");
    assert_eq!(log[1], "cuvidParseVideoData(6 bytes pts 3000)");
    assert_eq!(log[2], "cuvidCreateDecoder(1920x1088 -> 1920x1080, 9 surfaces)");
    assert_eq!(log[3], "cuvidDecodePicture(0)");
    // Every map is followed by its unmap before anything else happens.
    for (i, l) in log.iter().enumerate() {
        if l.starts_with("cuvidMapVideoFrame64") {
            assert!(l.ends_with("on 0x5ea)"), "mapped on the scaling stream: {l}");
            assert!(log[i + 1].starts_with("cuvidUnmapVideoFrame64"), "{log:?}");
        }
    }
    assert_eq!(&log[log.len() - 2..], ["cuvidDestroyVideoParser", "cuvidDestroyDecoder"]);
    for kind in ["parser", "decoder", "mapping"] {
        assert_eq!(fake::live(kind), 0, "{kind} leaked");
    }
}

#[test]
fn the_decoder_stays_warm_across_segments_and_is_recreated_on_a_new_format() {
    fake::reset(H264_1080P, 0);
    let mut d = decoder();
    let mut frames = Vec::new();
    d.push(&[1], 0, &mut collect(&mut frames)).expect("segment 1");
    d.flush(&mut collect(&mut frames)).expect("flush");
    // Same stream parameters again (next segment's SPS): no new decoder.
    fake::change_format(H264_1080P);
    d.push(&[2], 1, &mut collect(&mut frames)).expect("segment 2");
    let creates = |log: &[String]| log.iter().filter(|l| l.starts_with("cuvidCreateDecoder")).count();
    assert_eq!(creates(&fake::log()), 1);
    // A resolution change: the old decoder goes, a new one comes.
    fake::change_format(Format { width: 1280, height: 720, ..H264_1080P });
    d.push(&[3], 2, &mut collect(&mut frames)).expect("segment 3");
    assert_eq!(creates(&fake::log()), 2);
    assert_eq!(frames.last().map(|f| (f.width, f.height)), Some((1280, 720)));
    assert_eq!(fake::live("decoder"), 1);
    drop(d);
    assert_eq!(fake::live("decoder"), 0);
}

#[test]
fn unsupported_streams_are_typed_errors_from_the_sequence_callback() {
    for (format, what) in [
        (Format { bit_depth: 10, ..H264_1080P }, "10 bits"),
        (Format { chroma: dec::cudaVideoChromaFormat::cudaVideoChromaFormat_422, ..H264_1080P }, "422"),
        (Format { codec: dec::cudaVideoCodec::cudaVideoCodec_HEVC, ..H264_1080P }, "HEVC"),
    ] {
        fake::reset(format, 0);
        let mut d = decoder();
        let mut frames = Vec::new();
        let e = d.push(&[0], 0, &mut collect(&mut frames)).expect_err(what);
        assert!(matches!(e, CudaError::NoDecoder { ordinal: 0, .. }), "{e}");
        assert!(e.to_string().contains(what), "{e}");
        assert!(frames.is_empty());
        assert_eq!(fake::live("decoder"), 0);
    }
}

#[test]
fn driver_failures_end_the_call_with_the_api_name_and_release_the_mapping() {
    fake::reset(H264_1080P, 0);
    fake::fail("cuvidCreateDecoder", 2);
    let mut d = decoder();
    let mut frames = Vec::new();
    let e = d.push(&[0], 0, &mut collect(&mut frames)).expect_err("create fails");
    assert_eq!(e, CudaError::Cuvid { api: "cuvidCreateDecoder", code: 2 });

    fake::reset(H264_1080P, 0);
    let mut d = decoder();
    let e = d.push(&[0], 0, &mut |_| Err(CudaError::Invalid("kernel launch failed".into()))).expect_err("callback");
    assert_eq!(e, CudaError::Invalid("kernel launch failed".into()));
    assert_eq!(fake::live("mapping"), 0, "unmapped although the consumer failed");
    // The decoder goes on with the next picture.
    let mut frames = Vec::new();
    d.push(&[1], 3003, &mut collect(&mut frames)).expect("next");
    assert_eq!(frames.len(), 1);

    fake::reset(H264_1080P, 0);
    fake::fail("cuvidCreateVideoParser", 999);
    let e = NvDecoder::new(CuvidApi::from_fns(fake::fns()), &ctx()).expect_err("no parser");
    assert_eq!(e.code(), "nvdec_error");
}

#[test]
fn caps_are_read_for_8_bit_420_h264() {
    fake::reset(H264_1080P, 0);
    double::unbind();
    let caps = CuvidApi::from_fns(fake::fns()).h264_caps(&ctx()).expect("caps (binds its context)");
    assert_eq!(caps, DecodeCaps { supported: true, engines: 7, max_width: 4096, max_height: 4096 });
}

/// cuvid creates and destroys decoders on the thread's current context (NVIDIA's NvDecoder
/// pushes its own around both): the decoder binds its context for a new format and in Drop, so
/// neither fails on a thread where the context is not current (the double refuses otherwise).
#[test]
fn the_decoder_binds_its_context_to_create_and_destroy() {
    fake::reset(H264_1080P, 0);
    let mut d = decoder();
    double::unbind();
    let mut frames = Vec::new();
    d.push(&[0], 0, &mut collect(&mut frames)).expect("created on the bound context");
    assert_eq!(fake::live("decoder"), 1);
    double::unbind();
    fake::change_format(Format { width: 1280, height: 720, ..H264_1080P });
    d.push(&[1], 1, &mut collect(&mut frames)).expect("recreated on the bound context");
    assert_eq!(frames.len(), 2);
    let failures = thread_release_failures();
    double::unbind();
    drop(d);
    assert_eq!(thread_release_failures(), failures, "every release succeeded");
    for kind in ["parser", "decoder", "mapping"] {
        assert_eq!(fake::live(kind), 0, "{kind} leaked");
    }
}

/// A picture is unmapped before the next is mapped and before its decoder can go; the double
/// refuses a second unmap, a destroy with a picture mapped, and a create without a context.
#[test]
fn the_nvdec_double_refuses_what_nvdec_forbids() {
    fake::reset(H264_1080P, 0);
    let api = CuvidApi::from_fns(fake::fns());
    double::unbind();
    // SAFETY: CUVIDDECODECREATEINFO and CUVIDPROCPARAMS are valid all-zero.
    let (mut ci, mut vpp): (dec::CUVIDDECODECREATEINFO, dec::CUVIDPROCPARAMS) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    ci.ulNumOutputSurfaces = 1;
    let e = result::create_decoder(&api, &mut ci).expect_err("no context");
    assert_eq!(e, CudaError::Cuvid { api: "cuvidCreateDecoder", code: 201 });
    let c = ctx();
    c.bind().expect("bind");
    let d = result::create_decoder(&api, &mut ci).expect("create");
    // SAFETY: the double's handles; nothing is dereferenced.
    unsafe {
        assert!(result::map_video_frame(&api, d, 0, &mut vpp).is_err(), "a picture this decoder did not decode");
        for idx in [0, 1] {
            let mut pic: dec::CUVIDPICPARAMS = std::mem::zeroed();
            pic.CurrPicIdx = idx;
            result::decode_picture(&api, d, &mut pic).expect("decode");
        }
        let (ptr, _) = result::map_video_frame(&api, d, 0, &mut vpp).expect("map");
        assert!(fake::is_mapped(ptr));
        assert!(result::map_video_frame(&api, d, 1, &mut vpp).is_err(), "more mapped than output surfaces");
        assert!(result::destroy_decoder(&api, d).is_err(), "destroyed with a picture mapped");
        result::unmap_video_frame(&api, d, ptr).expect("unmap");
        assert!(!fake::is_mapped(ptr));
        assert!(result::unmap_video_frame(&api, d, ptr).is_err(), "unmapped twice");
        double::unbind();
        assert!(result::destroy_decoder(&api, d).is_err(), "destroyed without its context");
        c.bind().expect("bind");
        result::destroy_decoder(&api, d).expect("destroy");
    }
    assert_eq!(fake::live("decoder"), 0);
}

/// Defect 3: a size change mid-stream with pictures held back. In one parse call the parser
/// displays the old sequence's held pictures, then the sequence callback replaces the decoder;
/// each picture must be mapped on the decoder that decoded it (the double refuses a map of a
/// picture the decoder did not decode) and the old decoder released after.
#[test]
fn a_format_change_maps_the_old_pictures_on_the_old_decoder() {
    fake::reset(H264_1080P, 2);
    let mut d = decoder();
    let mut frames = Vec::new();
    for pts in 0..4 {
        d.push(&[0, 0, 1, 0x65], pts * 3000, &mut collect(&mut frames)).expect("1080p");
    }
    assert_eq!(frames.len(), 2, "two held back");
    fake::change_format(Format { width: 1280, height: 720, ..H264_1080P });
    d.push(&[0, 0, 1, 0x65], 12_000, &mut collect(&mut frames)).expect("the change");
    d.flush(&mut collect(&mut frames)).expect("flush");
    let seen: Vec<(i64, u32)> = frames.iter().map(|f| (f.pts, f.width)).collect();
    assert_eq!(seen, vec![(0, 1920), (3000, 1920), (6000, 1920), (9000, 1920), (12_000, 1280)]);
    assert_eq!(fake::live("decoder"), 1, "the old decoder was released once its pictures were out");
    assert_eq!(fake::live("mapping"), 0);
    drop(d);
    assert_eq!(fake::live("decoder"), 0);
}
