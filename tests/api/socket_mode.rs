//! Slack Socket Mode (issue 19, point 1): jitbot asks the fake Slack for a
//! WebSocket URL with the app-level token, connects to the fake's socket on
//! loopback, and takes slash commands, clicks, forms and events as
//! envelopes — each acknowledged by id, with the answer in the ack where
//! the HTTP route answers with a body — through the same code as the HTTP
//! routes. A `disconnect` is bridged by a new connection opened before the
//! old one closes; a dropped socket is reopened; an envelope Slack delivers
//! again changes nothing twice.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::helpers::{eventually, request_id_in, TestApp, APP_TOKEN, BASE_POLICY, SOCKET_URL_VAR};

/// Patience for what jitbot does in the background on a busy machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// The fake Slack's side of the WebSocket: every connection jitbot makes,
/// with the path of the URL it used.
struct FakeSocketServer {
    base: String,
    accepted: mpsc::UnboundedReceiver<Connection>,
}

struct Connection {
    path: String,
    socket: WebSocketStream<TcpStream>,
}

impl FakeSocketServer {
    async fn start() -> FakeSocketServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("ws://{}/link", listener.local_addr().unwrap());
        let (accepted, inbox) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let accepted = accepted.clone();
                tokio::spawn(async move {
                    let mut path = String::new();
                    // The shape tungstenite's handshake callback must have.
                    #[allow(clippy::result_large_err)]
                    let remember_path = |request: &Request, response: Response| {
                        path = request.uri().path().to_string();
                        Ok(response)
                    };
                    if let Ok(socket) =
                        tokio_tungstenite::accept_hdr_async(stream, remember_path).await
                    {
                        let _ = accepted.send(Connection { path, socket });
                    }
                });
            }
        });
        FakeSocketServer {
            base,
            accepted: inbox,
        }
    }

    /// The next connection jitbot opens, greeted with `hello`.
    async fn next_greeted(&mut self) -> Connection {
        let mut connection = self.next_connection().await;
        connection.hello().await;
        connection
    }

    async fn next_connection(&mut self) -> Connection {
        tokio::time::timeout(PATIENCE, self.accepted.recv())
            .await
            .expect("jitbot connects")
            .expect("the fake socket server runs")
    }
}

impl Connection {
    async fn hello(&mut self) {
        self.send(json!({ "type": "hello", "num_connections": 1, "connection_info": { "app_id": "A0TEST" } }))
            .await;
    }

