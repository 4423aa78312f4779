use proptest::prelude::*;

use super::*;

fn parse_all(pieces: &[&[u8]]) -> Vec<SseEvent> {
    let mut p = SseParser::new(1 << 20);
    let mut out = Vec::new();
    for piece in pieces {
        p.feed(piece, &mut out).unwrap();
    }
    p.finish(&mut out).unwrap();
    out
}

fn ev(event: Option<&str>, data: &str, id: Option<&str>) -> SseEvent {
    SseEvent {
        event: event.map(str::to_string),
        data: data.to_string(),
        id: id.map(str::to_string),
        retry: None,
    }
}

#[test]
fn follows_the_standard() {
    let s = b"\xEF\xBB\xBF: comment\r\nevent: add\r\ndata: a\r\ndata:b\r\n\r\ndata\n\nid: 7\rdata:  two spaces\r\rretry: 300\ndata: x\n\nevent: lost\n\n";
    let got = parse_all(&[s]);
    assert_eq!(
        got,
        vec![
            ev(Some("add"), "a\nb", None),
            ev(None, "", None),
            ev(None, " two spaces", Some("7")),
            SseEvent {
                retry: Some(300),
                ..ev(None, "x", Some("7"))
            },
        ]
    );
}

#[test]
fn unterminated_event_is_discarded_and_reported() {
    let mut p = SseParser::new(1024);
    let mut out = Vec::new();
    p.feed(b"data: done\n\ndata: half", &mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert!(p.finish(&mut out).unwrap());
    assert_eq!(out.len(), 1);
}

#[test]
fn bounds_event_size() {
    let mut p = SseParser::new(16);
    let mut out = Vec::new();
    assert!(p.feed(b"data: 0123456789abcdef\n", &mut out).is_err());
    let mut p = SseParser::new(16);
    assert!(p
        .feed(b"data: 01234567\ndata: 01234567\n", &mut out)
        .is_err());
}

#[test]
fn writer_output_parses_back() {
    let mut out = Vec::new();
    write_event(&mut out, Some("delta"), "{\"a\":1}");
    write_event(&mut out, None, "line1\nline2");
    assert_eq!(
        parse_all(&[&out]),
        vec![
            ev(Some("delta"), "{\"a\":1}", None),
            ev(None, "line1\nline2", None)
        ]
    );
}

fn stream_strategy() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        "[a-z{}\":, ]{0,12}".prop_map(|v| format!("data: {v}")),
        "[a-z_]{1,8}".prop_map(|v| format!("event: {v}")),
        "[0-9]{1,3}".prop_map(|v| format!("id: {v}")),
        "[0-9]{1,4}".prop_map(|v| format!("retry: {v}")),
        Just(": keep-alive".to_string()),
        Just(String::new()),
        Just("data".to_string()),
    ];
    let end = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
    (any::<bool>(), prop::collection::vec((line, end), 0..24)).prop_map(|(bom, lines)| {
        let mut s = if bom { BOM.to_vec() } else { Vec::new() };
        for (l, e) in lines {
            s.extend_from_slice(l.as_bytes());
            s.extend_from_slice(e.as_bytes());
        }
        s
    })
}

proptest! {
    #[test]
    fn any_split_yields_the_same_events(s in stream_strategy(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6)) {
        let whole = parse_all(&[&s]);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(s.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut last = 0;
        for p in points {
            pieces.push(&s[last..p]);
            last = p;
        }
        pieces.push(&s[last..]);
        prop_assert_eq!(&parse_all(&pieces), &whole);
        // And byte by byte.
        let bytes: Vec<&[u8]> = s.chunks(1).collect();
        prop_assert_eq!(parse_all(&bytes), whole);
    }
}
