//! Reading a job's `log` (which may be growing while we read).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Read at most `max_len` bytes of the file at `path`, starting at byte
/// `offset`. Returns fewer bytes (possibly none) at the end of the file; the
/// buffer is never larger than what is actually there.
pub fn read_log_range(path: &Path, offset: u64, max_len: u64) -> io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if offset >= len || max_len == 0 {
        return Ok(Vec::new());
    }
    let want = max_len.min(len - offset);
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(usize::try_from(want).unwrap_or(usize::MAX));
    // `take` keeps us from reading bytes appended after we looked at the size
    // beyond `want`; a short read at EOF is fine.
    f.take(want).read_to_end(&mut buf)?;
    Ok(buf)
}
