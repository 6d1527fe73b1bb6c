//! Prometheus / OpenMetrics exposition of a [`Status`] snapshot: pure.
//!
//! Every scrape encodes what `lbctl status` shows, with prometheus-client's encoder: VRRP state,
//! transitions, adverts and errors per instance; per real server its health, weight, probes,
//! failures and a probe-latency histogram per checker; XDP packets and bytes per VIP, per real
//! server and per outcome; IPVS counters per service and destination; the reconciler's
//! operations and errors; build info. Names are `lbd_*`, counters end in `_total` (the encoder
//! adds it), times are in seconds, as Prometheus' naming conventions ask.

use std::fmt::Write as _;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _, MetricEncoder, NoLabelSet},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{control::Status, health::LATENCY_BUCKETS_US};

/// The OpenMetrics text format's content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus' text format's content type (what a scraper gets unless it asks for OpenMetrics).
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The OpenMetrics text of `status`.
pub fn encode(status: &Status) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(status.clone())));
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        // Writing into a String cannot fail; say so rather than serve half an exposition.
        text.clear();
        let _ = writeln!(text, "# encoding failed: {e}");
    }
    text
}

/// Prometheus' text format (0.0.4) of an OpenMetrics exposition from [`encode`]: a counter's
/// `# HELP` and `# TYPE` name its `_total` series (OpenMetrics names the family without it),
/// and `# EOF` goes. prometheus-client writes only OpenMetrics; promtool and older scrapers
/// read this one.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            // Held until its TYPE line says whether the name needs `_total`.
            if let Some(h) = help.replace(line) {
                out.push_str(h);
                out.push('\n');
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            let total = kind == "counter";
            if let Some(h) = help.take() {
                match (
                    total,
                    h.strip_prefix("# HELP ").and_then(|r| r.split_once(' ')),
                ) {
                    (true, Some((n, text))) => {
                        let _ = writeln!(out, "# HELP {n}_total {text}");
                    }
                    _ => {
                        out.push_str(h);
                        out.push('\n');
                    }
                }
            }
            if total {
                let _ = writeln!(out, "# TYPE {name}_total counter");
            } else {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        if let Some(h) = help.take() {
            out.push_str(h);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// One scrape's data.
#[derive(Debug)]
struct Snapshot(Status);

/// Labels as (name, value) pairs.
type Labels = Vec<(&'static str, String)>;

/// Writes one metric family: `samples` of `kind` under `name`.
fn family<F: Fn(MetricEncoder<'_>) -> std::fmt::Result>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: &[(Labels, F)],
) -> std::fmt::Result {
    if samples.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, sample) in samples {
        sample(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(v: u64) -> impl Fn(MetricEncoder<'_>) -> std::fmt::Result {
    move |e| ConstCounter::new(v).encode(e)
}

fn gauge(v: i64) -> impl Fn(MetricEncoder<'_>) -> std::fmt::Result {
    move |e| ConstGauge::new(v).encode(e)
}

/// Counter families from `(labels, value)` rows.
fn counters(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: Vec<(Labels, u64)>,
) -> std::fmt::Result {
    let samples: Vec<_> = rows.into_iter().map(|(l, v)| (l, counter(v))).collect();
    family(encoder, name, help, MetricType::Counter, &samples)
}

/// Gauge families from `(labels, value)` rows.
fn gauges(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: Vec<(Labels, i64)>,
) -> std::fmt::Result {
    let samples: Vec<_> = rows.into_iter().map(|(l, v)| (l, gauge(v))).collect();
    family(encoder, name, help, MetricType::Gauge, &samples)
}

fn i(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let s = &self.0;
        let e = &mut encoder;
        // A gauge of 1, the convention both Prometheus' text format and OpenMetrics read
        // (OpenMetrics' own info type is unknown to Prometheus' text parser).
        gauges(
            e,
            "lbd_build_info",
            "lbd's version.",
            vec![(vec![("version", s.version.clone())], 1)],
        )?;
        gauges(
            e,
            "lbd_uptime_seconds",
            "Seconds since lbd started.",
            vec![(Vec::new(), i(s.uptime_secs))],
        )?;

        // VRRP.
        let instance = |v: &crate::control::VrrpStatus| -> Labels {
            vec![
                ("instance", v.name.clone()),
                ("interface", v.interface.clone()),
                ("vrid", v.vrid.to_string()),
            ]
        };
        let mut states = Vec::new();
        for v in &s.vrrp {
            for state in ["MASTER", "BACKUP", "FAULT", "INIT"] {
                let mut labels = instance(v);
                labels.push(("state", state.to_owned()));
                states.push((labels, i64::from(v.state == state)));
            }
        }
        gauges(
            e,
            "lbd_vrrp_state",
            "1 for the state each VRRP instance is in.",
            states,
        )?;
        let per_instance = |f: fn(&crate::control::VrrpStatus) -> u64| {
            s.vrrp
                .iter()
                .map(|v| (instance(v), f(v)))
                .collect::<Vec<_>>()
        };
        gauges(
            e,
            "lbd_vrrp_priority",
            "Configured priority of each VRRP instance.",
            s.vrrp
                .iter()
                .map(|v| (instance(v), i64::from(v.priority)))
                .collect(),
        )?;
        counters(
            e,
            "lbd_vrrp_became_master",
            "Transitions to MASTER.",
            per_instance(|v| v.became_active),
        )?;
        counters(
            e,
            "lbd_vrrp_released_master",
            "Transitions out of MASTER.",
            per_instance(|v| v.counters.released_master),
        )?;
        counters(
            e,
            "lbd_vrrp_adverts_received",
            "Adverts received and processed.",
            per_instance(|v| v.adverts_received),
        )?;
        counters(
            e,
            "lbd_vrrp_adverts_sent",
            "Adverts sent.",
            per_instance(|v| v.adverts_sent),
        )?;
        counters(
            e,
            "lbd_vrrp_priority_zero_received",
            "Priority-0 adverts received.",
            per_instance(|v| v.priority_zero_received),
        )?;
        counters(
            e,
            "lbd_vrrp_priority_zero_sent",
            "Priority-0 adverts sent.",
            per_instance(|v| v.priority_zero_sent),
        )?;
        counters(
            e,
            "lbd_vrrp_kernel_takeovers",
            "Takeovers decided by the kernel's master-down timer.",
            per_instance(|v| v.kernel_takeovers),
        )?;
        counters(
            e,
            "lbd_vrrp_kernel_adverts",
            "Adverts the kernel counted on the wire for the instance's router.",
            s.vrrp
                .iter()
                .filter_map(|v| Some((instance(v), v.kernel.as_ref()?.adverts)))
                .collect(),
        )?;
        let mut errors = Vec::new();
        for v in &s.vrrp {
            let c = &v.counters;
            for (reason, n) in [
                ("ttl", c.ttl_errors),
                ("checksum", c.checksum_errors),
                ("length", c.length_errors),
                ("version", c.version_errors),
                ("invalid_type", c.invalid_type_errors),
                ("vrid", c.vrid_errors),
                ("advert_interval", c.advert_interval_errors),
                ("address_list", c.address_list_errors),
                ("invalid_auth_type", c.invalid_auth_type),
                ("auth_type_mismatch", c.auth_type_mismatch),
                ("auth_failure", c.auth_failures),
                ("ip_header", c.ip_header_errors),
            ] {
                let mut labels = instance(v);
                labels.push(("reason", reason.to_owned()));
                errors.push((labels, n));
            }
        }
        counters(
            e,
            "lbd_vrrp_advert_errors",
            "Adverts dropped by a check, by reason.",
            errors,
        )?;

        // Virtual and real servers.
        let vs_labels = |vs: &crate::control::VirtualServerStatus| -> Labels {
            vec![("virtual_server", vs.name.clone())]
        };
        gauges(
            e,
            "lbd_virtual_server_quorum_up",
            "1 while the virtual server has quorum.",
            s.virtual_servers
                .iter()
                .filter_map(|vs| Some((vs_labels(vs), i64::from(vs.quorum_up?))))
                .collect(),
        )?;
        let reals: Vec<(Labels, &crate::control::RealServerStatus)> = s
            .virtual_servers
            .iter()
            .flat_map(|vs| {
                vs.real_servers.iter().map(move |r| {
                    let mut labels = vs_labels(vs);
                    labels.push(("real_server", r.address.clone()));
                    (labels, r)
                })
            })
            .collect();
        gauges(
            e,
            "lbd_real_server_up",
            "1 while all the real server's checkers pass.",
            reals
                .iter()
                .filter_map(|(l, r)| Some((l.clone(), i64::from(r.alive?))))
                .collect(),
        )?;
        gauges(
            e,
            "lbd_real_server_weight",
            "The real server's weight now (dynamic checkers change it).",
            reals
                .iter()
                .map(|(l, r)| (l.clone(), i64::from(r.weight)))
                .collect(),
        )?;
        let checks: Vec<(Labels, &crate::health::CheckerView)> = reals
            .iter()
            .flat_map(|(l, r)| {
                r.checkers.iter().map(move |c| {
                    let mut labels = l.clone();
                    labels.push(("checker", c.kind.clone()));
                    labels.push(("target", c.target.clone()));
                    (labels, c)
                })
            })
            .collect();
        gauges(
            e,
            "lbd_check_up",
            "1 while the checker passes.",
            checks
                .iter()
                .map(|(l, c)| (l.clone(), i64::from(c.up)))
                .collect(),
        )?;
        counters(
            e,
            "lbd_check_probes",
            "Probes run.",
            checks.iter().map(|(l, c)| (l.clone(), c.probes)).collect(),
        )?;
        counters(
            e,
            "lbd_check_failures",
            "Probes that failed.",
            checks
                .iter()
                .map(|(l, c)| (l.clone(), c.failures))
                .collect(),
        )?;
        let histograms: Vec<_> = checks
            .iter()
            .filter(|(_, c)| c.latency_buckets.len() == LATENCY_BUCKETS_US.len() + 1)
            .map(|(l, c)| {
                let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_US
                    .iter()
                    .map(|&us| us as f64 / 1e6)
                    .chain(std::iter::once(f64::MAX))
                    .zip(c.latency_buckets.iter().copied())
                    .collect();
                let count = c.latency_buckets.iter().sum::<u64>();
                let sum = c.latency_sum_us as f64 / 1e6;
                (l.clone(), move |mut m: MetricEncoder<'_>| {
                    m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
                })
            })
            .collect();
        family(
            e,
            "lbd_check_latency_seconds",
            "How long the checker's probes took.",
            MetricType::Histogram,
            &histograms,
        )?;

        // XDP.
        if let Some(x) = &s.dataplane.xdp {
            counters(
                e,
                "lbd_xdp_packets",
                "Packets the XDP program handled, by outcome (seen: all of them).",
                x.counters
                    .iter()
                    .map(|(name, n)| (vec![("outcome", name.clone())], *n))
                    .collect(),
            )?;
        }
        let vips = |f: fn(&crate::control::VirtualServerStatus) -> Option<u64>| {
            s.virtual_servers
                .iter()
                .filter_map(|vs| Some((vs_labels(vs), f(vs)?)))
                .collect::<Vec<_>>()
        };
        counters(
            e,
            "lbd_xdp_vip_packets",
            "Packets to the virtual server's VIPs in XDP.",
            vips(|vs| vs.xdp_packets),
        )?;
        counters(
            e,
            "lbd_xdp_vip_bytes",
            "Their bytes.",
            vips(|vs| vs.xdp_bytes),
        )?;
        // XDP counts per real-server address, across virtual servers: once each.
        let mut seen = std::collections::BTreeSet::new();
        let per_real: Vec<(Labels, (u64, u64))> = reals
            .iter()
            .filter_map(|(_, r)| {
                let ip = r
                    .address
                    .rsplit_once(':')
                    .map_or(r.address.as_str(), |(ip, _)| ip);
                let ip = ip.trim_start_matches('[').trim_end_matches(']').to_owned();
                let counts = (r.xdp_packets?, r.xdp_bytes?);
                seen.insert(ip.clone())
                    .then(|| (vec![("real_server", ip)], counts))
            })
            .collect();
        counters(
            e,
            "lbd_xdp_real_server_packets",
            "Packets XDP forwarded to the real server.",
            per_real.iter().map(|(l, c)| (l.clone(), c.0)).collect(),
        )?;
        counters(
            e,
            "lbd_xdp_real_server_bytes",
            "Their bytes.",
            per_real.iter().map(|(l, c)| (l.clone(), c.1)).collect(),
        )?;

        // IPVS.
        let services: Vec<(Labels, &crate::control::IpvsServiceStatus)> = s
            .ipvs_services
            .iter()
            .map(|svc| (vec![("service", svc.service.clone())], svc))
            .collect();
        counters(
            e,
            "lbd_ipvs_service_connections",
            "Connections IPVS scheduled for the service.",
            services
                .iter()
                .map(|(l, v)| (l.clone(), v.stats.conns))
                .collect(),
        )?;
        counters(
            e,
            "lbd_ipvs_service_packets_in",
            "Packets in.",
            services
                .iter()
                .map(|(l, v)| (l.clone(), v.stats.inpkts))
                .collect(),
        )?;
        counters(
            e,
            "lbd_ipvs_service_packets_out",
            "Packets out (NAT).",
            services
                .iter()
                .map(|(l, v)| (l.clone(), v.stats.outpkts))
                .collect(),
        )?;
        counters(
            e,
            "lbd_ipvs_service_bytes_in",
            "Bytes in.",
            services
                .iter()
                .map(|(l, v)| (l.clone(), v.stats.inbytes))
                .collect(),
        )?;
        counters(
            e,
            "lbd_ipvs_service_bytes_out",
            "Bytes out (NAT).",
            services
                .iter()
                .map(|(l, v)| (l.clone(), v.stats.outbytes))
                .collect(),
        )?;
        let dests: Vec<(Labels, &crate::control::IpvsDestStatus)> = services
            .iter()
            .flat_map(|(l, svc)| {
                svc.real_servers.iter().map(move |d| {
                    let mut labels = l.clone();
                    labels.push(("real_server", d.address.clone()));
                    (labels, d)
                })
            })
            .collect();
        gauges(
            e,
            "lbd_ipvs_real_server_active_connections",
            "Active connections.",
            dests
                .iter()
                .map(|(l, d)| (l.clone(), i64::from(d.active_conns)))
                .collect(),
        )?;
        gauges(
            e,
            "lbd_ipvs_real_server_inactive_connections",
            "Inactive connections.",
            dests
                .iter()
                .map(|(l, d)| (l.clone(), i64::from(d.inactive_conns)))
                .collect(),
        )?;
        counters(
            e,
            "lbd_ipvs_real_server_connections",
            "Connections scheduled to the real server.",
            dests
                .iter()
                .map(|(l, d)| (l.clone(), d.stats.conns))
                .collect(),
        )?;
        counters(
            e,
            "lbd_ipvs_real_server_packets_in",
            "Packets in.",
            dests
                .iter()
                .map(|(l, d)| (l.clone(), d.stats.inpkts))
                .collect(),
        )?;
        counters(
            e,
            "lbd_ipvs_real_server_bytes_in",
            "Bytes in.",
            dests
                .iter()
                .map(|(l, d)| (l.clone(), d.stats.inbytes))
                .collect(),
        )?;

        // The reconciler.
        if let Some(r) = &s.reconciler {
            let labels = vec![("backend", r.backend.clone())];
            counters(
                e,
                "lbd_reconciler_passes",
                "Reconciler passes.",
                vec![(labels.clone(), r.passes)],
            )?;
            counters(
                e,
                "lbd_reconciler_operations",
                "Data-plane operations applied.",
                vec![(labels.clone(), r.applied)],
            )?;
            counters(
                e,
                "lbd_reconciler_errors",
                "Data-plane operations that failed.",
                vec![(labels.clone(), r.errors)],
            )?;
            gauges(
                e,
                "lbd_probes_running",
                "Distinct probes running (a checker shared by virtual servers counts once).",
                vec![(Vec::new(), i(r.probes))],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_name_their_total_series_in_prometheus_text() {
        let om = "# HELP lbd_x Things.\n# TYPE lbd_x counter\nlbd_x_total{a=\"b\"} 3\n# HELP lbd_g Level.\n# TYPE lbd_g gauge\nlbd_g 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP lbd_x_total Things.\n# TYPE lbd_x_total counter\nlbd_x_total{a=\"b\"} 3\n# HELP lbd_g Level.\n# TYPE lbd_g gauge\nlbd_g 1\n"
        );
    }
}
