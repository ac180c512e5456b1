//! Link shaping: a rate limit (token bucket, `tc` `tbf`) and delay (`netem`, as the token
//! bucket's child) on both ends of a host's link, and loss as an nftables rule set in the
//! host's namespace dropping a random share of its packets in each direction. Loss goes through
//! nftables because many kernels (this project's CI VM's among them) build `tbf` but not
//! `sch_netem`. Building the commands is pure and unit-tested; [`crate::network`] runs them.

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
        self.delay.is_some()
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
        cmds.push(c);
    }
    cmds
}

/// The nftables table that drops packets on a lossy host.
pub const LOSS_TABLE: &str = "camrig_loss";

/// An `nft -f` rule set dropping `percent` % of the packets `dev` sends and receives, or
/// `None` for a lossless link.
pub fn nft_loss_ruleset(dev: &str, shaping: &Shaping) -> Option<String> {
    let p = shaping.loss_percent.filter(|p| *p > 0.0)?;
    // numgen draws 0..9999 per packet: hundredths of a percent.
    let below = (p * 100.0).round().clamp(1.0, 10_000.0) as u32;
    // A verdict map over the range, not `numgen ... < N`: nft 1.0 compares the host-endian
    // random number as big-endian, which drops the wrong share.
    let drop = format!("numgen random mod 10000 vmap {{ 0-{} : drop }}", below - 1);
    Some(format!(
        "table inet {LOSS_TABLE} {{\n\
         \x20 chain egress {{ type filter hook output priority 0; oifname \"{dev}\" {drop}; }}\n\
         \x20 chain ingress {{ type filter hook input priority 0; iifname \"{dev}\" {drop}; }}\n\
         }}\n"
    ))
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
    fn delay_hangs_netem_under_the_bucket_and_loss_is_nftables() {
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
                "5000us"
            ])
        );
        let rules = nft_loss_ruleset("eth0", &s).unwrap();
        assert!(rules.starts_with("table inet camrig_loss {\n"), "{rules}");
        assert!(
            rules.contains("oifname \"eth0\" numgen random mod 10000 vmap { 0-149 : drop };"),
            "{rules}"
        );
        assert!(rules.contains("iifname \"eth0\""), "{rules}");
        assert_eq!(nft_loss_ruleset("eth0", &Shaping::rate(1.0)), None);
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
