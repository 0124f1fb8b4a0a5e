//! Messages real go-livepeer 0.9.1 nodes sent in the by-hand pairings (doc/livepeer.md), kept in
//! tests/fixtures/livepeer/ and read here with zerohop's own messages: what each peer put in
//! them is what zerohop reads out, and zerohop's figures (pixels, Keccak-256, capability bits)
//! agree with the ones go-livepeer computed.

use base64::Engine as _;
use prost::Message as _;
use sha3::Digest as _;
use zerohop_control::livepeer::capabilities::{self, Capability};
use zerohop_control::livepeer::ladder;
use zerohop_control::livepeer::messages::{
    NotifySegment, OrchestratorInfo, OrchestratorRequest, RegisterRequest, SegData, TranscodeOutcome, TranscodeResult,
};
use zerohop_control::livepeer::results::{self, Part, PartsReader};
use zerohop_engine::probe;
use zerohop_engine::profile::CodecProfile;

/// The segment every pairing pushed (tests/fixtures), 1280x720, 30 pictures.
const SEGMENT: &str = "h264_720p30_main_slices_aac.ts";

fn vector(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/livepeer").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn go_livepeer_default_ladder(seg: &SegData) {
    let l = ladder::from_livepeer(seg.ladder()).expect("zerohop makes go-livepeer's default ladder");
    let rungs: Vec<_> = l.profiles().iter().map(|p| (p.name.as_str(), p.width, p.height, p.bitrate, p.fps)).collect();
    assert_eq!(rungs, [("P240p30fps16x9", 426, 240, 600_000, 30), ("P360p30fps16x9", 640, 360, 1_200_000, 30)]);
}

fn zerohop_bits() -> Vec<u64> {
    capabilities::bitstring(&capabilities::zerohop(&[CodecProfile::High]))
}

#[test]
fn a_go_livepeer_transcoders_registration() {
    let r = RegisterRequest::decode(&vector("go-transcoder.RegisterRequest.bin")[..]).expect("holds in this test");
    assert_eq!((r.secret.as_str(), r.capacity), ("s3cret", 10), "-orchSecret s3cret, go-livepeer's default capacity");
    let caps = r.capabilities.expect("capabilities");
    assert_eq!(caps.version, "0.9.1");
    let needed = capabilities::bitstring(&[Capability::H264, Capability::MpegTs]);
    assert!(capabilities::compatible(&needed, &caps.bitstring), "it decodes H.264 and writes MPEG-TS");
}

#[test]
fn a_go_livepeer_orchestrators_notify() {
    let n = NotifySegment::decode(&vector("go-orchestrator.NotifySegment.bin")[..]).expect("holds in this test");
    assert!(n.url.starts_with("https://127.0.0.1:19001/stream/") && n.url.ends_with(".tempfile"), "{}", n.url);
    assert_eq!(n.profiles, b"invalid", "what go-livepeer sends old transcoders");
    let seg = n.seg_data.expect("SegData");
    assert!(seg.session_id().is_some_and(|s| !s.is_empty()));
    assert_eq!(seg.duration, 2000, "the gateway's default for a push without a duration");
    go_livepeer_default_ladder(&seg);
    assert_eq!(ladder::options(&seg).clip, None, "no clip");
    let job = seg.capabilities.expect("the job's capabilities").bitstring;
    assert!(capabilities::compatible(&job, &zerohop_bits()), "{:?}", capabilities::missing(&job, &zerohop_bits()));
}

