//! The controller's own measurement of each node's clock: an NTP-style four-timestamp
//! exchange over `GET /v1/time`, repeated a few times, keeping the sample with the shortest
//! round trip (the one least disturbed by queueing, so its offset is the most trustworthy).

use camrig_protocol::{now_unix_ns, UnixNanos};

use crate::node_client::{NodeClient, NodeError};

/// How many exchanges one probe makes.
pub const SAMPLES_PER_PROBE: usize = 5;

/// One four-timestamp exchange: t1 request sent (controller clock), t2 request received
/// (node clock), t3 answer sent (node clock), t4 answer received (controller clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub t1: UnixNanos,
    pub t2: UnixNanos,
    pub t3: UnixNanos,
    pub t4: UnixNanos,
}

pub use camrig_protocol::views::ClockSample;

impl Exchange {
    /// offset = ((t2 − t1) + (t3 − t4)) / 2, rtt = (t4 − t1) − (t3 − t2).
    pub fn sample(&self) -> ClockSample {
        let offset = ((self.t2 - self.t1) + (self.t3 - self.t4)) / 2;
        let rtt = (self.t4 - self.t1) - (self.t3 - self.t2);
        ClockSample {
            offset_ns: offset,
            rtt_ns: rtt,
            measured_at_ns: self.t4,
        }
    }
}

/// The sample with the smallest round trip; `None` for no samples.
pub fn best(exchanges: &[Exchange]) -> Option<ClockSample> {
    exchanges
        .iter()
        .map(Exchange::sample)
        .filter(|s| s.rtt_ns >= 0)
        .min_by_key(|s| s.rtt_ns)
}

/// Runs one probe against a node.
pub async fn probe(client: &NodeClient) -> Result<ClockSample, NodeError> {
    let mut exchanges = Vec::with_capacity(SAMPLES_PER_PROBE);
    for _ in 0..SAMPLES_PER_PROBE {
        let t1 = now_unix_ns();
        let reply = client.time().await?;
        let t4 = now_unix_ns();
        exchanges.push(Exchange {
            t1,
            t2: reply.receive_ns,
            t3: reply.send_ns,
            t4,
        });
    }
    best(&exchanges).ok_or_else(|| {
        NodeError::BadReply(
            "every time probe had a negative round trip (node sent before it received)".into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_path_gives_the_true_offset() {
        // Node 2 ms ahead, 1 ms each way, 100 µs processing.
        let e = Exchange {
            t1: 1_000_000_000,
            t2: 1_000_000_000 + 1_000_000 + 2_000_000,
            t3: 1_000_000_000 + 1_100_000 + 2_000_000,
            t4: 1_000_000_000 + 2_100_000,
        };
        let s = e.sample();
        assert_eq!(s.offset_ns, 2_000_000);
        assert_eq!(s.rtt_ns, 2_000_000);
        assert_eq!(s.measured_at_ns, e.t4);
    }

    #[test]
    fn node_behind_gives_a_negative_offset() {
        let e = Exchange {
            t1: 10_000,
            t2: 10_000 + 500 - 3_000,
            t3: 10_000 + 600 - 3_000,
            t4: 11_100,
        };
        assert_eq!(e.sample().offset_ns, -3_000);
        assert_eq!(e.sample().rtt_ns, 1_000);
    }

    #[test]
    fn best_of_several_picks_the_shortest_round_trip() {
        let quick = Exchange {
            t1: 0,
            t2: 50,
            t3: 60,
            t4: 100,
        };
        let queued = Exchange {
            t1: 0,
            t2: 5_000,
            t3: 5_010,
            t4: 5_100,
        };
        let s = best(&[queued, quick, queued]).unwrap();
        assert_eq!(s.rtt_ns, 90);
        assert_eq!(s.offset_ns, 5);
        assert_eq!(best(&[]), None);
        let impossible = Exchange {
            t1: 0,
            t2: 0,
            t3: 100,
            t4: 10,
        };
        assert_eq!(best(&[impossible]), None);
    }
}
