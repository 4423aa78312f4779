//! Finds the line of a dotted config path (`models.demo.targets[0].provider`)
//! in the YAML text, so semantic errors point at a line like parse errors do.
//! Heuristic by design: block keys by indentation, flow keys by first match.

pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let keys: Vec<&str> = path
        .split('.')
        .map(|seg| seg.split('[').next().unwrap_or(seg))
        .filter(|k| !k.is_empty())
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    let mut min_indent = 0;
    let mut found = None;
    for key in keys {
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(from) {
            let indent = line.len() - line.trim_start().len();
            let trimmed = line.trim_start().trim_start_matches("- ");
            if found.is_some()
                && i > from
                && indent < min_indent
                && !trimmed.is_empty()
                && !line.trim_start().starts_with('#')
            {
                break;
            }
            if let Some(col) = key_col(line, key) {
                hit = Some((i, col, indent));
                break;
            }
        }
        let (i, col, indent) = hit?;
        found = Some((i + 1, col + 1));
        from = i;
        min_indent = indent + 1;
    }
    found
}

/// Column of `key:` in `line` when it appears as a mapping key.
fn key_col(line: &str, key: &str) -> Option<usize> {
    let mut start = 0;
    while let Some(pos) = line[start..].find(key) {
        let at = start + pos;
        let before = line[..at].chars().last();
        let after = &line[at + key.len()..];
        let key_start = before.is_none_or(|c| matches!(c, ' ' | '{' | ',' | '-' | '"' | '\''));
        let after = after.trim_start_matches(['"', '\'']);
        if key_start && after.starts_with(':') {
            return Some(at);
        }
        start = at + key.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const Y: &str = "server:\n  listen: x\nmodels:\n  demo:\n    targets:\n      - { provider: nope, model: m }\n  other:\n    targets: []\n";

    #[test]
    fn finds_nested_and_flow_keys() {
        assert_eq!(locate(Y, "models.demo.targets[0].provider"), Some((6, 11)));
        assert_eq!(locate(Y, "models.other.targets"), Some((8, 5)));
        assert_eq!(locate(Y, "server.listen"), Some((2, 3)));
        assert_eq!(locate(Y, "models.missing"), None);
    }
}
