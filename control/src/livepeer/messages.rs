//! Livepeer's protobuf messages (go-livepeer `net/lp_rpc.proto`, package `net`), written by hand
//! with their field numbers: only the messages and fields zerohop reads or writes. A field this
//! file leaves out is skipped when decoding (protobuf's rule for unknown fields) and never sent.
//!
//! Field names follow Rust; each carries its `.proto` name where they differ in more than case.
#![forbid(unsafe_code)]

use std::collections::HashMap;

/// `net.RegisterRequest`: a transcoder's registration (the `RegisterTranscoder` call).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RegisterRequest {
    #[prost(string, tag = "1")]
    pub secret: String,
    /// Segments the transcoder runs at once.
    #[prost(int64, tag = "2")]
    pub capacity: i64,
    #[prost(message, optional, tag = "3")]
    pub capabilities: Option<Capabilities>,
}

/// `net.NotifySegment`: one task for a transcoder, or (an empty `url` with a session id in
/// `seg_data.auth_token`) the end of that session.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NotifySegment {
    /// Where the whole input is (`GET`).
    #[prost(string, tag = "1")]
    pub url: String,
    /// `segData`.
    #[prost(message, optional, tag = "3")]
    pub seg_data: Option<SegData>,
    /// `taskId`: echoed in the results' `TaskId` header.
    #[prost(int64, tag = "16")]
    pub task_id: i64,
    /// The legacy profile list; go-livepeer sends the bytes `invalid` so that old transcoders
    /// fail, and reads `seg_data`'s profiles.
    #[prost(bytes = "vec", tag = "17")]
    pub profiles: Vec<u8>,
    /// `orchId`.
    #[prost(string, tag = "18")]
    pub orch_id: String,
}

/// `net.SegData`: a segment's metadata (with a gateway: base64 in `Livepeer-Segment`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SegData {
    /// `manifestId`: the stream.
    #[prost(bytes = "vec", tag = "1")]
    pub manifest_id: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub seq: i64,
    /// Keccak-256 of the segment's bytes.
    #[prost(bytes = "vec", tag = "3")]
    pub hash: Vec<u8>,
    /// Legacy: 4 bytes of Keccak-256 per preset name.
    #[prost(bytes = "vec", tag = "4")]
    pub profiles: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub sig: Vec<u8>,
    /// Milliseconds (0: go-livepeer assumes 2 s).
    #[prost(int32, tag = "6")]
    pub duration: i32,
    #[prost(message, optional, tag = "7")]
    pub capabilities: Option<Capabilities>,
    #[prost(message, optional, tag = "8")]
    pub auth_token: Option<AuthToken>,
    #[prost(bool, tag = "10")]
    pub calc_perceptual_hash: bool,
    #[prost(message, repeated, tag = "32")]
    pub storage: Vec<OsInfo>,
    /// `fullProfiles`, `fullProfiles2`, `fullProfiles3`: the ladder; a reader takes the last
    /// that is not empty (3, then 2, then the first).
    #[prost(message, repeated, tag = "33")]
    pub full_profiles: Vec<VideoProfile>,
    #[prost(message, repeated, tag = "34")]
    pub full_profiles2: Vec<VideoProfile>,
    #[prost(message, repeated, tag = "35")]
    pub full_profiles3: Vec<VideoProfile>,
    #[prost(message, optional, tag = "37")]
    pub segment_parameters: Option<SegParameters>,
    /// `ForceSessionReinit`.
    #[prost(bool, tag = "38")]
    pub force_session_reinit: bool,
}

impl SegData {
    /// The ladder as go-livepeer reads it: `fullProfiles3`, else 2, else the first list.
    pub fn ladder(&self) -> &[VideoProfile] {
        [&self.full_profiles3, &self.full_profiles2, &self.full_profiles]
            .into_iter()
            .find(|p| !p.is_empty())
            .map_or(&[], |p| p.as_slice())
    }

    /// Its duration as go-livepeer reads it: milliseconds, 0 taken as 2 s.
    pub fn duration(&self) -> std::time::Duration {
        match u64::try_from(self.duration) {
            Ok(ms) if ms > 0 => std::time::Duration::from_millis(ms),
            _ => std::time::Duration::from_secs(2),
        }
    }

    /// The session this segment belongs to (the auth token's), if any.
    pub fn session_id(&self) -> Option<&str> {
        self.auth_token.as_ref().map(|t| t.session_id.as_str()).filter(|s| !s.is_empty())
    }
}

/// `net.SegParameters`: a clip of the segment, milliseconds.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SegParameters {
    #[prost(uint64, tag = "1")]
    pub from: u64,
    #[prost(uint64, tag = "2")]
    pub to: u64,
}

/// `net.OSInfo`: where results go (zerohop answers `DIRECT`, 0, only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct OsInfo {
    /// `storageType`: 0 DIRECT, 1 S3, 2 GOOGLE.
    #[prost(int32, tag = "1")]
    pub storage_type: i32,
}

