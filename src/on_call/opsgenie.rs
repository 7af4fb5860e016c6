//! Opsgenie: `GET /v2/schedules/<name>/on-calls?scheduleIdentifierType=name`
//! with `Authorization: GenieKey <key>`; the participants of type `user`
//! are named by their email.

use serde_json::Value;

use super::{address, read_answer, LookupError};
use crate::config::paging::PagingAccount;
use crate::domain::email::EmailAddress;

pub(super) async fn on_call(
    http: &reqwest::Client,
    account: &PagingAccount,
    schedule_name: &str,
) -> Result<Vec<EmailAddress>, LookupError> {
    let mut url = url::Url::parse(&account.api_url)
        .map_err(|e| LookupError::Failed(format!("Opsgenie URL: {e}")))?;
    url.path_segments_mut()
        .map_err(|_| LookupError::Failed("Opsgenie URL cannot take a path".into()))?
        .pop_if_empty()
        .extend(["v2", "schedules", schedule_name, "on-calls"]);
    url.query_pairs_mut()
        .append_pair("scheduleIdentifierType", "name");
    let response = http
        .get(url)
        .header(
            "Authorization",
            format!("GenieKey {}", account.token.expose()),
        )
        .send()
        .await;
    let answer = read_answer("Opsgenie", response).await?;
    let participants = answer
        .pointer("/data/onCallParticipants")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            LookupError::Failed("Opsgenie: no `data.onCallParticipants` in the answer".into())
        })?;
    Ok(participants
        .iter()
        .filter(|p| matches!(p["type"].as_str(), None | Some("user")))
        .filter_map(|p| address(p["name"].as_str()))
        .collect())
}
