//! DNS_CHECK: a query over UDP whose answer has no error and holds a record of the type asked
//! (keepalived's rule). Messages are built and read by hickory-proto.

use std::time::Duration;

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RecordType},
};

use super::io_detail;
use crate::{health::state::Outcome, model::Target};

fn record_type(name: &str) -> RecordType {
    match name {
        "A" => RecordType::A,
        "NS" => RecordType::NS,
        "CNAME" => RecordType::CNAME,
        "MX" => RecordType::MX,
        "TXT" => RecordType::TXT,
        "AAAA" => RecordType::AAAA,
        _ => RecordType::SOA,
    }
}

/// The query for `name` of type `kind` with `id`.
pub(super) fn query(id: u16, kind: &str, name: &str) -> Result<Vec<u8>, String> {
    let name = Name::from_ascii(name).map_err(|e| format!("name {name:?}: {e}"))?;
    let mut msg = Message::new();
    msg.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name, record_type(kind)));
    msg.to_vec().map_err(|e| e.to_string())
}

/// Judges an answer to query `id` for type `kind`: `None` if it is not the answer (another
/// id, not a response), which the caller ignores.
pub(super) fn judge(bytes: &[u8], id: u16, kind: &str) -> Option<Outcome> {
    let Ok(msg) = Message::from_vec(bytes) else {
        return Some(Outcome::down("undecodable DNS answer"));
    };
    if msg.id() != id || msg.message_type() != MessageType::Response {
        return None;
    }
    let wanted = record_type(kind);
    Some(if msg.response_code() != ResponseCode::NoError {
        Outcome::down(format!("rcode {}", msg.response_code()))
    } else if msg.answers().iter().any(|r| r.record_type() == wanted) {
        Outcome::up(format!("{} answer(s)", msg.answers().len()))
    } else {
        Outcome::down(format!("no {kind} record in the answer"))
    })
}

pub(super) async fn check(target: &Target, kind: &str, name: &str, timeout: Duration) -> Outcome {
    let id = rand_id();
    let request = match query(id, kind, name) {
        Ok(q) => q,
        Err(e) => return Outcome::down(e),
    };
    let exchange = async {
        let socket = super::udp_sent(target, &request).await?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = socket
                .recv(&mut buf)
                .await
                .map_err(|e| io_detail("receive", &e))?;
            if let Some(outcome) = judge(&buf[..n], id, kind) {
                return Ok::<_, String>(outcome);
            }
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => Outcome::down(e),
        Err(_) => Outcome::down(format!("no answer within {timeout:?}")),
    }
}

/// A query id nobody can predict from the last one: a counter through the standard library's
/// randomly keyed hasher.
fn rand_id() -> u16 {
    use std::hash::BuildHasher as _;
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (KEYS.get_or_init(Default::default).hash_one(n) >> 48) as u16
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::{RData, Record, rdata::A};

    use super::*;

    fn answer(id: u16, rcode: ResponseCode, records: Vec<Record>) -> Vec<u8> {
        let mut msg = Message::new();
        msg.set_id(id)
            .set_message_type(MessageType::Response)
            .set_response_code(rcode);
        for r in records {
            msg.add_answer(r);
        }
        msg.to_vec().unwrap()
    }

    #[test]
    fn answers_are_judged_like_keepalived() {
        let name = Name::from_ascii("www.example.org.").unwrap();
        let a = Record::from_rdata(name, 60, RData::A(A::new(192, 0, 2, 1)));
        assert!(
            judge(&answer(7, ResponseCode::NoError, vec![a.clone()]), 7, "A")
                .unwrap()
                .ok
        );
        assert!(
            !judge(&answer(7, ResponseCode::NoError, vec![a.clone()]), 7, "MX")
                .unwrap()
                .ok
        );
        assert!(
            !judge(&answer(7, ResponseCode::NXDomain, vec![]), 7, "A")
                .unwrap()
                .ok
        );
        assert!(
            judge(&answer(8, ResponseCode::NoError, vec![a]), 7, "A").is_none(),
            "another id"
        );
        assert!(!judge(b"\x00\x07garbage", 7, "A").unwrap().ok);
        let q = query(7, "SOA", ".").unwrap();
        assert_eq!(&q[..2], &[0, 7]);
    }
}
