//! The fleet: what the controller knows about every node, kept fresh by two loops per node:
//! a status poll (twice a second) and a clock probe (every few seconds). A node that stops
//! answering is shown unreachable after [`UNREACHABLE_AFTER`] and comes back by itself with
//! its next good answer. Nothing here sends commands; see [`crate::take_control`].

use std::sync::RwLock;
use std::time::{Duration, Instant};

use camrig_protocol::api::{NodeState, NodeStatus};
use camrig_protocol::grid::FrameGrid;
use camrig_protocol::phase::LockState;
use camrig_protocol::{now_unix_ns, UnixNanos};

use crate::clock_probe::{self, ClockSample};
use crate::config::{Config, NodeConfig};
use crate::node_client::NodeClient;
use crate::views::NodeView;

/// How often every node's status is fetched.
pub const STATUS_PERIOD: Duration = Duration::from_millis(500);
/// How often every node's clock is probed.
pub const CLOCK_PERIOD: Duration = Duration::from_secs(3);
/// A node without a good status answer for this long is shown unreachable.
pub const UNREACHABLE_AFTER: Duration = Duration::from_millis(2500);
/// A clock measurement older than this no longer vouches for the node at START.
pub const CLOCK_STALE_AFTER: Duration = Duration::from_secs(15);

/// Everything the controller knows about its nodes.
pub struct Fleet {
    nodes: Vec<NodeSlot>,
    created: Instant,
}

pub struct NodeSlot {
    pub config: NodeConfig,
    pub client: NodeClient,
    live: RwLock<NodeLive>,
}

#[derive(Default, Clone)]
struct NodeLive {
    last_ok: Option<Instant>,
    last_seen_ns: Option<UnixNanos>,
    status: Option<NodeStatus>,
    error: Option<String>,
    clock: Option<(Instant, ClockSample)>,
    clock_error: Option<String>,
}

/// Why a node blocks START.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocker {
    /// The node does not answer; only `allow_partial` lets START go ahead without it.
    Unreachable(String),
    /// The node's clock is unsynchronised, unmeasured or off; `override_clock` lets it through.
    Clock(String),
    /// The node is still armed or recording (e.g. finishing the take just stopped).
    Busy(String),
    /// The node cannot record at all (no camera, free space below its floor); nothing
    /// overrides this.
    CannotRecord(String),
    /// A camera is still pulling its frames onto the rig's grid (`locking`); the clock
    /// override lets it through, recorded as for the clock.
    Phase(String),
}

impl Blocker {
    pub fn message(&self) -> &str {
        match self {
            Blocker::Unreachable(m)
            | Blocker::Clock(m)
            | Blocker::Busy(m)
            | Blocker::CannotRecord(m)
            | Blocker::Phase(m) => m,
        }
    }
}

impl Fleet {
    pub fn new(config: &Config) -> Fleet {
        Fleet {
            nodes: config
                .nodes
                .iter()
                .map(|n| NodeSlot {
                    config: n.clone(),
                    client: NodeClient::new(n, &config.token),
                    live: RwLock::new(NodeLive::default()),
                })
                .collect(),
            created: Instant::now(),
        }
    }

    /// True once every node has had the time to answer at least once, so a missing
    /// answer means something.
    pub fn settled(&self) -> bool {
        self.created.elapsed() > UNREACHABLE_AFTER + STATUS_PERIOD
    }

    pub fn nodes(&self) -> &[NodeSlot] {
        &self.nodes
    }

    pub fn node(&self, index: usize) -> Option<&NodeSlot> {
        self.nodes.get(index)
    }

    pub fn by_address(&self, address: &str) -> Option<&NodeSlot> {
        self.nodes.iter().find(|n| n.config.address == address)
    }

    /// Where node `index`'s polls fall within `period`: the nodes spread evenly over it.
    /// Polls all due in the same millisecond make a burst of work on every node and on the
    /// controller, and a START sent into that burst waits behind it (on a rig of 50 nodes,
    /// tens of ms of its arm latency); spread, each node answers one poll at a time.
    fn phase(&self, index: usize, period: Duration) -> Duration {
        period.mul_f64(index as f64 / self.nodes.len().max(1) as f64)
    }

    /// Polls one node's status forever: at once, then twice a second in the node's own
    /// [`Self::phase`] of the period.
    pub async fn poll_status(&self, index: usize) {
        let first = tokio::time::Instant::now() + self.phase(index, STATUS_PERIOD);
        let mut ticker = tokio::time::interval_at(first, STATUS_PERIOD);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut started = false;
        loop {
            if started {
                ticker.tick().await;
            }
            started = true;
            self.refresh_status(index).await;
        }
    }

    /// Reads one node's status now (between polls: after a change that alters it, such as
    /// a new frame rate).
    pub async fn refresh_status(&self, index: usize) {
        let slot = &self.nodes[index];
        let result = slot.client.status().await;
        let mut live = slot.live.write().expect("fleet lock poisoned");
        match result {
            Ok(status) => {
                live.last_ok = Some(Instant::now());
                live.last_seen_ns = Some(now_unix_ns());
                live.status = Some(status);
                live.error = None;
            }
            Err(e) => live.error = Some(e.to_string()),
        }
    }

