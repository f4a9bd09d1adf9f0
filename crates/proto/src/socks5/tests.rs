//! Known answers of spec §8 (byte for byte, both directions), Nym's own
//! vectors (§8.0), round trips and hostile input for [`super::wire`].

use proptest::prelude::*;

use super::query::{PolicyAction, PolicyRule, QueryRequest, QueryResponse};
use super::wire::*;
use crate::address::Recipient;

const CONN: ConnectionId = 0x1122_3344_5566_7788;

/// The return address R of §8.0.
const R_TEXT: &str = "3KRydEpanwjFhq5GAraVjRUF1Tno7w7oc4EwJYTGNo5J.RgZ7uMJHruBQqD5hC9Ghi3sqiTn6NycfM5qCfJz6yoM@9Byd9VAtyYMnbVAcqdoQxJnq76XEg2dbxbiF5Aa5Jj9J";
const R_HEX: &str = "227011b6e106aed8a02948eca05a9c03fa29f335bfb2da35aa0eb9215e991929\
                     0652a9bb58f6d33944e1e4e7741d77eba00e9ccd42014bccccdc0e96bfcbae58\
                     79ad53dbbca4c2d4eee404803069e05311f6e910ebdf44570d2822badacc7e91";

fn hx(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean).expect("hex")
}

fn r() -> Recipient {
    R_TEXT.parse().expect("R parses")
}

fn request(versions: Versions, request: Socks5Request) -> ProviderRequest {
    ProviderRequest::Socks5 { versions, request }
}

fn response(versions: Versions, response: Socks5Response) -> ProviderResponse {
    ProviderResponse::Socks5 { versions, response }
}

fn connect(return_address: Option<Recipient>) -> Socks5Request {
    Socks5Request::Connect(ConnectRequest {
        conn_id: CONN,
        remote: "example.com:443".into(),
        return_address,
    })
}

fn data(seq: u64, closed: bool, data: &[u8]) -> SocketData {
    SocketData {
        conn_id: CONN,
        seq,
        closed,
        data: data.to_vec(),
    }
}

/// Encode gives `hex`, `hex` decodes back, and the length is as stated.
fn kat_request(name: &str, hex: &str, len: usize, value: ProviderRequest) {
    let bytes = hx(hex);
    assert_eq!(bytes.len(), len, "{name}: length");
    assert_eq!(value.encode().as_deref(), Ok(&bytes[..]), "{name}: encode");
    assert_eq!(ProviderRequest::decode(&bytes), Ok(value), "{name}: decode");
}

fn kat_response(name: &str, hex: &str, len: usize, value: ProviderResponse) {
    let bytes = hx(hex);
    assert_eq!(bytes.len(), len, "{name}: length");
    assert_eq!(value.encode().as_deref(), Ok(&bytes[..]), "{name}: encode");
    assert_eq!(
        ProviderResponse::decode(&bytes),
        Ok(value),
        "{name}: decode"
    );
}

const EXAMPLE: &str = "6578616d706c652e636f6d3a343433"; // "example.com:443"

#[test]
fn return_address_fixture() {
    assert_eq!(r().to_bytes().to_vec(), hx(R_HEX));
}

#[test]
fn a_connect() {
    let a1 = format!("03 01 03 00 1122334455667788 000f {EXAMPLE} {R_HEX}");
    kat_request(
        "A1",
        &a1,
        125,
        request(Versions::CURRENT, connect(Some(r()))),
    );
    let a2 = format!("03 01 03 00 1122334455667788 000f {EXAMPLE}");
    kat_request("A2", &a2, 29, request(Versions::CURRENT, connect(None)));
    let a3 = format!("00 00 1122334455667788 000f {EXAMPLE} {R_HEX}");
    kat_request(
        "A3",
        &a3,
        123,
        request(Versions::LEGACY, connect(Some(r()))),
    );
}

