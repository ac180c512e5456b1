//! Link shaping as `tc` sees it: a rate limit (token bucket, `tbf`), optionally with delay and
//! loss (`netem`, as the token bucket's child). Building the argument lists is pure and
//! unit-tested; [`crate::network`] runs them on both ends of a host's link.

use std::time::Duration;

/// How one host's link behaves, in each direction.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Shaping {
    /// Rate limit in Mbit/s; `None` leaves the veth's native speed.
    pub rate_mbit: Option<f64>,
    /// One-way delay added in each direction.
    pub delay: Option<Duration>,
    /// Share of packets dropped in each direction, in percent.
    pub loss_percent: Option<f64>,
}

impl Shaping {
    pub fn rate(mbit: f64) -> Shaping {
        Shaping {
            rate_mbit: Some(mbit),
            ..Shaping::default()
        }
    }

    pub fn needs_netem(&self) -> bool {
        self.delay.is_some() || self.loss_percent.is_some()
    }
}

/// The `tc` argument lists that give `dev`'s egress the shaping, starting from no qdisc at all
/// (the caller deletes the old root first). Empty for an unshaped link.
pub fn tc_commands(dev: &str, shaping: &Shaping) -> Vec<Vec<String>> {
    let mut cmds = Vec::new();
    let mut netem_parent = vec!["root".to_owned()];
    if let Some(mbit) = shaping.rate_mbit {
        let kbit = (mbit * 1000.0).round() as u64;
        // The bucket must hold at least one timer tick of traffic (HZ may be as low as 100)
        // and a few full-size GSO packets, or tbf cannot reach the rate.
        let burst = (kbit * 1000 / 8 / 100).max(64 * 1024);
        cmds.push(args(&[
            "qdisc",
            "add",
            "dev",
            dev,
            "root",
            "handle",
            "1:",
            "tbf",
            "rate",
            &format!("{kbit}kbit"),
            "burst",
            &burst.to_string(),
            "latency",
            "100ms",
        ]));
        netem_parent = vec!["parent".to_owned(), "1:1".to_owned()];
    }
    if shaping.needs_netem() {
        let mut c = args(&["qdisc", "add", "dev", dev]);
        c.extend(netem_parent);
        c.extend(args(&["handle", "10:", "netem"]));
        if let Some(d) = shaping.delay {
            c.extend(args(&["delay", &format!("{}us", d.as_micros())]));
        }
        if let Some(p) = shaping.loss_percent {
            c.extend(args(&["loss", &format!("{p}%")]));
        }
        cmds.push(c);
    }
    cmds
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_only_is_one_token_bucket() {
        let c = tc_commands("eth0", &Shaping::rate(100.0));
        assert_eq!(
            c,
            vec![args(&[
                "qdisc",
                "add",
                "dev",
                "eth0",
                "root",
                "handle",
                "1:",
                "tbf",
                "rate",
                "100000kbit",
                "burst",
                "125000",
                "latency",
                "100ms"
            ])]
        );
    }

    #[test]
    fn slow_links_keep_a_minimum_bucket() {
        let c = tc_commands("p1", &Shaping::rate(1.0));
        assert!(c[0].contains(&"65536".to_owned()), "{c:?}");
        assert!(c[0].contains(&"1000kbit".to_owned()), "{c:?}");
    }

    #[test]
    fn delay_and_loss_hang_netem_under_the_bucket() {
        let s = Shaping {
            rate_mbit: Some(10.0),
            delay: Some(Duration::from_millis(5)),
            loss_percent: Some(1.5),
        };
        let c = tc_commands("eth0", &s);
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[1],
            args(&[
                "qdisc", "add", "dev", "eth0", "parent", "1:1", "handle", "10:", "netem", "delay",
                "5000us", "loss", "1.5%"
            ])
        );
    }

    #[test]
    fn netem_alone_is_the_root() {
        let s = Shaping {
            delay: Some(Duration::from_millis(2)),
            ..Shaping::default()
        };
        let c = tc_commands("eth0", &s);
        assert_eq!(c.len(), 1);
        assert_eq!(&c[0][4..6], &args(&["root", "handle"])[..]);
        assert!(tc_commands("eth0", &Shaping::default()).is_empty());
    }
}