    /// Probes one node's clock forever: at once, every half second until it has a
    /// measurement, then every [`CLOCK_PERIOD`] in the node's own [`Self::phase`] of it.
    pub async fn probe_clock(&self, index: usize) {
        let slot = &self.nodes[index];
        let origin = tokio::time::Instant::now() + self.phase(index, CLOCK_PERIOD);
        loop {
            let result = clock_probe::probe(&slot.client).await;
            {
                let mut live = slot.live.write().expect("fleet lock poisoned");
                match result {
                    Ok(sample) => {
                        live.clock = Some((Instant::now(), sample));
                        live.clock_error = None;
                    }
                    Err(e) => live.clock_error = Some(e.to_string()),
                }
            }
            // Probe again soon while the node has never been measured (e.g. just booted).
            let measured = slot
                .live
                .read()
                .expect("fleet lock poisoned")
                .clock
                .is_some();
            if measured {
                tokio::time::sleep_until(next_slot(origin, CLOCK_PERIOD, Instant::now())).await;
            } else {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    pub fn status(&self, index: usize) -> Option<NodeStatus> {
        let live = self.nodes[index].live.read().expect("fleet lock poisoned");
        live.status.clone().filter(|_| is_fresh(live.last_ok))
    }

    /// The latest clock sample, however old.
    pub fn clock(&self, index: usize) -> Option<ClockSample> {
        self.nodes[index]
            .live
            .read()
            .expect("fleet lock poisoned")
            .clock
            .map(|(_, s)| s)
    }

    /// Why node `index` blocks START now, if it does.
    pub fn blocker(&self, index: usize, config: &Config) -> Option<Blocker> {
        let slot = &self.nodes[index];
        let who = slot.config.display();
        let live = slot.live.read().expect("fleet lock poisoned").clone();
        if !is_fresh(live.last_ok) {
            let why = live.error.unwrap_or_else(|| "no answer yet".into());
            return Some(Blocker::Unreachable(format!(
                "node {who} is unreachable ({why})"
            )));
        }
        let status = live.status.as_ref().expect("fresh status present");
        if status.state != NodeState::Idle {
            return Some(Blocker::Busy(format!(
                "node {who} is still {} take {}",
                format!("{:?}", status.state).to_lowercase(),
                status
                    .take
                    .as_ref()
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or_else(|| "?".into())
            )));
        }
        if status.cameras.is_empty() {
            return Some(Blocker::CannotRecord(format!(
                "node {who} cannot record: {}",
                status.problem.as_deref().unwrap_or("it has no camera")
            )));
        }
        if status.disk_free_bytes < status.disk_floor_bytes {
            return Some(Blocker::CannotRecord(format!(
                "node {who} cannot record: {} free on its data partition, below its floor of {}; free some space",
                human_bytes(status.disk_free_bytes),
                human_bytes(status.disk_floor_bytes)
            )));
        }
        if config.require_node_sync && !status.clock.synced {
            return Some(Blocker::Clock(format!(
                "node {who}: its clock is not synchronised (chrony/timesyncd has no lock on the controller yet)"
            )));
        }
        match live.clock {
            None => Some(Blocker::Clock(format!(
                "node {who}: clock offset not measured yet{}",
                live.clock_error
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ))),
            Some((at, _)) if at.elapsed() > CLOCK_STALE_AFTER => Some(Blocker::Clock(format!(
                "node {who}: clock offset not measured for {} s",
                at.elapsed().as_secs()
            ))),
            Some((_, s)) if s.offset_ns.abs() > config.max_clock_offset_ns => {
                Some(Blocker::Clock(format!(
                    "node {who}: clock is off by {:.3} ms (limit {:.3} ms)",
                    s.offset_ns as f64 / 1e6,
                    config.max_clock_offset_ns as f64 / 1e6
                )))
            }
            Some(_) => phase_blocker(&who, status),
        }
    }

    /// Why node `index`'s health holds START back (unless overridden): throttled or
    /// under-voltage now, hotter than `[health] max_temp_c`, or holding less recording than
    /// `planned_seconds` (else `[health] min_record_minutes`). `None` when fine or unknown
    /// (a node without the firmware's flags is not refused for it; status shows "unknown").
    pub fn health_warning(
        &self,
        index: usize,
        config: &Config,
        planned_seconds: Option<u64>,
    ) -> Option<String> {
        let status = self.status(index)?;
        let health = status.health.as_ref()?;
        let who = self.nodes[index].config.display();
        let mut problems = Vec::new();
        if let Some(t) = &health.throttling {
            if t.under_voltage_now {
                problems.push("under-voltage now (check its power supply)".to_owned());
            }
            if t.slowed_now() {
                problems.push("throttled now (it will drop frames)".to_owned());
            }
        }
        if let Some(temp) = health.cpu_temp_c {
            if temp > config.health.max_temp_c {
                problems.push(format!(
                    "CPU at {temp:.1} °C, above {:.0} °C ([health] max_temp_c)",
                    config.health.max_temp_c
                ));
            }
        }
        let needed = planned_seconds.unwrap_or(config.health.min_record_seconds);
        if health.recordable_seconds < needed {
            problems.push(format!(
                "disk holds {} of recording, {} needed",
                minutes(health.recordable_seconds),
                minutes(needed)
            ));
        }
        (!problems.is_empty()).then(|| format!("node {who}: {}", problems.join("; ")))
    }

    /// What does not block START but is recorded with the take: cameras whose phase lock is
    /// `unavailable` (no frame-duration control, no headroom, switched off), with the reason.
    pub fn phase_warnings(&self, index: usize) -> Vec<String> {
        let slot = &self.nodes[index];
        let who = slot.config.display();
        let live = slot.live.read().expect("fleet lock poisoned");
        let Some(status) = live.status.as_ref().filter(|_| is_fresh(live.last_ok)) else {
            return Vec::new();
        };
        status
            .cameras
            .iter()
            .filter_map(|c| {
                let p = c.phase.as_ref()?;
                (p.state == LockState::Unavailable).then(|| {
                    format!(
                        "node {who} cam{}: phase lock unavailable ({}); its frames are not on the rig's grid",
                        c.index + 1,
                        p.reason.as_deref().unwrap_or("no reason given")
                    )
                })
            })
            .collect()
    }

    /// The rig's frame grid, from the frame rate of the first camera a node reports: where
    /// START and STOP are placed. `None` before any node answered.
    pub fn grid(&self) -> Option<FrameGrid> {
        self.nodes.iter().find_map(|slot| {
            let live = slot.live.read().expect("fleet lock poisoned");
            let status = live.status.as_ref()?;
            let mode = &status.cameras.first()?.mode;
            let fps: f64 = mode.rsplit_once('@')?.1.parse().ok()?;
            FrameGrid::new(fps).ok()
        })
    }

    pub fn view(&self, index: usize, config: &Config) -> NodeView {
        let slot = &self.nodes[index];
        let live = slot.live.read().expect("fleet lock poisoned").clone();
        let reachable = is_fresh(live.last_ok);
        NodeView {
            index,
            address: slot.config.address.clone(),
            port: slot.config.port,
            name: slot.config.name.clone(),
            reachable,
            last_seen_ns: live.last_seen_ns,
            error: if reachable { None } else { live.error.clone() },
            status: live.status.clone(),
            clock: live.clock.map(|(_, s)| s),
            start_blocker: self.blocker(index, config).map(|b| b.message().to_owned()),
            health_warning: self.health_warning(index, config, None),
        }
    }
}

/// The first instant `origin + k × period` (k ≥ 0) after `now`.
fn next_slot(origin: tokio::time::Instant, period: Duration, now: Instant) -> tokio::time::Instant {
    let now = tokio::time::Instant::from_std(now);
    if now < origin {
        return origin;
    }
    let k = (now - origin).as_nanos() / period.as_nanos() + 1;
    origin + period * k as u32
}

fn human_bytes(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

fn minutes(seconds: u64) -> String {
    format!("{:.1} min", seconds as f64 / 60.0)
}

fn is_fresh(last_ok: Option<Instant>) -> bool {
    last_ok.is_some_and(|t| t.elapsed() < UNREACHABLE_AFTER)
}

/// A node blocks START while any of its cameras is `locking`: its frames are not yet on the
/// grid, so the take's first frames would not be the same slots as the other nodes'.
fn phase_blocker(who: &str, status: &NodeStatus) -> Option<Blocker> {
    let locking: Vec<String> = status
        .cameras
        .iter()
        .filter_map(|c| {
            let p = c.phase.as_ref()?;
            (p.state == LockState::Locking).then(|| {
                format!(
                    "cam{} is still phase-locking (error p99 {:.1} µs over the last second{})",
                    c.index + 1,
                    p.error_ns.p99 as f64 / 1e3,
                    p.reason
                        .as_deref()
                        .map(|r| format!("; {r}"))
                        .unwrap_or_default()
                )
            })
        })
        .collect();
    (!locking.is_empty()).then(|| {
        Blocker::Phase(format!(
            "node {who}: {}: its frames are not on the rig's grid yet",
            locking.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_slot_is_the_first_one_after_now() {
        let t0 = Instant::now();
        let origin = tokio::time::Instant::from_std(t0 + Duration::from_millis(700));
        let p = Duration::from_secs(3);
        // Before the origin: the origin itself.
        assert_eq!(next_slot(origin, p, t0), origin);
        // On and after a slot: the next one.
        assert_eq!(
            next_slot(origin, p, t0 + Duration::from_millis(700)),
            origin + p
        );
        assert_eq!(
            next_slot(origin, p, t0 + Duration::from_millis(7_000)),
            origin + p * 3
        );
    }
}
