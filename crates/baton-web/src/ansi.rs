//! Terminal output to HTML: ANSI SGR colours become `<span>`s, and each line is replayed the way
//! a terminal would show it — a carriage return moves back to the start of the line so the next
//! text overwrites it, `ESC[K` erases, `ESC[nG` moves the cursor — so progress bars collapse to
//! their final state. Every other escape sequence is dropped; no ESC byte reaches the HTML.

use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Color {
    #[default]
    Default,
    /// An entry of the 256-colour palette: a CSS class (`f<n>`, `b<n>`). The 16 basic colours
    /// are themed in `app.css`; entries 16–255 get the xterm values ([`palette_css`]). True
    /// colour is shown as its nearest palette entry, so no page needs an inline style (the
    /// Content-Security-Policy allows none).
    Palette(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Style {
    fg: Color,
    bg: Color,
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
    /// SGR 7: foreground and background swapped when drawn.
    inverse: bool,
}

/// The six levels of each channel in the palette's 6×6×6 cube (entries 16–231).
fn level(v: u8) -> u8 {
    if v == 0 { 0 } else { 55 + v * 40 }
}

/// The RGB value of palette entry `i` (16–255).
fn palette_rgb(i: u8) -> (u8, u8, u8) {
    if (16..=231).contains(&i) {
        let i = i - 16;
        (level(i / 36), level((i / 6) % 6), level(i % 6))
    } else {
        let g = 8 + i.saturating_sub(232) * 10;
        (g, g, g)
    }
}

/// The palette entry (16–255) nearest to a true colour.
fn nearest(r: u8, g: u8, b: u8) -> u8 {
    let dist = |i: u8| {
        let (pr, pg, pb) = palette_rgb(i);
        let d = |x: u8, y: u8| (i32::from(x) - i32::from(y)).pow(2);
        d(r, pr) + d(g, pg) + d(b, pb)
    };
    let step = |v: u8| (0..6u8).min_by_key(|&k| (i32::from(level(k)) - i32::from(v)).abs());
    let cube = 16 + 36 * step(r).unwrap_or(0) + 6 * step(g).unwrap_or(0) + step(b).unwrap_or(0);
    let grey = (232..=255u8).min_by_key(|&i| dist(i)).unwrap_or(232);
    if dist(grey) < dist(cube) { grey } else { cube }
}

/// CSS rules for palette entries 16–255, appended to `app.css`.
pub(crate) fn palette_css() -> String {
    let mut css = String::new();
    for i in 16..=255u8 {
        let (r, g, b) = palette_rgb(i);
        let _ = writeln!(
            css,
            ".f{i}{{color:#{r:02x}{g:02x}{b:02x}}}.b{i}{{background:#{r:02x}{g:02x}{b:02x}}}"
        );
    }
    css
}

impl Style {
    fn apply_sgr(&mut self, params: &[u16]) {
        let params = if params.is_empty() { &[0][..] } else { params };
        let mut i = 0;
        while i < params.len() {
            let p = params[i];
            match p {
                0 => *self = Style::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                7 => self.inverse = true,
                22 => {
                    self.bold = false;
                    self.dim = false;
                }
                23 => self.italic = false,
                24 => self.underline = false,
                27 => self.inverse = false,
                30..=37 => self.fg = Color::Palette((p - 30) as u8),
                39 => self.fg = Color::Default,
                40..=47 => self.bg = Color::Palette((p - 40) as u8),
                49 => self.bg = Color::Default,
                90..=97 => self.fg = Color::Palette((p - 90 + 8) as u8),
                100..=107 => self.bg = Color::Palette((p - 100 + 8) as u8),
                38 | 48 => {
                    let c = match params.get(i + 1) {
                        Some(5) => {
                            let c = params.get(i + 2).map(|&v| Color::Palette(v.min(255) as u8));
                            i += 2;
                            c
                        }
                        Some(2) => {
                            let g = |k: usize| params.get(i + k).map_or(0, |&v| v.min(255) as u8);
                            let c = Some(Color::Palette(nearest(g(2), g(3), g(4))));
                            i += 4;
                            c
                        }
                        _ => None,
                    };
                    if let Some(c) = c {
                        if p == 38 {
                            self.fg = c;
                        } else {
                            self.bg = c;
                        }
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }

    fn open_tag(&self, out: &mut String) -> bool {
        if *self == Style::default() {
            return false;
        }
        let mut classes = Vec::new();
        if self.inverse {
            // Swapped: the default colours swap too (`fi`, `bi`: the log's own, in app.css).
            classes.push(match self.bg {
                Color::Palette(n) => format!("f{n}"),
                Color::Default => "fi".to_owned(),
            });
            classes.push(match self.fg {
                Color::Palette(n) => format!("b{n}"),
                Color::Default => "bi".to_owned(),
            });
        } else {
            if let Color::Palette(n) = self.fg {
                classes.push(format!("f{n}"));
            }
            if let Color::Palette(n) = self.bg {
                classes.push(format!("b{n}"));
            }
        }
        for (on, c) in [
            (self.bold, "bo"),
            (self.dim, "di"),
            (self.italic, "it"),
            (self.underline, "un"),
        ] {
            if on {
                classes.push(c.to_owned());
            }
        }
        out.push_str("<span");
        if !classes.is_empty() {
            let _ = write!(out, " class=\"{}\"", classes.join(" "));
        }
        out.push('>');
        true
    }
}

/// One screen line being built: cells of (character, style) and a cursor.
#[derive(Default)]
struct LineBuf {
    cells: Vec<(char, Style)>,
    cursor: usize,
}

impl LineBuf {
    fn put(&mut self, c: char, style: Style) {
        if self.cursor < self.cells.len() {
            self.cells[self.cursor] = (c, style);
        } else {
            self.cells.resize(self.cursor, (' ', Style::default()));
            self.cells.push((c, style));
        }
        self.cursor += 1;
    }

    fn to_html(&self) -> String {
        let mut out = String::with_capacity(self.cells.len() + 16);
        let mut cur = Style::default();
        let mut open = false;
        for &(c, st) in &self.cells {
            if st != cur {
                if open {
                    out.push_str("</span>");
                }
                open = st.open_tag(&mut out);
                cur = st;
            }
            match c {
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '&' => out.push_str("&amp;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                c if c.is_control() && c != '\t' => {}
                c => out.push(c),
            }
        }
        if open {
            out.push_str("</span>");
        }
        out
    }
}

/// Renders terminal output to one HTML fragment per line (escaped; no ESC bytes). A final line
/// without a newline is included. The style carries over from line to line, as in a terminal.
pub fn render_lines(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = Vec::new();
    let mut line = LineBuf::default();
    let mut style = Style::default();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                lines.push(line.to_html());
                line = LineBuf::default();
            }
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    line.cursor = 0;
                }
            }
            '\x08' => line.cursor = line.cursor.saturating_sub(1),
            '\x1b' => match chars.next() {
                Some('[') => {
                    // CSI: parameters and intermediates, then a final byte in @..~.
                    let mut raw = String::new();
                    let mut fin = None;
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            fin = Some(c);
                            break;
                        }
                        raw.push(c);
                        if raw.len() > 64 {
                            break;
                        }
                    }
                    let nums: Vec<u16> = raw
                        .trim_start_matches('?')
                        .split([';', ':'])
                        .map(|p| p.parse().unwrap_or(0))
                        .collect();
                    let n = |d: usize| nums.first().map_or(d, |&v| (v as usize).max(d.min(1)));
                    match fin {
                        Some('m') if !raw.starts_with('?') => {
                            let ps: Vec<u16> = if raw.is_empty() { vec![] } else { nums };
                            style.apply_sgr(&ps);
                        }
                        Some('K') => match nums.first().copied().unwrap_or(0) {
                            0 => line.cells.truncate(line.cursor),
                            1 => {
                                let end = line.cursor.min(line.cells.len());
                                for cell in &mut line.cells[..end] {
                                    *cell = (' ', Style::default());
                                }
                            }
                            _ => line.cells.clear(),
                        },
                        Some('G') => line.cursor = n(1).saturating_sub(1),
                        Some('C') => line.cursor += n(1),
                        Some('D') => line.cursor = line.cursor.saturating_sub(n(1)),
                        _ => {}
                    }
                }
                Some(']') => {
                    // OSC: up to BEL or ESC \.
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' {
                            chars.next();
                            break;
                        }
                    }
                }
                _ => {}
            },
            c => line.put(c, style),
        }
    }
    if !line.cells.is_empty() {
        lines.push(line.to_html());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::render_lines;

    /// A build log from `tests/fixtures/logs/` (see its README for where each came from).
    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/logs")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", p.display()))
    }

    #[test]
    fn colours_become_spans_and_text_is_escaped() {
        let l = render_lines(b"\x1b[1;32mok\x1b[0m <b>&\n\x1b[38;5;9merr\x1b[m \x1b[38;5;196mx\n");
        assert_eq!(l[0], "<span class=\"f2 bo\">ok</span> &lt;b&gt;&amp;");
        assert_eq!(
            l[1],
            "<span class=\"f9\">err</span> <span class=\"f196\">x</span>"
        );
    }

    #[test]
    fn inverse_swaps_foreground_and_background() {
        let l = render_lines(b"\x1b[7mall\x1b[27m \x1b[31;7mred\x1b[0m\n");
        assert_eq!(
            l[0],
            "<span class=\"fi bi\">all</span> <span class=\"fi b1\">red</span>"
        );
        let l = render_lines(b"\x1b[32;44;7mx\n");
        assert_eq!(l[0], "<span class=\"f4 b2\">x</span>");
    }

    #[test]
    fn true_colour_takes_the_nearest_palette_class() {
        let l = render_lines(b"\x1b[38;2;255;0;0mr\x1b[48;2;128;128;128mg\x1b[38;2;1;2;3mk\n");
        assert_eq!(
            l[0],
            "<span class=\"f196\">r</span><span class=\"f196 b244\">g</span>\
             <span class=\"f16 b244\">k</span>"
        );
        assert!(!l[0].contains("style"));
        let css = super::palette_css();
        assert!(css.contains(".f196{color:#ff0000}"), "{css}");
        assert!(css.contains(".b244{background:#808080}"), "{css}");
        assert_eq!(css.lines().count(), 240);
    }

    #[test]
    fn carriage_returns_overwrite_like_a_terminal() {
        let l = render_lines(b"10%\r50%\r100% done\r\nnext\n");
        assert_eq!(l, vec!["100% done", "next"]);
        // Shorter text over longer keeps the tail, unless erased.
        assert_eq!(render_lines(b"abcdef\rxy\n"), vec!["xycdef"]);
        assert_eq!(render_lines(b"abcdef\rxy\x1b[K\n"), vec!["xy"]);
        assert_eq!(render_lines(b"abcdef\x1b[1Gz\x1b[0K\n"), vec!["z"]);
        // A final line without a newline still shows.
        assert_eq!(render_lines(b"a\nb"), vec!["a", "b"]);
    }

    #[test]
    fn fixtures_render_without_escapes_and_with_collapsed_progress() {
        for (name, lines_at_least) in [
            ("travis-rust-redox-371852012.ansi.log", 1000),
            ("travis-rust-alacritty-564527447.ansi.log", 400),
        ] {
            let bytes = fixture(name);
            let lines = render_lines(&bytes);
            assert!(
                lines.len() >= lines_at_least,
                "{name}: {} lines",
                lines.len()
            );
            for l in &lines {
                assert!(!l.contains('\x1b'), "{name}: raw ESC in {l:?}");
                assert!(!l.contains('\r'), "{name}: raw CR in {l:?}");
            }
            let all = lines.join("\n");
            assert!(!all.contains("[0K"), "{name}: erase codes left as text");
            if name.contains("redox") {
                assert!(
                    all.contains("Compiling</span> gcc v0.3.54")
                        || all.contains("Compiling gcc v0.3.54"),
                    "redox: no Compiling line"
                );
                assert!(all.contains("error[E0407]"), "redox: no rustc error");
            }
        }
    }

    #[test]
    fn progress_lines_from_the_fixture_collapse_to_their_final_state() {
        let bytes = fixture("travis-rust-redox-371852012.ansi.log");
        // Every raw line that holds a lone CR rewrote itself; its rendering must equal what
        // the text after its last lone CR overwrote on top of the text before it, i.e. it must
        // never contain two copies of a progress prefix.
        let text = String::from_utf8_lossy(&bytes);
        let mut checked = 0;
        for raw in text.split('\n') {
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            if !raw.contains('\r') {
                continue;
            }
            let rendered = render_lines(format!("{raw}\n").as_bytes());
            assert_eq!(rendered.len(), 1);
            let last = raw.rsplit('\r').next().unwrap();
            let stripped = strip(last);
            let shown = strip_tags(&rendered[0]);
            assert!(
                shown.starts_with(stripped.trim_end()) || stripped.trim().is_empty(),
                "line {raw:?} rendered as {shown:?}"
            );
            checked += 1;
        }
        assert!(checked > 10, "only {checked} progress lines found");
    }

    fn strip(s: &str) -> String {
        let mut out = String::new();
        let mut it = s.chars().peekable();
        while let Some(c) = it.next() {
            if c == '\x1b' {
                if it.peek() == Some(&'[') {
                    it.next();
                    for c in it.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
                continue;
            }
            out.push(c);
        }
        out
    }

    fn strip_tags(s: &str) -> String {
        let mut out = String::new();
        let mut inside = false;
        for c in s.chars() {
            match c {
                '<' => inside = true,
                '>' => inside = false,
                c if !inside => out.push(c),
                _ => {}
            }
        }
        out.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    }
}
