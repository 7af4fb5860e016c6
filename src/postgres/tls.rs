//! TLS to PostgreSQL with libpq's meaning of `sslmode`, which operators
//! already know: `disable` is plain text; `prefer` (the default) and
//! `require` encrypt without checking the server's certificate (as libpq
//! does); `verify-full` checks the certificate chain and the host name
//! against the public roots plus the CA in `sslrootcert`. tokio-postgres
//! only knows the first three, so the verifying modes are taken out of the
//! URL here and applied to the rustls configuration.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TlsMode {
    /// `sslmode=disable`.
    Off,
    /// `prefer` / `require`: encrypted, certificate not checked.
    Unverified,
    /// `verify-full`: chain and host name checked.
    Verified { extra_ca: Option<PathBuf> },
}

/// Take `sslmode` and `sslrootcert` out of a `postgres://` URL: the URL
/// tokio-postgres can parse, and the TLS mode to use.
pub(crate) fn split_url(url: &str) -> Result<(String, TlsMode), String> {
    let Ok(mut parsed) = url::Url::parse(url) else {
        // Key=value strings are left to tokio-postgres, which knows
        // disable/prefer/require.
        return Ok((url.to_string(), TlsMode::Unverified));
    };
    let mut mode = None;
    let mut root_cert = None;
    let mut kept = Vec::new();
    for (key, value) in parsed.query_pairs() {
        match key.as_ref() {
            "sslmode" => mode = Some(value.into_owned()),
            "sslrootcert" => root_cert = Some(PathBuf::from(value.as_ref())),
            _ => kept.push((key.into_owned(), value.into_owned())),
        }
    }
    let tls = match mode.as_deref() {
        Some("disable") => TlsMode::Off,
        None | Some("prefer") | Some("require") => TlsMode::Unverified,
        Some("verify-full") => TlsMode::Verified {
            extra_ca: root_cert.clone(),
        },
        Some("verify-ca") => return Err(
            "sslmode=verify-ca is not supported; use verify-full (it also checks the host name)"
                .into(),
        ),
        Some(other) => {
            return Err(format!(
                "sslmode={other} is not one of disable, prefer, require, verify-full"
            ))
        }
    };
    if root_cert.is_some() && !matches!(tls, TlsMode::Verified { .. }) {
        return Err("sslrootcert only takes effect with sslmode=verify-full".into());
    }
    let driver_mode = match mode.as_deref() {
        Some("disable") => "disable",
        Some("require") | Some("verify-full") => "require",
        _ => "prefer",
    };
    let pairs = kept
        .into_iter()
        .chain([("sslmode".to_string(), driver_mode.to_string())]);
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    Ok((parsed.to_string(), tls))
}

/// The rustls connector for `mode` (not used for [`TlsMode::Off`]).
pub(crate) fn connector(mode: &TlsMode) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match mode {
        TlsMode::Verified { extra_ca } => {
            let mut roots =
                rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            if let Some(path) = extra_ca {
                let certificates = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
                for certificate in certificates {
                    let certificate =
                        certificate.map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
                    roots
                        .add(certificate)
                        .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsMode::Unverified | TlsMode::Off => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// libpq's `require`: any certificate is accepted, but the handshake's
/// signatures are still checked, so the session is encrypted to whoever
/// holds the presented certificate's key.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifying_modes_are_taken_out_of_the_url() {
        let (url, mode) =
            split_url("postgres://u:p@db:5432/app?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=3")
                .unwrap();
        assert_eq!(
            url,
            "postgres://u:p@db:5432/app?connect_timeout=3&sslmode=require"
        );
        assert_eq!(
            mode,
            TlsMode::Verified {
                extra_ca: Some(PathBuf::from("/etc/ca.pem"))
            }
        );
    }

    #[test]
    fn libpq_modes_keep_their_meaning() {
        assert_eq!(
            split_url("postgres://db/app").unwrap().1,
            TlsMode::Unverified
        );
        assert_eq!(
            split_url("postgres://db/app?sslmode=disable").unwrap(),
            (
                "postgres://db/app?sslmode=disable".to_string(),
                TlsMode::Off
            )
        );
        assert_eq!(
            split_url("postgres://db/app?sslmode=require").unwrap().1,
            TlsMode::Unverified
        );
        assert!(split_url("postgres://db/app?sslmode=verify-ca").is_err());
        assert!(split_url("postgres://db/app?sslmode=bogus").is_err());
        assert!(split_url("postgres://db/app?sslrootcert=/ca.pem").is_err());
    }
}