/// `net.VideoProfile`: one rung of a ladder.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VideoProfile {
    #[prost(string, tag = "16")]
    pub name: String,
    #[prost(int32, tag = "17")]
    pub width: i32,
    #[prost(int32, tag = "18")]
    pub height: i32,
    /// Bits per second.
    #[prost(int32, tag = "19")]
    pub bitrate: i32,
    /// 0 keeps the source's rate.
    #[prost(uint32, tag = "20")]
    pub fps: u32,
    /// `Format`: 0 MPEGTS, 1 MP4 (read as a number: a value this build does not know is
    /// refused, not misread).
    #[prost(int32, tag = "21")]
    pub format: i32,
    /// `fpsDen`.
    #[prost(uint32, tag = "22")]
    pub fps_den: u32,
    /// `Profile`: 0 ENCODER_DEFAULT, 1 H264_BASELINE, 2 H264_MAIN, 3 H264_HIGH,
    /// 4 H264_CONSTRAINED_HIGH.
    #[prost(int32, tag = "23")]
    pub profile: i32,
    /// Milliseconds between keyframes; 0 the encoder's default; negative: LPMS's special values
    /// (-1 every frame a keyframe).
    #[prost(int32, tag = "24")]
    pub gop: i32,
    /// `VideoCodec`: 0 H264, 1 H265, 2 VP8, 3 VP9.
    #[prost(int32, tag = "25")]
    pub encoder: i32,
    /// `colorDepth`.
    #[prost(int32, tag = "26")]
    pub color_depth: i32,
    /// `chromaFormat`: 0 4:2:0, 1 4:2:2, 2 4:4:4.
    #[prost(int32, tag = "27")]
    pub chroma_format: i32,
    #[prost(uint32, tag = "28")]
    pub quality: u32,
}

/// `net.Capabilities`: bit sets of `Capability` numbers, 64 per word (bit `n % 64` of word
/// `n / 64`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Capabilities {
    #[prost(uint64, repeated, tag = "1")]
    pub bitstring: Vec<u64>,
    #[prost(uint64, repeated, tag = "2")]
    pub mandatories: Vec<u64>,
    #[prost(map = "uint32, uint32", tag = "3")]
    pub capacities: HashMap<u32, u32>,
    #[prost(string, tag = "4")]
    pub version: String,
    #[prost(message, optional, tag = "5")]
    pub constraints: Option<Constraints>,
}

/// `net.Capabilities.Constraints`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Constraints {
    /// `minVersion`: the oldest peer version accepted.
    #[prost(string, tag = "1")]
    pub min_version: String,
}

/// `net.AuthToken`: what ties a gateway's segments to one orchestrator session.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuthToken {
    #[prost(bytes = "vec", tag = "1")]
    pub token: Vec<u8>,
    #[prost(string, tag = "2")]
    pub session_id: String,
    /// Unix seconds.
    #[prost(int64, tag = "3")]
    pub expiration: i64,
}

/// `net.OrchestratorRequest` (`GetOrchestrator`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct OrchestratorRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub address: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub sig: Vec<u8>,
    #[prost(message, optional, tag = "3")]
    pub capabilities: Option<Capabilities>,
    /// `ignoreCapacityCheck`.
    #[prost(bool, tag = "4")]
    pub ignore_capacity_check: bool,
}

/// `net.PriceInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PriceInfo {
    #[prost(int64, tag = "1")]
    pub price_per_unit: i64,
    #[prost(int64, tag = "2")]
    pub pixels_per_unit: i64,
}

/// `net.OrchestratorInfo`: the answer to `GetOrchestrator`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OrchestratorInfo {
    /// Where segments go: `https://host:port`.
    #[prost(string, tag = "1")]
    pub transcoder: String,
    #[prost(message, optional, tag = "3")]
    pub price_info: Option<PriceInfo>,
    #[prost(bytes = "vec", tag = "4")]
    pub address: Vec<u8>,
    #[prost(message, optional, tag = "5")]
    pub capabilities: Option<Capabilities>,
    #[prost(message, optional, tag = "6")]
    pub auth_token: Option<AuthToken>,
    #[prost(message, repeated, tag = "32")]
    pub storage: Vec<OsInfo>,
}

/// `net.TranscodedSegmentData`: one rendition of a segment, fetched by its URL.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TranscodedSegmentData {
    #[prost(string, tag = "1")]
    pub url: String,
    #[prost(int64, tag = "2")]
    pub pixels: i64,
}

/// `net.TranscodeData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TranscodeData {
    #[prost(message, repeated, tag = "1")]
    pub segments: Vec<TranscodedSegmentData>,
    #[prost(bytes = "vec", tag = "2")]
    pub sig: Vec<u8>,
}

