//! Facts fixed when the engine was built.

/// "yes" when OpenH264 was built with its x86 assembly, else why not.
pub const OPENH264_ASM: &str = env!("ZEROHOP_OPENH264_ASM");

/// Whether OpenH264 runs with its SIMD assembly.
pub fn openh264_has_asm() -> bool {
    OPENH264_ASM == "yes"
}

/// What a build without OpenH264's assembly costs, and how to get the fast one: the facts
/// behind both messages below.
const COST: &str = "encoding is 2-2.8x and decoding about 1.3x slower than they can be";
const FIX: &str = "apt-get install nasm && cargo clean -p openh264-sys2 && cargo build --release";

/// The warning to print loudly when it does not, or `None`.
pub fn speed_warning() -> Option<String> {
    (!openh264_has_asm()).then(|| {
        format!("WARNING: OpenH264 was built without its assembly ({OPENH264_ASM}); {COST}. For the fast build: {FIX}")
    })
}

/// One line for a summary of measured speed (the demo's real-time ratios) from a build without
/// OpenH264's assembly: why the figures are slow and how to get the fast build, or `None`.
pub fn slow_build_note() -> Option<String> {
    (!openh264_has_asm()).then(|| {
        format!(
            "note: these real-time ratios come from a build without OpenH264's assembly ({OPENH264_ASM}): \
             {COST}. For the fast build: {FIX}"
        )
    })
}
