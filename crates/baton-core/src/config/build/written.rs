//! Each task's and pipeline's source text as written ([`Written`]), for its page: the lines from
//! its name to the last one indented under it, with every value the loader hid replaced by
//! `***` at the place it is written.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::diags::{FileId, Loc};
use crate::config::model::{Written, WrittenDef};
use crate::config::node::Pos;

/// What replaces a hidden value.
const HIDDEN: &str = "***";

/// The definitions' texts, from the files' texts and the places of their names.
pub(super) fn collect(
    files: &[PathBuf],
    texts: &[String],
    hidden_at: &[(FileId, Pos, Pos)],
    tasks: &BTreeMap<String, Loc>,
    pipelines: &BTreeMap<String, Loc>,
) -> Written {
    // Each file's lines with its hidden values replaced, made once and only when needed.
    let mut redacted: BTreeMap<FileId, Vec<String>> = BTreeMap::new();
    let mut one = |loc: &Loc| -> Option<WrittenDef> {
        let text = texts.get(loc.file)?;
        let lines = redacted.entry(loc.file).or_insert_with(|| {
            let spots: Vec<(Pos, Pos)> = hidden_at
                .iter()
                .filter(|(f, _, _)| *f == loc.file)
                .map(|(_, k, v)| (*k, *v))
                .collect();
            redact(text, &spots)
        });
        let block = block_at(lines, loc.pos)?;
        Some(WrittenDef {
            file: files.get(loc.file)?.clone(),
            line: loc.pos.line,
            text: block,
        })
    };
    let mut out = Written::default();
    for (name, loc) in tasks {
        if let Some(w) = one(loc) {
            out.tasks.insert(name.clone(), w);
        }
    }
    for (name, loc) in pipelines {
        if let Some(w) = one(loc) {
            out.pipelines.insert(name.clone(), w);
        }
    }
    out
}

/// Leading spaces of a line, in characters.
fn indent(line: &str) -> usize {
    line.chars().take_while(|c| *c == ' ').count()
}

/// The lines of `text` with each hidden value replaced by `***`: a scalar on its line (plain,
/// quoted, in a flow mapping) just itself; a block scalar, or one that goes on over several
/// lines, from where it begins to the end of its line, and each following line indented deeper
/// than its key keeps only its indentation and `***`.
fn redact(text: &str, spots: &[(Pos, Pos)]) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // Right to left, so a replacement never moves a place not yet replaced.
    let mut spots = spots.to_vec();
    spots.sort_by_key(|(_, v)| std::cmp::Reverse(*v));
    for (key, value) in &spots {
        let Some(first) = value.line.checked_sub(1) else {
            continue;
        };
        let Some(line) = lines.get_mut(first) else {
            continue;
        };
        let chars: Vec<char> = line.chars().collect();
        let start = value.col.saturating_sub(1).min(chars.len());
        let flow = in_flow(&chars[..start]);
        let end = scalar_end(&chars, start, flow);
        let keep: String = chars[..start].iter().collect();
        let rest: String = end.map_or(String::new(), |e| chars[e..].iter().collect());
        *line = format!("{keep}{HIDDEN}{rest}");
        if flow && end.is_some() {
            continue;
        }
        let key_indent = key.col.saturating_sub(1);
        for l in lines.iter_mut().skip(first + 1) {
            if l.trim().is_empty() {
                continue;
            }
            let n = indent(l);
            if n <= key_indent {
                break;
            }
            *l = format!("{}{HIDDEN}", " ".repeat(n));
        }
    }
    lines
}

/// Whether a line's text before a value leaves a flow mapping or sequence open.
fn in_flow(before: &[char]) -> bool {
    let mut depth = 0i32;
    for c in before {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            _ => {}
        }
    }
    depth > 0
}

/// Where the scalar that starts at `start` ends on its line (exclusive), or `None` when it is a
/// block scalar or goes on past its line.
fn scalar_end(chars: &[char], start: usize, flow: bool) -> Option<usize> {
    match chars.get(start)? {
        '|' | '>' => None,
        '"' => {
            let mut i = start + 1;
            while i < chars.len() {
                match chars[i] {
                    '\\' => i += 2,
                    '"' => return Some(i + 1),
                    _ => i += 1,
                }
            }
            None
        }
        '\'' => {
            let mut i = start + 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    return Some(i + 1);
                }
                i += 1;
            }
            None
        }
        _ => {
            let mut end = chars.len();
            for i in start..chars.len() {
                let c = chars[i];
                if (c == '#' && i > start && chars[i - 1] == ' ')
                    || (flow && matches!(c, ',' | '}' | ']'))
                {
                    end = i;
                    break;
                }
            }
            while end > start && chars[end - 1] == ' ' {
                end -= 1;
            }
            Some(end)
        }
    }
}

/// The block of the mapping entry whose key is at `key`: its line, then every following line
/// that is blank or indented deeper than the key, without trailing blank lines.
fn block_at(lines: &[String], key: Pos) -> Option<String> {
    let first = key.line.checked_sub(1)?;
    let head = lines.get(first)?;
    let key_indent = key.col.saturating_sub(1);
    let mut end = first + 1;
    for (i, l) in lines.iter().enumerate().skip(first + 1) {
        if l.trim().is_empty() {
            continue;
        }
        if indent(l) <= key_indent {
            break;
        }
        end = i + 1;
    }
    let mut out = head.clone();
    for l in &lines[first + 1..end] {
        out.push('\n');
        out.push_str(l);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(line: usize, col: usize) -> Pos {
        Pos { line, col }
    }

    #[test]
    fn a_block_ends_at_the_next_key_at_its_depth() {
        let text = "tasks:\n  a:\n    command: |\n      echo a\n\n      echo b\n\n  b:\n    command: x\nserver: {}\n";
        let lines = redact(text, &[]);
        assert_eq!(
            block_at(&lines, pos(2, 3)).unwrap(),
            "  a:\n    command: |\n      echo a\n\n      echo b"
        );
        assert_eq!(block_at(&lines, pos(8, 3)).unwrap(), "  b:\n    command: x");
        assert_eq!(block_at(&lines, pos(99, 1)), None);
    }

    #[test]
    fn hidden_values_are_replaced_where_they_are_written() {
        let text = "t:\n  env:\n    API_TOKEN: abc # note\n    KEY: |\n      line one\n      line two\n    PLAIN: x\n  e: {A_KEY: \"q\\\"x\", B: 'it''s', C_KEY: plain}\n";
        let lines = redact(
            text,
            &[
                (pos(3, 5), pos(3, 16)),
                (pos(4, 5), pos(4, 10)),
                (pos(8, 7), pos(8, 14)),
                (pos(8, 34), pos(8, 41)),
            ],
        );
        assert_eq!(
            lines.join("\n"),
            "t:\n  env:\n    API_TOKEN: *** # note\n    KEY: ***\n      ***\n      ***\n    PLAIN: x\n  e: {A_KEY: ***, B: 'it''s', C_KEY: ***}"
        );
    }
}