    async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
    }

    /// The next message jitbot writes (answering pings meanwhile); `None`
    /// once it closes the connection.
    async fn next_message(&mut self) -> Option<Value> {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .expect("jitbot writes or closes");
            match frame {
                Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Send an envelope and wait for its acknowledgement.
    async fn envelope(&mut self, envelope: Value) -> Value {
        let id = envelope["envelope_id"].clone();
        self.send(envelope).await;
        let ack = self.next_message().await.expect("an acknowledgement");
        assert_eq!(ack["envelope_id"], id, "{ack}");
        ack
    }
}

async fn socket_app() -> (TestApp, FakeSocketServer) {
    let slack = FakeSocketServer::start().await;
    let app = TestApp::spawn_with_env(
        BASE_POLICY,
        &[
            ("SLACK_APP_TOKEN", APP_TOKEN),
            (SOCKET_URL_VAR, &slack.base),
        ],
    )
    .await;
    (app, slack)
}

fn slash_command(id: &str, user: &str, text: &str, trigger: &str) -> Value {
    json!({
        "envelope_id": id,
        "type": "slash_commands",
        "accepts_response_payload": true,
        "payload": {
            "token": "unused", "team_id": "T0TEAM", "channel_id": "C0GENERAL",
            "user_id": user, "user_name": user.to_lowercase(), "command": "/jit",
            "text": text, "trigger_id": trigger,
            "response_url": "https://hooks.slack.com/commands/T0TEAM/1/x",
        },
    })
}

fn approve_click(id: &str, user: &str, request: &str) -> Value {
    json!({
        "envelope_id": id,
        "type": "interactive",
        "accepts_response_payload": false,
        "payload": {
            "type": "block_actions",
            "user": { "id": user, "username": user.to_lowercase(), "team_id": "T0TEAM" },
            "trigger_id": format!("trigger-{id}"),
            "channel": { "id": "C0APPROVALS", "name": "approvals" },
            "container": { "type": "message", "channel_id": "C0APPROVALS" },
            "actions": [{ "action_id": "jit_approve", "block_id": "jit_decision", "value": request, "type": "button" }],
        },
    })
}

#[tokio::test]
async fn commands_clicks_and_forms_come_over_the_socket_and_each_envelope_is_acknowledged() {
    let (app, mut slack) = socket_app().await;
    let mut connection = slack.next_greeted().await;
    assert_eq!(connection.path, "/link/1");

    // A slash command: the answer comes back in the acknowledgement.
    let command = slash_command(
        "env-1",
        "U0ALICE",
        "request prod-db 1h INC-1 over the socket",
        "trig-1",
    );
    let ack = connection.envelope(command.clone()).await;
    let answer = ack["payload"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(ack["payload"]["response_type"], "ephemeral", "{ack}");
    let id = request_id_in(&answer).unwrap_or_else(|| panic!("no request in {answer}"));
    eventually("the card", || async { app.cards_for(&id).await.pop() }).await;

    // Slack delivers it again: acknowledged, nothing filed twice.
    let mut again = command;
    again["retry_attempt"] = json!(1);
    again["retry_reason"] = json!("timeout");
    let ack = connection.envelope(again).await;
    assert!(ack.get("payload").is_none(), "{ack}");
    let listed = app.command_text("U0ALICE", "C0GENERAL", "list").await;
    assert_eq!(listed.matches("R-").count(), 1, "{listed}");

    // A click on the card: approved and granted as from the HTTP route.
    connection
        .envelope(approve_click("env-2", "U0LEAD", &id))
        .await;
    app.until_granted(&id).await;

    // A form's field errors come back in the acknowledgement.
    let ack = connection
        .envelope(json!({
            "envelope_id": "env-3",
            "type": "interactive",
            "accepts_response_payload": true,
            "payload": {
                "type": "view_submission",
                "user": { "id": "U0ALICE", "username": "alice" },
                "trigger_id": "trig-3",
                "view": {
                    "callback_id": "jit_request_form",
                    "private_metadata": "C0GENERAL",
                    "state": { "values": {
                        "group": { "value": { "type": "static_select", "selected_option": { "value": "prod-db" } } },
                        "duration": { "value": { "type": "plain_text_input", "value": "forever" } },
                        "reason": { "value": { "type": "plain_text_input", "value": "x" } },
                    } },
                },
            },
        }))
        .await;
    assert_eq!(ack["payload"]["response_action"], "errors", "{ack}");
    assert!(ack["payload"]["errors"]["duration"]
        .as_str()
        .unwrap()
        .contains("`forever` is not a duration"));

    // An event, an envelope of a type jitbot does not know, and one it
    // cannot read: each acknowledged, nothing applied.
    let sent = std::time::Instant::now();
    let ack = connection
        .envelope(json!({
            "envelope_id": "env-4", "type": "events_api", "accepts_response_payload": false,
            "payload": { "type": "event_callback", "event_id": "Ev1", "event": { "type": "app_home_opened", "user": "U0LEAD", "tab": "home" } },
        }))
        .await;
    // Acknowledged within the 3 s Slack waits before it delivers again: the
    // event's work (the Home tab) happens after the acknowledgement.
    let acknowledged_after = sent.elapsed();
    assert!(
        acknowledged_after < Duration::from_secs(3),
        "{acknowledged_after:?}"
    );
    assert!(ack.get("payload").is_none(), "{ack}");
    // The Home tab opened over the socket is published like over HTTP.
    eventually("the home", || async {
        app.slack_calls("views.publish")
            .await
            .into_iter()
            .find(|call| call["user_id"] == "U0LEAD")
    })
    .await;
    connection
        .envelope(json!({ "envelope_id": "env-5", "type": "from_the_future", "payload": {} }))
        .await;
    connection
        .envelope(json!({ "envelope_id": "env-6", "type": 7, "payload": "junk" }))
        .await;
    connection
        .envelope(json!({ "envelope_id": "env-7", "type": "slash_commands", "payload": { "text": "no user" } }))
        .await;
    let listed = app.command_text("U0ALICE", "C0GENERAL", "list").await;
    assert_eq!(listed.matches("R-").count(), 1, "{listed}");
}

#[tokio::test]
async fn a_disconnect_is_bridged_by_a_new_connection_opened_before_the_old_one_closes() {
    let (app, mut slack) = socket_app().await;
    let mut old = slack.next_greeted().await;
    old.send(json!({ "type": "disconnect", "reason": "refresh_requested", "debug_info": { "host": "fake" } }))
        .await;
    // The next connection uses a new URL; until it is greeted, the old one
    // still takes envelopes.
    let mut new = slack.next_connection().await;
    assert_eq!(
        (old.path.as_str(), new.path.as_str()),
        ("/link/1", "/link/2")
    );
    let ack = old
        .envelope(slash_command(
            "env-1",
            "U0ALICE",
            "request prod-db 1h INC-2 still here",
            "trig-1",
        ))
        .await;
    let id = request_id_in(ack["payload"]["text"].as_str().unwrap()).unwrap();
    new.hello().await;
    assert_eq!(
        old.next_message().await,
        None,
        "the old connection is closed"
    );
    new.envelope(approve_click("env-2", "U0LEAD", &id)).await;
    app.until_granted(&id).await;
    let metrics = app.metrics().await;
    for line in [
        "jitbot_slack_socket_connections_total{outcome=\"opened\"} 2",
        "jitbot_slack_socket_connections_total{outcome=\"refreshed\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn a_dropped_socket_is_reopened_with_a_fresh_url() {
    let (app, mut slack) = socket_app().await;
    let mut first = slack.next_greeted().await;
    // Pings are answered.
    first
        .socket
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = loop {
        match tokio::time::timeout(PATIENCE, first.socket.next()).await {
            Ok(Some(Ok(Message::Pong(data)))) => break data,
            Ok(Some(Ok(_))) => {}
            other => panic!("no pong: {other:?}"),
        }
    };
    assert_eq!(&pong[..], b"are you there");
    drop(first);
    let mut second = slack.next_greeted().await;
    assert_eq!(second.path, "/link/2");
    let ack = second
        .envelope(slash_command(
            "env-1",
            "U0ALICE",
            "request prod-db 1h INC-3 after a drop",
            "trig-1",
        ))
        .await;
    let id = request_id_in(ack["payload"]["text"].as_str().unwrap()).unwrap();
    eventually("the card", || async { app.cards_for(&id).await.pop() }).await;
    assert!(app
        .metrics()
        .await
        .contains("jitbot_slack_socket_connections_total{outcome=\"dropped\"} 1"));
}

#[tokio::test]
async fn an_envelope_that_comes_before_hello_is_handled_and_acknowledged() {
    let (app, mut slack) = socket_app().await;
    let mut connection = slack.next_connection().await;
    let ack = connection
        .envelope(slash_command(
            "env-1",
            "U0ALICE",
            "request prod-db 1h INC-4 before hello",
            "trig-1",
        ))
        .await;
    let id = request_id_in(ack["payload"]["text"].as_str().unwrap_or_default())
        .unwrap_or_else(|| panic!("no request in {ack}"));
    eventually("the card", || async { app.cards_for(&id).await.pop() }).await;
}

#[tokio::test]
async fn an_app_token_slack_refuses_stops_the_start_and_says_so() {
    let slack = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::path("/api/apps.connections.open"))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_json(json!({ "ok": false, "error": "invalid_auth" })),
        )
        .mount(&slack)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[providers.iam]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/jit\"\nsecret_env = \"TEST_HOOK_SECRET\"\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_jitbot"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SLACK_BOT_TOKEN", "xoxb-test")
        .env("SLACK_APP_TOKEN", "xapp-1-A0TEST-1-revoked")
        .env("SLACK_API_URL", format!("{}/api", slack.uri()))
        .env("JITBOT_CONFIG", &policy)
        .env("JITBOT_DATA_DIR", dir.path().join("data"))
        .env("JITBOT_LISTEN", "127.0.0.1:0")
        .env("TEST_HOOK_SECRET", crate::helpers::HOOK_SECRET)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("jitbot stops")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("SLACK_APP_TOKEN") && stderr.contains("invalid_auth"),
        "{stderr}"
    );
    // Asked once, with the app token, and no more.
    let asked = slack.received_requests().await.unwrap();
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0].headers["authorization"],
        "Bearer xapp-1-A0TEST-1-revoked"
    );
    eprintln!("refused after {:?}", started.elapsed());
}

