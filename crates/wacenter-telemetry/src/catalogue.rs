//! Every metric wacenter exports, in one place: name, help text, and the label sets each service
//! starts at zero, so dashboards and alerts see a series (at 0) before the first event of a kind
//! instead of "no data". The Grafana dashboard in `deploy/` uses exactly these names.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Registers (and zeroes) the metrics of `service`: `ingress`, `forwarder`, `reply`, `callback`.
pub fn register(service: &str) {
    // Every service records trail steps (spec §4); one that could not be recorded is counted.
    describe_counter!(
        "wacenter_trail_failed_total",
        "Trail steps (and keys) that could not be recorded (NATS away): the message went on, its step is missing from the trail"
    );
    metrics::counter!("wacenter_trail_failed_total").absolute(0);
    match service {
        "ingress" => {
            describe_counter!("wacenter_ingress_webhooks_total", "Webhooks received, by provider and outcome (accepted, ignored, bad_signature, malformed, disabled, nats_down, …)");
            describe_counter!(
                "wacenter_ingress_published_total",
                "Inbound messages published to JetStream (duplicate=true: a provider re-delivery)"
            );
            describe_histogram!(
                "wacenter_ingress_ack_seconds",
                Unit::Seconds,
                "Time from webhook arrival to the answer (after the JetStream ack)"
            );
            for provider in ["gowa", "meta"] {
                for outcome in [
                    "accepted",
                    "ignored",
                    "bad_signature",
                    "malformed",
                    "unreadable",
                    "nats_down",
                ] {
                    metrics::counter!("wacenter_ingress_webhooks_total", "provider" => provider, "outcome" => outcome).absolute(0);
                }
                for duplicate in ["false", "true"] {
                    metrics::counter!("wacenter_ingress_published_total", "provider" => provider, "duplicate" => duplicate).absolute(0);
                }
            }
            // Signed webhooks that could not be parsed, kept as dead letters `unreadable`.
            metrics::counter!("wacenter_dead_letters_total", "worker" => "ingress", "reason" => "unreadable").absolute(0);
        }
        "forwarder" => {
            otomax_metrics();
            describe_worker_metrics();
            describe_counter!(
                "wacenter_forwarder_forwarded_total",
                "Messages forwarded to OtomaX InsertInbox, by inbox status"
            );
            describe_counter!("wacenter_forwarder_skipped_total", "Messages not forwarded, by reason (group, media, outgoing, empty_text, own_message, …)");
            describe_counter!(
                "wacenter_forwarder_duplicates_total",
                "Deliveries dropped because the message was already claimed"
            );
            describe_counter!(
                "wacenter_forwarder_expired_total",
                "Messages whose _exp passed before OtomaX could be reached"
            );
            describe_counter!(
                "wacenter_forwarder_failed_total",
                "InsertInbox failures, by error kind"
            );
            describe_counter!(
                "wacenter_forwarder_notices_total",
                "Notices queued for senders whose command OtomaX never processed, by class (expired: OTOMAX_EXPIRED_REPLY, auth_failed, rejected)"
            );
            describe_counter!(
                "wacenter_forwarder_auto_replies_total",
                "Auto-replies queued (outcome=queued) or not needed (outcome=none)"
            );
            for reason in [
                "group",
                "media",
                "outgoing",
                "incoming",
                "empty_text",
                "own_message",
                "otomax_disabled",
            ] {
                metrics::counter!("wacenter_forwarder_skipped_total", "reason" => reason)
                    .absolute(0);
            }
        }
        "reply" => {
            otomax_metrics();
            describe_worker_metrics();
            describe_counter!(
                "wacenter_reply_sent_total",
                "WhatsApp messages sent, by kind (auto_reply, outbox)"
            );
            describe_counter!(
                "wacenter_reply_send_failed_total",
                "Failed sends, by class (rate_limited, transient, permanent, ambiguous) and kind"
            );
            describe_counter!(
                "wacenter_reply_paced_total",
                "Sends that waited for their account's next slot (WA_SEND_RATE, send_rate): not failures"
            );
            describe_counter!(
                "wacenter_reply_duplicates_total",
                "Outbound deliveries dropped because the message was already claimed"
            );
            describe_counter!(
                "wacenter_outbox_acks_total",
                "UpdateStatusOutbox calls, by status (20, 40) and outcome (ok; error: reported again; refused: OtomaX said no for good)"
            );
        }
        "callback" => {
            otomax_metrics();
            describe_counter!(
                "wacenter_callback_received_total",
                "OtomaX outbox callbacks, by outcome (queued, skipped, or an error code)"
            );
            describe_counter!(
                "wacenter_callback_skipped_total",
                "Callbacks acknowledged without sending, by reason"
            );
        }
        _ => {}
    }
    register_server(service, DEFAULT_SERVER);
}

/// The name of the server the seed's settings make (`wacenter_config::DEFAULT_SERVER`).
const DEFAULT_SERVER: &str = "default";

