//! `@connections` and the Secrets Manager stand-in are signed as AWS signs them: SigV4 for
//! `execute-api` or `secretsmanager`, with the local credentials. Unsigned or wrongly signed
//! requests are refused, as AWS refuses them, so no other process on the machine can push
//! forged events into a user's socket or read the development secrets.
//!
//! The check signs the request again with `aws-sigv4` (the SDK's own signer) over exactly the
//! headers the client says it signed, and compares the signatures.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use sha2::Digest;

/// How far a request's `X-Amz-Date` may be from now, as AWS allows.
const CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
struct Authorization<'a> {
    access_key: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse(header: &str) -> Option<Authorization<'_>> {
    let fields = header.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for field in fields.split(',').map(str::trim) {
        let (name, value) = field.split_once('=')?;
        match name {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed = Some(value),
            "Signature" => signature = Some(value),
            _ => return None,
        }
    }
    let scope: Vec<&str> = credential?.split('/').collect();
    let [access_key, _date, region, service, "aws4_request"] = scope[..] else {
        return None;
    };
    Some(Authorization {
        access_key,
        region,
        service,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    })
}

fn amz_date(headers: &http::HeaderMap) -> Option<SystemTime> {
    let raw = headers.get("x-amz-date")?.to_str().ok()?;
    let time = chrono::NaiveDateTime::parse_from_str(raw, "%Y%m%dT%H%M%SZ").ok()?;
    let secs = u64::try_from(time.and_utc().timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Whether a request carries a valid signature by `access_key`/`secret_key` for `service`;
/// the error says what is wrong (for the 403's message).
pub fn verify(
    service: &str,
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    body: &[u8],
    (access_key, secret_key): (&str, &str),
    now: SystemTime,
) -> Result<(), String> {
    let header = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or("Missing Authentication Token")?;
    let auth = parse(header).ok_or("the Authorization header is not a SigV4 signature")?;
    if auth.access_key != access_key {
        return Err("The security token included in the request is invalid.".into());
    }
    if auth.service != service {
        return Err(format!(
            "credential should be scoped to {service}, not {}",
            auth.service
        ));
    }
    if !auth.signed_headers.contains(&"host") {
        return Err("the host header must be signed".into());
    }
    let time = amz_date(headers).ok_or("X-Amz-Date is missing or malformed")?;
    let skew = now
        .duration_since(time)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap_or_default();
    if skew > CLOCK_SKEW {
        return Err("Signature expired: X-Amz-Date is more than 15 minutes from now".into());
    }

    let mut signed = Vec::new();
    for name in &auth.signed_headers {
        let value = headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("signed header {name} is missing"))?;
        signed.push((*name, value));
    }
    let identity = Credentials::new(access_key, secret_key, None, None, "forum-local").into();
    let mut settings = SigningSettings::default();
    // Sign exactly what the client says it signed.
    settings.excluded_headers = None;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let request = SignableRequest::new(
        method.as_str(),
        uri.to_string(),
        signed.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| e.to_string())?;
    let (_, expected) = sign(request, &params).map_err(|e| e.to_string())?.into_parts();
    // Compared as digests, so the time taken does not reveal how much of a guess was right.
    if sha2::Sha256::digest(expected.as_bytes()) != sha2::Sha256::digest(auth.signature.as_bytes()) {
        return Err("The request signature we calculated does not match the signature you provided.".into());
    }
    Ok(())
}