#[test]
fn b_send() {
    let get = "474554202f20485454502f312e300d0a0d0a"; // "GET / HTTP/1.0\r\n\r\n"
    let cur = Versions::CURRENT;
    let b1 = format!("03 01 03 01 1122334455667788 00 0000000000000001 {get}");
    let send = |d| request(cur, Socks5Request::Send(d));
    kat_request(
        "B1",
        &b1,
        39,
        send(data(1, false, b"GET / HTTP/1.0\r\n\r\n")),
    );
    kat_request(
        "B0",
        "03 01 03 01 1122334455667788 00 0000000000000000",
        21,
        send(data(0, false, b"")),
    );
    kat_request(
        "B2",
        "03 01 03 01 1122334455667788 01 0000000000000002",
        21,
        send(data(2, true, b"")),
    );
    let b3 = format!("00 01 1122334455667788 00 0000000000000001 {get}");
    let legacy = request(
        Versions::LEGACY,
        Socks5Request::Send(data(1, false, b"GET / HTTP/1.0\r\n\r\n")),
    );
    kat_request("B3", &b3, 37, legacy);
}

#[test]
fn c_network_data_and_refusal() {
    let ok = "485454502f312e3020323030204f4b0d0a"; // "HTTP/1.0 200 OK\r\n"
    let nd = |v, d| response(v, Socks5Response::NetworkData(d));
    let c1 = format!("03 01 03 01 00 1122334455667788 0000000000000001 {ok}");
    let c1v = nd(Versions::CURRENT, data(1, false, b"HTTP/1.0 200 OK\r\n"));
    kat_response("C1", &c1, 38, c1v);
    let c2 = format!("01 00 1122334455667788 0000000000000001 {ok}");
    let c2v = nd(Versions::LEGACY, data(1, false, b"HTTP/1.0 200 OK\r\n"));
    kat_response("C2", &c2, 35, c2v);
    kat_response(
        "C3",
        "03 01 03 01 01 1122334455667788 0000000000000000",
        21,
        nd(Versions::CURRENT, data(0, true, b"")),
    );
    let text = "Domain \"example.com:443\" failed filter check";
    let c4 = format!("03 01 03 02 1122334455667788 {}", hex::encode(text));
    let refusal = Socks5Response::ConnectionError {
        conn_id: CONN,
        message: text.into(),
    };
    kat_response("C4", &c4, 56, response(Versions::CURRENT, refusal));
}

