//! Records whether OpenH264's assembly could be built, using the same test openh264-sys2's
//! build script applies (nasm from $NASM or PATH, OPENH264_NO_ASM unset, an x86 target):
//! without it OpenH264 silently builds plain C, 2-2.8x slower to encode.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=NASM");
    println!("cargo:rerun-if-env-changed=OPENH264_NO_ASM");
    println!("cargo:rerun-if-env-changed=PATH");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let nasm = std::env::var("NASM").unwrap_or_else(|_| "nasm".into());
    let asm = if std::env::var_os("OPENH264_NO_ASM").is_some() {
        "disabled by OPENH264_NO_ASM"
    } else if !matches!(arch.as_str(), "x86_64" | "x86") {
        "no x86 target (NEON is not built by openh264-sys2 here)"
    } else if Command::new(&nasm).arg("-v").output().is_ok_and(|o| o.status.success()) {
        "yes"
    } else {
        "no: nasm was not found at build time"
    };
    println!("cargo:rustc-env=ZEROHOP_OPENH264_ASM={asm}");
}
