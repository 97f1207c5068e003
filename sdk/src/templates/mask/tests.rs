use super::*;

fn masked(body: &str) -> String {
    mask_line(body).1
}

#[test]
fn numbers_with_units_and_versions() {
    for (input, want) in [
        ("took 12ms", "took <num>"),
        ("took 3.5s", "took <num>"),
        ("read 200KB", "read <num>"),
        ("cpu 50%", "cpu <num>"),
        ("delta -12", "delta <num>"),
        ("ratio 1e-3", "ratio <num>"),
        ("count 0", "count <num>"),
        ("version 1.22.3", "version <num>"),
        ("HTTP/1.1 200", "HTTP/<num> <num>"),
        ("retry in 5m.", "retry in <num>."),
    ] {
        assert_eq!(masked(input), want, "{input}");
    }
}

#[test]
fn words_with_digits_are_not_numbers() {
    for word in [
        "v2", "http2", "utf-8", "x86_64", "h2c", "ipv4", "base64", "sha256", "log4j", "k8s", "e2e",
        "1st", "2nd", "s3", "deadbeef", "facade",
    ] {
        let (tokens, text) = mask_line(word);
        assert_eq!(text, word, "{word}");
        assert_eq!(tokens.len(), 1);
    }
    let (tokens, _) = mask_line("v2 ready");
    assert_eq!(
        tokens[0].kind,
        TokenKind::Mixed,
        "digits go to the <*> branch"
    );
    assert_eq!(tokens[1].kind, TokenKind::Word);
}

#[test]
fn ids_addresses_and_times() {
    for (input, want) in [
        ("0x1f", "<hex>"),
        ("a1b2c3d4e5f6", "<hex>"),
        ("d41d8cd98f00b204e9800998ecf8427e", "<hex>"),
        ("550e8400-e29b-41d4-a716-446655440000", "<uuid>"),
        ("10.1.2.3", "<ip>"),
        ("10.1.2.3:8080", "<ip>"),
        ("10.0.0.0/8", "<ip>"),
        ("2001:db8::1", "<ip>"),
        ("[2001:db8::1]:443", "<ip>"),
        ("fe80::1ff:fe23:4567:890a", "<ip>"),
        ("jane.doe@example.com", "<email>"),
        ("2024-01-15", "<ts>"),
        ("2024-01-15T10:00:00Z", "<ts>"),
        ("2024-01-15T10:00:00.123+02:00", "<ts>"),
        ("10:00:00,123", "<ts>"),
        ("[12/Mar/2024:10:00:00", "[<ts>"),
        ("15/01/2024", "<ts>"),
        (
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "<b64>",
        ),
        ("dGhpcyBpcyBhIHRlc3QgMTIz", "<b64>"),
        ("Log4j2ConfigurationFactory", "Log4j2ConfigurationFactory"),
        (
            "payments-api-7d4b9c8f6d-x2x4k",
            "payments-api-7d4b9c8f6d-x2x4k",
        ),
    ] {
        assert_eq!(masked(input), want, "{input}");
    }
}

#[test]
fn structure_around_values_is_kept() {
    for (input, want) in [
        ("key=0x1f", "key=<hex>"),
        ("user=alice", "user=alice"),
        ("dur=12ms,", "dur=<num>,"),
        ("peer=10.0.0.1:443", "peer=<ip>"),
        ("(10.0.0.1)", "(<ip>)"),
        ("/api/orders/123", "/api/orders/<num>"),
        (
            "https://api.example.com:8443/v1/orders/550e8400-e29b-41d4-a716-446655440000?expand=items&page=2",
            "https://api.example.com:<num>/v1/orders/<uuid>?expand=<*>&page=<num>",
        ),
        ("/search?q=shoes", "/search?q=<*>"),
        (
            "at com.example.Orders.place(Orders.java:42)",
            "at com.example.Orders.place(Orders.java:<num>)",
        ),
        ("status:200", "status:<num>"),
        (
            r#"msg="took 12ms from 10.0.0.1" ok"#,
            r#"msg="took <num> from <ip>" ok"#,
        ),
    ] {
        assert_eq!(masked(input), want, "{input}");
    }
}

#[test]
fn quoted_spans_and_json_fields_are_single_tokens() {
    let (tokens, text) = mask_line(r#"Failed to open "/tmp/a b.txt": denied"#);
    assert_eq!(tokens.len(), 5);
    assert_eq!(text, r#"Failed to open "/tmp/a b.txt": denied"#);
    let (tokens, text) =
        mask_line(r#"{"level":"info","msg":"order placed","order_id":123,"at":"2024-01-15"}"#);
    assert_eq!(
        text,
        r#"{"level":"info", "msg":"order placed", "order_id":<num>, "at":"<ts>"}"#
    );
    assert_eq!(tokens.len(), 4);
    // An unclosed quote is an ordinary character.
    let (tokens, _) = mask_line(r#"a 5" screen"#);
    assert_eq!(tokens.len(), 3);
    let (tokens, _) = mask_line(r#"say "a \" b" now"#);
    assert_eq!(tokens.len(), 3);
}

#[test]
fn token_ranges_and_kinds() {
    let body = "  GET /a/1   took 12ms ";
    let (tokens, text) = mask_line(body);
    assert_eq!(text, "GET /a/<num> took <num>");
    let raw: Vec<&str> = tokens.iter().map(|t| &body[t.raw.clone()]).collect();
    assert_eq!(raw, ["GET", "/a/1", "took", "12ms"]);
    let kinds: Vec<TokenKind> = tokens.iter().map(|t| t.kind).collect();
    assert_eq!(
        kinds,
        [
            TokenKind::Word,
            TokenKind::Mixed,
            TokenKind::Word,
            TokenKind::Masked(Mask::Num)
        ]
    );
    assert_eq!(&text[tokens[3].masked.clone()], "<num>");
}

#[test]
fn long_lines_are_bounded() {
    let body = "w ".repeat(1000);
    let (tokens, text) = mask_line(&body);
    assert_eq!(tokens.len(), MAX_TOKENS);
    assert!(text.ends_with(" <*>"));
    let (tokens, _) = mask_line(&"é".repeat(MAX_BODY_BYTES));
    assert_eq!(tokens.len(), 1);
    assert_eq!(mask_line("").0.len(), 0);
}
