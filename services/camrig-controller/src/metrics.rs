//! The controller's Prometheus metrics (`GET /metrics`), in the text exposition format
//! written by `prometheus-client`. Per node (label `node` = its configured address, so the
//! label set is the configuration's): reachability, measured clock offset and round trip,
//! state; for the rig: START fan-out latency, takes started and refused, downloads (bytes,
//! verified files, failures). Gauges are set from the fleet when Prometheus scrapes;
//! counters move where the thing happens. No take names in labels.

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::config::Config;
use crate::fleet::Fleet;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    node: String,
}

impl NodeLabel {
    pub fn new(address: &str) -> NodeLabel {
        NodeLabel {
            node: address.to_owned(),
        }
    }
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

pub struct ControllerMetrics {
    registry: Registry,
    scrape: Mutex<()>,
    reachable: Family<NodeLabel, Gauge>,
    offset: Family<NodeLabel, FloatGauge>,
    rtt: Family<NodeLabel, FloatGauge>,
    recording: Family<NodeLabel, Gauge>,
    take_drops: Family<NodeLabel, Gauge>,
    pub start_fanout: Histogram,
    pub takes_started: Counter,
    pub starts_refused: Counter,
    pub download_bytes: Family<NodeLabel, Counter>,
    pub download_files_verified: Family<NodeLabel, Counter>,
    pub download_failures: Family<NodeLabel, Counter>,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        ControllerMetrics::new()
    }
}

impl ControllerMetrics {
    pub fn new() -> ControllerMetrics {
        let mut m = ControllerMetrics {
            registry: Registry::with_prefix("camrig_controller"),
            scrape: Mutex::new(()),
            reachable: Family::default(),
            offset: Family::default(),
            rtt: Family::default(),
            recording: Family::default(),
            take_drops: Family::default(),
            // 1 ms … ~4 s.
            start_fanout: Histogram::new(exponential_buckets(0.001, 2.0, 13)),
            takes_started: Counter::default(),
            starts_refused: Counter::default(),
            download_bytes: Family::default(),
            download_files_verified: Family::default(),
            download_failures: Family::default(),
        };
        let r = &mut m.registry;
        camrig_protocol::register_series! { r;
            "node_reachable", "1 while the node answers its status polls" => m.reachable;
            "node_clock_offset", "The node's clock minus the controller's, measured by the four-timestamp probe", Unit::Seconds => m.offset;
            "node_clock_rtt", "Round trip of the node's last clock probe", Unit::Seconds => m.rtt;
            "node_recording", "1 while the node records a take" => m.recording;
            "node_take_dropped_frames", "Frames the node dropped in its current (or last) take, all cameras" => m.take_drops;
            "start_fanout", "Time from sending START to the last node's answer", Unit::Seconds => m.start_fanout;
            "takes_started", "Takes every node armed for" => m.takes_started;
            "starts_refused", "START requests refused before any node was told (not ready, health, clock)" => m.starts_refused;
            "download", "Bytes downloaded from the node", Unit::Bytes => m.download_bytes;
            "download_files_verified", "Files downloaded from the node and verified against its manifest" => m.download_files_verified;
            "download_failures", "Downloads from the node that ended failed" => m.download_failures;
        }
        m
    }

    /// Sets the per-node gauges from the fleet and renders every series.
    pub fn render(&self, fleet: &Fleet, config: &Config) -> String {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        for (i, slot) in fleet.nodes().iter().enumerate() {
            let label = NodeLabel::new(&slot.config.address);
            let view = fleet.view(i, config);
            self.reachable
                .get_or_create(&label)
                .set(i64::from(view.reachable));
            let (offset, rtt) = match fleet.clock(i) {
                Some(c) => (c.offset_ns as f64 / 1e9, c.rtt_ns as f64 / 1e9),
                None => (f64::NAN, f64::NAN),
            };
            self.offset.get_or_create(&label).set(offset);
            self.rtt.get_or_create(&label).set(rtt);
            let status = fleet.status(i);
            self.recording.get_or_create(&label).set(i64::from(
                status
                    .as_ref()
                    .is_some_and(|s| s.state == camrig_protocol::api::NodeState::Recording),
            ));
            self.take_drops.get_or_create(&label).set(
                status
                    .as_ref()
                    .map_or(0, |s| s.cameras.iter().map(|c| c.drops).sum::<u64>() as i64),
            );
            // Every node's download series exist from the start, at 0.
            let _ = self.download_bytes.get_or_create(&label);
            let _ = self.download_files_verified.get_or_create(&label);
            let _ = self.download_failures.get_or_create(&label);
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing into a String cannot fail");
        out
    }
}

/// The content type of [`ControllerMetrics::render`]'s text.
pub use camrig_protocol::metrics::CONTENT_TYPE;
