//! Durations as people write them: parsing never panics, and what parses
//! prints back as something that parses to the same value.
#![no_main]

use jitbot::domain::duration::HumanDuration;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(duration) = HumanDuration::parse(text) {
        assert!(duration.as_secs() > 0);
        let again = HumanDuration::parse(&duration.to_string()).expect("printed durations parse");
        assert_eq!(again, duration);
    }
});
