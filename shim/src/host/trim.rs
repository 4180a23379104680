//! Gives back memory an idle shim does not need. A shim lives as long as its
//! container, mostly waiting; the code that created and started the
//! container is not needed until the next RPC. Dropping the executable's
//! code pages from this process's page tables costs nothing while idle (they
//! stay in the page cache and fault back in on use), and freed heap from
//! compiling or instantiating goes back to the kernel.

use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// How long the shim must go without an RPC before it trims itself.
const IDLE_AFTER: Duration = Duration::from_secs(2);

/// Trims the shim once it has gone `IDLE_AFTER` without activity. Waits on
/// `activity` (no timer runs while fully idle); each RPC signals it.
pub async fn trim_when_idle(activity: Arc<Notify>) {
    loop {
        activity.notified().await;
        loop {
            tokio::select! {
                _ = activity.notified() => continue,
                _ = tokio::time::sleep(IDLE_AFTER) => break,
            }
        }
        let _ = tokio::task::spawn_blocking(release_idle_memory).await;
    }
}

/// Unmaps resident pages of read-only file mappings (the shim's code and
/// constants, libc, compiled guest code) and trims the heap. Only mappings
/// whose pages are all clean file pages (`Anonymous: 0 kB` in smaps) are
/// touched: dropping those loses nothing, while a relocated (copy-on-write)
/// page would lose its contents, so such mappings are left alone.
pub fn release_idle_memory() {
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
    if let Err(e) = drop_clean_file_pages() {
        log::debug!("release code pages: {e}");
    }
}

fn drop_clean_file_pages() -> std::io::Result<()> {
    let smaps = std::io::BufReader::new(std::fs::File::open("/proc/self/smaps")?);
    let mut candidate: Option<(usize, usize)> = None;
    let mut clean = Vec::new();
    for line in smaps.lines() {
        let line = line?;
        if let Some(range) = mapping_header(&line) {
            candidate = range;
            continue;
        }
        if let (Some(range), Some(anon)) = (candidate, line.strip_prefix("Anonymous:")) {
            candidate = None;
            if anon.trim() == "0 kB" {
                clean.push(range);
            }
        }
    }
    // Drop them last, in one tight loop, so little code runs (and faults
    // pages back in) after the fact. MADV_RANDOM keeps later faults from
    // reading (and mapping) whole neighbourhoods of the binary.
    for (start, end) in clean {
        let (addr, len) = (start as *mut libc::c_void, end - start);
        // SAFETY: a private, read-only file mapping holding only clean file
        // pages; MADV_DONTNEED drops them and the next access re-reads them
        // from the file. MADV_RANDOM only changes read-ahead.
        unsafe {
            libc::madvise(addr, len, libc::MADV_RANDOM);
            if libc::madvise(addr, len, libc::MADV_DONTNEED) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// For a mapping header line of smaps: `Some(Some(range))` when it is a
/// read-only private mapping of a file, `Some(None)` for other mappings, and
/// `None` for the field lines that follow a header.
fn mapping_header(line: &str) -> Option<Option<(usize, usize)>> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let (start, end) = range.split_once('-')?;
    let (start, end) = (usize::from_str_radix(start, 16).ok()?, usize::from_str_radix(end, 16).ok()?);
    let perms = fields.next()?;
    let path = fields.nth(3).unwrap_or("");
    let read_only = perms == "r-xp" || perms == "r--p";
    Some((read_only && path.starts_with('/')).then_some((start, end)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn headers_are_told_from_fields() {
        let h = "7f00-7f10 r-xp 00000000 08:01 123 /usr/bin/shim";
        assert_eq!(super::mapping_header(h), Some(Some((0x7f00, 0x7f10))));
        assert_eq!(super::mapping_header("7f00-7f10 rw-p 00000000 00:00 0 "), Some(None));
        assert_eq!(super::mapping_header("7f00-7f10 r--p 00000000 00:00 0 [vvar]"), Some(None));
        assert_eq!(super::mapping_header("Anonymous:             0 kB"), None);
        assert_eq!(super::mapping_header("Rss:                  12 kB"), None);
    }

    #[test]
    fn code_still_runs_after_its_pages_are_dropped() {
        super::release_idle_memory();
        // Everything after the call executes from refaulted pages.
        let v: Vec<u64> = (0..1000).map(|x| x * 2).collect();
        assert_eq!(v.iter().sum::<u64>(), 999_000);
        super::release_idle_memory();
        assert_eq!(format!("{:?}", Some(3)), "Some(3)");
    }
}

