//! What the node's and the controller's `GET /metrics` share: the OpenMetrics content type and
//! [`register_series!`], which registers a service's series from one table (a row per series:
//! name, help, optional unit, metric), so adding a series is adding a row. The macro expands
//! to calls on the caller's `prometheus_client::registry::Registry`; this crate does not
//! depend on `prometheus-client` itself.

/// The content type of both services' `/metrics` text (OpenMetrics, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Registers every row `"name", "help"[, unit] => metric;` in `registry` (a `&mut Registry`),
/// each with a clone of its metric (the clones share the series, so the caller keeps its own).
#[macro_export]
macro_rules! register_series {
    ($registry:expr; $($name:literal, $help:literal $(, $unit:expr)? => $metric:expr;)*) => {
        $( $crate::register_series!(@row $registry, $name, $help, $metric $(, $unit)?); )*
    };
    (@row $registry:expr, $name:literal, $help:literal, $metric:expr) => {
        $registry.register($name, $help, $metric.clone())
    };
    (@row $registry:expr, $name:literal, $help:literal, $metric:expr, $unit:expr) => {
        $registry.register_with_unit($name, $help, $unit, $metric.clone())
    };
}
