//! Known-answer tests from our notes (nym-app-api.md §1.2, §1.3) and
//! property tests for both encodings.

use proptest::prelude::*;

use super::*;
use crate::address::{Recipient, SenderTag};

/// The address used in nym-client's own tests.
const ADDR: &str = "CytBseW6yFXUMzz4SGAKdNLGR7q3sJLLYxyBGvutNEQV.4QXYyEVc5fUDjmmi8PrHN9tdUFV4PCvSJE1278cHyvoe@4sBbL1ngf1vtNqykydQKTFh26sQCw888GpUqvPvyNB4f";
/// Its 96 bytes.
const RCP: &str = concat!(
    "b202f5983ab6ad7e78b5237d005ff4887689be9a2341179b05d382cf80f1dade",
    "3299f6b78e8a0bce4daa9fcca3f93204da56a5d5132ee4d484cec3c9927cb965",
    "396e13d61e2bc32b6353a31da0c34dcc1545f93bab112ce63d9a2c1d0327a724"
);
/// A second address (nym's fixed mock recipient).
const ADDR2: &str = "5WdCMZXZBkGsXwPqzxwJqf9sSzyRLt3xmhuGDBaXiQh5.7nFB8HqKM9jxExRkfhUoLb6oo2LSCDDesP5uuXH5iWY1@3yv4qTKVxC5Vqgtshzkcm8nT1q9zeETnj3RMDiaREeB5";
const FOOMP: &str = "666f6f6d70";

fn addr() -> Recipient {
    ADDR.parse().expect("test address")
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex")
}

/// The hex vectors of §1.3 as (number, hex).
fn request_vectors() -> Vec<(u32, String, ClientRequest)> {
    let foomp = b"foomp".to_vec();
    vec![
        (1, "03".into(), ClientRequest::SelfAddress),
        (
            2,
            format!("00{RCP}000000000000002a0000000000000005{FOOMP}"),
            ClientRequest::Send {
                recipient: addr(),
                message: foomp.clone(),
                connection_id: Some(42),
            },
        ),
        (
            3,
            format!("010000029a{RCP}000000000000002a0000000000000005{FOOMP}"),
            ClientRequest::SendAnonymous {
                recipient: addr(),
                message: foomp.clone(),
                reply_surbs: 666,
                connection_id: Some(42),
            },
        ),
        (
            4,
            "0208080808080808080808080808080808000000000000002a0000000000000005666f6f6d70".into(),
            ClientRequest::Reply {
                sender_tag: SenderTag([8; 16]),
                message: foomp,
                connection_id: Some(42),
            },
        ),
        (
            5,
            "04000000000000002a".into(),
            ClientRequest::ClosedConnection(42),
        ),
        (
            5,
            "05000000000000002a".into(),
            ClientRequest::GetLaneQueueLength(42),
        ),
    ]
}

fn response_vectors() -> Vec<(u32, String, ServerResponse)> {
    vec![
        (
            6,
            "01012a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a0000000000000005666f6f6d70".into(),
            ServerResponse::Received {
                message: b"foomp".to_vec(),
                sender_tag: Some(SenderTag([0x2a; 16])),
            },
        ),
        (
            7,
            "01000000000000000005666f6f6d70".into(),
            ServerResponse::Received {
                message: b"foomp".to_vec(),
                sender_tag: None,
            },
        ),
        (8, format!("02{RCP}"), ServerResponse::SelfAddress(addr())),
        (
            9,
            "03000000000000000d000000000000002a".into(),
            ServerResponse::LaneQueueLength {
                lane: 13,
                queue_length: 42,
            },
        ),
        (
            10,
            "0003000000000000000d666f6f6d70206d657373616765".into(),
            ServerResponse::Error(ApiError::new(ErrorKind::UnknownRequest, "foomp message")),
        ),
    ]
}

#[test]
fn request_vectors_both_ways() {
    let lens = [(2, 118), (3, 122), (4, 38), (5, 9), (1, 1)];
    for (n, hx, value) in request_vectors() {
        let bytes = unhex(&hx);
        if let Some((_, len)) = lens.iter().find(|(m, _)| *m == n) {
            assert_eq!(bytes.len(), *len, "vector #{n} length");
        }
        assert_eq!(hex::encode(value.to_binary()), hx, "vector #{n} encode");
        assert_eq!(
            ClientRequest::parse_binary(&bytes),
            Ok(value),
            "vector #{n} decode"
        );
    }
}

#[test]
fn response_vectors_both_ways() {
    let lens = [(6, 31), (7, 15), (8, 97), (9, 17), (10, 23)];
    for (n, hx, value) in response_vectors() {
        let bytes = unhex(&hx);
        let (_, len) = lens.iter().find(|(m, _)| *m == n).expect("length known");
        assert_eq!(bytes.len(), *len, "vector #{n} length");
        assert_eq!(hex::encode(value.to_binary()), hx, "vector #{n} encode");
        assert_eq!(
            ServerResponse::parse_binary(&bytes),
            Ok(value),
            "vector #{n} decode"
        );
    }
}

