//! Stripe's webhook signatures, as Stripe specifies them: the header
//! `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]`, each `v1` the HMAC-SHA256 of
//! `"<t>.<raw body>"` with the endpoint's secret. A request is genuine when any `v1` matches any
//! of the configured secrets (two during a rotation) and `t` is within the tolerance. The
//! comparison is ring's constant-time HMAC verification; the body is checked as received, before
//! it is parsed.

use ring::hmac;

/// Stripe's libraries accept a signature this many seconds old.
pub const TOLERANCE_SECONDS: i64 = 300;

/// The endpoint secrets (`whsec_…`), several during a rotation. Never printed.
#[derive(Clone, Default)]
pub struct WebhookSecrets(Vec<String>);

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookSecrets({} secrets, redacted)", self.0.len())
    }
}

impl WebhookSecrets {
    /// Secrets separated by commas or new lines (a file may hold one per line).
    pub fn parse(text: &str) -> WebhookSecrets {
        WebhookSecrets(
            text.split([',', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    Missing,
    #[error("the Stripe-Signature header has no timestamp or no v1 signature")]
    Malformed,
    #[error("no v1 signature matches the body with a configured secret")]
    Mismatch,
    #[error("the signature's timestamp is more than {TOLERANCE_SECONDS} s old")]
    Stale,
}

/// Checks `header` against the raw `body` at `now` (unix seconds).
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &WebhookSecrets,
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = vec![];
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.extend(unhex(v)),
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let mut signed = Vec::with_capacity(body.len() + 12);
    signed.extend_from_slice(t.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    let genuine = secrets.0.iter().any(|secret| {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        signatures
            .iter()
            .any(|sig| hmac::verify(&key, &signed, sig).is_ok())
    });
    if !genuine {
        return Err(SignatureError::Mismatch);
    }
    if t < now - TOLERANCE_SECONDS {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// The header Stripe sends for `body` at `t` (the emulator's deliveries and the tests).
pub fn sign(body: &[u8], secret: &str, t: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = t.to_string().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(body);
    let tag = hmac::sign(&key, &signed);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";

    #[test]
    fn a_signature_made_with_the_secret_verifies() {
        let body = br#"{"id":"evt_1","type":"invoice.paid"}"#;
        let secrets = WebhookSecrets::parse(SECRET);
        let header = sign(body, SECRET, 1_700_000_000);
        assert_eq!(verify(Some(&header), body, &secrets, 1_700_000_010), Ok(()));
    }

    #[test]
    fn an_independently_computed_signature_verifies() {
        // HMAC-SHA256 of `1700000000.{"id":"evt_1"}` with the secret, computed with Python's
        // hmac module; a v0 entry beside it (Stripe's test tooling) is ignored.
        let v1 = "248a374f50f943a28b0f6ab50faf9a7e7e29b710fa26df9fb1618b9bf8ea9c9a";
        let body = br#"{"id":"evt_1"}"#;
        assert_eq!(
            sign(body, SECRET, 1_700_000_000),
            format!("t=1700000000,v1={v1}")
        );
        let header = format!("t=1700000000,v1={v1},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39");
        let secrets = WebhookSecrets::parse(SECRET);
        assert_eq!(verify(Some(&header), body, &secrets, 1_700_000_100), Ok(()));
    }

    #[test]
    fn every_bad_request_is_refused() {
        let body = br#"{"id":"evt_1"}"#;
        let secrets = WebhookSecrets::parse(SECRET);
        let good = sign(body, SECRET, 1_000);
        assert_eq!(
            verify(None, body, &secrets, 1_000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(Some("v1=00"), body, &secrets, 1_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some("t=1000"), body, &secrets, 1_000),
            Err(SignatureError::Malformed)
        );
        // A changed body, a wrong secret, an old timestamp.
        assert_eq!(
            verify(Some(&good), br#"{"id":"evt_2"}"#, &secrets, 1_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                Some(&good),
                body,
                &WebhookSecrets::parse("whsec_other"),
                1_000
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&good), body, &secrets, 1_000 + TOLERANCE_SECONDS + 1),
            Err(SignatureError::Stale)
        );
        // The timestamp is signed too: moving it breaks the signature.
        let moved = good.replace("t=1000", "t=2000");
        assert_eq!(
            verify(Some(&moved), body, &secrets, 2_000),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn during_a_rotation_either_secret_verifies() {
        let body = b"{}";
        let secrets = WebhookSecrets::parse("whsec_old, whsec_new");
        for s in ["whsec_old", "whsec_new"] {
            assert_eq!(verify(Some(&sign(body, s, 5)), body, &secrets, 5), Ok(()));
        }
        assert!(format!("{secrets:?}").contains("redacted"));
        assert!(!format!("{secrets:?}").contains("whsec"));
    }
}
