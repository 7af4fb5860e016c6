//! The app manifests stay in step with the bot. Teams: a bot in personal and
//! team scope whose listed commands are commands jitbot understands. Slack:
//! the Socket Mode variant differs from the HTTP one only in how Slack
//! reaches jitbot.

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

/// A Slack app manifest from `manifests/`.
fn slack_manifest(name: &str) -> serde_json::Value {
    let path = format!("{}/manifests/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_socket_mode_manifest_is_the_http_one_without_urls() {
    let http = slack_manifest("slack-app.yaml");
    let socket = slack_manifest("slack-app-socket-mode.yaml");
    assert_eq!(http["settings"]["socket_mode_enabled"], false);
    assert_eq!(socket["settings"]["socket_mode_enabled"], true);
    // The same scopes, events and command: only how Slack reaches jitbot
    // differs.
    assert_eq!(http["oauth_config"], socket["oauth_config"]);
    assert_eq!(
        http["settings"]["event_subscriptions"]["bot_events"],
        socket["settings"]["event_subscriptions"]["bot_events"]
    );
    assert_eq!(
        http["features"]["slash_commands"][0]["command"],
        socket["features"]["slash_commands"][0]["command"]
    );
    let text = serde_json::to_string(&socket).unwrap();
    assert!(!text.contains("https://"), "{text}");
    for route in [
        http["features"]["slash_commands"][0]["url"]
            .as_str()
            .unwrap(),
        http["settings"]["interactivity"]["request_url"]
            .as_str()
            .unwrap(),
        http["settings"]["event_subscriptions"]["request_url"]
            .as_str()
            .unwrap(),
    ] {
        assert!(
            route.starts_with("https://jitbot.example.com/slack/"),
            "{route}"
        );
    }
}
