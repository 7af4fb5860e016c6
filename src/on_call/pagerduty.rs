//! PagerDuty: `GET /oncalls?schedule_ids[]=<id>&include[]=users` with
//! `Authorization: Token token=<token>`; the on-call entries' users carry
//! their `email` when users are included.

use serde_json::Value;

use super::{address, read_answer, LookupError, MAX_PAGES};
use crate::config::paging::PagingAccount;
use crate::domain::email::EmailAddress;

pub(super) async fn on_call(
    http: &reqwest::Client,
    account: &PagingAccount,
    schedule_id: &str,
) -> Result<Vec<EmailAddress>, LookupError> {
    let mut people = Vec::new();
    let mut offset = 0;
    for _ in 0..MAX_PAGES {
        // Written as PagerDuty documents it, brackets and all; only the
        // schedule id (policy text) is encoded.
        let id: String = url::form_urlencoded::byte_serialize(schedule_id.as_bytes()).collect();
        let mut url = format!(
            "{}/oncalls?schedule_ids[]={id}&include[]=users",
            account.api_url
        );
        if offset > 0 {
            url.push_str(&format!("&offset={offset}"));
        }
        let response = http
            .get(url)
            .header(
                "Authorization",
                format!("Token token={}", account.token.expose()),
            )
            .header("Accept", "application/vnd.pagerduty+json;version=2")
            .send()
            .await;
        let page = read_answer("PagerDuty", response).await?;
        let entries = page["oncalls"].as_array().ok_or_else(|| {
            LookupError::Failed("PagerDuty: no `oncalls` list in the answer".into())
        })?;
        people.extend(
            entries
                .iter()
                .filter_map(|entry| address(entry.pointer("/user/email").and_then(Value::as_str))),
        );
        offset += entries.len();
        if page["more"].as_bool() != Some(true) || entries.is_empty() {
            break;
        }
    }
    Ok(people)
}