/// Zeroes the series of `service` for the OtomaX server `server` (the `otomax` label, bounded by
/// the routing table's names): every service calls it for each server of its table, so a
/// dashboard or alert filtered to one server sees 0, not "no data".
pub fn register_server(service: &str, server: &str) {
    let otomax = || server.to_string();
    match service {
        "forwarder" => {
            zero_otomax(&["InsertInbox"], server);
            for kind in [
                "connect",
                "timeout",
                "http_status",
                "auth",
                "rejected",
                "decode",
                "expired",
                "interrupted",
                "uncertain",
            ] {
                metrics::counter!("wacenter_forwarder_failed_total", "kind" => kind, "otomax" => otomax()).absolute(0);
            }
            for outcome in ["queued", "none"] {
                metrics::counter!("wacenter_forwarder_auto_replies_total", "outcome" => outcome, "otomax" => otomax())
                    .absolute(0);
            }
            metrics::counter!("wacenter_forwarder_duplicates_total", "otomax" => otomax())
                .absolute(0);
            metrics::counter!("wacenter_forwarder_expired_total", "otomax" => otomax()).absolute(0);
            for class in ["expired", "auth_failed", "rejected"] {
                metrics::counter!("wacenter_forwarder_notices_total", "class" => class, "otomax" => otomax())
                    .absolute(0);
            }
            worker_metrics("forwarder", server);
        }
        "reply" => {
            zero_otomax(&["UpdateStatusOutbox"], server);
            for kind in ["auto_reply", "outbox"] {
                metrics::counter!("wacenter_reply_sent_total", "kind" => kind, "otomax" => otomax()).absolute(0);
                for class in ["rate_limited", "transient", "permanent", "ambiguous"] {
                    metrics::counter!("wacenter_reply_send_failed_total", "class" => class, "kind" => kind, "otomax" => otomax()).absolute(0);
                }
            }
            for status in ["20", "40"] {
                for outcome in ["ok", "error", "refused"] {
                    metrics::counter!("wacenter_outbox_acks_total", "status" => status, "outcome" => outcome, "otomax" => otomax()).absolute(0);
                }
            }
            metrics::counter!("wacenter_reply_duplicates_total", "otomax" => otomax()).absolute(0);
            metrics::counter!("wacenter_reply_paced_total", "otomax" => otomax()).absolute(0);
            worker_metrics("reply", server);
        }
        "callback" => {
            zero_otomax(CALLBACK_ENDPOINTS, server);
            for outcome in [
                "queued",
                "skipped",
                "UNAUTHORIZED",
                "VALIDATION_ERROR",
                "UNAVAILABLE",
            ] {
                metrics::counter!("wacenter_callback_received_total", "outcome" => outcome, "otomax" => otomax())
                    .absolute(0);
            }
            for reason in ["other_channel", "empty_pesan"] {
                metrics::counter!("wacenter_callback_skipped_total", "reason" => reason, "otomax" => otomax())
                    .absolute(0);
            }
        }
        _ => {}
    }
}

/// What an OtomaX attempt ends in: `ok` or the error's kind (`OtomaxError::kind`).
pub const OTOMAX_OUTCOMES: &[&str] = &[
    "ok",
    "connect",
    "timeout",
    "interrupted",
    "http_status",
    "auth",
    "rejected",
    "decode",
    "expired",
    "invalid_request",
    "uncertain",
];

/// The OtomaX endpoints the callback service's REST API calls.
const CALLBACK_ENDPOINTS: &[&str] = &[
    "InsertInbox",
    "SetOutboxCallback",
    "GetOutboxCallback",
    "Test",
    "GetRs",
    "GetSaldoRs",
];

/// Metrics that have no series until their first event (histograms; counters whose label
/// values are open, like OtomaX's status numbers): type and labels, for the dashboard's checks.
pub const LAZY_SERIES: &[(&str, &str, &[&str])] = &[
    (
        "wacenter_otomax_request_duration_seconds",
        "histogram",
        &["endpoint", "otomax"],
    ),
    ("wacenter_ingress_ack_seconds", "histogram", &["provider"]),
    (
        "wacenter_forwarder_forwarded_total",
        "counter",
        &["status", "otomax"],
    ),
];

/// Describes the OtomaX call metrics (every service that calls OtomaX).
fn otomax_metrics() {
    describe_counter!(
        "wacenter_otomax_requests_total",
        "OtomaX API attempts, by server, endpoint and outcome (ok or an error kind)"
    );
    describe_histogram!(
        "wacenter_otomax_request_duration_seconds",
        Unit::Seconds,
        "OtomaX API attempt duration, by server and endpoint"
    );
}

/// OtomaX calls of `endpoints` to `server`, every outcome at zero: an alert on failures sees 0,
/// not "no data", until the first one.
fn zero_otomax(endpoints: &[&'static str], server: &str) {
    for endpoint in endpoints {
        for outcome in OTOMAX_OUTCOMES {
            metrics::counter!("wacenter_otomax_requests_total", "endpoint" => *endpoint, "outcome" => *outcome, "otomax" => server.to_string())
                .absolute(0);
        }
    }
}

fn describe_worker_metrics() {
    describe_counter!(
        "wacenter_dead_letters_total",
        "Messages dead-lettered, by worker, server and reason"
    );
    describe_gauge!(
        "wacenter_in_flight",
        "Messages being handled right now, by worker and server"
    );
    describe_counter!(
        "wacenter_handler_panics_total",
        "Handlers that panicked (a bug; the message was dead-lettered as uncertain), by worker and server"
    );
}

fn worker_metrics(worker: &'static str, server: &str) {
    let otomax = || server.to_string();
    metrics::gauge!("wacenter_in_flight", "worker" => worker, "otomax" => otomax()).set(0.0);
    metrics::counter!("wacenter_handler_panics_total", "worker" => worker, "otomax" => otomax())
        .absolute(0);
    for reason in [
        "expired",
        "auth_failed",
        "rejected",
        "retries_exhausted",
        "uncertain",
        "invalid",
        "send_failed",
        "unknown_account",
        "no_phone_number",
    ] {
        metrics::counter!("wacenter_dead_letters_total", "worker" => worker, "otomax" => otomax(), "reason" => reason)
            .absolute(0);
    }
}

#[cfg(test)]
mod tests;
