//! Traces that follow a message across services.
//!
//! Every span wacenter opens is an OpenTelemetry span (through `tracing-opentelemetry`), so its
//! W3C `traceparent` can ride along wherever the message goes: in NATS headers between services
//! and in HTTP headers to OtomaX and the WhatsApp provider. One trace then runs webhook → ingress
//! → forwarder → OtomaX call → reply → WhatsApp send, and callback → reply. Spans are exported
//! over OTLP (HTTP/protobuf) only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! Without an endpoint no OpenTelemetry span is built (that costs about a tenth of a service's
//! CPU per message, for spans nobody receives): [`in_trace`] carries the trace id a message
//! arrived with on to what the task sends next, with a span id of its own (a new trace where
//! none arrived), so OtomaX, the provider and the next service still see one trace per message.

use std::collections::HashMap;
use std::future::Future;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use opentelemetry_sdk::trace::SdkTracerProvider as TracerProvider;

/// The header name, as W3C spells it (NATS headers are case-sensitive).
pub const TRACEPARENT: &str = "traceparent";

tokio::task_local! {
    /// Without OpenTelemetry spans: the `traceparent` of the message this task works on.
    static PASSED_ON: String;
}

/// Builds the OpenTelemetry layer for the log subscriber. With an endpoint, spans are batched
/// and exported over OTLP/HTTP to `<endpoint>/v1/traces`; without one they only carry context.
pub fn layer<S>(
    service: &str,
    endpoint: Option<&str>,
) -> Result<
    (
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
        SdkTracerProvider,
    ),
    String,
>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service.to_string())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = endpoint.filter(|e| !e.is_empty()) {
        // reqwest is built without a TLS provider of its own; install ring before it is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
        use opentelemetry_otlp::WithExportConfig;
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .build()
            .map_err(|e| {
                format!("OTEL_EXPORTER_OTLP_ENDPOINT: cannot build the OTLP exporter: {e}")
            })?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer("wacenter");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // Source locations, thread names and busy/idle timings cost CPU on every span and add
    // little to a trace of a message's journey.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_location(false)
        .with_threads(false);
    Ok((layer, provider))
}

/// Runs `work` inside `span` as part of the trace in `incoming` (a `traceparent` header), or of
/// a new trace when there is none or it is malformed. With the OpenTelemetry layer, `span`
/// becomes a child of the incoming span; without it, the task carries the trace on with a span
/// id of its own, so each hop still shows as its own step.
pub async fn in_trace<F: Future>(
    span: tracing::Span,
    incoming: Option<String>,
    work: F,
) -> F::Output {
    use tracing::Instrument;
    set_parent(&span, incoming.as_deref());
    carry_on(incoming, work.instrument(span)).await
}

/// The part of [`in_trace`] that works without OpenTelemetry: `work` carries the trace of
/// `incoming` on (a new one when there is none), with a span id of its own. For more work on a
/// message whose span already has its parent.
pub async fn carry_on<F: Future>(incoming: Option<String>, work: F) -> F::Output {
    let passed_on = match incoming.as_deref().and_then(valid_parts) {
        Some((trace, flags)) => format!("00-{trace}-{}-{flags}", new_span_id()),
        None => new_traceparent(),
    };
    PASSED_ON.scope(passed_on, work).await
}

/// The `traceparent` to send with what the current task does next, if it works in a trace: the
/// current OpenTelemetry span's, else the one [`in_trace`] carries.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current()).or_else(|| PASSED_ON.try_with(Clone::clone).ok())
}

fn new_span_id() -> String {
    use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
    RandomIdGenerator::default().new_span_id().to_string()
}

/// A `traceparent` starting a new, sampled trace.
fn new_traceparent() -> String {
    use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
    let ids = RandomIdGenerator::default();
    format!("00-{}-{}-01", ids.new_trace_id(), ids.new_span_id())
}

/// The trace id and flags of a well-formed version-00 `traceparent` with non-zero ids.
fn valid_parts(tp: &str) -> Option<(&str, &str)> {
    let parts: Vec<&str> = tp.split('-').collect();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    match parts.as_slice() {
        [v, id, span, flags]
            if *v == "00"
                && hex(id, 32)
                && nonzero(id)
                && hex(span, 16)
                && nonzero(span)
                && hex(flags, 2) =>
        {
            Some((id, flags))
        }
        _ => None,
    }
}

