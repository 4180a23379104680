//! Minimal deterministic tar writer and reader (ustar headers, pax for long paths).
//!
//! The writer takes every header field from its arguments, never from the
//! file system, so the same entries always produce the same bytes: mtime 0,
//! uid/gid 0, empty user and group names. The reader understands what the
//! writer produces plus the GNU long-name extension, which is enough to
//! inspect images made by this tool or by common builders.

use anyhow::{bail, ensure, Context, Result};

/// Size of a tar block; headers and data are padded to it.
pub const BLOCK: usize = 512;

const NAME_LEN: usize = 100;
const PAX_HEADER_NAME: &str = "././@PaxHeader";

/// Type of a tar entry this crate writes or reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// Anything else (links, devices, ...); only produced by the reader.
    Other(u8),
}

/// One entry read back from a tar stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path as stored, without a trailing `/` for directories.
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub data: Vec<u8>,
}

/// Builds a tar archive in memory.
#[derive(Default)]
pub struct TarWriter {
    buf: Vec<u8>,
}

impl TarWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a directory entry; `path` is relative, without trailing `/`.
    pub fn append_dir(&mut self, path: &str, mode: u32) -> Result<()> {
        self.append(&format!("{path}/"), b'5', mode, &[])
    }

    /// Appends a regular file entry.
    pub fn append_file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<()> {
        self.append(path, b'0', mode, data)
    }

    /// Writes the two zero blocks that end an archive and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.resize(self.buf.len() + 2 * BLOCK, 0);
        self.buf
    }

    fn append(&mut self, path: &str, typeflag: u8, mode: u32, data: &[u8]) -> Result<()> {
        ensure!(
            !path.is_empty() && !path.contains('\0'),
            "invalid tar path {path:?}"
        );
        if path.len() > NAME_LEN {
            let records = pax_record("path", path);
            self.push_entry(PAX_HEADER_NAME, b'x', 0o644, records.as_bytes())?;
        }
        self.push_entry(truncate(path, NAME_LEN), typeflag, mode, data)
            .with_context(|| format!("writing tar entry {path:?}"))
    }

    fn push_entry(&mut self, name: &str, typeflag: u8, mode: u32, data: &[u8]) -> Result<()> {
        let header = header(name, typeflag, mode, data.len() as u64)?;
        self.buf.extend_from_slice(&header);
        self.buf.extend_from_slice(data);
        self.buf.resize(padded(self.buf.len()), 0);
        Ok(())
    }
}

/// Rounds `len` up to a whole number of blocks.
fn padded(len: usize) -> usize {
    len.div_ceil(BLOCK) * BLOCK
}

/// Returns the longest prefix of `s` of at most `max` bytes on a char boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Formats one pax extended-header record: `"<len> <key>=<value>\n"`, where
/// `<len>` counts the whole record including its own digits.
fn pax_record(key: &str, value: &str) -> String {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    format!("{len} {key}={value}\n")
}

/// Builds a ustar header block with fixed ownership and timestamp.
fn header(name: &str, typeflag: u8, mode: u32, size: u64) -> Result<[u8; BLOCK]> {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], u64::from(mode))?;
    octal(&mut h[108..116], 0)?; // uid
    octal(&mut h[116..124], 0)?; // gid
    octal(&mut h[124..136], size).context("entry too large for ustar")?;
    octal(&mut h[136..148], 0)?; // mtime
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], 0)?; // devmajor
    octal(&mut h[337..345], 0)?; // devminor
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..154].copy_from_slice(format!("{sum:06o}").as_bytes());
    h[154] = 0;
    Ok(h)
}

/// Writes `value` as zero-padded octal followed by NUL, filling `field`.
fn octal(field: &mut [u8], value: u64) -> Result<()> {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    ensure!(
        text.len() == digits,
        "value {value} does not fit in a {digits}-digit tar field"
    );
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
    Ok(())
}

/// Parses every entry of a tar archive held in memory.
pub fn read_entries(bytes: &[u8]) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut pos = 0;
    let mut long_path: Option<String> = None;
    while pos + BLOCK <= bytes.len() {
        let block = &bytes[pos..pos + BLOCK];
        if block.iter().all(|&b| b == 0) {
            return Ok(entries);
        }
        verify_checksum(block).with_context(|| format!("tar header at offset {pos}"))?;
        let size = parse_octal(&block[124..136]).context("tar entry size")? as usize;
        let start = pos + BLOCK;
        let end = start
            .checked_add(size)
            .filter(|&end| end <= bytes.len())
            .with_context(|| format!("tar entry at offset {pos} runs past the end"))?;
        let data = &bytes[start..end];
        pos = padded(end);
        match block[156] {
            b'x' => long_path = pax_path(data)?.or(long_path),
            b'L' => long_path = Some(c_string(data)),
            b'g' => {}
            typeflag => {
                let path = long_path.take().unwrap_or_else(|| header_path(block));
                entries.push(entry(block, typeflag, path, data)?);
            }
        }
    }
    bail!("tar archive is truncated (no end-of-archive blocks)")
}

