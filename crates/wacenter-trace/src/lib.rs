//! Traces that follow a message across services.
//!
//! Every span wacenter opens is an OpenTelemetry span (through `tracing-opentelemetry`), so its
//! W3C `traceparent` can ride along wherever the message goes: in NATS headers between services
//! and in HTTP headers to OtomaX and the WhatsApp provider. One trace then runs webhook → ingress
//! → forwarder → OtomaX call → reply → WhatsApp send, and callback → reply. Spans are exported
//! over OTLP (HTTP/protobuf) only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; without it the
//! context is still propagated, so peers and logs can correlate.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use opentelemetry_sdk::trace::SdkTracerProvider as TracerProvider;

/// The header name, as W3C spells it (NATS headers are case-sensitive).
pub const TRACEPARENT: &str = "traceparent";

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

/// The current span's `traceparent`, if it belongs to a trace.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
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
