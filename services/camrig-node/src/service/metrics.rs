//! The node's Prometheus metrics (`GET /metrics`, behind the rig token like `/v1`), in the
//! text exposition format written by `prometheus-client`. Counters on the frame path
//! ([`CameraCounters`]: frames captured, kept, dropped by cause, encode time) are atomics
//! handed to the capture callback and the writer threads; everything else is a gauge set
//! from [`NodeStatus`] when Prometheus scrapes. Labels are bounded: `camera` (1, 2),
//! `reason` ([`DropCause`]), `state`, `flag`, `period`, `quantile`; never a take name.

use std::sync::Mutex;

use camrig_protocol::api::{DropCause, NodeState, NodeStatus};
use camrig_protocol::phase::LockState;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CameraLabel {
    camera: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabel {
    camera: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseStateLabel {
    camera: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuantileLabel {
    camera: String,
    quantile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlagLabel {
    flag: String,
    period: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

fn encode_buckets() -> Histogram {
    // 0.5 ms … ~0.5 s: a 720p frame takes a few ms in hardware, tens in software.
    Histogram::new(exponential_buckets(0.0005, 2.0, 11))
}

/// One camera's frame-path counters (cheap clones sharing the registered series).
#[derive(Clone, Debug)]
pub struct CameraCounters {
    pub captured: Counter,
    pub kept: Counter,
    dropped: [Counter; 3],
    pub encode_seconds: Histogram,
}

impl CameraCounters {
    /// Counters registered nowhere (a benchmark or a test that scrapes nothing).
    pub fn unregistered() -> CameraCounters {
        CameraCounters {
            captured: Counter::default(),
            kept: Counter::default(),
            dropped: Default::default(),
            encode_seconds: encode_buckets(),
        }
    }

    pub fn dropped(&self, cause: DropCause, frames: u64) {
        let i = DropCause::ALL
            .iter()
            .position(|c| *c == cause)
            .expect("every cause is listed");
        self.dropped[i].inc_by(frames);
    }
}

/// The node's registry and the series it sets at scrape time.
pub struct NodeMetrics {
    registry: Registry,
    cameras: Vec<CameraCounters>,
    /// Scrapes run one at a time: the gauges are set, then encoded.
    scrape: Mutex<()>,
    state: Family<StateLabel, Gauge>,
    fps: Family<CameraLabel, FloatGauge>,
    take_frames: Family<CameraLabel, Gauge>,
    take_drops: Family<CameraLabel, Gauge>,
    phase_state: Family<PhaseStateLabel, Gauge>,
    phase_error: Family<QuantileLabel, FloatGauge>,
    disk_free: Gauge,
    disk_floor: Gauge,
    recordable: Gauge,
    clock_synced: Gauge,
    clock_error: FloatGauge,
    temperature: FloatGauge,
    throttling_known: Gauge,
    firmware_flag: Family<FlagLabel, Gauge>,
    mem_available: FloatGauge,
}

impl NodeMetrics {
    pub fn new(cameras: usize) -> NodeMetrics {
        let mut r = Registry::with_prefix("camrig_node");
        let captured = Family::<CameraLabel, Counter>::default();
        let kept = Family::<CameraLabel, Counter>::default();
        let dropped = Family::<DropLabel, Counter>::default();
        let encode =
            Family::<CameraLabel, Histogram>::new_with_constructor(encode_buckets as fn() -> _);
        camrig_protocol::register_series! { r;
            "frames_captured", "Frames delivered by the camera since the service started" => captured;
            "frames_kept", "Frames written into takes since the service started" => kept;
            "frames_dropped", "Frames lost inside takes, by cause (sequence_gap, queue_full, encoder_late)" => dropped;
            "encode", "Time to encode one frame", Unit::Seconds => encode;
        }
        let counters = (0..cameras)
            .map(|i| {
                let camera = (i + 1).to_string();
                let c = CameraLabel {
                    camera: camera.clone(),
                };
                CameraCounters {
                    captured: captured.get_or_create(&c).clone(),
                    kept: kept.get_or_create(&c).clone(),
                    dropped: DropCause::ALL.map(|cause| {
                        dropped
                            .get_or_create(&DropLabel {
                                camera: camera.clone(),
                                reason: cause.as_str().into(),
                            })
                            .clone()
                    }),
                    encode_seconds: encode.get_or_create(&c).clone(),
                }
            })
            .collect();
        let mut m = NodeMetrics {
            cameras: counters,
            scrape: Mutex::new(()),
            state: Family::default(),
            fps: Family::default(),
            take_frames: Family::default(),
            take_drops: Family::default(),
            phase_state: Family::default(),
            phase_error: Family::default(),
            disk_free: Gauge::default(),
            disk_floor: Gauge::default(),
            recordable: Gauge::default(),
            clock_synced: Gauge::default(),
            clock_error: FloatGauge::default(),
            temperature: FloatGauge::default(),
            throttling_known: Gauge::default(),
            firmware_flag: Family::default(),
            mem_available: FloatGauge::default(),
            registry: r,
        };
        let r = &mut m.registry;
        camrig_protocol::register_series! { r;
            "state", "1 for the node's take state (idle, armed, recording), 0 for the others" => m.state;
            "camera_fps", "Frames per second delivered, measured over the last second" => m.fps;
            "take_frames", "Frames kept in the current (or last) take" => m.take_frames;
            "take_dropped_frames", "Frames dropped in the current (or last) take" => m.take_drops;
            "phase_lock_state", "1 for the camera's phase-lock state (locking, locked, unavailable); absent without phase lock" => m.phase_state;
            "phase_error", "Absolute phase error against the rig's frame grid over the last second", Unit::Seconds => m.phase_error;
            "disk_free", "Free space on the data partition", Unit::Bytes => m.disk_free;
            "disk_floor", "START is refused and a take stopped below this much free space", Unit::Bytes => m.disk_floor;
            "recordable", "How long a take could record with the free space above the floor", Unit::Seconds => m.recordable;
            "clock_synchronised", "1 when the kernel says the clock is synchronised (chrony or timesyncd)" => m.clock_synced;
            "clock_estimated_error", "The kernel's estimated clock error", Unit::Seconds => m.clock_error;
            "cpu_temperature", "CPU temperature from the thermal zone; NaN when the board has none", Unit::Other("celsius".into()) => m.temperature;
            "throttling_known", "1 when the board exposes the firmware's under-voltage/throttling flags" => m.throttling_known;
            "firmware_flag", "Raspberry Pi firmware flags (flag: under_voltage, throttled, freq_capped, soft_temp_limit; period: now, since_boot)" => m.firmware_flag;
            "memory_available", "MemAvailable from /proc/meminfo; NaN when unknown", Unit::Bytes => m.mem_available;
        }
        m
    }

    /// Camera `index`'s frame-path counters (unregistered ones past the configured cameras).
    pub fn camera(&self, index: usize) -> CameraCounters {
        self.cameras
            .get(index)
            .cloned()
            .unwrap_or_else(CameraCounters::unregistered)
    }

    /// Sets the gauges from `status` and renders every series.
    pub fn render(&self, status: &NodeStatus) -> String {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        for state in [NodeState::Idle, NodeState::Armed, NodeState::Recording] {
            let name = serde_json::to_value(state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            self.state
                .get_or_create(&StateLabel { state: name })
                .set(i64::from(status.state == state));
        }
        self.phase_state.clear();
        self.phase_error.clear();
        for (i, c) in status.cameras.iter().enumerate() {
            let camera = (i + 1).to_string();
            let label = CameraLabel {
                camera: camera.clone(),
            };
            self.fps.get_or_create(&label).set(c.fps);
            self.take_frames
                .get_or_create(&label)
                .set(c.take_frames as i64);
            self.take_drops.get_or_create(&label).set(c.drops as i64);
            if let Some(p) = &c.phase {
                for s in [
                    LockState::Locking,
                    LockState::Locked,
                    LockState::Unavailable,
                ] {
                    self.phase_state
                        .get_or_create(&PhaseStateLabel {
                            camera: camera.clone(),
                            state: s.as_str().into(),
                        })
                        .set(i64::from(p.state == s));
                }
                for (q, v) in [("0.5", p.error_ns.p50), ("0.99", p.error_ns.p99)] {
                    self.phase_error
                        .get_or_create(&QuantileLabel {
                            camera: camera.clone(),
                            quantile: q.into(),
                        })
                        .set(v as f64 / 1e9);
                }
            }
        }
        self.disk_free.set(status.disk_free_bytes as i64);
        self.disk_floor.set(status.disk_floor_bytes as i64);
        self.clock_synced.set(i64::from(status.clock.synced));
        self.clock_error.set(
            status
                .clock
                .est_error_ns
                .map(|ns| ns as f64 / 1e9)
                .unwrap_or(f64::NAN),
        );
        let health = status.health.clone().unwrap_or_default();
        self.recordable.set(health.recordable_seconds as i64);
        self.temperature.set(health.cpu_temp_c.unwrap_or(f64::NAN));
        self.mem_available
            .set(health.mem_available_bytes.map_or(f64::NAN, |b| b as f64));
        self.throttling_known
            .set(i64::from(health.throttling.is_some()));
        self.firmware_flag.clear();
        if let Some(t) = &health.throttling {
            for (flag, now, since_boot) in [
                (
                    "under_voltage",
                    t.under_voltage_now,
                    t.under_voltage_since_boot,
                ),
                ("throttled", t.throttled_now, t.throttled_since_boot),
                ("freq_capped", t.freq_capped_now, t.freq_capped_since_boot),
                (
                    "soft_temp_limit",
                    t.soft_temp_limit_now,
                    t.soft_temp_limit_since_boot,
                ),
            ] {
                for (period, set) in [("now", now), ("since_boot", since_boot)] {
                    self.firmware_flag
                        .get_or_create(&FlagLabel {
                            flag: flag.into(),
                            period: period.into(),
                        })
                        .set(i64::from(set));
                }
            }
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing into a String cannot fail");
        out
    }
}

/// The content type of [`NodeMetrics::render`]'s text (OpenMetrics, which Prometheus reads).
pub use camrig_protocol::metrics::CONTENT_TYPE;
