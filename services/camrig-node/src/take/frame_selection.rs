//! Which frames belong to a take, which segment they go to, how many were lost and where a
//! MARK falls: pure functions of timestamps (DESIGN.md decisions 1 and 2).

use camrig_protocol::UnixNanos;

/// Where a frame stands relative to the take's scheduled window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Before START: not recorded.
    Before,
    /// In `[start_at, stop_at)`: recorded.
    Keep,
    /// At or after STOP: the take is over.
    After,
}

/// The first kept frame is the first with `ts >= start_at`; the last is the last with
/// `ts < stop_at`.
pub fn place(ts: UnixNanos, start_at: UnixNanos, stop_at: Option<UnixNanos>) -> Placement {
    if ts < start_at {
        Placement::Before
    } else if stop_at.is_some_and(|stop| ts >= stop) {
        Placement::After
    } else {
        Placement::Keep
    }
}

/// Segment `k` holds the frames with `start_at + k·len <= ts < start_at + (k+1)·len`, so
/// every camera and every node of a rig cuts its segments at the same instants.
pub fn segment_of(ts: UnixNanos, start_at: UnixNanos, segment_ns: i64) -> u32 {
    u32::try_from((ts - start_at).max(0) / segment_ns).unwrap_or(u32::MAX)
}

/// Counts lost frames between consecutive kept frames of one camera: a sequence gap, or
/// (for backends whose sequence numbers cannot be trusted) an interval over 1.5 periods.
#[derive(Clone, Debug)]
pub struct DropCounter {
    period_ns: i64,
    last: Option<(u64, UnixNanos)>,
    pub drops: u64,
}

impl DropCounter {
    pub fn new(period_ns: i64) -> DropCounter {
        DropCounter {
            period_ns,
            last: None,
            drops: 0,
        }
    }

    /// Notes a frame seen before the take started, so frames lost between it and the first
    /// kept frame count as drops of the take.
    pub fn saw_before_start(&mut self, sequence: u64, ts: UnixNanos) {
        self.last = Some((sequence, ts));
    }

    /// Records the next kept frame and returns how many frames were lost just before it.
    pub fn observe(&mut self, sequence: u64, ts: UnixNanos) -> u64 {
        let lost = match self.last {
            None => 0,
            Some((last_seq, last_ts)) => {
                let by_sequence = sequence.saturating_sub(last_seq).saturating_sub(1);
                let interval = ts - last_ts;
                let by_time = if interval * 2 > self.period_ns * 3 {
                    // Rounded number of periods elapsed, minus the frame we did get.
                    ((interval + self.period_ns / 2) / self.period_ns - 1).max(1) as u64
                } else {
                    0
                };
                by_sequence.max(by_time)
            }
        };
        self.last = Some((sequence, ts));
        self.drops += lost;
        lost
    }
}

/// Index of the first frame with `ts >= at` in a camera's kept timestamps, if there is one.
pub fn marker_frame(timestamps: &[UnixNanos], at: UnixNanos) -> Option<usize> {
    let i = timestamps.partition_point(|&t| t < at);
    (i < timestamps.len()).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: i64 = 33_333_333;

    #[test]
    fn start_and_stop_bound_the_take() {
        let start = 1_000;
        assert_eq!(place(999, start, None), Placement::Before);
        assert_eq!(place(1_000, start, None), Placement::Keep);
        assert_eq!(place(5_000, start, Some(5_001)), Placement::Keep);
        assert_eq!(place(5_001, start, Some(5_001)), Placement::After);
    }

    #[test]
    fn a_grid_camera_keeps_the_first_frame_within_one_period_of_start() {
        // Frames on a 30 fps grid with some latency; START between two frames.
        let frames: Vec<i64> = (0..100).map(|k| k * P + 150_000).collect();
        let start = 10 * P + 5;
        let first = frames
            .iter()
            .copied()
            .find(|&t| place(t, start, None) == Placement::Keep)
            .unwrap();
        assert!(first >= start && first < start + P, "{first} vs {start}");
        let stop = 20 * P;
        let kept: Vec<i64> = frames
            .iter()
            .copied()
            .filter(|&t| place(t, start, Some(stop)) == Placement::Keep)
            .collect();
        assert_eq!(kept.len(), 10);
        assert!(*kept.last().unwrap() < stop);
    }

    #[test]
    fn segments_are_cut_on_the_take_grid() {
        let s = 1_000_000_000;
        assert_eq!(segment_of(0, 0, s), 0);
        assert_eq!(segment_of(s - 1, 0, s), 0);
        assert_eq!(segment_of(s, 0, s), 1);
        assert_eq!(segment_of(5 * s + 7, 7, s), 5);
    }

    #[test]
    fn drops_are_counted_by_sequence_gap_or_late_frame() {
        let mut d = DropCounter::new(P);
        assert_eq!(d.observe(10, 0), 0);
        assert_eq!(d.observe(11, P), 0);
        assert_eq!(d.observe(14, 4 * P), 2, "sequence gap of two");
        assert_eq!(d.observe(15, 5 * P + P / 3), 0, "jitter is not a drop");
        assert_eq!(d.observe(16, 7 * P), 1, "late by two periods with no gap");
        assert_eq!(d.drops, 3);

        let mut d = DropCounter::new(P);
        d.saw_before_start(9, 0);
        assert_eq!(d.observe(12, 3 * P), 2, "frames lost right at START count");
    }

    #[test]
    fn markers_map_to_the_first_frame_at_or_after_the_click() {
        let ts = [100, 133, 166, 200];
        assert_eq!(marker_frame(&ts, 0), Some(0));
        assert_eq!(marker_frame(&ts, 133), Some(1));
        assert_eq!(marker_frame(&ts, 134), Some(2));
        assert_eq!(marker_frame(&ts, 201), None);
    }
}
