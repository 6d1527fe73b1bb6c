//! SMTP_CHECK: the server greets with 220, answers HELO with 250, and is left with QUIT.
//! The reply parser is pure and bounded (a fuzz target drives it): a server that sends an
//! endless reply or endless lines fails the check instead of growing memory.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{close_with_reset, connect, io_detail};
use crate::{health::state::Outcome, model::Target};

/// The longest reply lbd reads (RFC 5321 limits a reply line to 512 octets; a multi-line
/// greeting of a few lines fits easily).
pub const MAX_REPLY: usize = 8 * 1024;

/// A complete SMTP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpReply {
    /// The three-digit code.
    pub code: u16,
    /// Bytes of the buffer the reply used.
    pub len: usize,
}

/// Why a reply could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SmtpError {
    /// A line that does not start with a code and a separator.
    #[error("malformed reply line")]
    Malformed,
    /// The lines of one reply disagree on the code.
    #[error("reply lines with different codes")]
    MixedCodes,
    /// Longer than [`MAX_REPLY`].
    #[error("reply longer than {MAX_REPLY} bytes")]
    TooLong,
}

/// Reads one reply from the start of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse_reply(buf: &[u8]) -> Result<Option<SmtpReply>, SmtpError> {
    let mut code = None;
    let mut at = 0;
    while let Some(end) = buf[at..].iter().position(|&b| b == b'\n') {
        let line = &buf[at..at + end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (digits, rest) = line.split_at_checked(3).ok_or(SmtpError::Malformed)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(SmtpError::Malformed);
        }
        let this = digits
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        if code.is_some_and(|c| c != this) {
            return Err(SmtpError::MixedCodes);
        }
        code = Some(this);
        at += end + 1;
        match rest.first() {
            Some(b'-') => continue,
            Some(b' ') | None => {
                return Ok(Some(SmtpReply {
                    code: this,
                    len: at,
                }));
            }
            Some(_) => return Err(SmtpError::Malformed),
        }
    }
    if buf.len() > MAX_REPLY {
        return Err(SmtpError::TooLong);
    }
    Ok(None)
}

/// Reads replies until one is complete; returns its code.
async fn reply(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Result<u16, String> {
    loop {
        match parse_reply(buf) {
            Ok(Some(r)) => {
                buf.drain(..r.len);
                return Ok(r.code);
            }
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        let mut chunk = [0u8; 1024];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| io_detail("read", &e))?;
        if n == 0 {
            return Err("connection closed mid-reply".to_owned());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub(super) async fn check(target: &Target, helo_name: Option<&str>) -> Outcome {
    let mut stream = match connect(target).await {
        Ok(s) => s,
        Err(e) => return Outcome::down(io_detail("connect", &e)),
    };
    let result = async {
        let mut buf = Vec::new();
        match reply(&mut stream, &mut buf).await? {
            220 => {}
            code => return Err(format!("greeting {code}, not 220")),
        }
        let name = match helo_name {
            Some(n) => n.to_owned(),
            None => nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".to_owned()),
        };
        stream
            .write_all(format!("HELO {name}\r\n").as_bytes())
            .await
            .map_err(|e| io_detail("write", &e))?;
        match reply(&mut stream, &mut buf).await? {
            250 => {}
            code => return Err(format!("HELO answered {code}, not 250")),
        }
        // Polite, but the verdict is in: the answer to QUIT is not waited for.
        drop(stream.write_all(b"QUIT\r\n").await);
        Ok(())
    }
    .await;
    close_with_reset(stream);
    match result {
        Ok(()) => Outcome::up("220, 250"),
        Err(e) => Outcome::down(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_single_and_multi_line() {
        assert_eq!(
            parse_reply(b"220 mx ESMTP\r\n"),
            Ok(Some(SmtpReply { code: 220, len: 14 }))
        );
        assert_eq!(parse_reply(b"220-mx\r\n220-more\r\n"), Ok(None));
        assert_eq!(
            parse_reply(b"250-mx\r\n250 OK\r\nextra"),
            Ok(Some(SmtpReply { code: 250, len: 16 }))
        );
        assert_eq!(
            parse_reply(b"250\n"),
            Ok(Some(SmtpReply { code: 250, len: 4 }))
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_wait() {
        assert_eq!(parse_reply(b"HTTP/1.1 400\r\n"), Err(SmtpError::Malformed));
        assert_eq!(parse_reply(b"2x0 hi\r\n"), Err(SmtpError::Malformed));
        assert_eq!(
            parse_reply(b"220-a\r\n250 b\r\n"),
            Err(SmtpError::MixedCodes)
        );
        assert_eq!(parse_reply(b"22\n"), Err(SmtpError::Malformed));
        let endless = vec![b'2'; MAX_REPLY + 1];
        assert_eq!(parse_reply(&endless), Err(SmtpError::TooLong));
    }
}
