//! AWS Signature Version 4 for the JSON APIs jitbot calls (POST to `/`,
//! no query string): the canonical request, the string to sign and the
//! derived key, as AWS documents them.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Long-lived or session credentials.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// One JSON call to sign: where it goes and what it says.
pub struct Call<'a> {
    pub region: &'a str,
    pub service: &'a str,
    /// The host, with its port when it is not the default.
    pub host: &'a str,
    /// `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
    /// `X-Amz-Target`.
    pub target: &'a str,
    pub content_type: &'a str,
    pub body: &'a [u8],
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The headers that sign `call` (a POST to `/`): every header to send
/// besides `host`, the `authorization` one included.
pub fn sign(credentials: &Credentials, call: &Call<'_>) -> Vec<(String, String)> {
    let date = &call.amz_date[..8];
    let mut headers: Vec<(String, String)> = vec![
        ("content-type".into(), call.content_type.into()),
        ("host".into(), call.host.into()),
        ("x-amz-date".into(), call.amz_date.into()),
        ("x-amz-target".into(), call.target.into()),
    ];
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token".into(), token.expose().into()));
    }
    headers.sort();
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{}\n", value.trim()))
        .collect();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "POST\n/\n\n{canonical_headers}\n{signed_headers}\n{}",
        hex::encode(Sha256::digest(call.body))
    );
    let scope = format!("{date}/{}/{}/aws4_request", call.region, call.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        call.amz_date,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let key = [call.region, call.service, "aws4_request"].iter().fold(
        hmac(
            format!("AWS4{}", credentials.secret_access_key.expose()).as_bytes(),
            date,
        ),
        |key, part| hmac(&key, part),
    );
    let signature = hex::encode(hmac(&key, &string_to_sign));
    headers.retain(|(name, _)| name != "host");
    headers.push((
        "authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            credentials.access_key_id
        ),
    ));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The derivation of the signing key from AWS's documentation
    /// ("Deriving the signing key"), checked step by step.
    #[test]
    fn the_signing_key_derives_as_documented() {
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let k_date = hmac(format!("AWS4{secret}").as_bytes(), "20120215");
        let k_region = hmac(&k_date, "us-east-1");
        let k_service = hmac(&k_region, "iam");
        let k_signing = hmac(&k_service, "aws4_request");
        assert_eq!(
            hex::encode(k_signing),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn the_signature_covers_the_target_the_date_and_the_body() {
        let credentials = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("secret"),
            session_token: Some(Secret::new("session")),
        };
        let signed = |target: &str, body: &[u8]| {
            sign(
                &credentials,
                &Call {
                    region: "eu-west-1",
                    service: "sso",
                    host: "sso.eu-west-1.amazonaws.com",
                    amz_date: "20261204T120000Z",
                    target,
                    content_type: "application/x-amz-json-1.1",
                    body,
                },
            )
        };
        let one = signed("SWBExternalService.CreateAccountAssignment", b"{}");
        let authorization = &one.iter().find(|(n, _)| n == "authorization").unwrap().1;
        assert!(authorization.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261204/eu-west-1/sso/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature="
        ));
        assert!(one
            .iter()
            .any(|(n, v)| n == "x-amz-security-token" && v == "session"));
        assert_ne!(
            one,
            signed("SWBExternalService.DeleteAccountAssignment", b"{}")
        );
        assert_ne!(
            one,
            signed("SWBExternalService.CreateAccountAssignment", b"{ }")
        );
    }
}
