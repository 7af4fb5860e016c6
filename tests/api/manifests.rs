//! The Teams app manifest stays in step with the bot: a bot in personal and
//! team scope whose listed commands are commands jitbot understands.

use jitbot::domain::command::{self, Command};

#[test]
fn the_teams_manifest_lists_commands_the_grammar_knows() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/teams/manifest.json"
    ))
    .unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    let bot = &manifest["bots"][0];
    assert_eq!(bot["scopes"], serde_json::json!(["personal", "team"]));
    assert_eq!(bot["isNotificationOnly"], false);
    let commands = bot["commandLists"][0]["commands"].as_array().unwrap();
    assert!(commands.len() >= 5);
    for listed in commands {
        let title = listed["title"].as_str().unwrap();
        // The title is what Teams inserts when the command is picked; each
        // must parse (as itself, or with the arguments it asks for).
        let parsed = command::parse(title);
        let understood = match &parsed {
            Ok(Command::Help) => title == "jit help",
            Ok(_) => true,
            // Commands that need arguments say which ones, in usage terms.
            Err(error) => !error.to_string().contains("I don't know the command"),
        };
        assert!(understood, "{title}: {parsed:?}");
    }
}
