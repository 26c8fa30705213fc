//! Secret masking: every occurrence of a secret in a job's output is replaced by `***` before
//! the bytes reach the log, including occurrences split across reads. A secret's base64 forms
//! are masked too ([`base64_forms`]): standard and URL-safe, alone and at each of the three
//! alignments it can have inside a longer base64 stream.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

const MASK: &[u8] = b"***";

/// Base64 forms shorter than this are not masked (they would mangle ordinary output).
const MIN_FORM: usize = 6;

/// The base64 forms of `secret`: its exact encodings (with padding), and for each offset
/// 0, 1, 2 (mod 3) at which it may start inside a longer encoded stream, the characters that
/// depend on the secret's bytes alone. Standard and URL-safe alphabets; forms shorter than
/// six characters are left out.
pub fn base64_forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for engine in [&STANDARD, &URL_SAFE] {
        out.push(engine.encode(secret).into_bytes());
        for offset in 0..3usize {
            let mut buf = vec![0u8; offset];
            buf.extend_from_slice(secret);
            let enc = engine.encode(&buf);
            let enc = enc.trim_end_matches('=').as_bytes();
            // The first characters also carry bits of the bytes before the secret, the last
            // one (of a partial group) bits of the bytes after it.
            let skip = [0, 2, 3][offset];
            let end = if buf.len() % 3 == 0 {
                enc.len()
            } else {
                enc.len() - 1
            };
            if end > skip {
                out.push(enc[skip..end].to_vec());
            }
        }
    }
    out.retain(|f| f.len() >= MIN_FORM);
    out
}

/// A streaming replacer. Between calls it holds back only a tail of the output that could be
/// the start of a secret (at most `longest secret - 1` bytes).
#[derive(Debug, Default)]
pub struct Masker {
    secrets: Vec<Vec<u8>>,
    longest: usize,
    pending: Vec<u8>,
}

impl Masker {
    /// Masks `secrets` and their [`base64_forms`]. Empty secrets are ignored; longer
    /// matches are tried first.
    pub fn new(secrets: &[String]) -> Self {
        let mut secrets: Vec<Vec<u8>> = secrets
            .iter()
            .filter(|s| !s.is_empty())
            .flat_map(|s| {
                let mut forms = base64_forms(s.as_bytes());
                forms.push(s.as_bytes().to_vec());
                forms
            })
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        let longest = secrets.first().map_or(0, Vec::len);
        Masker {
            secrets,
            longest,
            pending: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Input bytes held back (fed but not yet emitted).
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Feeds bytes; returns the bytes that are now safe to write.
    pub fn push(&mut self, input: &[u8]) -> Vec<u8> {
        if self.secrets.is_empty() {
            return input.to_vec();
        }
        self.pending.extend_from_slice(input);
        // Hold back only a tail that may be the start of a secret: a match starting before
        // `safe` lies wholly inside `pending`.
        let len = self.pending.len();
        let safe = (len.saturating_sub(self.longest - 1)..len)
            .find(|&i| {
                let tail = &self.pending[i..];
                self.secrets
                    .iter()
                    .any(|s| s.len() > tail.len() && s.starts_with(tail))
            })
            .unwrap_or(len);
        self.emit(safe)
    }

    /// Returns whatever was held back.
    pub fn finish(&mut self) -> Vec<u8> {
        let all = self.pending.len();
        self.emit(all)
    }

    fn emit(&mut self, until: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(until);
        let mut i = 0;
        while i < until {
            let rest = &self.pending[i..];
            let first = rest[0];
            match self
                .secrets
                .iter()
                .find(|s| s[0] == first && rest.starts_with(s))
            {
                Some(s) => {
                    out.extend_from_slice(MASK);
                    i += s.len();
                }
                None => {
                    out.push(first);
                    i += 1;
                }
            }
        }
        self.pending.drain(..i.min(self.pending.len()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(secrets: &[&str], chunks: &[&[u8]]) -> Vec<u8> {
        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        let mut m = Masker::new(&secrets);
        let mut out = Vec::new();
        for c in chunks {
            out.extend(m.push(c));
        }
        out.extend(m.finish());
        out
    }

    #[test]
    fn masks_whole_and_split_secrets() {
        assert_eq!(run(&["abracadabra"], &[b"x abracadabra y"]), b"x *** y");
        assert_eq!(
            run(&["abracadabra"], &[b"x abra", b"cad", b"abra y abracad"]),
            b"x *** y abracad"
        );
        assert_eq!(run(&[], &[b"\0\xff plain"]), b"\0\xff plain");
    }

    #[test]
    fn prefers_the_longest_secret() {
        assert_eq!(
            run(&["pass", "password1"], &[b"password1 pass"]),
            b"*** ***"
        );
    }

    #[test]
    fn masks_base64_forms_at_every_alignment() {
        let secret = "hunter2-s3cr3t?>";
        for engine in [&STANDARD, &URL_SAFE] {
            // Alone, with padding.
            let alone = engine.encode(secret);
            assert_eq!(
                run(&[secret], &[format!("b64 {alone} end").as_bytes()]),
                b"b64 *** end"
            );
            for prefix in ["", "a", "ab", "abc"] {
                for suffix in ["", "\n", "xy"] {
                    let enc = engine.encode(format!("{prefix}{secret}{suffix}"));
                    let out = run(&[secret], &[enc.as_bytes()]);
                    let out = String::from_utf8(out).unwrap();
                    assert!(out.contains("***"), "{prefix:?}+{suffix:?}: {enc} -> {out}");
                    // What is left shows at most the neighbours' characters plus one.
                    assert!(
                        out.len() <= 3 + 4 + 4,
                        "{prefix:?}+{suffix:?}: {enc} -> {out}"
                    );
                }
            }
        }
    }

    #[test]
    fn holds_back_only_what_may_start_a_secret() {
        let mut m = Masker::new(&["abracadabra".to_owned()]);
        assert_eq!(m.push(b"line 1 ***\n"), b"line 1 ***\n");
        assert_eq!(m.push(b"x abra"), b"x ");
        assert_eq!(m.held(), 4);
        assert_eq!(m.push(b"cadabra!"), b"***!");
    }

    #[test]
    fn byte_by_byte_equals_one_chunk() {
        let text = b"s3cr3t and more s3cr3ts3cr3t, s3cr";
        let one = run(&["s3cr3t"], &[text]);
        let chunks: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(run(&["s3cr3t"], &chunks), one);
        assert_eq!(one, b"*** and more ******, s3cr");
    }
}
