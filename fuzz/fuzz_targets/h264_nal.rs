//! H.264 NAL splitting and SPS parsing (with emulation prevention, VUI, cropping) on arbitrary
//! access units: never a panic; a parsed SPS has a sane size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerohop_engine::h264::{inspect_access_unit, nal_units, parse_sps};

fuzz_target!(|data: &[u8]| {
    let _ = inspect_access_unit(data);
    for nal in nal_units(data) {
        if let Ok(sps) = parse_sps(nal) {
            let _ = sps.check_supported();
            let _ = sps.profile_name();
        }
    }
});
