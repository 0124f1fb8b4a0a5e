//! Livepeer's error texts. go-livepeer passes a transcoder's error text to the gateway
//! unchanged, and a gateway does not retry a segment elsewhere when the whole text is one of
//! LPMS's non-retryable errors (`ffmpeg.NonRetryableErrs`, compared exactly): so an input that
//! no transcoder can take is sent as that exact text, and zerohop's own words go to its log.
#![forbid(unsafe_code)]

use crate::relay::Failure;

use super::ladder::LadderError;

/// The orchestrator's refusals of a registration (go-livepeer `server/ot_rpc.go`); fatal.
pub const INVALID_SECRET: &str = "invalid secret";
pub const ZERO_CAPACITY: &str = "zero capacity";
/// A job whose capability bits the transcoder lacks.
pub const INCOMPATIBLE_CAPABILITIES: &str = "incompatible segment capabilities";
/// The orchestrator has no transcoder for a job (go-livepeer `core/orchestrator.go`).
pub const NO_TRANSCODERS: &str = "no transcoders available";
pub const NO_COMPATIBLE_TRANSCODERS: &str = "no transcoders can provide requested capabilities";
/// What go-livepeer's orchestrator answers when it is full.
pub const ORCHESTRATOR_BUSY: &str = "OrchestratorBusy";
pub const ORCHESTRATOR_CAPPED: &str = "OrchestratorCapped";

/// zerohop's stable code -> LPMS's text for the same cause (all but the last are on LPMS's
/// non-retryable list).
const NON_RETRYABLE: &[(&str, &str)] = &[
    ("not_transport_stream", "Invalid data found when processing input"),
    ("no_program", "Invalid data found when processing input"),
    ("no_video", "TranscoderInvalidVideo"),
    ("unsupported_codec", "Unsupported input codec"),
    ("unsupported_bit_depth", "Unsupported input pixel format"),
    ("unsupported_chroma", "Unsupported input pixel format"),
    ("unsupported_interlaced", "Unsupported input pixel format"),
    ("unsupported_size", "TranscoderInvalidResolution"),
    ("bad_sps", "Invalid data found when processing input"),
    ("no_pictures", "No keyframes in input"),
    ("bad_profile", "TranscoderUnrecognizedProfile"),
    // LPMS's error for a clip it cannot make (retryable there; the same text here).
    ("empty_clip", "TranscoderInvalidClipConfig"),
];

/// LPMS's text for one of zerohop's codes, where the cause is the same.
pub fn lpms_text(code: &str) -> Option<&'static str> {
    NON_RETRYABLE.iter().find(|(c, _)| *c == code).map(|(_, t)| *t)
}

/// zerohop's code for one of LPMS's texts (the first whose text it is).
pub fn code_of(text: &str) -> Option<&'static str> {
    NON_RETRYABLE.iter().find(|(_, t)| *t == text.trim()).map(|(c, _)| *c)
}

/// The text a failed task is reported with.
pub fn for_failure(f: &Failure) -> String {
    text(f.code(), &f.message())
}

/// The text for a failure with zerohop's `code` and `message`.
pub fn text(code: &str, message: &str) -> String {
    match lpms_text(code) {
        Some(text) => {
            tracing::info!(%code, %message, livepeer = text, "the task's input cannot be transcoded");
            text.to_string()
        }
        None => format!("zerohop {code}: {message}"),
    }
}

/// The text for a ladder zerohop cannot make.
/// LPMS's non-retryable text only where LPMS itself refuses the ladder (no size, a GOP below -1:
/// no transcoder can make it); anything else is zerohop's own limit (MP4, another codec, a name
/// or size zerohop's ladders do not take), which another transcoder may well make, so its text
/// is zerohop's and a gateway retries elsewhere.
pub fn for_ladder(e: &LadderError) -> String {
    tracing::info!(error = %e, "a Livepeer ladder zerohop cannot make");
    match e {
        LadderError::Invalid(_) | LadderError::Empty => format!("zerohop cannot make this ladder: {e}"),
        LadderError::Unsupported { what, .. } if what.starts_with("GOP") => "TranscoderInvalidGOP".into(),
        LadderError::Unsupported { what, .. } if what.starts_with("size") => "TranscoderInvalidResolution".into(),
        LadderError::Unsupported { .. } => format!("zerohop cannot make this ladder: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerohop_engine::TranscodeError;

    #[test]
    fn an_input_nobody_can_take_gets_lpms_exact_text_and_others_keep_zerohops_words() {
        let none = Failure::Engine(TranscodeError::NoPictures { access_units: 3, first_error: None });
        assert_eq!(none.code(), "no_pictures");
        assert_eq!(for_failure(&none), "No keyframes in input");
        let upload = Failure::Upload(crate::relay::Abort::new("upload_failed", "the input URL answered 404"));
        assert_eq!(for_failure(&upload), "zerohop upload_failed: the input URL answered 404");
        assert_eq!(code_of("No keyframes in input"), Some("no_pictures"));
        assert_eq!(code_of("OrchestratorBusy"), None);
        // Every code in the table is one the engine (or control) really uses.
        for (code, _) in NON_RETRYABLE {
            assert!(zerohop_engine::error::CODES.iter().any(|(c, _)| c == code), "{code} is no engine code");
        }
    }
}
