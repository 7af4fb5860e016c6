//! The policy file: any text is either a policy or a list of problems,
//! each with a place in the file — never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(problems) = jitbot::config::policy::parse(text) {
        assert!(!problems.is_empty());
        for problem in problems {
            let _ = problem.to_string();
        }
    }
});
