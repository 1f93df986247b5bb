//! The catalogue against its users: every series the Grafana dashboard queries is one the
//! services export, with the labels and label values the services give it.

use std::collections::{BTreeMap, BTreeSet};

/// What the four services export before any event: metric family → (type, label → values).
type Exported = BTreeMap<String, (String, BTreeMap<String, BTreeSet<String>>)>;

fn exported() -> Exported {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        for service in ["ingress", "forwarder", "reply", "callback"] {
            super::register(service);
        }
    });
    let text = handle.render();
    let mut families = Exported::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            families
                .entry(name.to_string())
                .or_insert_with(|| (kind.to_string(), BTreeMap::new()));
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let series = &line[..name_end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                series
                    .strip_suffix(s)
                    .filter(|f| families.get(*f).is_some_and(|(k, _)| k != "counter"))
            })
            .unwrap_or(series);
        let Some((_, labels)) = families.get_mut(family) else {
            continue;
        };
        if let Some(inner) = line[name_end..]
            .strip_prefix('{')
            .and_then(|r| r.split_once('}'))
            .map(|(inner, _)| inner)
        {
            for pair in inner.split(',').filter(|p| !p.is_empty()) {
                let (label, value) = pair.split_once('=').unwrap();
                if label == "le" || label == "quantile" {
                    continue;
                }
                labels
                    .entry(label.to_string())
                    .or_default()
                    .insert(value.trim_matches('"').to_string());
            }
        }
    }
    families
}

/// Every `expr` of every panel (rows' nested panels included) with its panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = include_str!("../../../../deploy/grafana/dashboards/wacenter.json");
    let dashboard: serde_json::Value = serde_json::from_str(text).unwrap();
    let mut out = Vec::new();
    let mut panels: Vec<&serde_json::Value> =
        dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = panels.pop() {
        if let Some(nested) = panel["panels"].as_array() {
            panels.extend(nested);
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let title = panel["title"].as_str().unwrap_or("?").to_string();
                out.push((title, expr.to_string()));
            }
        }
    }
    out
}

/// A series a query reads: its name and its label matchers `(label, op, value)`.
struct Selector {
    name: String,
    matchers: Vec<(String, String, String)>,
}