#[test]
fn d_control() {
    let control = |request| ProviderRequest::Control {
        interface: Version::CURRENT,
        request,
    };
    kat_request("D1 request", "03 00 00", 3, control(ControlRequest::Health));
    let health = ProviderResponse::Control {
        interface: Version::CURRENT,
        response: ControlResponse::Health,
    };
    kat_response("D1 response", "03 00 00", 3, health);
    let d2 = control(ControlRequest::SupportedRequestVersions);
    kat_request("D2", "03 00 02", 3, d2);
    kat_request(
        "BinaryInfo",
        "03 00 01",
        3,
        control(ControlRequest::BinaryInfo),
    );

    let json = r#"{"interface_version":"{\"type\":\"Versioned\",\"version\":3}","provider_version":"{\"type\":\"Versioned\",\"version\":3}"}"#;
    let d3 = ProviderResponse::Control {
        interface: Version::CURRENT,
        response: ControlResponse::supported_versions(Versions::CURRENT),
    };
    kat_response("D3", &format!("03 00 02 {}", hex::encode(json)), 125, d3);
    assert_eq!(Version::Legacy.to_string(), r#"{"type":"Legacy"}"#);

    // Bytes after a control request tag, and after a Health answer, are ignored.
    assert_eq!(
        ProviderRequest::decode(&hx("03 00 00 ff")),
        Ok(control(ControlRequest::Health))
    );
}

#[test]
fn e_query() {
    let q = request(
        Versions::CURRENT,
        Socks5Request::Query(QueryRequest::OpenProxy),
    );
    kat_request("E1", "03 01 03 02 00", 5, q);
    let answer = |a| response(Versions::CURRENT, Socks5Response::Query(a));
    kat_response(
        "E2",
        "03 01 03 03 00 01",
        6,
        answer(QueryResponse::OpenProxy(true)),
    );
    let open = QueryResponse::ExitPolicy {
        enabled: true,
        upstream: String::new(),
        policy: Some(vec![PolicyRule {
            action: PolicyAction::Accept,
            ip_pattern: "*".into(),
            port_start: 1,
            port_end: 65535,
        }]),
    };
    kat_response(
        "E3",
        "03 01 03 03 02 01 00 01 01 00 01 2a 01 fb ff ff",
        16,
        answer(open),
    );
    let text = "Description (placeholder)";
    let e4 = format!("03 01 03 03 01 19 {}", hex::encode(text));
    kat_response(
        "E4",
        &e4,
        31,
        answer(QueryResponse::Description(text.into())),
    );
}

/// §8.0: the legacy Connect and Send that Nym's own tests decode.
#[test]
fn nym_legacy_vectors() {
    let remote = hex::encode("80.249.99.148:80");
    let connect_hex = format!("00 00 02fe2264c0140dab 0010 {remote} {R_HEX}");
    let value = request(
        Versions::LEGACY,
        Socks5Request::Connect(ConnectRequest {
            conn_id: 215_647_648_274_976_171,
            remote: "80.249.99.148:80".into(),
            return_address: Some(r()),
        }),
    );
    kat_request("Nym legacy Connect", &connect_hex, 124, value);

    let body = "GET /1MB.zip HTTP/1.1\r\nHost: ipv4.download.thinkbroadband.com\r\n\
                User-Agent: curl/7.68.0\r\nAccept: */*\r\n\r\n";
    let send_hex = format!(
        "00 01 6c661c1332b225f1 00 0000000000000000 {}",
        hex::encode(body)
    );
    let send = SocketData {
        conn_id: 7_810_961_472_501_196_273,
        seq: 0,
        closed: false,
        data: body.as_bytes().to_vec(),
    };
    kat_request(
        "Nym legacy Send",
        &send_hex,
        19 + 103,
        request(Versions::LEGACY, Socks5Request::Send(send)),
    );
}

#[test]
fn header_orders_differ() {
    let d = data(5, true, b"x");
    let (mut req, mut resp) = (Vec::new(), Vec::new());
    d.encode_request(&mut req);
    d.encode_response(&mut resp);
    assert_eq!(req, hx("1122334455667788 01 0000000000000005 78"));
    assert_eq!(resp, hx("01 1122334455667788 0000000000000005 78"));
    // Reading one order as the other gives no error, only the wrong values.
    let crossed = SocketData::decode_response(&req).expect("17 bytes");
    assert_ne!(crossed, d);
    // Any non-zero closed byte means closed.
    let mut odd = req.clone();
    odd[8] = 7;
    assert!(SocketData::decode_request(&odd).expect("decodes").closed);
    assert_eq!(
        SocketData::decode_request(&req[..16]),
        Err(DecodeError::Truncated("17-byte socket data header"))
    );
}

#[test]
fn mixed_and_unbounded_versions() {
    // Interface v3 with a legacy socks5 body decodes both ways.
    let mixed = Versions {
        interface: Version::CURRENT,
        socks5: Version::Legacy,
    };
    let req = request(mixed, Socks5Request::Send(data(1, false, b"a")));
    let bytes = req.encode().expect("encodes");
    assert_eq!(&bytes[..4], [3, 1, 0, 1]);
    assert_eq!(ProviderRequest::decode(&bytes), Ok(req));
    let resp = response(mixed, Socks5Response::NetworkData(data(1, false, b"a")));
    let bytes = resp.encode().expect("encodes");
    assert_eq!(&bytes[..3], [3, 1, 1]);
    assert_eq!(ProviderResponse::decode(&bytes), Ok(resp));

    // Any interface version ≥ 3 is read; a socks5 request above 3 is not.
    let b1 = hx("07 01 03 01 1122334455667788 00 0000000000000001");
    assert!(matches!(
        ProviderRequest::decode(&b1),
        Ok(ProviderRequest::Socks5 {
            versions: Versions {
                interface: Version::Versioned(7),
                ..
            },
            ..
        })
    ));
    let b1 = hx("03 01 04 01 1122334455667788 00 0000000000000001");
    assert_eq!(
        ProviderRequest::decode(&b1),
        Err(DecodeError::UnsupportedSocks5Version(4))
    );
    // A legacy first byte 1 or 2 is also legacy.
    let b3 = hx("02 01 1122334455667788 00 0000000000000001");
    assert!(ProviderRequest::decode(&b3).is_ok());
}

#[test]
fn decode_errors() {
    use DecodeError::*;
    let req = ProviderRequest::decode;
    let resp = ProviderResponse::decode;
    assert_eq!(req(&[]), Err(Empty));
    assert_eq!(resp(&[]), Err(Empty));
    assert_eq!(req(&[3]), Err(Truncated("message kind")));
    assert_eq!(req(&[3, 2, 3]), Err(UnknownKind(2)));
    assert_eq!(req(&[3, 0]), Err(Truncated("control request tag")));
    assert_eq!(req(&[3, 0, 3]), Err(UnknownControlRequest(3)));
    assert_eq!(resp(&[3, 0, 9]), Err(UnknownControlResponse(9)));
    assert!(matches!(resp(&[3, 0, 2, b'{']), Err(ControlJson(_))));
    assert_eq!(req(&[3, 1, 3, 5]), Err(UnknownRequestFlag(5)));
    assert_eq!(resp(&[3, 1, 3, 4]), Err(UnknownResponseFlag(4)));
    assert_eq!(resp(&[3, 1, 3]), Err(Truncated("response flag")));
    assert_eq!(resp(&[0]), Err(UnknownResponseFlag(0)));
    assert_eq!(
        resp(&hx("03 01 03 02 1122334455667788 ff")),
        Err(ErrorMessageNotUtf8)
    );
    assert_eq!(
        resp(&hx("03 01 03 02 11223344")),
        Err(Truncated("connection id"))
    );
    assert!(matches!(resp(&hx("03 01 03 03 00 01 00")), Err(Query(_))));

    // Every strict prefix of A1 fails, except the one that is A2.
    let a1 = hx(&format!(
        "03 01 03 00 1122334455667788 000f {EXAMPLE} {R_HEX}"
    ));
    for n in 0..a1.len() {
        assert_eq!(req(&a1[..n]).is_ok(), n == 29, "prefix {n}");
    }
    let mut bad_len = a1.clone();
    bad_len.push(0);
    assert_eq!(req(&bad_len), Err(ReturnAddressLength(97)));
    // A return address whose identity is not a curve point.
    let not_a_point = (0u8..=255)
        .map(|b| [b; 32])
        .find(|k| {
            let mut bytes = r().to_bytes();
            bytes[..32].copy_from_slice(k);
            Recipient::from_bytes(&bytes).is_err()
        })
        .expect("some 32-byte string is not a point");
    let mut bad_key = a1.clone();
    bad_key[29..61].copy_from_slice(&not_a_point);
    assert!(matches!(req(&bad_key), Err(ReturnAddress(_))));
    // Invalid UTF-8 in the remote address is replaced, not refused.
    let mut lossy = hx(&format!("03 01 03 00 1122334455667788 000f {EXAMPLE}"));
    lossy[14] = 0xFF;
    let Ok(ProviderRequest::Socks5 {
        request: Socks5Request::Connect(c),
        ..
    }) = req(&lossy)
    else {
        panic!("lossy address refused")
    };
    assert!(c.remote.starts_with('\u{FFFD}'));
}

#[test]
fn encode_errors() {
    use EncodeError::*;
    let send = Socks5Request::Send(data(0, false, b""));
    let v = |interface, socks5| Versions { interface, socks5 };
    assert_eq!(
        request(v(Version::Versioned(2), Version::CURRENT), send.clone()).encode(),
        Err(VersionBelowFirst(2))
    );
    assert_eq!(
        request(v(Version::Legacy, Version::CURRENT), send).encode(),
        Err(LegacyInterfaceVersionedSocks5)
    );
    let control = ProviderRequest::Control {
        interface: Version::Legacy,
        request: ControlRequest::Health,
    };
    assert_eq!(control.encode(), Err(LegacyControl));
    let query = Socks5Response::Query(QueryResponse::OpenProxy(false));
    assert_eq!(
        response(v(Version::CURRENT, Version::Legacy), query).encode(),
        Err(LegacyQueryResponse)
    );
    let long = Socks5Request::Connect(ConnectRequest {
        conn_id: 1,
        remote: "a".repeat(65536),
        return_address: None,
    });
    assert_eq!(
        ProviderRequest::current(long).encode(),
        Err(AddressTooLong(65536))
    );
}

fn any_version() -> impl Strategy<Value = Version> {
    prop_oneof![
        Just(Version::Legacy),
        (3u8..=255).prop_map(Version::Versioned)
    ]
}

fn any_data() -> impl Strategy<Value = SocketData> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(conn_id, seq, closed, data)| SocketData {
            conn_id,
            seq,
            closed,
            data,
        })
}

