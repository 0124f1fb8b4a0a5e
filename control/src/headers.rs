//! Every `zerohop-*` HTTP header and trailer name, in one place: the node, the client and the
//! transcoder all name them from here.

/// Request header: the ladder, as preset names or JSON (the engine's forms).
pub const PROFILES: &str = "zerohop-profiles";
/// Request header naming a transcoder on its link and task requests.
pub const TRANSCODER_ID: &str = "zerohop-transcoder-id";
/// Link request header: how many segments a transcoder runs at once (until its first report).
pub const CAPACITY: &str = "zerohop-capacity";
/// Link request header: what a transcoder can make, JSON
/// `{"backend": "cpu", "encode": ["h264"], "max_width": 4096, "max_height": 2304, "gpus": []}`.
pub const CAPABILITIES: &str = "zerohop-capabilities";
/// Link request header: the link protocol version the transcoder speaks (absent: 1).
pub const LINK_VERSION: &str = "zerohop-link-version";
/// Trailer of a segment's result stream: `ok` or `error`.
pub const STATUS: &str = "zerohop-status";
/// Trailer of a failed segment's result stream: the first error's stable code.
pub const ERROR_CODE: &str = "zerohop-error-code";

/// Livepeer's push API (`/live/{stream}/{seq}.ts`), request header: the ladder as Livepeer's
/// JSON (`{"profiles": [...]}`), read when `zerohop-profiles` is absent.
pub const LIVEPEER_TRANSCODE_CONFIGURATION: &str = "livepeer-transcode-configuration";
/// Livepeer's push API, request header: the segment's duration in milliseconds.
pub const CONTENT_DURATION: &str = "content-duration";
/// Livepeer's push API, request header: the segment's `WIDTHxHEIGHT` (informative).
pub const CONTENT_RESOLUTION: &str = "content-resolution";
/// Livepeer's multipart answer, part header: the rendition's name.
pub const RENDITION_NAME: &str = "rendition-name";

/// Every `zerohop-*` name above (for tests that all are lower case and distinct).
pub const ALL: &[&str] = &[PROFILES, TRANSCODER_ID, CAPACITY, CAPABILITIES, LINK_VERSION, STATUS, ERROR_CODE];

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_valid_distinct_and_prefixed() {
        for (i, name) in super::ALL.iter().enumerate() {
            assert!(name.starts_with("zerohop-"), "{name}");
            http::HeaderName::from_static(name);
            assert!(!super::ALL[..i].contains(name), "{name} twice");
        }
    }
}
