//! AWS Signature Version 4 for Amazon OpenSearch Service: each request is signed over its method,
//! URL, `host` header and body (`x-amz-content-sha256`), with credentials from the standard AWS chain
//! (environment, profile, SSO, web identity, container or instance role), cached until 5 minutes
//! before they expire. The `elasticsearch` transport has no signing hook, so the emitter signs the
//! exact bytes it hands to the transport and passes the signature headers along.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use elasticsearch::http::Url;
use elasticsearch::http::headers::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::Mutex;

use crate::error::ElasticsearchError;

/// Credentials are refreshed this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// Signs requests; see the module documentation.
pub(crate) struct SigV4 {
    region: String,
    service: String,
    provider: SharedCredentialsProvider,
    cached: Mutex<Option<Credentials>>,
}

impl std::fmt::Debug for SigV4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigV4")
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl SigV4 {
    /// A signer for `service` in `region`, with the standard credential chain.
    pub(crate) async fn from_env(region: &str, service: &str) -> Result<Self, ElasticsearchError> {
        let config = kinesis_connectors_aws::sdk_config(region, None).await;
        let provider = config
            .credentials_provider()
            .ok_or(ElasticsearchError::NoCredentials)?;
        Ok(Self::new(region, service, provider))
    }

    /// A signer with a given credentials provider.
    pub(crate) fn new(region: &str, service: &str, provider: SharedCredentialsProvider) -> Self {
        Self {
            region: region.to_owned(),
            service: service.to_owned(),
            provider,
            cached: Mutex::new(None),
        }
    }

    async fn credentials(&self) -> Result<Credentials, String> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = c
                .expiry()
                .is_none_or(|e| e > SystemTime::now() + REFRESH_BEFORE_EXPIRY);
            if fresh {
                return Ok(c.clone());
            }
        }
        let c = self.provider.provide_credentials().await.map_err(|e| {
            format!(
                "AWS credentials unavailable: {}",
                kinesis_connectors_aws::error_chain(&e)
            )
        })?;
        *cached = Some(c.clone());
        Ok(c)
    }

    /// The headers that sign a request of `method` to `url` with `body` (`authorization`,
    /// `x-amz-date`, `x-amz-content-sha256`, and `x-amz-security-token` for temporary credentials).
    pub(crate) async fn headers(
        &self,
        method: &str,
        url: &Url,
        body: &[u8],
    ) -> Result<HeaderMap, String> {
        let credentials = self.credentials().await?;
        let identity = credentials.into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| format!("SigV4 signing parameters: {e}"))?
            .into();
        let host = host_header(url);
        let signable = SignableRequest::new(
            method,
            url.as_str(),
            std::iter::once(("host", host.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| format!("SigV4: cannot sign {url}: {e}"))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| format!("SigV4 signing failed: {e}"))?
            .into_parts();
        let mut headers = HeaderMap::new();
        for (name, value) in instructions.headers() {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("SigV4 header {name}: {e}"))?;
            let mut value =
                HeaderValue::from_str(value).map_err(|e| format!("SigV4 header {name}: {e}"))?;
            if name == "authorization" || name == "x-amz-security-token" {
                value.set_sensitive(true);
            }
            headers.insert(name, value);
        }
        Ok(headers)
    }
}

/// The `host` header an HTTP client sends for `url`: the host, and the port unless it is the scheme's
/// default (which `Url` already leaves out).
pub(crate) fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signs_with_the_body_hash_and_the_scope() {
        let provider = SharedCredentialsProvider::new(Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("session-token".into()),
            None,
            "test",
        ));
        let signer = SigV4::new("eu-west-1", "es", provider);
        let url =
            Url::parse("https://search-x.eu-west-1.es.amazonaws.com/_bulk?filter_path=errors")
                .unwrap();
        let h = signer.headers("POST", &url, b"{}\n").await.unwrap();
        let auth = h["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{auth}"
        );
        assert!(auth.contains("/eu-west-1/es/aws4_request"), "{auth}");
        assert!(
            auth.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date"),
            "{auth}"
        );
        assert!(h["authorization"].is_sensitive());
        assert_eq!(
            h["x-amz-content-sha256"],
            // sha256 of "{}\n"
            "ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356"
        );
        assert_eq!(h["x-amz-security-token"], "session-token");
        assert!(!format!("{signer:?}").contains("wJalr"));
    }

    #[test]
    fn host_headers() {
        let h = |u: &str| host_header(&Url::parse(u).unwrap());
        assert_eq!(h("https://a.example.com/x"), "a.example.com");
        assert_eq!(h("https://a.example.com:443/x"), "a.example.com");
        assert_eq!(h("http://127.0.0.1:4570/"), "127.0.0.1:4570");
    }
}