/// `span`'s `traceparent`, if it belongs to a trace.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of the trace in `traceparent` (ignored when malformed).
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(tp) = traceparent else { return };
    let mut carrier = HashMap::new();
    carrier.insert(TRACEPARENT.to_string(), tp.to_string());
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The trace id part of a `traceparent` (`00-<trace id>-<span id>-<flags>`).
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, id) = (parts.next()?, parts.next()?);
    (id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn context_round_trips_through_a_header() {
        let (layer, _provider) = layer::<tracing_subscriber::Registry>("test", None).unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let span = tracing::info_span!("consume");
            set_parent(&span, Some(incoming));
            let _g = span.enter();
            let child = tracing::info_span!("publish");
            let tp = traceparent_of(&child).expect("a valid context");
            assert_eq!(
                trace_id(&tp),
                Some("4bf92f3577b34da6a3ce929d0e0e4736"),
                "same trace, new span: {tp}"
            );
            assert_ne!(tp, incoming, "a child has its own span id");
        });
    }

    /// A collector on 127.0.0.1 that answers 200 to everything and keeps each request's path and
    /// body.
    fn collector() -> (String, std::sync::mpsc::Receiver<(String, Vec<u8>)>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut reader = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let path = line.split(' ').nth(1).unwrap_or_default().to_string();
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        if header.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = header.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap();
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let _ = tx.send((path, body));
                    let _ = reader
                        .get_mut()
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                }
            }
        });
        (url, rx)
    }

    /// With an endpoint, spans go out over OTLP/HTTP, in the trace they continue.
    #[test]
    fn spans_are_exported_to_the_endpoint() {
        let (url, received) = collector();
        let (layer, provider) = layer::<tracing_subscriber::Registry>("test", Some(&url)).unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("consume");
            set_parent(
                &span,
                Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            );
            let _entered = span.enter();
        });
        provider
            .force_flush()
            .expect("spans flushed to the collector");
        let (path, body) = received
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the collector got a request");
        assert_eq!(path, "/v1/traces");
        let trace = [
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
            0x47, 0x36,
        ];
        assert!(
            body.windows(trace.len()).any(|w| w == trace),
            "the exported span carries the incoming trace id"
        );
    }

    /// No OpenTelemetry layer (no OTLP endpoint): the trace id still travels, hop by hop.
    #[tokio::test]
    async fn without_opentelemetry_the_trace_is_carried_on() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let span = tracing::info_span!("consume");
        let tp = in_trace(span, Some(incoming.into()), async { current_traceparent() })
            .await
            .expect("a traceparent inside in_trace");
        assert_eq!(trace_id(&tp), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(tp.ends_with("-00"), "the sampled flag is kept: {tp}");
        assert_ne!(tp, incoming, "this hop has its own span id");
        // Nested hops keep the same trace.
        let inner = in_trace(tracing::info_span!("publish"), Some(tp.clone()), async {
            current_traceparent()
        })
        .await
        .unwrap();
        assert_eq!(trace_id(&inner), trace_id(&tp));

        for bad in [
            None,
            Some("garbage"),
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        ] {
            let tp = in_trace(tracing::info_span!("root"), bad.map(str::to_owned), async {
                current_traceparent()
            })
            .await
            .unwrap();
            let id = trace_id(&tp).unwrap_or_else(|| panic!("malformed {tp}"));
            assert!(id.bytes().any(|b| b != b'0'), "{tp}");
        }
        assert_eq!(current_traceparent(), None, "outside any trace");
    }

    #[test]
    fn a_root_span_starts_a_trace_and_garbage_is_ignored() {
        let (layer, _provider) = layer::<tracing_subscriber::Registry>("test", None).unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("root");
            set_parent(&span, Some("not a traceparent"));
            let tp = traceparent_of(&span).unwrap();
            assert!(trace_id(&tp).is_some(), "{tp}");
        });
        assert_eq!(trace_id("00-xyz-1-01"), None);
    }
}
