//! The chat command grammar takes any text a person types: it must never
//! panic, and what it echoes back is always marked as theirs.
#![no_main]

use jitbot::domain::command::{parse, Command};
use jitbot::domain::text::{plain, segments, Segment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text) {
        Ok(Command::Request { reason, .. }) | Ok(Command::Extend { reason, .. }) => {
            // A reason is at most 500 characters, however it was typed.
            assert!(reason.chars().count() <= jitbot::domain::command::MAX_REASON_CHARS);
        }
        Ok(_) => {}
        Err(error) => {
            // jitbot's own words in an error never carry the person's
            // markup: anything of theirs is inside a mark.
            let shown = error.to_string();
            for segment in segments(&shown) {
                if let Segment::Ours(ours) = segment {
                    assert!(!ours.contains("<!channel>"), "{shown:?}");
                }
            }
            let _ = plain(&shown);
        }
    }
});
