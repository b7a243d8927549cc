//! The automation parser: one automation, and a file of them.

#![no_main]

use leadscore_core::automation::Automation;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    let _ = Automation::parse_file(text);
    let _ = Automation::parse(text);
});
