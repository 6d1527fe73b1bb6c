//! HTTP_GET and SSL_GET over hyper (and rustls): each URL must answer with an accepted status
//! and, when asked, a body whose MD5 is the digest (keepalived's `genhash`) and that matches
//! (or not) the regex. Headers are capped by hyper's buffer limit and the body read stops at
//! [`MAX_BODY`]: a server with an endless body or huge headers costs a bounded amount.

use std::sync::Arc;

use http_body_util::BodyExt as _;
use hyper::{Request, StatusCode, Version, body::Incoming, header};
use hyper_util::rt::TokioIo;
use md5::{Digest as _, Md5};
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject as _},
};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{ProbeContext, connect, io_detail};
use crate::{
    health::state::Outcome,
    model::{HttpProbe, HttpVersion, Target, TlsProbe, UrlCheck},
};

/// The most of a body a check reads (digest and regex see at most this much).
pub const MAX_BODY: usize = 1 << 20;

/// The most of a response head hyper buffers.
const MAX_HEAD: usize = 64 * 1024;

/// keepalived's user agent, so servers that single out health checks keep doing so.
const USER_AGENT: &str = "KeepAliveClient";

pub(super) async fn check(target: &Target, http: &HttpProbe, ctx: &ProbeContext) -> Outcome {
    for url in &http.urls {
        let outcome = one_url(target, http, url, ctx).await;
        if !outcome.ok {
            return outcome;
        }
    }
    Outcome::up(format!("{} URL(s) passed", http.urls.len()))
}

async fn one_url(target: &Target, http: &HttpProbe, url: &UrlCheck, ctx: &ProbeContext) -> Outcome {
    let stream = match connect(target).await {
        Ok(s) => s,
        Err(e) => return Outcome::down(io_detail("connect", &e)),
    };
    let host = url
        .virtualhost
        .clone()
        .or_else(|| http.virtualhost.clone())
        .unwrap_or_else(|| host_header(target));
    let Some(tls) = &http.tls else {
        return exchange(TokioIo::new(stream), http, url, &host)
            .await
            .unwrap_or_else(Outcome::down);
    };
    let config = match ctx.tls_config(tls) {
        Ok(c) => c,
        Err(e) => return Outcome::down(format!("TLS configuration: {e}")),
    };
    let name = match &tls.sni {
        Some(sni) => match ServerName::try_from(sni.clone()) {
            Ok(n) => n,
            Err(e) => return Outcome::down(format!("SNI {sni:?}: {e}")),
        },
        None => ServerName::IpAddress(target.addr.ip().into()),
    };
    let connector = tokio_rustls::TlsConnector::from(config);
    let tls_stream = match connector.connect(name, stream).await {
        Ok(s) => s,
        Err(e) => return Outcome::down(format!("TLS handshake: {e}")),
    };
    exchange(TokioIo::new(tls_stream), http, url, &host)
        .await
        .unwrap_or_else(Outcome::down)
}

/// `Host:` for a target: its address, with the port unless it is 80/443.
fn host_header(target: &Target) -> String {
    let ip = match target.addr.ip() {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    match target.addr.port() {
        80 | 443 => ip,
        port => format!("{ip}:{port}"),
    }
}

/// Sends the request on `io` and judges the response.
async fn exchange<T>(
    io: TokioIo<T>,
    http: &HttpProbe,
    url: &UrlCheck,
    host: &str,
) -> Result<Outcome, String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD)
        .handshake::<_, http_body_util::Empty<bytes::Bytes>>(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let (version, close) = match http.version {
        HttpVersion::Http10 => (Version::HTTP_10, false),
        HttpVersion::Http10Close => (Version::HTTP_10, true),
        HttpVersion::Http11 => (Version::HTTP_11, true),
    };
    let mut request = Request::get(url.path.as_str())
        .version(version)
        .header(header::HOST, host)
        .header(header::USER_AGENT, USER_AGENT);
    if close {
        request = request.header(header::CONNECTION, "close");
    }
    let request = request
        .body(http_body_util::Empty::new())
        .map_err(|e| format!("request for {:?}: {e}", url.path))?;
    // The connection future drives the I/O until the body is read: it runs beside the
    // exchange, and whatever it ends with shows up in the exchange's own result.
    let driver = async {
        drop(conn.await);
        std::future::pending::<()>().await;
    };
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        judge(url, response).await
    };
    tokio::select! {
        result = exchange => result,
        () = driver => unreachable!("pending never completes"),
    }
}

