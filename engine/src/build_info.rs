//! Facts fixed when the engine was built.

/// "yes" when OpenH264 was built with its x86 assembly, else why not.
pub const OPENH264_ASM: &str = env!("ZEROHOP_OPENH264_ASM");

/// Whether OpenH264 runs with its SIMD assembly.
pub fn openh264_has_asm() -> bool {
    OPENH264_ASM == "yes"
}

/// The warning to print loudly when it does not, or `None`.
pub fn speed_warning() -> Option<String> {
    (!openh264_has_asm()).then(|| {
        format!(
            "WARNING: OpenH264 was built without its assembly ({OPENH264_ASM}); encoding is 2-2.8x and decoding \
             about 1.3x slower. Install nasm (apt-get install nasm) and rebuild (cargo clean -p openh264-sys2)."
        )
    })
}
