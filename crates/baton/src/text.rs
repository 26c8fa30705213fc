//! How the CLI writes text: aligned tables, local times, and stdout that may be a closed pipe.

/// Aligned columns, two spaces apart, without trailing spaces.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < r.len() {
                let pad = width[c] - cell.chars().count() + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A time as the CLI's text shows it: the local time, to the second (`--json` keeps RFC 3339).
pub(crate) fn local_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Writes `bytes` to stdout; a reader that went away (`baton completions fish | head`) is not
/// an error: the output was not wanted.
pub(crate) fn write_stdout(bytes: &[u8]) -> anyhow::Result<std::process::ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => Ok(std::process::ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_align_without_trailing_spaces() {
        let rows = vec![
            vec!["ID".to_owned(), "NAME".into(), "X".into()],
            vec!["12".to_owned(), "a".into(), String::new()],
        ];
        assert_eq!(super::table(&rows), "ID  NAME  X\n12  a\n");
    }
}