#[test]
fn a_go_livepeer_transcoders_results_carry_lpms_pixel_counts_which_are_zerohops() {
    let raw = vector("go-transcoder.transcodeResults.http");
    let split = raw.windows(2).position(|w| w == b"\n\n").expect("headers, a blank line, the body");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let header = |k: &str| {
        head.lines()
            .find_map(|l| l.split_once(": ").filter(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
            .expect("holds in this test")
    };
    assert_eq!(header("authorization"), "Livepeer-Transcoder-1.0");
    let boundary = results::boundary(&header("content-type")).expect("multipart/mixed");
    let mut reader = PartsReader::new(&boundary);
    reader.push(&raw[split + 2..]);
    let mut parts = Vec::new();
    while let Some(p) = reader.poll() {
        parts.push(p.expect("part"));
    }
    reader.finish().expect("closing boundary");
    assert_eq!(parts.len(), 2, "one part per rendition");
    for (p, (w, h)) in parts.iter().zip([(426, 240), (640, 360)]) {
        let Part::Rendition(r) = p else { panic!("a part without Pixels") };
        let seen = probe::probe(&r.data);
        let sps = seen.sps.expect("an H.264 rendition");
        assert_eq!((sps.width, sps.height), (w, h));
        assert_eq!(r.pixels, (seen.frames_decoded * u64::from(w) * u64::from(h)) as i64, "LPMS's count is zerohop's");
    }
    // The task's decoded pixels: the input's pictures times its size, as zerohop counts them.
    let input = probe::probe(&std::fs::read(common_fixture(SEGMENT)).expect("holds in this test"));
    let sps = input.sps.expect("holds in this test");
    let decoded = input.frames_decoded * u64::from(sps.width) * u64::from(sps.height);
    assert_eq!(header("pixels"), decoded.to_string());
}

fn common_fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

#[test]
fn a_go_livepeer_gateways_request_and_segment() {
    let r = OrchestratorRequest::decode(&vector("go-gateway.OrchestratorRequest.bin")[..]).expect("holds in this test");
    assert_eq!(r.address, vec![0; 20], "offchain: the zero address");
    let job = r.capabilities.expect("the job's capabilities").bitstring;
    assert!(
        capabilities::bitstring(&[Capability::SegmentSlicing]).iter().zip(&job).all(|(s, j)| s & j == *s),
        "HTTP push asks segment slicing of every job"
    );
    assert!(capabilities::compatible(&job, &zerohop_bits()));
    let b64 = vector("go-gateway.Livepeer-Segment.b64");
    let seg = SegData::decode(&base64::engine::general_purpose::STANDARD.decode(&b64).expect("holds in this test")[..])
        .expect("holds in this test");
    let body = std::fs::read(common_fixture(SEGMENT)).expect("holds in this test");
    assert_eq!(seg.hash, sha3::Keccak256::digest(&body).to_vec(), "SegData's hash is Keccak-256 of the segment");
    assert!(seg.sig.is_empty(), "offchain: unsigned");
    assert!(seg.auth_token.as_ref().is_some_and(|t| !t.token.is_empty()), "the token zerohop issued, sent back");
    go_livepeer_default_ladder(&seg);
    assert!(seg.segment_parameters.is_none(), "no slice asked for (the job's bit is set all the same)");
    assert_eq!(ladder::options(&seg).clip, None);
}

#[test]
fn a_go_livepeer_orchestrators_answers_to_a_gateway() {
    let info =
        OrchestratorInfo::decode(&vector("go-orchestrator.OrchestratorInfo.bin")[..]).expect("holds in this test");
    assert_eq!(info.transcoder, "https://127.0.0.1:19001");
    assert!(info.price_info.is_none(), "offchain: no price");
    assert!(info.auth_token.is_some_and(|t| !t.session_id.is_empty() && t.expiration > 0));
    let r = TranscodeResult::decode(&vector("go-orchestrator.TranscodeResult.bin")[..]).expect("holds in this test");
    let Some(TranscodeOutcome::Data(d)) = r.result else { panic!("a result: {:?}", r.result) };
    let pixels: Vec<_> = d.segments.iter().map(|s| s.pixels).collect();
    assert_eq!(pixels, [30 * 426 * 240, 30 * 640 * 360], "30 pictures per rendition");
    assert!(d.segments.iter().all(|s| s.url.starts_with("https://127.0.0.1:19001/stream/") && s.url.ends_with(".ts")));
    assert!(r.info.is_some(), "the session's info comes back with the result");
}
