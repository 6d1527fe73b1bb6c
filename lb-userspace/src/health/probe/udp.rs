//! UDP_CHECK: send the payload; an ICMP port unreachable (a refused `recv` on the connected
//! socket) is down. With `require_reply` a reply of the right length matching the pattern
//! (`X` nibbles match anything) must come back in time; without it, silence is up.

use std::time::Duration;

use super::io_detail;
use crate::{
    health::state::Outcome,
    model::{Target, UdpProbe},
};

/// Whether `reply` passes `udp`'s length limits and pattern.
pub(super) fn reply_ok(udp: &UdpProbe, reply: &[u8]) -> Result<(), String> {
    if reply.len() < udp.min_reply_length || reply.len() > udp.max_reply_length {
        return Err(format!(
            "reply of {} bytes, not {}-{}",
            reply.len(),
            udp.min_reply_length,
            udp.max_reply_length
        ));
    }
    let Some(pattern) = &udp.require_reply else {
        return Ok(());
    };
    if reply.len() < pattern.len() {
        return Err("reply shorter than require_reply".to_owned());
    }
    let matches = pattern
        .iter()
        .zip(reply)
        .all(|((hi, lo), b)| hi.is_none_or(|h| h == b >> 4) && lo.is_none_or(|l| l == b & 0x0f));
    if matches {
        Ok(())
    } else {
        Err("reply does not match require_reply".to_owned())
    }
}

pub(super) async fn check(target: &Target, udp: &UdpProbe, timeout: Duration) -> Outcome {
    let exchange = async {
        let socket = super::udp_sent(target, &udp.payload).await?;
        let mut buf = vec![0u8; udp.max_reply_length.max(1) + 1];
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|e| io_detail("receive", &e))?;
        reply_ok(udp, &buf[..n])
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(())) => Outcome::up("reply"),
        Ok(Err(e)) => Outcome::down(e),
        Err(_) if udp.require_reply.is_some() => {
            Outcome::down(format!("no reply within {timeout:?}"))
        }
        Err(_) => Outcome::up("no ICMP error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_matched_nibble_by_nibble() {
        let udp = UdpProbe {
            payload: vec![0],
            require_reply: Some(vec![(Some(0xa), None), (None, Some(2))]),
            min_reply_length: 2,
            max_reply_length: 4,
        };
        assert!(reply_ok(&udp, &[0xa7, 0x32]).is_ok());
        assert!(reply_ok(&udp, &[0xb7, 0x32]).is_err());
        assert!(reply_ok(&udp, &[0xa7]).is_err(), "too short");
        assert!(reply_ok(&udp, &[0xa7, 0x32, 0, 0, 0]).is_err(), "too long");
    }
}