#[tokio::test]
async fn an_overloaded_jitbot_says_so_to_commands_and_lets_slack_deliver_clicks_again() {
    let mut slack = FakeSocketServer::start().await;
    // One request at a time, so one slow authenticated call fills the server.
    let app = TestApp::spawn_full(
        &crate::hardening::slow_listing_policy(),
        None,
        Default::default(),
        1,
        Default::default(),
        vec![
            ("SLACK_APP_TOKEN".into(), APP_TOKEN.into()),
            (SOCKET_URL_VAR.into(), slack.base.clone()),
        ],
    )
    .await;
    let mut connection = slack.next_greeted().await;
    let filed = connection
        .envelope(slash_command(
            "env-1",
            "U0ALICE",
            "request prod-db 1h INC-4 before the flood",
            "trig-1",
        ))
        .await;
    let id = request_id_in(filed["payload"]["text"].as_str().unwrap()).unwrap();

    // An admin's sweep of a group whose provider lists slowly holds the
    // one turn for four seconds.
    let sweep = crate::hardening::start_slow_sweep(&app);
    // A command is answered busy at once.
    let mut n = 0;
    loop {
        n += 1;
        let ack = connection
            .envelope(slash_command(
                &format!("cmd-{n}"),
                "U0ALICE",
                "list",
                &format!("trig-list-{n}"),
            ))
            .await;
        if ack["payload"]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("busy")
        {
            break;
        }
        assert!(n < 100, "never busy: {ack}");
    }
    // A click is not acknowledged while busy: Slack delivers it again.
    connection
        .send(approve_click("click-1", "U0LEAD", &id))
        .await;
    assert_eq!(sweep.await.unwrap().status(), 200);
    let mut again = approve_click("click-1", "U0LEAD", &id);
    again["retry_attempt"] = json!(1);
    again["retry_reason"] = json!("timeout");
    connection.send(again).await;
    app.until_granted(&id).await;
    // Everything said on the socket up to a last command's answer: the
    // click was acknowledged once (its second delivery), not twice.
    let mut click_acks = 0;
    connection
        .send(slash_command("cmd-last", "U0ALICE", "list", "trig-last"))
        .await;
    loop {
        let message = connection.next_message().await.expect("an acknowledgement");
        if message["envelope_id"] == "click-1" {
            click_acks += 1;
        }
        if message["envelope_id"] == "cmd-last" {
            break;
        }
    }
    assert_eq!(click_acks, 1);
}

