//! The one-line summary systemd shows under the unit (`STATUS=`), refreshed every second:
//! rig state, take, nodes recording / total, worst clock offset, downloads pending.

use crate::views::{RigView, TakeNodeState};

pub fn status_line(rig: &RigView) -> String {
    let total = rig.nodes.len();
    let reachable = rig.nodes.iter().filter(|n| n.reachable).count();
    let recording = rig
        .current_take
        .as_ref()
        .map(|t| {
            t.nodes
                .iter()
                .filter(|n| n.state == TakeNodeState::Recording)
                .count()
        })
        .unwrap_or(0);
    let take = rig
        .current_take
        .as_ref()
        .map(|t| format!(" take {}", t.name))
        .unwrap_or_default();
    let worst = rig
        .nodes
        .iter()
        .filter_map(|n| n.clock.map(|c| c.offset_ns.abs()))
        .max()
        .map(|ns| format!("{:.3} ms", ns as f64 / 1e6))
        .unwrap_or_else(|| "unmeasured".into());
    format!(
        "{}{take} | nodes {recording}/{total} recording, {reachable}/{total} reachable | worst clock offset {worst} | downloads pending {}",
        rig.state, rig.downloads_pending
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock_probe::ClockSample;
    use crate::views::NodeView;

    fn node(reachable: bool, offset: Option<i64>) -> NodeView {
        NodeView {
            index: 0,
            address: "10.0.0.1".into(),
            port: 8081,
            name: String::new(),
            reachable,
            last_seen_ns: None,
            error: None,
            status: None,
            clock: offset.map(|o| ClockSample {
                offset_ns: o,
                rtt_ns: 100,
                measured_at_ns: 0,
            }),
            start_blocker: None,
            health_warning: None,
        }
    }

    #[test]
    fn summarises_the_rig() {
        let rig = RigView {
            state: crate::views::RigState::Idle,
            current_take: None,
            nodes: vec![
                node(true, Some(-250_000)),
                node(false, Some(40_000)),
                node(true, None),
            ],
            start_ready: false,
            start_blockers: vec![],
            require_node_sync: true,
            max_clock_offset_ms: 1.0,
            downloads_pending: 2,
            controller_now_ns: 0,
            version: "0".into(),
        };
        assert_eq!(
            status_line(&rig),
            "idle | nodes 0/3 recording, 2/3 reachable | worst clock offset 0.250 ms | downloads pending 2"
        );
    }
}