/// The selectors and the `by (…)`/`without (…)` labels of a PromQL expression: enough of
/// PromQL to check names and labels; Prometheus itself parses and evaluates the queries in
/// `scripts/lib/check_dashboard.py`.
fn read_query(expr: &str) -> (Vec<Selector>, Vec<String>) {
    let bytes = expr.as_bytes();
    let (mut selectors, mut grouping) = (Vec::new(), Vec::new());
    let mut i = 0;
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    while i < bytes.len() {
        if !(bytes[i].is_ascii_alphabetic() || bytes[i] == b'_') || (i > 0 && ident(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && ident(bytes[i]) {
            i += 1;
        }
        let word = &expr[start..i];
        let rest = expr[i..].trim_start();
        if word == "by" || word == "without" {
            if let Some(list) = rest.strip_prefix('(').and_then(|r| r.split_once(')')) {
                grouping.extend(
                    list.0
                        .split(',')
                        .map(|l| l.trim().to_string())
                        .filter(|l| !l.is_empty()),
                );
            }
            continue;
        }
        if !word.starts_with("wacenter_") {
            assert!(
                !rest.starts_with('{') && !rest.starts_with('['),
                "{expr}: {word} is not one of wacenter's metrics"
            );
            continue;
        }
        let mut matchers = Vec::new();
        if let Some(inner) = rest
            .strip_prefix('{')
            .and_then(|r| r.split_once('}'))
            .map(|(m, _)| m)
        {
            for m in inner.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                let op_at = m
                    .find(['=', '!'])
                    .unwrap_or_else(|| panic!("{expr}: cannot read matcher {m:?}"));
                let label = m[..op_at].trim().to_string();
                let after = &m[op_at..];
                let op_len = ["=~", "!~", "!="]
                    .iter()
                    .find(|o| after.starts_with(**o))
                    .map_or(1, |o| o.len());
                let value = after[op_len..].trim().trim_matches('"').to_string();
                matchers.push((label, after[..op_len].to_string(), value));
            }
        }
        selectors.push(Selector {
            name: word.to_string(),
            matchers,
        });
    }
    (selectors, grouping)
}

#[test]
fn the_dashboard_reads_only_exported_series_labels_and_values() {
    let mut exported = exported();
    for (name, kind, labels) in super::LAZY_SERIES {
        let labels = labels
            .iter()
            .map(|l| (l.to_string(), BTreeSet::new()))
            .collect();
        exported.insert(name.to_string(), (kind.to_string(), labels));
    }
    let target_labels = ["job", "instance"];
    let mut used = BTreeSet::new();
    let queries = dashboard_queries();
    assert!(queries.len() > 20, "the dashboard's queries were not found");
    for (panel, expr) in &queries {
        let (selectors, grouping) = read_query(expr);
        let mut labels_in_query: BTreeSet<String> =
            target_labels.iter().map(|l| l.to_string()).collect();
        for selector in &selectors {
            let (family, kind, labels) = match exported.get(&selector.name) {
                Some((kind, labels)) if kind != "histogram" => {
                    (selector.name.clone(), kind, labels)
                }
                Some(_) => panic!(
                    "{panel}: {} is a histogram: query its _bucket, _sum or _count",
                    selector.name
                ),
                None => {
                    let family = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| selector.name.strip_suffix(s))
                        .filter(|f| exported.get(*f).is_some_and(|(k, _)| k == "histogram"))
                        .unwrap_or_else(|| {
                            panic!(
                                "{panel}: {} is not a metric the services export",
                                selector.name
                            )
                        });
                    let (kind, labels) = &exported[family];
                    (family.to_string(), kind, labels)
                }
            };
            let _ = kind;
            used.insert(selector.name.clone());
            labels_in_query.extend(labels.keys().cloned());
            if selector.name.ends_with("_bucket") {
                labels_in_query.insert("le".into());
            }
            for (label, op, value) in &selector.matchers {
                let known = labels.contains_key(label) || target_labels.contains(&label.as_str());
                assert!(
                    known,
                    "{panel}: {family} has no label {label} (it has {:?})",
                    labels.keys()
                );
                let Some(values) = labels.get(label).filter(|v| !v.is_empty()) else {
                    continue;
                };
                let alternatives: Vec<&str> = match op.as_str() {
                    "=" | "!=" => vec![value.as_str()],
                    _ => value
                        .split('|')
                        .filter(|a| a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                        .collect(),
                };
                for a in alternatives {
                    assert!(
                        values.contains(a),
                        "{panel}: {family}{{{label}{op}\"{value}\"}}: {label} is one of {values:?}"
                    );
                }
            }
        }
        for label in grouping {
            assert!(
                labels_in_query.contains(&label),
                "{panel}: groups by {label}, which none of its metrics has: {expr}"
            );
        }
    }
    for needed in [
        "wacenter_otomax_requests_total",
        "wacenter_otomax_request_duration_seconds_bucket",
        "wacenter_forwarder_auto_replies_total",
        "wacenter_forwarder_forwarded_total",
        "wacenter_callback_received_total",
        "wacenter_dead_letters_total",
    ] {
        assert!(used.contains(needed), "no panel shows {needed}");
    }
}

#[test]
fn lazy_series_are_described_by_the_catalogue() {
    let source = include_str!("../catalogue.rs");
    for (name, _, _) in super::LAZY_SERIES {
        let quoted = format!("\"{name}\"");
        let described = ["describe_histogram!(", "describe_counter!("]
            .iter()
            .flat_map(|m| source.match_indices(m).map(move |(at, _)| at + m.len()))
            .any(|after| source[after..].trim_start().starts_with(&quoted));
        assert!(described, "{name} is listed as lazy but never described");
    }
}
