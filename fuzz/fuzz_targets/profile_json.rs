//! Ladders from the profile header (preset names or JSON): never a panic; a parsed ladder
//! survives its own JSON form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerohop_engine::Ladder;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(l) = s.parse::<Ladder>() {
        let again = Ladder::from_json(&l.to_json()).expect("a ladder's own JSON parses");
        assert_eq!(again.to_json(), l.to_json());
    }
});