#[tokio::test]
async fn envelopes_from_another_slack_workspace_are_acknowledged_and_change_nothing() {
    let slack = FakeSocketServer::start().await;
    let app = TestApp::spawn_with_env(
        BASE_POLICY,
        &[
            ("SLACK_APP_TOKEN", APP_TOKEN),
            (SOCKET_URL_VAR, &slack.base),
            ("SLACK_TEAM_ID", "T0TEAM"),
        ],
    )
    .await;
    let mut slack = slack;
    let mut connection = slack.next_greeted().await;
    let mut foreign = slash_command(
        "env-elsewhere",
        "U0ALICE",
        "request prod-db 1h from another workspace",
        "trig-elsewhere",
    );
    foreign["payload"]["team_id"] = json!("T0ELSEWHERE");
    let ack = connection.envelope(foreign).await;
    assert!(ack.get("payload").is_none(), "acknowledged only: {ack}");
    // The same from the allowed workspace is filed: the socket was open.
    let ack = connection
        .envelope(slash_command(
            "env-here",
            "U0ALICE",
            "request prod-db 1h from the allowed workspace",
            "trig-here",
        ))
        .await;
    let answer = ack["payload"]["text"].as_str().unwrap_or_default();
    assert!(request_id_in(answer).is_some(), "{ack}");
    assert_eq!(app.audit_details("Requested").await.len(), 1);
}
