//! W3C Trace Context (`traceparent`) carried in every event envelope, so one
//! trace id covers kiosk → edge → hub.

use alloc::string::String;
use core::fmt::{self, Write};

use serde::{Deserialize, Serialize};

/// The parts of a `traceparent` header (version 00).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl TraceContext {
    /// Parses `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`. All-zero
    /// ids are invalid per the W3C spec and yield `None`, as does anything else
    /// malformed: a bad header starts a new trace rather than failing a request.
    pub fn from_traceparent(header: &str) -> Option<TraceContext> {
        let mut parts = header.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let mut ctx = TraceContext {
            trace_id: [0; 16],
            span_id: [0; 8],
            flags: 0,
        };
        decode_hex(trace, &mut ctx.trace_id)?;
        decode_hex(span, &mut ctx.span_id)?;
        let mut f = [0u8; 1];
        decode_hex(flags, &mut f)?;
        ctx.flags = f[0];
        let valid = ctx.trace_id != [0; 16] && ctx.span_id != [0; 8];
        valid.then_some(ctx)
    }

    pub fn to_traceparent(&self) -> String {
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        push_hex(&mut s, &self.trace_id);
        s.push('-');
        push_hex(&mut s, &self.span_id);
        let _ = write!(s, "-{:02x}", self.flags);
        s
    }

    pub fn is_sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

fn decode_hex(s: &str, out: &mut [u8]) -> Option<()> {
    let b = s.as_bytes();
    if b.len() != out.len() * 2 {
        return None;
    }
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(())
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn push_hex(s: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_traceparent())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn round_trips_the_spec_example() {
        let ctx = TraceContext::from_traceparent(SAMPLE).expect("valid");
        assert!(ctx.is_sampled());
        assert_eq!(ctx.to_traceparent(), SAMPLE);
    }

    #[test]
    fn rejects_malformed_headers() {
        let bad = [
            "",
            "00",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba9ü2b7-01",
        ];
        for h in bad {
            assert_eq!(TraceContext::from_traceparent(h), None, "{h:?}");
        }
    }
}

/// The bridge to OpenTelemetry: a stored trace context becomes the remote
/// parent of a `tracing` span, and the current span's context becomes the
/// trace context an event carries.
#[cfg(feature = "otel")]
pub mod otel {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::TraceContext;

    /// The OpenTelemetry context whose remote parent is `tc`.
    pub fn context(tc: &TraceContext) -> opentelemetry::Context {
        let sc = SpanContext::new(
            TraceId::from_bytes(tc.trace_id),
            SpanId::from_bytes(tc.span_id),
            TraceFlags::new(tc.flags),
            true,
            TraceState::default(),
        );
        opentelemetry::Context::new().with_remote_span_context(sc)
    }

    /// Makes `tc` the parent of `span` (no-op without an OpenTelemetry layer).
    pub fn set_parent(span: &tracing::Span, tc: &TraceContext) {
        let _ = span.set_parent(context(tc));
    }

    /// The trace context of `span` as OpenTelemetry sees it, if it has one.
    pub fn of(span: &tracing::Span) -> Option<TraceContext> {
        let ctx = span.context();
        let otel = ctx.span();
        let sc = otel.span_context();
        sc.is_valid().then(|| TraceContext {
            trace_id: sc.trace_id().to_bytes(),
            span_id: sc.span_id().to_bytes(),
            flags: sc.trace_flags().to_u8(),
        })
    }
}