#[test]
fn text_requests_parse_to_the_right_values() {
    assert_eq!(
        ClientRequest::parse_text(r#"{"type":"selfAddress"}"#),
        Ok(ClientRequest::SelfAddress)
    );
    assert_eq!(
        ClientRequest::parse_text(&format!(
            r#"{{"type":"send","message":"foomp","recipient":"{ADDR}"}}"#
        )),
        Ok(ClientRequest::Send {
            recipient: addr(),
            message: b"foomp".to_vec(),
            connection_id: None,
        })
    );
    assert_eq!(
        ClientRequest::parse_text(&format!(
            r#"{{"type":"send","message":"foomp","recipient":"{ADDR}","connectionId":42}}"#
        )),
        Ok(ClientRequest::Send {
            recipient: addr(),
            message: b"foomp".to_vec(),
            connection_id: Some(42),
        })
    );
    assert_eq!(
        ClientRequest::parse_text(&format!(
            r#"{{"type":"sendAnonymous","message":"foomp","recipient":"{ADDR}","replySurbs":666}}"#
        )),
        Ok(ClientRequest::SendAnonymous {
            recipient: addr(),
            message: b"foomp".to_vec(),
            reply_surbs: 666,
            connection_id: None,
        })
    );
    assert_eq!(
        ClientRequest::parse_text(
            r#"{"type":"reply","message":"foomp","senderTag":"zXExeyvPEHUk9rjXTu78T"}"#
        ),
        Ok(ClientRequest::Reply {
            sender_tag: SenderTag([8; 16]),
            message: b"foomp".to_vec(),
            connection_id: None,
        })
    );
}

#[test]
fn text_request_details() {
    // Extra fields are ignored, also on selfAddress; null is "absent".
    assert_eq!(
        ClientRequest::parse_text(r#"{"type":"selfAddress","extra":1}"#),
        Ok(ClientRequest::SelfAddress)
    );
    assert_eq!(
        ClientRequest::parse_text(&format!(
            r#"{{"extra":[1,2],"type":"send","recipient":"{ADDR}","message":"","connectionId":null}}"#
        )),
        Ok(ClientRequest::Send {
            recipient: addr(),
            message: vec![],
            connection_id: None,
        })
    );
    // JSON escapes decode to the string's UTF-8 bytes.
    let r = ClientRequest::parse_text(
        r#"{"type":"reply","message":"a\"\u00e9\n","senderTag":"zXExeyvPEHUk9rjXTu78T","connectionId":7}"#,
    );
    assert_eq!(
        r,
        Ok(ClientRequest::Reply {
            sender_tag: SenderTag([8; 16]),
            message: "a\"é\n".as_bytes().to_vec(),
            connection_id: Some(7),
        })
    );
}

#[test]
fn connection_id_zero_text_vs_binary() {
    // Text: 0 is a real lane.
    let t = ClientRequest::parse_text(&format!(
        r#"{{"type":"send","message":"foomp","recipient":"{ADDR}","connectionId":0}}"#
    ));
    assert!(matches!(
        t,
        Ok(ClientRequest::Send {
            connection_id: Some(0),
            ..
        })
    ));
    // Binary: 0 is "none", for all three sending requests.
    let send = unhex(&format!("00{RCP}00000000000000000000000000000005{FOOMP}"));
    assert!(matches!(
        ClientRequest::parse_binary(&send),
        Ok(ClientRequest::Send {
            connection_id: None,
            ..
        })
    ));
    let anon = unhex(&format!(
        "0100000000{RCP}00000000000000000000000000000005{FOOMP}"
    ));
    assert!(matches!(
        ClientRequest::parse_binary(&anon),
        Ok(ClientRequest::SendAnonymous {
            connection_id: None,
            reply_surbs: 0,
            ..
        })
    ));
    let reply =
        unhex("0208080808080808080808080808080808000000000000000000000000000000056f6f6f6f6f");
    assert!(matches!(
        ClientRequest::parse_binary(&reply),
        Ok(ClientRequest::Reply {
            connection_id: None,
            ..
        })
    ));
    // And None and Some(0) both encode as 0.
    let none = ClientRequest::Send {
        recipient: addr(),
        message: b"foomp".to_vec(),
        connection_id: None,
    };
    assert_eq!(none.to_binary(), send);
    let zero = ClientRequest::Send {
        recipient: addr(),
        message: b"foomp".to_vec(),
        connection_id: Some(0),
    };
    assert_eq!(zero.to_binary(), send);
}

#[test]
fn aliases_of_the_1_0_1_text_form() {
    let want = ClientRequest::Send {
        recipient: addr(),
        message: b"foomp".to_vec(),
        connection_id: None,
    };
    assert_eq!(
        ClientRequest::parse_text(&format!(
            r#"{{"type":"send","message":"foomp","recipient_address":"{ADDR}"}}"#
        )),
        Ok(want)
    );
    assert_eq!(
        ClientRequest::parse_text(&format!(
            r#"{{"type":"sendAnonymous","message":"x","recipient_address":"{ADDR}","replySurbs":1}}"#
        )),
        Ok(ClientRequest::SendAnonymous {
            recipient: addr(),
            message: b"x".to_vec(),
            reply_surbs: 1,
            connection_id: None,
        })
    );
    // A non-string message is delivered as its (compact) JSON text.
    for (json, text) in [
        (
            r#"{"a": 1, "b": [true, null]}"#,
            r#"{"a":1,"b":[true,null]}"#,
        ),
        ("[1, 2]", "[1,2]"),
        ("42", "42"),
        ("true", "true"),
        ("null", "null"),
    ] {
        let r = ClientRequest::parse_text(&format!(
            r#"{{"type":"send","message":{json},"recipient_address":"{ADDR}","connectionId":3}}"#
        ));
        assert_eq!(
            r,
            Ok(ClientRequest::Send {
                recipient: addr(),
                message: text.as_bytes().to_vec(),
                connection_id: Some(3),
            }),
            "message {json}"
        );
    }
    // Both spellings at once is a duplicate.
    let e = ClientRequest::parse_text(&format!(
        r#"{{"type":"send","message":"m","recipient":"{ADDR}","recipient_address":"{ADDR}"}}"#
    ))
    .expect_err("duplicate");
    assert_eq!(
        e.to_string(),
        "malformed request:duplicate field `recipient`"
    );
}

fn text_err(s: &str) -> String {
    ClientRequest::parse_text(s)
        .expect_err("should fail")
        .to_string()
}

#[test]
fn text_request_errors() {
    assert_eq!(
        text_err(r#"{"type":"send","message":"foomp","recipient":"abc"}"#),
        "malformed request:recipient is malformed - the string address does not contain exactly a single '@' character "
    );
    assert_eq!(
        text_err(r#"{"type":"bogus"}"#),
        "malformed request:unknown variant `bogus`, expected one of `send`, `sendAnonymous`, `reply`, `selfAddress` at line 1 column 15"
    );
    assert_eq!(
        text_err(r#"{"type":"SelfAddress"}"#),
        "malformed request:unknown variant `SelfAddress`, expected one of `send`, `sendAnonymous`, `reply`, `selfAddress` at line 1 column 21"
    );
    assert_eq!(
        text_err(r#"{"type":"send","message":"foomp"}"#),
        "malformed request:missing field `recipient`"
    );
    assert_eq!(
        text_err(&format!(
            r#"{{"type":"sendAnonymous","message":"foomp","recipient":"{ADDR}"}}"#
        )),
        "malformed request:missing field `replySurbs`"
    );
    assert_eq!(
        text_err(&format!(r#"{{"type":"send","recipient":"{ADDR}"}}"#)),
        "malformed request:missing field `message`"
    );
    assert_eq!(
        text_err(&format!(
            r#"{{"type":"send","message":"m","recipient":"{ADDR}","connectionId":-1}}"#
        )),
        "malformed request:invalid value: integer `-1`, expected u64"
    );
    assert_eq!(
        text_err(r#"{"message":"m"}"#),
        "malformed request:missing field `type` at line 1 column 15"
    );
    assert_eq!(
        text_err("not json"),
        "malformed request:expected ident at line 1 column 2"
    );
    // The closed-connection and lane-length requests have no text form.
    assert!(text_err(r#"{"type":"closedConnection","connectionId":1}"#)
        .starts_with("malformed request:unknown variant `closedConnection`"));
    // Sender tag texts.
    assert_eq!(
        text_err(r#"{"type":"reply","message":"m","senderTag":"2g"}"#),
        "malformed request:Decoded AnonymousSenderTag has invalid length. Expected 16, but got 1"
    );
    assert!(
        text_err(r#"{"type":"reply","message":"m","senderTag":"0OIl"}"#)
            .starts_with("malformed request:Failed to decode the base58-encoded string - ")
    );
    // Every text error is MalformedRequest.
    let e = ClientRequest::parse_text("").expect_err("empty");
    assert_eq!(e.kind, ErrorKind::MalformedRequest);
}

#[test]
fn recipient_error_texts_follow_nym_client() {
    let (left, gw) = ADDR.split_once('@').expect("@");
    let (id, enc) = left.split_once('.').expect(".");
    // Identity of the wrong size: nym-client passes a slice conversion error.
    assert_eq!(
        text_err(&format!(
            r#"{{"type":"send","message":"m","recipient":"abc.{enc}@{gw}"}}"#
        )),
        "malformed request:recipient's identity key is malformed: could not convert slice to array"
    );
    assert_eq!(
        text_err(&format!(
            r#"{{"type":"send","message":"m","recipient":"{id}.{enc}@abc"}}"#
        )),
        "malformed request:recipient gateway's identity key is malformed: could not convert slice to array"
    );
    assert_eq!(
        text_err(&format!(
            r#"{{"type":"send","message":"m","recipient":"{id}.abc@{gw}"}}"#
        )),
        "malformed request:recipient's encryption key is malformed: received public key of invalid size. Got: 3, expected: 32"
    );
    assert_eq!(
        text_err(&format!(
            r#"{{"type":"send","message":"m","recipient":"{id}@{gw}"}}"#
        )),
        "malformed request:recipient is malformed - the string address does not contain exactly a single '.' character "
    );
    let bad = bs58::encode(not_a_point()).into_string();
    assert_eq!(
        text_err(&format!(
            r#"{{"type":"send","message":"m","recipient":"{bad}.{enc}@{gw}"}}"#
        )),
        "malformed request:recipient's identity key is malformed: signature error: Cannot decompress Edwards point"
    );
}

/// 32 bytes that are not a compressed Edwards point.
fn not_a_point() -> [u8; 32] {
    (0u8..=255)
        .map(|y| {
            let mut b = [0u8; 32];
            b[0] = y;
            b
        })
        .find(|b| ed25519_dalek::VerifyingKey::from_bytes(b).is_err())
        .expect("some small y is off the curve")
}

#[test]
fn not_a_point_text_is_the_libraries_text() {
    let e = ed25519_dalek::VerifyingKey::from_bytes(&not_a_point()).expect_err("off curve");
    assert_eq!(
        e.to_string(),
        crate::address::KeyTextError::NotAPoint.to_string()
    );
    let e = <[u8; 32]>::try_from(&[0u8; 3][..]).expect_err("short");
    assert_eq!(
        e.to_string(),
        crate::address::KeyTextError::Ed25519Size(3).to_string()
    );
}

fn bin_err(b: &[u8]) -> (ErrorKind, String) {
    let e = ClientRequest::parse_binary(b).expect_err("should fail");
    (e.kind, e.message)
}

#[test]
fn binary_request_errors() {
    use ErrorKind::*;
    assert_eq!(bin_err(&[]), (EmptyRequest, "no data provided".into()));
    assert_eq!(
        bin_err(&[6]),
        (
            UnknownRequest,
            "6 does not correspond to any valid request tag".into()
        )
    );
    assert_eq!(
        bin_err(&[255, 1, 2]),
        (
            UnknownRequest,
            "255 does not correspond to any valid request tag".into()
        )
    );
    let send = unhex(&format!("00{RCP}000000000000002a0000000000000005{FOOMP}"));
    assert_eq!(
        bin_err(&send[..112]),
        (
            TooShortRequest,
            "not enough data provided to recover 'send'".into()
        )
    );
    // 113 bytes is enough to parse; the length then disagrees.
    assert_eq!(
        bin_err(&send[..113]),
        (
            MalformedRequest,
            "data len has inconsistent length. specified: 5 got: 0".into()
        )
    );
    let mut long = send.clone();
    long.push(0);
    assert_eq!(
        bin_err(&long),
        (
            MalformedRequest,
            "data len has inconsistent length. specified: 5 got: 6".into()
        )
    );
    let anon = unhex(&format!(
        "010000029a{RCP}000000000000002a0000000000000005{FOOMP}"
    ));
    assert_eq!(
        bin_err(&anon[..116]),
        (
            TooShortRequest,
            "not enough data provided to recover 'send_anonymous'".into()
        )
    );
    assert_eq!(
        bin_err(&anon[..120]),
        (
            MalformedRequest,
            "data len has inconsistent length. specified: 5 got: 3".into()
        )
    );
    let reply =
        unhex("0208080808080808080808080808080808000000000000002a0000000000000005666f6f6d70");
    assert_eq!(
        bin_err(&reply[..32]),
        (
            TooShortRequest,
            "not enough data provided to recover 'reply'".into()
        )
    );
    assert_eq!(
        bin_err(&reply[..34]),
        (
            MalformedRequest,
            "message len has inconsistent length. specified: 5 got: 1".into()
        )
    );
    // A bad recipient is reported before a bad length.
    let mut bad = send.clone();
    bad[1..33].copy_from_slice(&not_a_point());
    bad.push(0);
    assert_eq!(
        bin_err(&bad),
        (
            MalformedRequest,
            "malformed recipient: recipient's identity key is malformed: signature error: Cannot decompress Edwards point".into()
        )
    );
    let mut bad_gw = anon.clone();
    bad_gw[69..101].copy_from_slice(&not_a_point());
    assert_eq!(
        bin_err(&bad_gw),
        (
            MalformedRequest,
            "malformed recipient: recipient gateway's identity key is malformed: signature error: Cannot decompress Edwards point".into()
        )
    );
    // Any 32 bytes are a valid encryption key.
    let mut any_enc = send.clone();
    any_enc[33..65].copy_from_slice(&not_a_point());
    assert!(ClientRequest::parse_binary(&any_enc).is_ok());
    // Tags 4 and 5 want exactly 9 bytes.
    for (tag, text) in [
        (4u8, "The received closed connection has invalid length"),
        (
            5u8,
            "The received get lane queue lengths has invalid length",
        ),
    ] {
        for len in [0usize, 1, 7, 9, 20] {
            let mut b = vec![tag];
            b.resize(1 + len, 1);
            assert_eq!(
                bin_err(&b),
                (MalformedRequest, text.into()),
                "tag {tag}+{len}"
            );
        }
    }
    // SelfAddress ignores trailing bytes.
    assert_eq!(
        ClientRequest::parse_binary(&[3, 1, 2, 3]),
        Ok(ClientRequest::SelfAddress)
    );
}

#[test]
fn text_response_examples_exact() {
    assert_eq!(
        ServerResponse::SelfAddress(addr()).to_text(),
        format!(r#"{{"type":"selfAddress","address":"{ADDR}"}}"#)
    );
    assert_eq!(
        ServerResponse::LaneQueueLength {
            lane: 42,
            queue_length: 0
        }
        .to_text(),
        r#"{"type":"laneQueueLength","lane":42,"queue_length":0}"#
    );
    assert_eq!(
        ServerResponse::Received {
            message: b"foomp".to_vec(),
            sender_tag: None
        }
        .to_text(),
        r#"{"type":"received","message":"foomp","senderTag":null}"#
    );
    assert_eq!(
        ServerResponse::Received {
            message: b"foomp".to_vec(),
            sender_tag: Some(SenderTag([0x2a; 16]))
        }
        .to_text(),
        r#"{"type":"received","message":"foomp","senderTag":"6CzGHguLGCk1f416kwDZB7"}"#
    );
    let bad: RecipientError = "abc".parse::<Recipient>().expect_err("no @");
    assert_eq!(
        ServerResponse::Error(ApiError::bad_recipient(&bad)).to_text(),
        r#"{"type":"error","message":"malformed request:recipient is malformed - the string address does not contain exactly a single '@' character "}"#
    );
    let unknown = ClientRequest::parse_text(r#"{"type":"bogus"}"#).expect_err("bogus");
    assert_eq!(
        ServerResponse::Error(unknown).to_text(),
        r#"{"type":"error","message":"malformed request:unknown variant `bogus`, expected one of `send`, `sendAnonymous`, `reply`, `selfAddress` at line 1 column 15"}"#
    );
    // Lossy UTF-8 and escaping.
    assert_eq!(
        ServerResponse::Received {
            message: vec![b'a', 0xff, b'"', b'\n'],
            sender_tag: None
        }
        .to_text(),
        "{\"type\":\"received\",\"message\":\"a\u{fffd}\\\"\\n\",\"senderTag\":null}"
    );
    // Binary mode carries only the detail.
    assert_eq!(
        ServerResponse::Error(ApiError::bad_recipient(&bad)).to_binary()[..2],
        [0x00, 0x04]
    );
}

#[test]
fn text_responses_parse_back() {
    for (_, _, v) in response_vectors() {
        assert_eq!(ServerResponse::parse_text(&v.to_text()), Ok(v.clone()));
    }
    for k in ErrorKind::ALL {
        let v = ServerResponse::Error(ApiError::new(k, "x:y"));
        assert_eq!(ServerResponse::parse_text(&v.to_text()), Ok(v));
    }
    assert_eq!(
        ServerResponse::parse_text(r#"{"type":"error","message":"no kind here"}"#),
        Ok(ServerResponse::Error(ApiError::other("no kind here")))
    );
    let e = ServerResponse::parse_text(r#"{"type":"nope"}"#).expect_err("bad");
    assert_eq!(e.kind, ErrorKind::MalformedResponse);
}

#[test]
fn request_text_encoding() {
    let send = ClientRequest::Send {
        recipient: addr(),
        message: b"foomp".to_vec(),
        connection_id: Some(42),
    };
    assert_eq!(
        send.to_text(),
        Ok(format!(
            r#"{{"type":"send","message":"foomp","recipient":"{ADDR}","connectionId":42}}"#
        ))
    );
    let reply = ClientRequest::Reply {
        sender_tag: SenderTag([8; 16]),
        message: b"foomp".to_vec(),
        connection_id: None,
    };
    assert_eq!(
        reply.to_text(),
        Ok(
            r#"{"type":"reply","senderTag":"zXExeyvPEHUk9rjXTu78T","message":"foomp","connectionId":null}"#
                .to_owned()
        )
    );
    assert_eq!(
        ClientRequest::SelfAddress.to_text(),
        Ok(r#"{"type":"selfAddress"}"#.to_owned())
    );
    assert_eq!(
        ClientRequest::ClosedConnection(1).to_text(),
        Err(TextEncodeError::BinaryOnly("closedConnection"))
    );
    assert_eq!(
        ClientRequest::GetLaneQueueLength(1).to_text(),
        Err(TextEncodeError::BinaryOnly("getLaneQueueLength"))
    );
    let binary = ClientRequest::Send {
        recipient: addr(),
        message: vec![0xff],
        connection_id: None,
    };
    assert_eq!(binary.to_text(), Err(TextEncodeError::NotUtf8));
    assert!(binary.encode(ResponseMode::Binary).is_ok());
    for (_, _, v) in request_vectors() {
        if let Ok(t) = v.to_text() {
            assert_eq!(ClientRequest::parse_text(&t), Ok(v));
        }
    }
}

#[test]
fn error_kinds_table() {
    let table: [(u8, ErrorKind, &str); 9] = [
        (
            0x01,
            ErrorKind::EmptyRequest,
            "received request contained no data",
        ),
        (
            0x02,
            ErrorKind::TooShortRequest,
            "received request did not contain enough data",
        ),
        (0x03, ErrorKind::UnknownRequest, "unknown request type"),
        (0x04, ErrorKind::MalformedRequest, "malformed request"),
        (
            0x80,
            ErrorKind::EmptyResponse,
            "received response contained no data",
        ),
        (
            0x81,
            ErrorKind::TooShortResponse,
            "received response did not contain enough data",
        ),
        (0x82, ErrorKind::UnknownResponse, "unknown response type"),
        (0x83, ErrorKind::MalformedResponse, "malformed response"),
        (0xff, ErrorKind::Other, "other"),
    ];
    for (b, k, s) in table {
        assert_eq!(k.to_byte(), b);
        assert_eq!(ErrorKind::from_byte(b), Some(k));
        assert_eq!(k.as_str(), s);
        assert_eq!(ApiError::new(k, "d").to_string(), format!("{s}:d"));
    }
    let known: Vec<u8> = table.iter().map(|t| t.0).collect();
    for b in 0..=255u8 {
        assert_eq!(ErrorKind::from_byte(b).is_some(), known.contains(&b));
    }
}

#[test]
fn binary_response_errors() {
    use ErrorKind::*;
    let err = |b: &[u8]| {
        let e = ServerResponse::parse_binary(b).expect_err("should fail");
        (e.kind, e.message)
    };
    assert_eq!(err(&[]), (EmptyResponse, "no data provided".into()));
    assert_eq!(
        err(&[4]),
        (
            UnknownResponse,
            "4 does not correspond to any valid response tag".into()
        )
    );
    assert_eq!(
        err(&unhex("0003000000000000000d")),
        (
            MalformedResponse,
            "message len has inconsistent length. specified: 13 got: 0".into()
        )
    );
    assert_eq!(
        err(&unhex("000300000000000000")),
        (
            TooShortResponse,
            "not enough data provided to recover 'error'".into()
        )
    );
    assert_eq!(
        err(&unhex("00050000000000000000")),
        (MalformedResponse, "invalid error code 5".into())
    );
    assert_eq!(
        err(&unhex("00ff0000000000000001ff")),
        (
            MalformedResponse,
            "malformed error message: invalid utf-8 sequence of 1 bytes from index 0".into()
        )
    );
    assert_eq!(
        err(&unhex("0102000000000000000000")),
        (MalformedResponse, "invalid sender tag flag 2".into())
    );
    assert_eq!(
        err(&unhex("01010000000000000000")),
        (
            TooShortResponse,
            "not enough data provided to recover 'received'".into()
        )
    );
    assert_eq!(
        err(&[2; 96]),
        (
            TooShortResponse,
            "not enough data provided to recover 'self_address'".into()
        )
    );
    assert_eq!(
        err(&unhex("03000000000000000d0000000000002a")),
        (
            TooShortResponse,
            "not enough data provided to recover 'lane_queue_length'".into()
        )
    );
    let mut self_addr = vec![2u8];
    self_addr.extend_from_slice(&not_a_point());
    self_addr.extend_from_slice(&[0u8; 64]);
    assert_eq!(
        err(&self_addr),
        (
            MalformedResponse,
            "malformed Recipient: recipient's identity key is malformed: signature error: Cannot decompress Edwards point".into()
        )
    );
}

#[test]
fn response_mode_follows_last_frame() {
    let mut mode = ResponseMode::default();
    assert_eq!(mode, ResponseMode::Binary);
    let text = AppFrame::Text("not json".into());
    mode.observe(&text);
    assert_eq!(mode, ResponseMode::Text);
    let err = text.parse_request().expect_err("malformed");
    assert_eq!(
        mode.encode(&err.into()),
        AppFrame::Text(
            r#"{"type":"error","message":"malformed request:expected ident at line 1 column 2"}"#
                .into()
        )
    );
    let bin = AppFrame::Binary(vec![3]);
    mode.observe(&bin);
    assert_eq!(mode, ResponseMode::Binary);
    assert_eq!(bin.parse_request(), Ok(ClientRequest::SelfAddress));
    let out = mode.encode(&ServerResponse::SelfAddress(addr()));
    assert_eq!(out, AppFrame::Binary(unhex(&format!("02{RCP}"))));
    assert_eq!(
        out.parse_response(),
        Ok(ServerResponse::SelfAddress(addr()))
    );
}

#[test]
fn second_address_round_trips() {
    let r: Recipient = ADDR2.parse().expect("mock address");
    let v = ServerResponse::SelfAddress(r);
    assert_eq!(ServerResponse::parse_binary(&v.to_binary()), Ok(v.clone()));
    assert_eq!(ServerResponse::parse_text(&v.to_text()), Ok(v));
}

#[test]
fn every_prefix_of_every_vector_is_handled() {
    let all: Vec<Vec<u8>> = request_vectors()
        .into_iter()
        .map(|(_, h, _)| unhex(&h))
        .chain(response_vectors().into_iter().map(|(_, h, _)| unhex(&h)))
        .collect();
    for v in &all {
        for i in 0..=v.len() {
            let _ = ClientRequest::parse_binary(&v[..i]);
            let _ = ServerResponse::parse_binary(&v[..i]);
        }
    }
    let texts = [
        format!(r#"{{"type":"send","message":"foomp","recipient":"{ADDR}","connectionId":42}}"#),
        format!(
            r#"{{"type":"sendAnonymous","message":{{"a":[1]}},"recipient_address":"{ADDR}","replySurbs":666}}"#
        ),
        r#"{"type":"reply","message":"foomp","senderTag":"zXExeyvPEHUk9rjXTu78T"}"#.to_owned(),
        r#"{"type":"received","message":"foomp","senderTag":"6CzGHguLGCk1f416kwDZB7"}"#.to_owned(),
        r#"{"type":"laneQueueLength","lane":42,"queue_length":0}"#.to_owned(),
    ];
    for t in &texts {
        for (i, _) in t.char_indices() {
            let _ = ClientRequest::parse_text(&t[..i]);
            let _ = ServerResponse::parse_text(&t[..i]);
        }
    }
}

fn any_recipient() -> impl Strategy<Value = Recipient> {
    (any::<[u8; 32]>(), any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(id, enc, gw)| {
        let id = crate::keys::IdentityKeyPair::from_secret_bytes(&id).public();
        let gw = crate::keys::IdentityKeyPair::from_secret_bytes(&gw).public();
        Recipient::new(id, crate::keys::X25519Public::from(enc), gw)
    })
}

fn any_request() -> impl Strategy<Value = ClientRequest> {
    let msg = || proptest::collection::vec(any::<u8>(), 0..200);
    let conn = || proptest::option::of(any::<u64>());
    prop_oneof![
        (any_recipient(), msg(), conn()).prop_map(|(recipient, message, connection_id)| {
            ClientRequest::Send {
                recipient,
                message,
                connection_id,
            }
        }),
        (any_recipient(), msg(), any::<u32>(), conn()).prop_map(
            |(recipient, message, reply_surbs, connection_id)| ClientRequest::SendAnonymous {
                recipient,
                message,
                reply_surbs,
                connection_id,
            }
        ),
        (any::<[u8; 16]>(), msg(), conn()).prop_map(|(t, message, connection_id)| {
            ClientRequest::Reply {
                sender_tag: SenderTag(t),
                message,
                connection_id,
            }
        }),
        Just(ClientRequest::SelfAddress),
        any::<u64>().prop_map(ClientRequest::ClosedConnection),
        any::<u64>().prop_map(ClientRequest::GetLaneQueueLength),
    ]
}

fn any_response() -> impl Strategy<Value = ServerResponse> {
    let kind = proptest::sample::select(ErrorKind::ALL.to_vec());
    prop_oneof![
        (
            proptest::collection::vec(any::<u8>(), 0..200),
            proptest::option::of(any::<[u8; 16]>())
        )
            .prop_map(|(message, t)| ServerResponse::Received {
                message,
                sender_tag: t.map(SenderTag),
            }),
        any_recipient().prop_map(ServerResponse::SelfAddress),
        (any::<u64>(), any::<u64>()).prop_map(|(lane, queue_length)| {
            ServerResponse::LaneQueueLength { lane, queue_length }
        }),
        (kind, ".{0,60}").prop_map(|(k, m)| ServerResponse::Error(ApiError::new(k, m))),
    ]
}

/// What a request becomes after a binary round trip: connection id 0 is none.
fn binary_normal(r: &ClientRequest) -> ClientRequest {
    let fix = |c: &Option<u64>| c.filter(|&c| c != 0);
    match r {
        ClientRequest::Send {
            recipient,
            message,
            connection_id,
        } => ClientRequest::Send {
            recipient: *recipient,
            message: message.clone(),
            connection_id: fix(connection_id),
        },
        ClientRequest::SendAnonymous {
            recipient,
            message,
            reply_surbs,
            connection_id,
        } => ClientRequest::SendAnonymous {
            recipient: *recipient,
            message: message.clone(),
            reply_surbs: *reply_surbs,
            connection_id: fix(connection_id),
        },
        ClientRequest::Reply {
            sender_tag,
            message,
            connection_id,
        } => ClientRequest::Reply {
            sender_tag: *sender_tag,
            message: message.clone(),
            connection_id: fix(connection_id),
        },
        other => other.clone(),
    }
}

proptest! {
    #[test]
    fn request_binary_round_trip(r in any_request()) {
        prop_assert_eq!(ClientRequest::parse_binary(&r.to_binary()), Ok(binary_normal(&r)));
    }

    #[test]
    fn request_text_round_trip(r in any_request()) {
        match r.to_text() {
            Ok(t) => prop_assert_eq!(ClientRequest::parse_text(&t), Ok(r)),
            Err(TextEncodeError::NotUtf8) => {}
            Err(TextEncodeError::BinaryOnly(_)) => prop_assert!(matches!(
                r,
                ClientRequest::ClosedConnection(_) | ClientRequest::GetLaneQueueLength(_)
            )),
        }
    }

    #[test]
    fn request_text_round_trip_utf8(
        recipient in any_recipient(),
        s in "\\PC{0,80}",
        surbs in any::<u32>(),
        conn in proptest::option::of(any::<u64>()),
    ) {
        let r = ClientRequest::SendAnonymous {
            recipient,
            message: s.into_bytes(),
            reply_surbs: surbs,
            connection_id: conn,
        };
        let t = r.to_text().expect("utf-8 message");
        prop_assert_eq!(ClientRequest::parse_text(&t), Ok(r));
    }

    #[test]
    fn response_binary_round_trip(r in any_response()) {
        prop_assert_eq!(ServerResponse::parse_binary(&r.to_binary()), Ok(r));
    }

    #[test]
    fn response_text_round_trip(r in any_response()) {
        let back = ServerResponse::parse_text(&r.to_text());
        match &r {
            ServerResponse::Received { message, sender_tag } => prop_assert_eq!(
                back,
                Ok(ServerResponse::Received {
                    message: String::from_utf8_lossy(message).into_owned().into_bytes(),
                    sender_tag: *sender_tag,
                })
            ),
            _ => prop_assert_eq!(back, Ok(r)),
        }
    }

    #[test]
    fn parsers_never_panic_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = ClientRequest::parse_binary(&b);
        let _ = ServerResponse::parse_binary(&b);
        let s = String::from_utf8_lossy(&b);
        let _ = ClientRequest::parse_text(&s);
        let _ = ServerResponse::parse_text(&s);
    }

    #[test]
    fn parsers_never_panic_on_tagged_bytes(
        tag in 0u8..7,
        b in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut f = vec![tag];
        f.extend_from_slice(&b);
        let _ = ClientRequest::parse_binary(&f);
        let _ = ServerResponse::parse_binary(&f);
    }

    #[test]
    fn parsers_never_panic_on_json_like_text(s in r#"\{("[a-zA-Z_]{0,12}":("[^"]{0,20}"|-?[0-9]{0,21}|null|true|\{\}|\[\]),?){0,6}\}"#) {
        let _ = ClientRequest::parse_text(&s);
        let _ = ServerResponse::parse_text(&s);
    }

    #[test]
    fn prefixes_of_encodings_never_panic(r in any_request(), s in any_response()) {
        let rb = r.to_binary();
        for i in 0..rb.len().min(140) {
            let _ = ClientRequest::parse_binary(&rb[..i]);
        }
        let sb = s.to_binary();
        for i in 0..sb.len().min(140) {
            let _ = ServerResponse::parse_binary(&sb[..i]);
        }
    }
}

#[test]
fn more_reply_surbs_than_a_server_builds_are_refused() {
    let req = |n: u32| ClientRequest::SendAnonymous {
        recipient: addr(),
        message: b"x".to_vec(),
        reply_surbs: n,
        connection_id: None,
    };
    for (n, ok) in [
        (0, true),
        (MAX_REPLY_SURBS, true),
        (MAX_REPLY_SURBS + 1, false),
        (u32::MAX, false),
    ] {
        let text = AppFrame::Text(req(n).to_text().expect("text"));
        let binary = AppFrame::Binary(req(n).to_binary());
        for frame in [text, binary] {
            match frame.parse_request() {
                Ok(r) => assert!(ok, "{n} accepted: {r:?}"),
                Err(e) => {
                    assert!(!ok, "{n} refused: {e}");
                    assert_eq!(e.kind, ErrorKind::MalformedRequest);
                    assert!(e.message.contains("at most 500"), "{e}");
                }
            }
        }
        // The codec itself still reads nym-client's encoding.
        assert_eq!(ClientRequest::parse_binary(&req(n).to_binary()), Ok(req(n)));
    }
}

#[test]
fn wide_text_requests_are_refused_before_parsing() {
    let wide = |n: usize| {
        let items = vec!["1"; n].join(",");
        format!(r#"{{"type":"send","message":[{items}],"recipient":"{ADDR}"}}"#)
    };
    // Separators in the request itself count too (two `:` and two `,`
    // around the message), so the widest accepted array is a few short of
    // the bound.
    assert!(ClientRequest::parse_text(&wide(MAX_TEXT_JSON_VALUES - 8)).is_ok());
    let e = ClientRequest::parse_text(&wide(MAX_TEXT_JSON_VALUES + 1)).expect_err("too wide");
    assert_eq!(e.kind, ErrorKind::MalformedRequest);
    assert!(e.message.contains("at most"), "{}", e.message);
    // Commas and colons inside strings (escaped quotes included) do not
    // count: a long string message is fine.
    let text = r#"a,b:\"c,"#.repeat(MAX_TEXT_JSON_VALUES);
    let req = format!(r#"{{"type":"send","message":"{text}","recipient":"{ADDR}"}}"#);
    assert!(ClientRequest::parse_text(&req).is_ok());
}

#[test]
fn tap_targets() {
    for t in [
        "/?nymd-tap",
        "/x?a=1&nymd-tap",
        "/?nymd-tap=1&b",
        "/?nymd-tap#f",
    ] {
        assert!(is_tap_target(t), "{t}");
    }
    for t in [
        "/",
        "/nymd-tap",
        "/?nymd-tapx",
        "/?x=nymd-tap",
        "/#?nymd-tap",
        "",
    ] {
        assert!(!is_tap_target(t), "{t}");
    }
}