fn entry(block: &[u8], typeflag: u8, path: String, data: &[u8]) -> Result<Entry> {
    let kind = match typeflag {
        b'0' | 0 | b'7' => Kind::File,
        b'5' => Kind::Dir,
        other => Kind::Other(other),
    };
    Ok(Entry {
        path: path.trim_end_matches('/').to_string(),
        kind,
        mode: parse_octal(&block[100..108]).context("tar entry mode")? as u32,
        uid: parse_octal(&block[108..116]).context("tar entry uid")?,
        gid: parse_octal(&block[116..124]).context("tar entry gid")?,
        mtime: parse_octal(&block[136..148]).context("tar entry mtime")?,
        data: if kind == Kind::File {
            data.to_vec()
        } else {
            Vec::new()
        },
    })
}

fn verify_checksum(block: &[u8]) -> Result<()> {
    let stored = parse_octal(&block[148..156]).context("tar header checksum")?;
    let computed: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            }
        })
        .sum();
    ensure!(
        stored == computed,
        "bad tar header checksum (not a tar file?)"
    );
    Ok(())
}

/// Joins the ustar prefix and name fields.
fn header_path(block: &[u8]) -> String {
    let name = c_string(&block[0..100]);
    let prefix = if &block[257..262] == b"ustar" {
        c_string(&block[345..500])
    } else {
        String::new()
    };
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

fn c_string(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn parse_octal(field: &[u8]) -> Result<u64> {
    let text = c_string(field);
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).with_context(|| format!("invalid octal field {text:?}"))
}

/// Extracts the `path` record from pax extended-header data, if any.
fn pax_path(data: &[u8]) -> Result<Option<String>> {
    let mut rest = data;
    let mut path = None;
    while !rest.is_empty() {
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .context("malformed pax record")?;
        let len: usize = std::str::from_utf8(&rest[..space])?
            .parse()
            .context("pax record length")?;
        ensure!(
            len > space && len <= rest.len(),
            "malformed pax record length"
        );
        let record =
            std::str::from_utf8(&rest[space + 1..len - 1]).context("pax record is not UTF-8")?;
        if let Some(value) = record.strip_prefix("path=") {
            path = Some(value.to_string());
        }
        rest = &rest[len..];
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        for value in ["a", &"x".repeat(5), &"y".repeat(95), &"z".repeat(994)] {
            let record = pax_record("path", value);
            let (len, _) = record.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), record.len(), "{record}");
        }
    }

    #[test]
    fn round_trip_short_and_long_paths() {
        let long = format!("dir/{}", "n".repeat(150));
        let mut w = TarWriter::new();
        w.append_dir("dir", 0o755).unwrap();
        w.append_file("dir/a.txt", 0o644, b"hello").unwrap();
        w.append_file(&long, 0o755, &[7u8; 600]).unwrap();
        let bytes = w.finish();
        assert_eq!(bytes.len() % BLOCK, 0);

        let entries = read_entries(&bytes).unwrap();
        let summary: Vec<_> = entries
            .iter()
            .map(|e| (e.path.as_str(), e.kind, e.mode))
            .collect();
        assert_eq!(
            summary,
            [
                ("dir", Kind::Dir, 0o755),
                ("dir/a.txt", Kind::File, 0o644),
                (long.as_str(), Kind::File, 0o755)
            ]
        );
        assert_eq!(entries[1].data, b"hello");
        assert_eq!(entries[2].data.len(), 600);
        assert!(entries
            .iter()
            .all(|e| e.uid == 0 && e.gid == 0 && e.mtime == 0));
    }

    #[test]
    fn empty_archive_is_two_zero_blocks() {
        assert_eq!(TarWriter::new().finish(), vec![0u8; 2 * BLOCK]);
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(read_entries(&[0x41; BLOCK * 2]).is_err());
        let mut w = TarWriter::new();
        w.append_file("a", 0o644, &[1; 100]).unwrap();
        let bytes = w.finish();
        assert!(read_entries(&bytes[..BLOCK + 10]).is_err());
    }
}