/// `net.TranscodeResult`: the answer to `POST /segment`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TranscodeResult {
    #[prost(int64, tag = "1")]
    pub seq: i64,
    #[prost(oneof = "TranscodeOutcome", tags = "2, 3")]
    pub result: Option<TranscodeOutcome>,
    #[prost(message, optional, tag = "16")]
    pub info: Option<OrchestratorInfo>,
}

/// `TranscodeResult.result`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum TranscodeOutcome {
    #[prost(string, tag = "2")]
    Error(String),
    #[prost(message, tag = "3")]
    Data(TranscodeData),
}

/// `net.EndTranscodingSessionRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EndTranscodingSessionRequest {
    #[prost(message, optional, tag = "1")]
    pub auth_token: Option<AuthToken>,
}

/// `net.EndTranscodingSessionResponse` (empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct EndTranscodingSessionResponse {}

/// `net.PaymentResult`: the answer to a payment-only segment.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PaymentResult {
    #[prost(message, optional, tag = "16")]
    pub info: Option<OrchestratorInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Bytes written field by field from the protobuf encoding rules (tag = field << 3 | wire
    /// type), not by prost: a wrong tag number in this file fails here.
    #[test]
    fn notify_segment_decodes_from_hand_made_wire_bytes() {
        let mut auth = vec![0x12, 3];
        auth.extend_from_slice(b"s-1"); // session_id = 2, length-delimited
        let mut seg = vec![0x0a, 2, b'm', b'1', 0x10, 7]; // manifestId = 1, seq = 2 (varint 7)
        seg.extend_from_slice(&[0x30, 0xd0, 0x0f]); // duration = 6: 2000
        seg.extend_from_slice(&[0x42, auth.len() as u8]); // auth_token = 8
        seg.extend_from_slice(&auth);
        // fullProfiles3 = 35 -> tag (35 << 3 | 2) = 282 = varint 0x9a 0x02
        let mut prof = vec![0x82, 0x01, 2, b'a', b'b']; // name = 16 -> (16 << 3 | 2) = 130
        prof.extend_from_slice(&[0x88, 0x01, 0x80, 0x05]); // width = 17 -> 136: 640
        prof.extend_from_slice(&[0xc0, 0x01, 0x01]); // gop = 24 -> 192 (varint): 1
        seg.extend_from_slice(&[0x9a, 0x02, prof.len() as u8]);
        seg.extend_from_slice(&prof);
        let mut notify = vec![0x0a, 1, b'u']; // url = 1
        notify.extend_from_slice(&[0x1a, seg.len() as u8]); // segData = 3
        notify.extend_from_slice(&seg);
        notify.extend_from_slice(&[0x80, 0x01, 9]); // taskId = 16 -> 128: 9
        notify.extend_from_slice(&[0x8a, 0x01, 1, b'x']); // profiles = 17
        notify.extend_from_slice(&[0x92, 0x01, 1, b'o']); // orchId = 18
        let n = NotifySegment::decode(&notify[..]).expect("holds in this test");
        assert_eq!((n.url.as_str(), n.task_id, n.orch_id.as_str(), &n.profiles[..]), ("u", 9, "o", &b"x"[..]));
        let s = n.seg_data.expect("holds in this test");
        assert_eq!((&s.manifest_id[..], s.seq, s.duration, s.session_id()), (&b"m1"[..], 7, 2000, Some("s-1")));
        assert_eq!(s.ladder().len(), 1);
        assert_eq!((s.ladder()[0].name.as_str(), s.ladder()[0].width, s.ladder()[0].gop), ("ab", 640, 1));
    }

    #[test]
    fn register_request_encodes_its_fields_at_their_numbers() {
        let r = RegisterRequest {
            secret: "k".into(),
            capacity: 3,
            capabilities: Some(Capabilities { bitstring: vec![5], version: "v".into(), ..Default::default() }),
        };
        let caps = [0x0a, 1, 5, 0x22, 1, b'v']; // bitstring = 1 packed, version = 4
        let mut want = vec![0x0a, 1, b'k', 0x10, 3, 0x1a, caps.len() as u8];
        want.extend_from_slice(&caps);
        assert_eq!(r.encode_to_vec(), want);
    }

    #[test]
    fn transcode_result_carries_an_error_or_data_in_its_oneof() {
        let err = TranscodeResult { seq: 4, result: Some(TranscodeOutcome::Error("boom".into())), info: None };
        assert_eq!(err.encode_to_vec(), [0x08, 4, 0x12, 4, b'b', b'o', b'o', b'm']);
        let data = TranscodeResult {
            seq: 1,
            result: Some(TranscodeOutcome::Data(TranscodeData {
                segments: vec![TranscodedSegmentData { url: "h".into(), pixels: 2 }],
                sig: vec![],
            })),
            info: None,
        };
        let back = TranscodeResult::decode(&data.encode_to_vec()[..]).expect("holds in this test");
        assert_eq!(back, data);
    }
}