async fn judge(url: &UrlCheck, response: hyper::Response<Incoming>) -> Result<Outcome, String> {
    let status = response.status();
    if !url.status.iter().any(|r| r.contains(&status.as_u16())) {
        return Ok(Outcome::down(format!(
            "{}: status {}",
            url.path,
            status_text(status)
        )));
    }
    if url.digest.is_none() && url.regex.is_none() {
        return Ok(Outcome::up(format!("status {}", status.as_u16())));
    }
    let mut body = response.into_body();
    let mut md5 = Md5::new();
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("{}: reading the body: {e}", url.path))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total > MAX_BODY {
            return Ok(Outcome::down(format!(
                "{}: body longer than {MAX_BODY} bytes",
                url.path
            )));
        }
        md5.update(&data);
        if url.regex.is_some() {
            kept.extend_from_slice(&data);
        }
    }
    if let Some(want) = url.digest {
        let got: [u8; 16] = md5.finalize().into();
        if got != want {
            return Ok(Outcome::down(format!(
                "{}: digest {} is not {}",
                url.path,
                hex(&got),
                hex(&want)
            )));
        }
    }
    if let Some(re) = &url.regex {
        let matched = regex_matches(re, &kept)?;
        if matched == re.no_match {
            return Ok(Outcome::down(format!(
                "{}: body {} /{}/",
                url.path,
                if matched { "matches" } else { "does not match" },
                re.pattern
            )));
        }
    }
    Ok(Outcome::up(format!(
        "status {}, {total} bytes",
        status.as_u16()
    )))
}

fn status_text(status: StatusCode) -> String {
    status.to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `body` matches `re` within its offsets.
fn regex_matches(re: &crate::model::BodyRegex, body: &[u8]) -> Result<bool, String> {
    let compiled = regex::bytes::RegexBuilder::new(&re.pattern)
        .case_insensitive(re.caseless)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("regex: {e}"))?;
    let start = re.min_offset.min(body.len());
    let found = compiled.find_at(body, start);
    Ok(found.is_some_and(|m| re.max_offset.is_none_or(|max| m.start() < max)))
}

/// A rustls client configuration for `tls`: keepalived checks accept any certificate unless a
/// CA is given; with one, the chain must verify (the name is not checked: real servers are
/// addressed by IP).
pub(super) fn tls_config(tls: &TlsProbe) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn ServerCertVerifier> = match &tls.ca {
        None => Arc::new(AnyCertificate(provider)),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("reading {}: {e}", ca.display()))?
            {
                let cert = cert.map_err(|e| format!("reading {}: {e}", ca.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("CA in {}: {e}", ca.display()))?;
            }
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| e.to_string())?;
            Arc::new(ChainOnly(inner))
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&tls.certificate, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("reading {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("reading {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("SSL certificate and key go together".to_owned()),
    };
    config.enable_sni = tls.sni.is_some();
    Ok(config)
}

/// Accepts any certificate (but still checks the handshake signatures): keepalived's SSL_GET
/// without a CA.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Verifies the chain against the configured CA, but not the name.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BodyRegex;

    fn re(pattern: &str) -> BodyRegex {
        BodyRegex {
            pattern: pattern.into(),
            no_match: false,
            caseless: false,
            min_offset: 0,
            max_offset: None,
        }
    }

    #[test]
    fn regex_offsets_bound_where_a_match_may_start() {
        let body = b"status: OK ok";
        assert!(regex_matches(&re("OK"), body).unwrap());
        let mut r = re("ok");
        r.caseless = true;
        r.min_offset = 9;
        assert!(regex_matches(&r, body).unwrap(), "the second ok");
        r.max_offset = Some(11);
        assert!(
            !regex_matches(&r, body).unwrap(),
            "starts at 11, not before it"
        );
    }

    #[test]
    fn host_header_omits_default_ports_and_brackets_ipv6() {
        let t = |a: &str| Target {
            addr: a.parse().unwrap(),
            bind_addr: None,
            bind_port: None,
            bind_if: None,
            fwmark: None,
        };
        assert_eq!(host_header(&t("192.0.2.2:80")), "192.0.2.2");
        assert_eq!(host_header(&t("192.0.2.2:8080")), "192.0.2.2:8080");
        assert_eq!(host_header(&t("[2001:db8::2]:443")), "[2001:db8::2]");
    }
}
