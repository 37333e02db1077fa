use super::*;

fn parse(s: &str) -> Result<Message, ParseError> {
    Message::parse(s.as_bytes(), &Limits::default())
}

#[test]
fn request_round_trip_keeps_unknown_params_byte_for_byte() {
    let text = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":{"n":1.50},"x-extra":{"keep":[true,null]}}}"#;
    let m = parse(text).unwrap();
    assert!(matches!(&m, Message::Request(r) if r.id == Id::Int(7) && r.method == "tools/call"));
    assert_eq!(String::from_utf8(m.to_vec()).unwrap(), text);
}

#[test]
fn notification_and_responses() {
    assert!(matches!(
        parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
        Ok(Message::Notification(_))
    ));
    let r = parse(r#"{"jsonrpc":"2.0","id":"a","result":{"resultType":"complete","zz":1}}"#).unwrap();
    assert_eq!(
        String::from_utf8(r.to_vec()).unwrap(),
        r#"{"jsonrpc":"2.0","id":"a","result":{"resultType":"complete","zz":1}}"#
    );
    let e = parse(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}"#).unwrap();
    assert!(matches!(
        e,
        Message::Response(Response {
            id: None,
            outcome: Outcome::Error(_)
        })
    ));
}

/// Each malformed frame gets the JSON-RPC code the spec assigns, and the id when readable.
#[test]
fn malformed_frames_get_precise_errors() {
    let cases: &[(&str, i64, Option<Id>)] = &[
        ("{not json", code::PARSE_ERROR, None),
        ("", code::PARSE_ERROR, None),
        ("[]", code::INVALID_REQUEST, None),
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            code::INVALID_REQUEST,
            None,
        ),
        ("42", code::INVALID_REQUEST, None),
        (r#"{"id":1,"method":"ping"}"#, code::INVALID_REQUEST, Some(Id::Int(1))),
        (
            r#"{"jsonrpc":"1.0","id":2,"method":"ping"}"#,
            code::INVALID_REQUEST,
            Some(Id::Int(2)),
        ),
        (
            r#"{"jsonrpc":"2.0","id":3,"method":7}"#,
            code::INVALID_REQUEST,
            Some(Id::Int(3)),
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"x","params":[1]}"#,
            code::INVALID_REQUEST,
            Some(Id::Int(4)),
        ),
        (
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            code::INVALID_REQUEST,
            None,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            code::INVALID_REQUEST,
            None,
        ),
        (
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#,
            code::INVALID_REQUEST,
            None,
        ),
        (r#"{"jsonrpc":"2.0","id":5}"#, code::INVALID_REQUEST, Some(Id::Int(5))),
        (
            r#"{"jsonrpc":"2.0","id":6,"result":1,"error":{"code":1,"message":"x"}}"#,
            code::INVALID_REQUEST,
            Some(Id::Int(6)),
        ),
        (r#"{"jsonrpc":"2.0","result":{}}"#, code::INVALID_REQUEST, None),
        (
            r#"{"jsonrpc":"2.0","id":8,"error":{"code":"x"}}"#,
            code::INVALID_REQUEST,
            Some(Id::Int(8)),
        ),
    ];
    for (text, want_code, want_id) in cases {
        let err = parse(text).expect_err(text);
        let resp = err.to_response();
        assert_eq!(resp.as_error().unwrap().code, *want_code, "{text}: {err}");
        assert_eq!(&resp.id, want_id, "{text}");
    }
}

#[test]
fn limits_are_enforced_before_parsing() {
    let limits = Limits {
        max_frame_bytes: 64,
        max_depth: 4,
    };
    let big = format!(
        r#"{{"jsonrpc":"2.0","method":"x","params":{{"p":"{}"}}}}"#,
        "a".repeat(100)
    );
    let err = Message::parse(big.as_bytes(), &limits).unwrap_err();
    assert!(err.to_string().contains("exceeds the limit of 64 bytes"), "{err}");
    let deep = r#"{"jsonrpc":"2.0","method":"x","params":{"a":[[[[1]]]]}}"#;
    let err = Message::parse(deep.as_bytes(), &limits).unwrap_err();
    assert!(err.to_string().contains("nesting depth"), "{err}");
    assert_eq!(err.to_response().as_error().unwrap().code, code::PARSE_ERROR);
}

#[test]
fn the_id_of_an_over_long_message() {
    let big = "x".repeat(100);
    let cases: &[(&str, &str, Option<Id>)] = &[
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"a":""#,
            "",
            Some(Id::Int(7)),
        ),
        (r#" { "id" : "req-1" , "method""#, "", Some(Id::Str("req-1".into()))),
        // Members before the id, with braces and quotes inside strings.
        (
            r#"{"jsonrpc":"2.0","method":"x","params":{"s":"} \" {","n":[1,{"id":9}]},"id":3,"#,
            "",
            Some(Id::Int(3)),
        ),
        // The id only at the end.
        (
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"a":"xx"#,
            r#"xxxx"}, "id": 42 }"#,
            Some(Id::Int(42)),
        ),
        (
            r#"{"method":"m","params":"#,
            r#"xx"},"id":"abc"}"#,
            Some(Id::Str("abc".into())),
        ),
        // A nested id at the end is not the message's.
        (r#"{"method":"m","params":"#, r#"x","id":5}}"#, None),
        // Cut before the id's value is whole; nothing to go by; not an object; not an id.
        (r#"{"id":12"#, "", None),
        (r#"{"method":"m","params":{"a":1"#, "xxxx", None),
        (r#"[{"id":1}]"#, "", None),
        (r#"{"id":1.5,"x":1}"#, "", None),
    ];
    for (head, tail, want) in cases {
        assert_eq!(
            &id_of_partial(head.as_bytes(), tail.as_bytes()),
            want,
            "{head} … {tail}"
        );
    }
    assert_eq!(id_of_partial(big.as_bytes(), big.as_bytes()), None);
}

proptest::proptest! {
    #[test]
    fn id_of_partial_is_total(head in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
                              tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let _ = id_of_partial(&head, &tail);
    }
}
