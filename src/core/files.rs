//! The one reader for every file vigil reads: the configuration itself, CA bundles (`ca_file`,
//! `sslrootcert`), secrets (`*_file`), client certificates and keys, and the kernel's interface
//! files (cgroups, `/proc`; the large tables of `/proc/net` as a capped stream).
//!
//! Only regular files are read, and only up to a cap: a FIFO would block start-up (and SIGTERM
//! with it) until someone writes to it, `/dev/zero` would never end, a directory is a mistake.
//! The file is opened non-blocking and checked on the open handle, so a path swapped for a FIFO
//! between a check and the open cannot hang the reading thread either.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Take};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The most a configuration file may hold.
pub(crate) const CONFIG_CAP: u64 = 1024 * 1024;
/// The most a CA bundle may hold (Mozilla's whole bundle is about 220 KiB).
pub(crate) const CA_CAP: u64 = 1024 * 1024;
/// The most a secret file may hold.
pub(crate) const SECRET_CAP: u64 = 64 * 1024;
/// The most a kernel interface file vigil reads whole may hold (`cpu.stat`, `memory.stat`,
/// `/proc/self/cgroup`: a few KiB; under a configurable `cgroup_root` anything may sit).
pub(crate) const KERNEL_CAP: u64 = 64 * 1024;

/// The most of a kernel table vigil streams line by line (`/proc/net/tcp`: about 150 bytes a
/// socket; the `sockets` check stops counting at 262,144 lines, well inside this).
pub(crate) const TABLE_CAP: u64 = 64 * 1024 * 1024;

/// Why a file cannot be used. The messages do not name the path: callers say which file it
/// was and what it was for (`ca_file /etc/ca.pem: …`).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("not a regular file (a {what}): point it at a file")]
    NotRegular { what: &'static str },
    #[error("larger than {cap} bytes")]
    TooLarge { cap: u64 },
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("holds no PEM certificate")]
    NoCertificate,
    #[error("not a valid PEM certificate: {0}")]
    BadCertificate(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The bytes of the regular file at `path`, at most `cap` of them.
pub(crate) fn read(path: &Path, cap: u64) -> Result<Vec<u8>, FileError> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(FileError::TooLarge { cap });
    }
    Ok(bytes)
}

/// The regular file at `path` as a buffered stream of at most `cap` bytes, for a file too
/// large to hold whole and read line by line (`/proc/net/tcp` of a pod with 100k sockets is
/// 15 MB): memory stays at the buffer's 64 KiB. The stream ends at `cap` without an error; a
/// reader that must tell a cut file from a whole one looks at its last line (the kernel ends
/// every line with a newline).
pub(crate) fn stream(path: &Path, cap: u64) -> Result<BufReader<Take<File>>, FileError> {
    let file = open_regular(path)?;
    Ok(BufReader::with_capacity(64 * 1024, file.take(cap)))
}

/// Opens `path` for reading if it is a regular file, without blocking on a FIFO.
fn open_regular(path: &Path) -> Result<File, FileError> {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "directory"
        } else if kind.is_fifo() {
            "FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "device"
        } else if kind.is_socket() {
            "socket"
        } else {
            "special file"
        };
        return Err(FileError::NotRegular { what });
    }
    Ok(file)
}

/// [`read`], as UTF-8 text.
pub(crate) fn read_text(path: &Path, cap: u64) -> Result<String, FileError> {
    String::from_utf8(read(path, cap)?).map_err(|_| FileError::NotUtf8)
}

/// The certificates of a PEM bundle; at least one.
pub(crate) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, FileError> {
    let bytes = read(path, CA_CAP)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| FileError::BadCertificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(FileError::NoCertificate);
    }
    Ok(certs)
}

/// A file holding `contents` in a fresh temporary directory, for tests (dropping the directory
/// removes it).
#[cfg(test)]
pub(crate) fn temp_file(name: &str, contents: impl AsRef<[u8]>) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, contents).expect("write temp file");
    (dir, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_up_to_the_cap() {
        let (_dir, path) = temp_file("f", "12345");
        assert_eq!(read(&path, 5).unwrap(), b"12345");
        let error = read(&path, 4).unwrap_err().to_string();
        assert!(error.ends_with("larger than 4 bytes"), "{error}");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(read_text(&path, 5).unwrap_err().to_string().ends_with("not UTF-8 text"));
    }

    #[test]
    fn special_files_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let error = read(dir.path(), CONFIG_CAP).unwrap_err().to_string();
        assert!(error.contains("not a regular file (a directory)"), "{error}");
        let error = read(Path::new("/dev/zero"), CONFIG_CAP).unwrap_err().to_string();
        assert!(error.contains("not a regular file (a device)"), "{error}");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let error = read(&fifo, CONFIG_CAP).unwrap_err().to_string();
        assert!(error.contains("not a regular file (a FIFO)"), "{error}");
        let error = read(&dir.path().join("missing"), CONFIG_CAP).unwrap_err().to_string();
        assert!(error.starts_with("No such file or directory"), "{error}");
    }

    #[test]
    fn a_stream_reads_lines_up_to_the_cap_and_refuses_what_read_refuses() {
        use std::io::BufRead;
        let (dir, path) = temp_file("table", "one\ntwo\nthree\n");
        let lines: Vec<String> = stream(&path, 9).unwrap().lines().map(Result::unwrap).collect();
        assert_eq!(lines, ["one", "two", "t"], "cut at 9 bytes");
        let error = stream(dir.path(), TABLE_CAP).unwrap_err().to_string();
        assert!(error.contains("not a regular file (a directory)"), "{error}");
        let error = stream(Path::new("/dev/zero"), TABLE_CAP).unwrap_err().to_string();
        assert!(error.contains("not a regular file (a device)"), "{error}");
    }

    #[test]
    fn a_bundle_without_certificates_is_refused() {
        let (_dir, path) = temp_file("ca.pem", "not a certificate\n");
        let error = read_certificates(&path).unwrap_err().to_string();
        assert!(error.ends_with("holds no PEM certificate"), "{error}");
    }
}
