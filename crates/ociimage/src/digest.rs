//! Content digests (`sha256:<hex>`) and a reader that checks a blob against its digest as it streams.

use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use crate::error::Error;

/// A sha256 content digest, as written `sha256:<64 lowercase hex digits>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<hex>`; other algorithms and malformed hex are refused with a reason.
    pub fn parse(s: &str) -> Result<Digest, String> {
        let Some((algorithm, hex)) = s.split_once(':') else {
            return Err("missing \"algorithm:\" prefix".into());
        };
        if algorithm != "sha256" {
            return Err(format!(
                "unsupported algorithm {} (only sha256)",
                crate::error::quote(algorithm)
            ));
        }
        Digest::from_hex(hex)
    }

    /// Builds a digest from 64 hex digits (as in `blobs/sha256/<hex>`).
    pub fn from_hex(hex: &str) -> Result<Digest, String> {
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("expected 64 hex digits".into());
        }
        Ok(Digest {
            hex: hex.to_ascii_lowercase(),
        })
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(hasher: Sha256) -> Digest {
        let sum = hasher.finalize();
        let mut hex = String::with_capacity(64);
        for b in sum {
            hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            hex.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        Digest { hex }
    }

    /// The 64 hex digits without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The short form people recognise (`sha256:` and the first 12 hex digits, as docker shows
    /// image ids).
    pub fn short(&self) -> String {
        format!(
            "sha256:{}",
            self.hex.get(..DigestPrefix::MIN_LEN).unwrap_or(&self.hex)
        )
    }
}

/// A sha256 digest, or its leading hex digits, naming one manifest (or docker image id).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DigestPrefix {
    hex: String,
}

impl DigestPrefix {
    /// Fewest hex digits accepted: the length of docker's short image ids.
    pub const MIN_LEN: usize = 12;

    /// Parses `sha256:<hex>` or bare `<hex>`, from [`DigestPrefix::MIN_LEN`] to 64 hex digits,
    /// or the digest of a reference (`name@sha256:<hex>`: what follows the last `@`).
    pub fn parse(s: &str) -> Result<DigestPrefix, Error> {
        let bad = |message: String| Error::BadDigestPrefix {
            input: s.to_string(),
            message,
        };
        let digest = s.rsplit_once('@').map_or(s, |(_, digest)| digest);
        let hex = match digest.split_once(':') {
            Some(("sha256", hex)) => hex,
            Some((algorithm, _)) => {
                return Err(bad(format!(
                    "unsupported algorithm {} (only sha256)",
                    crate::error::quote(algorithm)
                )))
            }
            None => digest,
        };
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("expected hex digits".into()));
        }
        if hex.len() < DigestPrefix::MIN_LEN || hex.len() > 64 {
            return Err(bad(format!(
                "expected {} to 64 hex digits, got {}",
                DigestPrefix::MIN_LEN,
                hex.len()
            )));
        }
        Ok(DigestPrefix {
            hex: hex.to_ascii_lowercase(),
        })
    }

    /// Whether `digest` starts with these hex digits.
    pub fn matches(&self, digest: &Digest) -> bool {
        digest.hex.starts_with(&self.hex)
    }
}

impl fmt::Display for DigestPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl std::str::FromStr for DigestPrefix {
    type Err = Error;

    fn from_str(s: &str) -> Result<DigestPrefix, Error> {
        DigestPrefix::parse(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// Streams a blob and fails the read that reaches its end when the bytes do not match the
/// expected digest (or size): the caller never sees a clean EOF on corrupt data.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    expected: Digest,
    expected_size: Option<u64>,
    source_path: PathBuf,
    member: String,
    checked: bool,
}

impl<R> std::fmt::Debug for VerifyingReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingReader")
            .field("member", &self.member)
            .field("expected", &self.expected)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl<R: Read> VerifyingReader<R> {
    pub(crate) fn new(
        inner: R,
        expected: Digest,
        expected_size: Option<u64>,
        source_path: PathBuf,
        member: String,
    ) -> Self {
        VerifyingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
            expected,
            expected_size,
            source_path,
            member,
            checked: false,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    fn check(&mut self) -> io::Result<()> {
        if self.checked {
            return Ok(());
        }
        self.checked = true;
        if let Some(expected) = self.expected_size {
            if expected != self.bytes {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    Error::SizeMismatch {
                        source_path: self.source_path.clone(),
                        member: self.member.clone(),
                        expected,
                        actual: self.bytes,
                    },
                ));
            }
        }
        let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if actual != self.expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                Error::DigestMismatch {
                    source_path: self.source_path.clone(),
                    member: self.member.clone(),
                    expected: self.expected.to_string(),
                    actual: actual.to_string(),
                    bytes: self.bytes,
                },
            ));
        }
        Ok(())
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.check()?;
            return Ok(0);
        }
        let chunk = buf.get(..n).unwrap_or(buf);
        self.hasher.update(chunk);
        self.bytes += n as u64;
        if let Some(expected) = self.expected_size {
            if self.bytes > expected {
                self.checked = true;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    Error::SizeMismatch {
                        source_path: self.source_path.clone(),
                        member: self.member.clone(),
                        expected,
                        actual: self.bytes,
                    },
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::parse(&d.to_string()), Ok(d));
        assert!(Digest::parse("sha512:00").is_err());
        assert!(Digest::parse("sha256:xyz").is_err());
        assert!(Digest::parse("nocolon").is_err());
    }

    #[test]
    fn prefixes_parse_and_match() {
        let d = Digest::of(b"abc");
        let reference = format!("mcr.microsoft.com/windows/servercore:ltsc2022@{d}");
        for text in [
            "sha256:ba7816bf8f01",
            "BA7816BF8F01CFEA",
            &d.to_string(),
            d.hex(),
            &reference,
            "localhost:5000/a@b@sha256:ba7816bf8f01",
        ] {
            let p = DigestPrefix::parse(text).expect(text);
            assert!(p.matches(&d), "{text}");
        }
        assert!(!DigestPrefix::parse("ba7816bf8f02")
            .expect("prefix")
            .matches(&d));
        for bad in [
            "ba7816bf8f0",
            "sha512:ba7816bf8f01",
            "ba7816bf8f0g",
            "",
            "demo@",
            "demo@sha256:ba7816bf8f01@latest",
        ] {
            assert!(
                matches!(DigestPrefix::parse(bad), Err(Error::BadDigestPrefix { .. })),
                "{bad}"
            );
        }
        let too_long = format!("{}0", d.hex());
        assert!(DigestPrefix::parse(&too_long).is_err());
        assert_eq!(d.short(), "sha256:ba7816bf8f01");
    }

    #[test]
    fn verifying_reader_detects_mismatch() {
        let good = Digest::of(b"hello");
        let mut r =
            VerifyingReader::new(&b"hello"[..], good.clone(), Some(5), "x".into(), "m".into());
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("good blob reads");
        assert_eq!(out, b"hello");

        let mut r = VerifyingReader::new(&b"hellO"[..], good.clone(), None, "x".into(), "m".into());
        let err = r.read_to_end(&mut Vec::new()).expect_err("bad blob fails");
        assert!(err.to_string().contains("digest mismatch"), "{err}");

        let mut r = VerifyingReader::new(&b"hello!"[..], good, Some(5), "x".into(), "m".into());
        let err = r.read_to_end(&mut Vec::new()).expect_err("long blob fails");
        assert!(err.to_string().contains("size mismatch"), "{err}");
    }
}
