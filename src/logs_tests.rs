//! Tests of the log's escaping and of the bounded audit entries.

use super::*;

fn escaped(input: &[u8]) -> String {
    let mut w = Escaping(Vec::new());
    w.write_all(input).unwrap();
    String::from_utf8(w.0).unwrap()
}

#[test]
fn a_line_stays_one_line_whatever_its_fields_hold() {
    let forged =
        b"INFO audit: principal=CN=a\nINFO audit: event=change api=DeleteTopics\r\x1b[2J\n";
    let out = escaped(forged);
    assert_eq!(out.matches('\n').count(), 1, "{out:?}");
    assert!(out.ends_with('\n'));
    assert!(out.contains("CN=a\\nINFO audit"), "{out:?}");
    assert!(out.contains("\\r\\x1b[2J"), "{out:?}");
}

#[test]
fn clean_lines_pass_unchanged() {
    let line = b"2026-12-07T13:00:00Z  INFO conn{id=1}: audit: cluster change identity=ops\n";
    assert_eq!(escaped(line).as_bytes(), line);
    assert_eq!(escaped("ünïcödé ✓\n".as_bytes()), "ünïcödé ✓\n");
}

#[test]
fn audit_entries_are_bounded_with_a_marker_and_the_count() {
    let long = "é".repeat(1000);
    let out = bounded(vec![long.clone(), "t".to_owned()]);
    assert!(out[0].len() < MAX_ENTRY_BYTES + 40, "{}", out[0].len());
    assert!(
        out[0].ends_with(&format!("…(cut, {} bytes)", long.len())),
        "{}",
        out[0]
    );
    assert_eq!(out[1], "t");

    let many: Vec<String> = (0..10_000).map(|i| format!("topic-{i:05}")).collect();
    let out = bounded(many);
    let bytes: usize = out.iter().map(String::len).sum();
    assert!(bytes <= MAX_LINE_BYTES + 64, "{bytes}");
    let last = out.last().unwrap();
    assert!(
        last.starts_with("…and ") && last.ends_with("more (of 10000)"),
        "{last}"
    );
    assert_eq!(bounded(vec!["a".into(), "b".into()]), vec!["a", "b"]);
}

#[test]
fn a_flood_of_lines_is_limited_per_key_and_the_suppressed_are_counted() {
    let limit = LineLimit::new(Duration::from_secs(3600), 3);
    let let_through: Vec<Option<u64>> = (0..1000).map(|_| limit.allow("readonly")).collect();
    assert_eq!(&let_through[..4], &[Some(0), Some(0), Some(0), None]);
    assert_eq!(let_through.iter().flatten().count(), 3);
    assert_eq!(limit.allow("ops"), Some(0), "each key has its own");

    let limit = LineLimit::new(Duration::from_millis(1), 1);
    assert_eq!(limit.allow("k"), Some(0));
    assert_eq!(limit.allow("k"), None);
    assert_eq!(limit.allow("k"), None);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(limit.allow("k"), Some(2), "the next line carries the count");
}
