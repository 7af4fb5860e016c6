//! Bot Framework activities: parsing, the command text without the bot's
//! mention, the send time and the tenant never panic.
#![no_main]

use jitbot::chat::teams::activity::Activity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(activity) = serde_json::from_slice::<Activity>(data) {
        let text = activity.command_text();
        let _ = jitbot::domain::command::parse(&text);
        let _ = activity.sent_at();
        let _ = activity.tenant_id();
    }
});
