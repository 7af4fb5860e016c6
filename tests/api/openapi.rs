//! Holds the server's API answers to `docs/openapi.json`: every answer a
//! test gets must be a documented status of that route, with a body valid
//! against the documented schema.

use std::sync::OnceLock;

use serde_json::Value;

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
                .expect("docs/openapi.json is readable");
        serde_json::from_str(&text).expect("docs/openapi.json is JSON")
    })
}

/// The paths the document describes, with their methods.
pub(crate) fn documented_operations() -> Vec<(String, String)> {
    let mut operations = Vec::new();
    for (path, item) in spec()["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations.push((path.clone(), method.clone()));
        }
    }
    operations
}

/// The document's path template that a concrete path (query ignored)
/// matches: `{name}` stands for one segment.
pub(crate) fn route_of(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    spec()["paths"]
        .as_object()
        .unwrap()
        .keys()
        .find(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(part, segment)| part.starts_with('{') || part == segment)
        })
        .unwrap_or_else(|| panic!("{path} matches no route in docs/openapi.json"))
        .clone()
}

/// Check one body against the schema at `pointer` inside the document.
fn validate(pointer: &str, body: &Value, what: &str) {
    // The schema refers to #/components/…; give it the document's components.
    let mut schema = spec()
        .pointer(pointer)
        .unwrap_or_else(|| panic!("no schema at {pointer}"))
        .clone();
    schema["components"] = spec()["components"].clone();
    let validator = jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("the schema for {what} does not compile: {e}"));
    let problems: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        problems.is_empty(),
        "{what} does not match docs/openapi.json:\n{}\nbody: {body:#}",
        problems.join("\n")
    );
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Read `response` to `route` (a path template of the document) and check
/// it. Returns the status and the body (JSON; a list for JSON lines; null
/// when empty).
pub(crate) async fn checked(
    route: &str,
    method: &str,
    response: reqwest::Response,
) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let text = response.text().await.unwrap();
    let operation = &spec()["paths"][route][method];
    assert!(
        operation.is_object(),
        "{method} {route} is not in docs/openapi.json"
    );
    let documented = &operation["responses"][status.to_string()];
    assert!(
        documented.is_object(),
        "{method} {route} answered {status}, which docs/openapi.json does not list: {text}"
    );
    let Some(content) = documented.get("content") else {
        assert!(
            text.is_empty(),
            "{method} {route} {status} should have no body: {text}"
        );
        return (status, Value::Null);
    };
    assert!(
        content.get(&content_type).is_some(),
        "{method} {route} {status} answered {content_type:?}, documented: {content}"
    );
    let pointer = format!(
        "/paths/{}/{method}/responses/{status}/content/{}/schema",
        escape(route),
        escape(&content_type)
    );
    let what = format!("{method} {route} {status}");
    if content_type == "application/x-ndjson" {
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .collect();
        for line in &lines {
            validate(&pointer, line, &what);
        }
        return (status, Value::Array(lines));
    }
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {text}"));
    validate(&pointer, &body, &what);
    (status, body)
}

#[test]
fn the_checker_rejects_bodies_the_document_does_not_allow() {
    let pointer = "/components/schemas/Request";
    let wrong_shapes = [
        serde_json::json!({ "id": "R-AAAAAA" }),
        serde_json::json!({ "error": 1 }),
    ];
    for body in wrong_shapes {
        let outcome = std::panic::catch_unwind(|| validate(pointer, &body, "a wrong body"));
        assert!(outcome.is_err(), "{body} passed as a Request");
    }
    validate(
        "/components/schemas/Error",
        &serde_json::json!({ "error": "x" }),
        "an error",
    );
}
