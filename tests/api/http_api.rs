//! The HTTP API under /api/v1: tokens, the request → chat approval → grant
//! path for pipelines, ending grants, mappings and the audit export — each
//! answer checked against docs/openapi.json.

use serde_json::{json, Value};

use crate::helpers::{eventually, TestApp, ADMIN_TOKEN, USER_TOKEN};
use crate::openapi::{checked, documented_operations, route_of};

impl TestApp {
    /// Call the API and check the answer against the OpenAPI document (the
    /// route is the document's template that `path` matches).
    pub(crate) async fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method.parse().unwrap(), self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        checked(&route_of(path), &method.to_lowercase(), response).await
    }
}

/// A concrete path for a documented template, for probing.
fn example_path(template: &str) -> String {
    template
        .replace("{id}", "R-AAAAAA")
        .replace("{grant_id}", "G-AAAAAA")
        .replace("{group}", "prod-db")
        .replace("{platform}", "slack")
        .replace("{channel}", "C0DBA")
}

#[tokio::test]
async fn every_documented_route_exists_and_wants_a_token() {
    let app = TestApp::spawn().await;
    for (route, method) in documented_operations() {
        let path = example_path(&route);
        for token in [None, Some("not-a-configured-token-at-all")] {
            let mut request = app
                .http
                .request(method.to_uppercase().parse().unwrap(), app.url(&path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.headers()["www-authenticate"],
                "Bearer realm=\"jitbot\"",
                "{method} {route}"
            );
            let (status, body) = checked(&route, &method, response).await;
            assert_eq!(status, 401, "{method} {route}");
            assert_eq!(body["error"], "a valid bearer token is required");
        }
    }
    // Nothing was filed or posted by any of that.
    assert!(app.slack_calls("chat.postMessage").await.is_empty());
}

#[tokio::test]
async fn a_pipeline_files_a_request_that_is_approved_in_chat() {
    let app = TestApp::spawn().await;
    let (status, filed) = app
        .api(
            "POST",
            "/api/v1/requests",
            Some(USER_TOKEN),
            Some(
                json!({ "group": "prod-db", "duration": "2h", "reason": "deploy 4512 migration" }),
            ),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(filed["state"], "pending");
    assert_eq!(filed["requester"]["user"], "U0CIBOT");
    assert_eq!(filed["duration"], "2h");
    let id = filed["id"].as_str().unwrap().to_string();

    // The card is in the approval channel like any other.
    eventually("the approval card", || async {
        app.cards_for(&id).await.into_iter().next()
    })
    .await;
    app.approve("U0LEAD", &id).await;
    let path = format!("/api/v1/requests/{id}");
    let active = eventually("the grant", || async {
        let (_, body) = app.api("GET", &path, Some(USER_TOKEN), None).await;
        (body["state"] == "active").then_some(body)
    })
    .await;
    assert_eq!(active["approvals"][0]["by"]["user"], "U0LEAD");
    assert_eq!(active["principal"], "U0CIBOT");
    assert!(active["expires_at"].is_string());

    let (status, grants) = app
        .api("GET", "/api/v1/grants", Some(USER_TOKEN), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(grants.as_array().unwrap().len(), 1);
    assert_eq!(grants[0]["grant_id"], format!("G-{}", &id[2..]));
}

#[tokio::test]
async fn bad_requests_are_refused_with_reasons_and_file_nothing() {
    let app = TestApp::spawn().await;
    let route = "/api/v1/requests";
    let post = |body: Value| app.api("POST", route, Some(USER_TOKEN), Some(body));
    let (status, body) = post(json!({ "group": "nope", "reason": "x" })).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (
            422,
            "There is no group `nope`. Type `/jit groups` to see the groups you can request."
        )
    );
    let (status, body) = post(json!({ "group": "prod-db", "duration": "9h", "reason": "x" })).await;
    assert_eq!(status, 422);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("longer than the maximum of 4h"));
    let (status, _) = post(json!({ "group": "restricted", "reason": "x" })).await;
    assert_eq!(status, 403);
    let (status, body) = post(json!({ "group": "prod-db", "reason": "x", "extra": 1 })).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `extra`"),
        "{body}"
    );
    let response = app
        .http
        .post(app.url(route))
        .bearer_auth(USER_TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = checked(route, "post", response).await;
    assert_eq!(status, 400);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid JSON body"));
    // Nothing was filed, so no card can ever follow.
    let filed = app.audit_details("Requested").await;
    assert!(filed.is_empty(), "{filed:?}");
    assert!(app.slack_calls("chat.postMessage").await.is_empty());
}

#[tokio::test]
async fn grants_are_released_by_their_holder_and_revoked_by_admins_only() {
    let app = TestApp::spawn().await;
    let route = "/api/v1/requests";
    let file = || async {
        let (_, body) = app
            .api(
                "POST",
                route,
                Some(USER_TOKEN),
                Some(json!({ "group": "prod-db", "duration": "1h", "reason": "on call" })),
            )
            .await;
        let id = body["id"].as_str().unwrap().to_string();
        app.approve("U0LEAD", &id).await;
        app.until_active(&id).await;
        id
    };
    let first = file().await;
    let grant = format!("G-{}", &first[2..]);

    let revoke_path = format!("/api/v1/grants/{grant}/revoke");
    let reason = json!({ "reason": "leaver" });
    let (status, _) = app
        .api("POST", &revoke_path, Some(USER_TOKEN), Some(reason.clone()))
        .await;
    assert_eq!(status, 403, "a user token cannot revoke");
    let (status, _) = app
        .api(
            "POST",
            &revoke_path,
            Some(ADMIN_TOKEN),
            Some(json!({ "reason": " " })),
        )
        .await;
    assert_eq!(status, 422);
    let (status, body) = app
        .api(
            "POST",
            &revoke_path,
            Some(ADMIN_TOKEN),
            Some(reason.clone()),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(body["grant_id"], grant);
    eventually("the revoke", || async {
        (app.iam_actions("revoke", &first).await == 1).then_some(())
    })
    .await;
    let dm = app
        .wait_for_dm("U0CIBOT", "the holder is told why", "leaver")
        .await;
    assert!(dm.contains(&grant), "{dm}");
    let (status, body) = app
        .api("POST", &revoke_path, Some(ADMIN_TOKEN), Some(reason))
        .await;
    assert_eq!(status, 409, "{body}");

    let second = file().await;
    let release_path = format!("/api/v1/grants/G-{}/release", &second[2..]);
    // The admin token acts as U0ADMIN, who does not hold this grant.
    let (status, _) = app
        .api("POST", &release_path, Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        app.request_json(&second).await["state"],
        "active",
        "a refused release changes nothing"
    );
    assert!(
        app.audit_details("EndRequested").await.len() == 1,
        "only the admin revoke"
    );
    let (status, _) = app.api("POST", &release_path, Some(USER_TOKEN), None).await;
    assert_eq!(status, 202);
    eventually("the release", || async {
        (app.iam_actions("revoke", &second).await == 1).then_some(())
    })
    .await;
    let (status, _) = app
        .api(
            "POST",
            "/api/v1/grants/G-ZZZZZZ/release",
            Some(USER_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn requests_of_others_are_hidden_from_user_tokens() {
    let app = TestApp::spawn().await;
    let alice = app.request("U0ALICE", "request prod-db 1h reading").await;
    let path = format!("/api/v1/requests/{alice}");
    let (status, _) = app.api("GET", &path, Some(USER_TOKEN), None).await;
    assert_eq!(status, 404);
    let (status, body) = app.api("GET", &path, Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["requester"]["user"], "U0ALICE");
    let (status, _) = app
        .api("GET", "/api/v1/requests/bogus", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn admins_manage_mappings_over_the_api() {
    let app = TestApp::spawn().await;
    let (status, _) = app
        .api("GET", "/api/v1/mappings", Some(USER_TOKEN), None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .api(
            "PUT",
            "/api/v1/mappings/prod-db/slack/C0DBA",
            Some(USER_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 403);
    assert!(
        app.audit_details("MappingAdded").await.is_empty(),
        "a refused change changes nothing"
    );
    let (status, body) = app
        .api(
            "PUT",
            "/api/v1/mappings/prod-db/slack/C0DBA",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(body["source"], "runtime");
    assert_eq!(body["mapped_by"]["user"], "U0ADMIN");
    let (status, _) = app
        .api(
            "PUT",
            "/api/v1/mappings/prod-db/slack/C0DBA",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        app.audit_details("MappingAdded").await.len(),
        1,
        "mapping again is no second change"
    );
    let (status, body) = app
        .api(
            "PUT",
            "/api/v1/mappings/prod-db/slack/C0NOTIN2",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 422);
    assert!(body["error"].as_str().unwrap().contains("not_in_channel"));
    let (status, _) = app
        .api(
            "PUT",
            "/api/v1/mappings/nope/slack/C0DBA",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 404);

    let (_, listed) = app
        .api("GET", "/api/v1/mappings", Some(ADMIN_TOKEN), None)
        .await;
    let runtime: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["source"] == "runtime")
        .collect();
    assert_eq!(runtime.len(), 1, "{listed}");
    assert_eq!(runtime[0]["channel"], "C0DBA");
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["source"] == "policy"
            && m["group"] == "prod-db"
            && m["channel"] == "C0APPROVALS"));

    let (status, _) = app
        .api(
            "DELETE",
            "/api/v1/mappings/prod-db/slack/C0DBA",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, listed) = app
        .api("GET", "/api/v1/mappings", Some(ADMIN_TOKEN), None)
        .await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["source"] == "policy"),
        "{listed}"
    );
    assert_eq!(app.audit_details("MappingRemoved").await.len(), 1);
    // The policy's channel gets the group's cards again.
    let id = app
        .request("U0ALICE", "request prod-db 1h after unmapping")
        .await;
    let card = eventually("the card", || async { app.cards_for(&id).await.pop() }).await;
    assert_eq!(card["channel"], "C0APPROVALS");
    let (status, _) = app
        .api(
            "DELETE",
            "/api/v1/mappings/prod-db/slack/C0DBA",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(app.audit_details("MappingRemoved").await.len(), 1);
}

#[tokio::test]
async fn the_audit_log_streams_as_json_lines_with_a_since_filter() {
    let app = TestApp::spawn().await;
    let id = app.request("U0ALICE", "request prod-db 1h audited").await;
    app.approve("U0LEAD", &id).await;
    app.until_active(&id).await;
    let route = "/api/v1/audit";
    let (status, lines) = app.api("GET", route, Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200);
    let lines = lines.as_array().unwrap().clone();
    let actions: Vec<&str> = lines
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["requested", "approved", "granted"]);
    // Chained: each event names the previous one's hash.
    assert_eq!(lines[1]["prev_hash"], lines[0]["hash"]);
    assert_eq!(lines[2]["prev_hash"], lines[1]["hash"]);

    let (_, resumed) = app
        .api(
            "GET",
            &format!("{route}?after={}", lines[1]["seq"]),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(resumed.as_array().unwrap().len(), 1);
    let (_, future) = app
        .api(
            "GET",
            &format!("{route}?since=2999-01-01T00:00:00Z"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert!(future.as_array().unwrap().is_empty());
    let (_, recent) = app
        .api("GET", &format!("{route}?since=1h"), Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(recent.as_array().unwrap().len(), 3);
    let (status, body) = app
        .api(
            "GET",
            &format!("{route}?since=yesterday"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("neither an RFC 3339 time"));
    let (status, _) = app.api("GET", route, Some(USER_TOKEN), None).await;
    assert_eq!(status, 403);
}
