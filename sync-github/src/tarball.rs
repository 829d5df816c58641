//! Streams a commit's tarball and picks out the wanted blobs.

use std::collections::HashMap;
use std::io::{self, Read};

use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::BodyExt;
use sync_core::BlobId;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinHandle;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::client::Body;

/// What one pass over a tarball found.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TarStats {
    /// Wanted paths whose content hashed to the wanted blob.
    pub(crate) matched: u64,
    /// Wanted paths whose content did not (`export-subst`, or damage).
    pub(crate) mismatched: u64,
    /// Entries read in all.
    pub(crate) entries: u64,
}

/// A wanted path: its blob id and size.
pub(crate) type Wanted = HashMap<Vec<u8>, (BlobId, u64)>;

/// Reads the gzipped tarball `body` on a blocking thread, sending the content of every
/// wanted path whose bytes hash to the wanted blob id. Paths are taken below the
/// archive's top-level directory (`owner-repo-sha/`). Symlinks are `symlink` entries
/// whose target is their blob's content.
///
/// Must be called within a Tokio runtime. The request slot `permit` is held until the
/// body is read. The thread stops early when `tx` is closed.
pub(crate) fn extract(
    body: Body,
    permit: OwnedSemaphorePermit,
    wanted: Wanted,
    tx: mpsc::Sender<(BlobId, Bytes)>,
) -> JoinHandle<io::Result<TarStats>> {
    let stream = body
        .into_data_stream()
        .map_err(|e| io::Error::other(e.to_string()));
    let bridge = SyncIoBridge::new(StreamReader::new(stream));
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        read_archive(bridge, &wanted, |id, data| {
            tx.blocking_send((id, data)).is_ok()
        })
    })
}

/// Reads a gzipped tar stream; `found` gets each verified blob and returns `false` to stop.
pub(crate) fn read_archive(
    reader: impl Read,
    wanted: &Wanted,
    mut found: impl FnMut(BlobId, Bytes) -> bool,
) -> io::Result<TarStats> {
    let mut stats = TarStats::default();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    for entry in archive.entries()? {
        let mut entry = entry?;
        stats.entries += 1;
        let kind = entry.header().entry_type();
        if !kind.is_file() && !kind.is_symlink() {
            continue;
        }
        let path = entry.path_bytes().into_owned();
        let Some(rel) = below_top(&path) else {
            continue;
        };
        let Some(&(id, size)) = wanted.get(rel) else {
            continue;
        };
        let data = if kind.is_symlink() {
            entry
                .link_name_bytes()
                .map(|l| l.into_owned())
                .unwrap_or_default()
        } else {
            let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 24));
            (&mut entry)
                .take(size.saturating_add(1))
                .read_to_end(&mut data)?;
            data
        };
        if BlobId::for_content(&data) == id {
            stats.matched += 1;
            if !found(id, Bytes::from(data)) {
                return Ok(stats);
            }
        } else {
            stats.mismatched += 1;
        }
    }
    Ok(stats)
}

/// The path below the archive's top-level directory; `None` for the directory itself and
/// for entries outside any directory (the pax global header).
fn below_top(path: &[u8]) -> Option<&[u8]> {
    let path = path.strip_suffix(b"/").unwrap_or(path);
    let at = path.iter().position(|&b| b == b'/')?;
    let rest = &path[at + 1..];
    (!rest.is_empty()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(files: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::XGlobalHeader);
        h.set_size(0);
        h.set_cksum();
        b.append_data(&mut h, "pax_global_header", &[][..]).unwrap();
        for (p, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, format!("o-r-abc1234/{p}"), *data)
                .unwrap();
        }
        for (p, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, format!("o-r-abc1234/{p}"), target)
                .unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn picks_wanted_paths_and_checks_their_hash() {
        let long = format!("{}/deep.txt", "d".repeat(120));
        let data = archive(
            &[
                ("a.txt", b"alpha\n"),
                ("skip.txt", b"skip\n"),
                ("subst.txt", b"altered by export-subst\n"),
                (long.as_str(), b"deep\n"),
            ],
            &[("link", "a.txt")],
        );
        let mut wanted = Wanted::new();
        for (p, content) in [
            ("a.txt", &b"alpha\n"[..]),
            ("subst.txt", b"$Format:%H$\n"),
            (long.as_str(), b"deep\n"),
            ("link", b"a.txt"),
            ("missing.txt", b"export-ignored\n"),
        ] {
            wanted.insert(
                p.as_bytes().to_vec(),
                (BlobId::for_content(content), content.len() as u64),
            );
        }
        let mut got = Vec::new();
        let stats = read_archive(&data[..], &wanted, |id, d| {
            got.push((id, d));
            true
        })
        .unwrap();
        assert_eq!(stats.matched, 3);
        assert_eq!(stats.mismatched, 1);
        let ids: Vec<_> = got.iter().map(|(id, _)| *id).collect();
        assert!(ids.contains(&BlobId::for_content(b"alpha\n")));
        assert!(ids.contains(&BlobId::for_content(b"deep\n")));
        assert!(ids.contains(&BlobId::for_content(b"a.txt")));
    }

    #[test]
    fn damaged_archives_are_errors() {
        let mut data = archive(&[("a.txt", &[b'x'; 5000])], &[]);
        data.truncate(data.len() / 2);
        let wanted = Wanted::new();
        assert!(read_archive(&data[..], &wanted, |_, _| true).is_err());
    }

    #[test]
    fn top_directory_is_stripped() {
        assert_eq!(below_top(b"o-r-1/src/a.rs"), Some(&b"src/a.rs"[..]));
        assert_eq!(below_top(b"o-r-1/"), None);
        assert_eq!(below_top(b"pax_global_header"), None);
    }
}
