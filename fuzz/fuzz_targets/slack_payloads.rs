//! What Slack posts (once its signature checked out, so also what a
//! compromised or buggy sender could post): slash-command forms,
//! interaction payloads and events. Parsing never panics.
#![no_main]

use jitbot::chat::slack::payloads::{Event, Interaction, SlashCommand};
use libfuzzer_sys::fuzz_target;

#[derive(serde::Deserialize)]
struct Form {
    payload: String,
}

fuzz_target!(|data: &[u8]| {
    if let Ok(command) = serde_urlencoded::from_bytes::<SlashCommand>(data) {
        let _ = jitbot::domain::command::parse(&command.text);
    }
    if let Ok(form) = serde_urlencoded::from_bytes::<Form>(data) {
        let _ = serde_json::from_str::<Interaction>(&form.payload);
    }
    let _ = serde_json::from_slice::<Interaction>(data);
    let _ = serde_json::from_slice::<Event>(data);
});