fn any_request() -> impl Strategy<Value = ProviderRequest> {
    let socks5 = prop_oneof![
        (any::<u64>(), ".{0,40}", any::<bool>()).prop_map(|(conn_id, remote, ret)| {
            Socks5Request::Connect(ConnectRequest {
                conn_id,
                remote,
                return_address: ret.then(r),
            })
        }),
        any_data().prop_map(Socks5Request::Send),
        prop_oneof![
            Just(QueryRequest::OpenProxy),
            Just(QueryRequest::Description),
            Just(QueryRequest::ExitPolicy)
        ]
        .prop_map(Socks5Request::Query),
    ];
    let control = prop_oneof![
        Just(ControlRequest::Health),
        Just(ControlRequest::BinaryInfo),
        Just(ControlRequest::SupportedRequestVersions)
    ];
    prop_oneof![
        (3u8..=255, control).prop_map(|(v, request)| ProviderRequest::Control {
            interface: Version::Versioned(v),
            request,
        }),
        (any_version(), any::<bool>(), socks5).prop_map(|(interface, v3, req)| {
            let socks5 = if v3 && !interface.is_legacy() {
                Version::CURRENT
            } else {
                Version::Legacy
            };
            request(Versions { interface, socks5 }, req)
        }),
    ]
}

fn any_response() -> impl Strategy<Value = ProviderResponse> {
    let socks5 = prop_oneof![
        any_data().prop_map(Socks5Response::NetworkData),
        (any::<u64>(), ".{0,40}")
            .prop_map(|(conn_id, message)| Socks5Response::ConnectionError { conn_id, message }),
        any::<bool>().prop_map(|b| Socks5Response::Query(QueryResponse::OpenProxy(b))),
    ];
    let control = prop_oneof![
        Just(ControlResponse::Health),
        (
            ".{0,20}",
            proptest::collection::btree_map(".{0,8}", ".{0,8}", 0..4)
        )
            .prop_map(
                |(binary_name, build_information)| ControlResponse::BinaryInfo {
                    binary_name,
                    build_information
                }
            ),
        (any_version(), any_version()).prop_map(|(interface, socks5)| {
            ControlResponse::supported_versions(Versions { interface, socks5 })
        }),
        ".{0,20}".prop_map(|message| ControlResponse::Error { message }),
    ];
    prop_oneof![
        (3u8..=255, control).prop_map(|(v, response)| ProviderResponse::Control {
            interface: Version::Versioned(v),
            response,
        }),
        (any_version(), any_version(), socks5).prop_map(|(interface, socks5, response)| {
            let socks5 = match (interface, &response) {
                (Version::Legacy, _) => Version::Legacy,
                (_, Socks5Response::Query(_)) if socks5.is_legacy() => Version::CURRENT,
                _ => socks5,
            };
            let response = if socks5.is_legacy() && matches!(response, Socks5Response::Query(_)) {
                Socks5Response::NetworkData(SocketData::default())
            } else {
                response
            };
            ProviderResponse::Socks5 {
                versions: Versions { interface, socks5 },
                response,
            }
        }),
    ]
}

proptest! {
    #[test]
    fn request_round_trip(m in any_request()) {
        let bytes = m.encode().expect("valid versions encode");
        prop_assert_eq!(ProviderRequest::decode(&bytes), Ok(m));
    }

    #[test]
    fn response_round_trip(m in any_response()) {
        let bytes = m.encode().expect("valid versions encode");
        prop_assert_eq!(ProviderResponse::decode(&bytes), Ok(m));
    }

    #[test]
    fn random_bytes_never_panic(
        prefix in prop_oneof![Just(vec![]), Just(vec![3, 1, 3]), Just(vec![3, 0]), Just(vec![0, 0])],
        tail in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let b = [prefix, tail].concat();
        let _ = ProviderRequest::decode(&b);
        let _ = ProviderResponse::decode(&b);
        let _ = SocketData::decode_request(&b);
        let _ = SocketData::decode_response(&b);
    }
}
