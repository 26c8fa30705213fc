//! Secret masking: every occurrence of a secret in a job's output is replaced by `***` before
//! the bytes reach the log, including occurrences split across reads.

const MASK: &[u8] = b"***";

/// A streaming replacer. Holds back at most `longest secret - 1` bytes between calls.
#[derive(Debug, Default)]
pub struct Masker {
    secrets: Vec<Vec<u8>>,
    longest: usize,
    pending: Vec<u8>,
}

impl Masker {
    /// Empty secrets are ignored; longer secrets are tried first.
    pub fn new(secrets: &[String]) -> Self {
        let mut secrets: Vec<Vec<u8>> = secrets
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_vec())
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
        // A match starting before `safe` lies wholly inside `pending`.
        let safe = self.pending.len().saturating_sub(self.longest - 1);
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
    fn byte_by_byte_equals_one_chunk() {
        let text = b"s3cr3t and more s3cr3ts3cr3t, s3cr";
        let one = run(&["s3cr3t"], &[text]);
        let chunks: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(run(&["s3cr3t"], &chunks), one);
        assert_eq!(one, b"*** and more ******, s3cr");
    }
}
