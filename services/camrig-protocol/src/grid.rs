//! The rig's frame grid (DESIGN.md decision 9): slot `n` starts at `n × T` ns since the Unix
//! epoch, `T = 1e9 / fps` ns. Every node derives it from its own disciplined clock, with no
//! message; phase lock, START/STOP placement, the sync report and the frames table all use
//! this one definition.
//!
//! `T` is kept as an exact rational: the frame rate is held in frames per 1000 s (so 30,
//! 29.97 and 59.94 are exact), and an instant is computed from its slot number in 128-bit
//! integers, never by adding a rounded period, so the grid does not drift however far from
//! the epoch it is evaluated.

use crate::UnixNanos;

/// Nanoseconds in 1000 s: `T = NS_PER_KILOSECOND / fps_milli`.
const NS_PER_KILOSECOND: i128 = 1_000_000_000_000;

/// One frame rate's grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameGrid {
    /// Frames per 1000 seconds (30 fps → 30 000; 29.97 fps → 29 970).
    fps_milli: u64,
}

/// A frame rate that has no grid.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("frame rate {0} is not between 0.001 and 1000 fps")]
pub struct GridError(pub f64);

impl FrameGrid {
    /// The grid of `fps` frames per second, rounded to a thousandth of a frame per second.
    pub fn new(fps: f64) -> Result<FrameGrid, GridError> {
        if !(fps.is_finite() && (0.001..=1000.0).contains(&fps)) {
            return Err(GridError(fps));
        }
        Ok(FrameGrid {
            fps_milli: (fps * 1000.0).round() as u64,
        })
    }

    /// The frame rate this grid was made for.
    pub fn fps(&self) -> f64 {
        self.fps_milli as f64 / 1000.0
    }

    /// The period in ns, as a float (for display and control arithmetic; instants use
    /// [`FrameGrid::instant_ns`]).
    pub fn period_ns(&self) -> f64 {
        NS_PER_KILOSECOND as f64 / self.fps_milli as f64
    }

    /// The start of slot `slot`, rounded to the nearest ns.
    pub fn instant_ns(&self, slot: i64) -> UnixNanos {
        self.scaled(2 * slot as i128)
    }

    /// The slot whose start is nearest to `t` (ties go to the later slot).
    pub fn nearest_slot(&self, t: UnixNanos) -> i64 {
        // slot = round(t × fps_milli / 1e12)
        let num = t as i128 * self.fps_milli as i128;
        div_round(num, NS_PER_KILOSECOND) as i64
    }

    /// `t`'s distance from the nearest slot start, in ns: within (−T/2, T/2].
    pub fn phase_error_ns(&self, t: UnixNanos) -> i64 {
        t - self.instant_ns(self.nearest_slot(t))
    }

    /// The first instant half a period between two slot starts at or after `t`: where START
    /// and STOP are placed, so a frame locked to the grid is never on the edge of a take.
    pub fn midpoint_at_or_after(&self, t: UnixNanos) -> UnixNanos {
        // Midpoints are the odd multiples of T/2: (2n + 1) × T/2.
        let half_periods = div_floor(t as i128 * 2 * self.fps_milli as i128, NS_PER_KILOSECOND);
        let mut odd = if half_periods % 2 == 0 {
            half_periods + 1
        } else {
            half_periods
        };
        if self.scaled(odd) < t {
            odd += 2;
        }
        self.scaled(odd)
    }

    /// `half_periods × T/2`, rounded to the nearest ns.
    fn scaled(&self, half_periods: i128) -> UnixNanos {
        let num = half_periods * NS_PER_KILOSECOND;
        div_round(num, 2 * self.fps_milli as i128) as UnixNanos
    }
}

fn div_floor(a: i128, b: i128) -> i128 {
    a.div_euclid(b)
}

fn div_round(a: i128, b: i128) -> i128 {
    div_floor(2 * a + b, 2 * b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAR: UnixNanos = 1_800_000_000_000_000_000; // 2027

    #[test]
    fn thirty_fps_slots_are_exact_thirds_of_a_second_however_far_from_the_epoch() {
        let g = FrameGrid::new(30.0).unwrap();
        assert_eq!(g.instant_ns(0), 0);
        assert_eq!(g.instant_ns(1), 33_333_333);
        assert_eq!(g.instant_ns(2), 66_666_667);
        assert_eq!(g.instant_ns(3), 100_000_000);
        let slot = g.nearest_slot(FAR);
        assert_eq!(slot, 54_000_000_000);
        assert_eq!(g.instant_ns(slot), FAR);
        assert_eq!(g.instant_ns(slot + 30), FAR + 1_000_000_000);
    }

    #[test]
    fn ntsc_rates_are_exact() {
        let g = FrameGrid::new(29.97).unwrap();
        // 1001 s hold exactly 29 999.97 ... frames: 30 000 frames take 1001 s.
        assert_eq!(g.instant_ns(29_970), 1_000_000_000_000);
        assert_eq!(g.fps(), 29.97);
    }

    #[test]
    fn phase_error_is_signed_and_within_half_a_period() {
        let g = FrameGrid::new(30.0).unwrap();
        let base = g.instant_ns(g.nearest_slot(FAR));
        assert_eq!(g.phase_error_ns(base + 1_000), 1_000);
        assert_eq!(g.phase_error_ns(base - 1_000), -1_000);
        assert_eq!(g.phase_error_ns(base + 16_000_000), 16_000_000);
        assert!(g.phase_error_ns(base + 17_000_000) < 0);
        for t in (0..40_000_000).step_by(999_983) {
            let e = g.phase_error_ns(base + t);
            assert!(e.abs() <= 16_666_667, "{t}: {e}");
        }
    }

    #[test]
    fn start_and_stop_fall_half_a_period_between_slots() {
        let g = FrameGrid::new(30.0).unwrap();
        let slot = g.nearest_slot(FAR);
        let at = g.midpoint_at_or_after(FAR + 1);
        assert_eq!(at, FAR + 16_666_667);
        assert_eq!(g.midpoint_at_or_after(at), at);
        assert_eq!(
            g.midpoint_at_or_after(at + 1),
            g.instant_ns(slot + 1) + 16_666_667
        );
        assert_eq!(g.nearest_slot(at + 1), slot + 1);
        assert_eq!(g.midpoint_at_or_after(0), 16_666_667);
        assert_eq!(g.midpoint_at_or_after(-1), 16_666_667);
        assert_eq!(g.midpoint_at_or_after(-16_666_667), -16_666_667);
    }

    #[test]
    fn rates_without_a_grid_are_refused() {
        for fps in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e6] {
            assert!(FrameGrid::new(fps).is_err(), "{fps}");
        }
    }
}
