//! PEM files as Nym writes them: a label and a base64 body holding the raw key
//! bytes (no ASN.1). Labels must match exactly on load.

use base64::Engine as _;
use zeroize::Zeroizing;

/// Label of an ed25519 private identity key file.
pub const ED25519_PRIVATE: &str = "ED25519 PRIVATE KEY";
/// Label of an ed25519 public identity key file.
pub const ED25519_PUBLIC: &str = "ED25519 PUBLIC KEY";
/// Label of an x25519 private encryption key file.
pub const X25519_PRIVATE: &str = "X25519 PRIVATE KEY";
/// Label of an x25519 public encryption key file.
pub const X25519_PUBLIC: &str = "X25519 PUBLIC KEY";
/// Label of the 16-byte acknowledgement key file.
pub const ACK_KEY: &str = "AES-128-CTR ACKNOWLEDGEMENTS KEY";
/// Label of the 32-byte gateway shared key file.
pub const GATEWAY_SHARED_KEY: &str = "AES-256-GCM-SIV GATEWAY SHARED KEY";

/// Largest PEM document we agree to parse; key files are a few hundred bytes.
pub const MAX_PEM_LEN: usize = 64 * 1024;

/// Why a PEM document could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PemError {
    /// The document is larger than any key file could be.
    #[error("PEM document is {0} bytes, larger than the {MAX_PEM_LEN}-byte limit")]
    TooLarge(usize),
    /// No `-----BEGIN …-----` line was found.
    #[error("no '-----BEGIN <label>-----' line found")]
    MissingBegin,
    /// The `-----END …-----` line is missing or names another label.
    #[error("no matching '-----END {0}-----' line found")]
    MissingEnd(String),
    /// The label is not the one expected for this kind of key.
    #[error("unexpected key pem tag. Got '{got}', expected: '{expected}'")]
    WrongLabel {
        /// Label found in the file.
        got: String,
        /// Label this key kind must carry.
        expected: String,
    },
    /// The body is not valid base64.
    #[error("PEM body is not valid base64: {0}")]
    Base64(String),
    /// The body decoded to the wrong number of bytes.
    #[error("key in '{label}' PEM is {got} bytes, expected {expected}")]
    WrongLength {
        /// Label of the document.
        label: String,
        /// Decoded length.
        got: usize,
        /// Required length.
        expected: usize,
    },
}

/// Encode secret `bytes` as a PEM document: [`encode`], with the text and
/// its intermediate base64 wiped from memory when dropped.
pub fn encode_secret(label: &str, bytes: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(encode(label, bytes))
}

/// Encode `bytes` as a PEM document with `label` (64-column base64 lines).
pub fn encode(label: &str, bytes: &[u8]) -> String {
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes));
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Parse a PEM document and return its label and decoded body (wiped from
/// memory when dropped, as is every copy made on the way).
pub fn decode_any(text: &str) -> Result<(String, Zeroizing<Vec<u8>>), PemError> {
    if text.len() > MAX_PEM_LEN {
        return Err(PemError::TooLarge(text.len()));
    }
    let mut lines = text.lines().map(str::trim);
    let label = loop {
        match lines.next() {
            None => return Err(PemError::MissingBegin),
            Some(l) => {
                if let Some(rest) = l.strip_prefix("-----BEGIN ") {
                    if let Some(label) = rest.strip_suffix("-----") {
                        break label.to_string();
                    }
                    return Err(PemError::MissingBegin);
                }
            }
        }
    };
    let end = format!("-----END {label}-----");
    let mut body = Zeroizing::new(String::new());
    let mut ended = false;
    for l in lines {
        if l == end {
            ended = true;
            break;
        }
        if l.contains(':') {
            // RFC 1421 headers are not used by Nym; skip them.
            continue;
        }
        body.push_str(l);
    }
    if !ended {
        return Err(PemError::MissingEnd(label));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|e| PemError::Base64(e.to_string()))?;
    Ok((label, Zeroizing::new(bytes)))
}

/// Parse a PEM document that must carry `label` and exactly `N` bytes.
pub fn decode_fixed<const N: usize>(text: &str, label: &str) -> Result<[u8; N], PemError> {
    let (got, bytes) = decode_any(text)?;
    if got != label {
        return Err(PemError::WrongLabel {
            got,
            expected: label.to_string(),
        });
    }
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| PemError::WrongLength {
        label: label.to_string(),
        got: bytes.len(),
        expected: N,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_label_check() {
        let doc = encode(ACK_KEY, &[9u8; 16]);
        assert!(doc.starts_with("-----BEGIN AES-128-CTR ACKNOWLEDGEMENTS KEY-----\n"));
        assert_eq!(decode_fixed::<16>(&doc, ACK_KEY), Ok([9u8; 16]));
        assert!(matches!(
            decode_fixed::<16>(&doc, ED25519_PRIVATE),
            Err(PemError::WrongLabel { .. })
        ));
        assert!(matches!(
            decode_fixed::<32>(&doc, ACK_KEY),
            Err(PemError::WrongLength { got: 16, .. })
        ));
    }

    #[test]
    fn truncated_documents_are_errors() {
        let doc = encode(ED25519_PUBLIC, &[1u8; 32]);
        for cut in 0..doc.len() {
            let _ = decode_any(&doc[..cut]);
        }
        assert_eq!(decode_any(""), Err(PemError::MissingBegin));
        let no_end = doc.replace("-----END ED25519 PUBLIC KEY-----", "");
        assert!(matches!(decode_any(&no_end), Err(PemError::MissingEnd(_))));
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,400}") {
            let _ = decode_any(&s);
        }

        #[test]
        fn round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let doc = encode("X", &bytes);
            prop_assert_eq!(decode_any(&doc), Ok(("X".to_string(), Zeroizing::new(bytes))));
        }
    }
}
