//! Link shaping: a rate limit (token bucket, `tc` `tbf`) whose queue is shared fairly between
//! the peers the link carries traffic to or from, and delay (`netem`, as the token bucket's
//! child) on both ends of a host's link, and loss as an nftables rule set in the host's
//! namespace dropping a random share of its packets in each direction. Loss goes through
//! nftables because many kernels (this project's CI VM's among them) build `tbf` but not
//! `sch_netem`. Building the commands is pure and unit-tested; [`crate::network`] runs them.
//!
//! The fair queue: with one FIFO behind the token bucket every peer's packets wait behind
//! whatever the busiest sender has queued (up to 100 ms of the link: a STATUS answer or a SYN
//! behind another node's download), and flows sharing the link get whatever share their
//! senders grab. Linux's own queue in front of a NIC (`fq_codel`, the default) serves its
//! flows in turn; the CI kernel builds neither `fq_codel`, `fq` nor `sfq`, so the token
//! bucket's child is that round robin built from what it has: an `htb` whose classes are never
//! the limit (the token bucket is), one per bucket of the peer's address (a `u32` hash of its
//! last four bits), each with its own byte FIFO. Delay replaces that child with `netem` (one
//! FIFO).

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

/// Which end of the packets a link's egress carries is the other host: the source on a switch
/// port (traffic towards the host), the destination on the host's own interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Source,
    Destination,
}

impl Peer {
    /// Offset of the address in the IPv4 header.
    fn offset(self) -> u32 {
        match self {
            Peer::Source => 12,
            Peer::Destination => 16,
        }
    }
}

/// Buckets of the fair queue: peers whose addresses differ in their last four bits never
/// share one.
pub const FAIR_BUCKETS: u32 = 16;

/// How long a full queue takes to drain at the link's rate (tbf's `latency`); each bucket of
/// the fair queue holds that much too, as one flow alone had it with a plain token bucket.
const QUEUE_LATENCY_MS: u64 = 100;

/// The `tc` argument lists that give `dev`'s egress the shaping, starting from no qdisc at all
/// (the caller deletes the old root first). Empty for an unshaped link. `peer` says which
/// address of its packets is the other host, the key of the fair queue.
pub fn tc_commands(dev: &str, shaping: &Shaping, peer: Peer) -> Vec<Vec<String>> {
    let mut cmds = Vec::new();
    let mut child_parent = vec!["root".to_owned()];
    let mut queue_bytes = 0;
    if let Some(mbit) = shaping.rate_mbit {
        let kbit = (mbit * 1000.0).round() as u64;
        // The bucket must hold at least one timer tick of traffic (HZ may be as low as 100)
        // and a few full-size GSO packets, or tbf cannot reach the rate.
        let burst = (kbit * 1000 / 8 / 100).max(64 * 1024);
        queue_bytes = (kbit * 1000 / 8 * QUEUE_LATENCY_MS / 1000).max(burst);
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
            &format!("{QUEUE_LATENCY_MS}ms"),
        ]));
        child_parent = vec!["parent".to_owned(), "1:1".to_owned()];
    }
    if shaping.needs_netem() {
        let mut c = args(&["qdisc", "add", "dev", dev]);
        c.extend(child_parent);
        c.extend(args(&["handle", "10:", "netem"]));
        if let Some(d) = shaping.delay {
            c.extend(args(&["delay", &format!("{}us", d.as_micros())]));
        }
        cmds.push(c);
    } else if shaping.rate_mbit.is_some() {
        cmds.extend(fair_queue(dev, queue_bytes, peer));
    }
    cmds
}

/// Minor number of the first bucket's class (`10:10`); bucket `b` is `10:(BASE + b)`, and the
/// first bucket is also the default class for packets the hash does not place (ARP).
const BUCKET_CLASS_BASE: u32 = 0x10;

/// The fair queue's class for one address bucket.
fn bucket_class(bucket: u32) -> String {
    format!("10:{:x}", BUCKET_CLASS_BASE + bucket)
}

/// The token bucket's child when it has no delay: one class per address bucket, served in
/// turn. The classes' own rate is far above any link's, so only the token bucket limits.
fn fair_queue(dev: &str, queue_bytes: u64, peer: Peer) -> Vec<Vec<String>> {
    let unlimited = ["rate", "100gbit", "quantum", "65536"];
    let mut cmds = vec![
        args(&[
            "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:", "htb",
        ])
        .into_iter()
        .chain(args(&["default", &format!("{:x}", BUCKET_CLASS_BASE)]))
        .collect(),
        args(&[
            "class", "add", "dev", dev, "parent", "10:", "classid", "10:1", "htb",
        ])
        .into_iter()
        .chain(args(&unlimited))
        .collect(),
    ];
    for bucket in 0..FAIR_BUCKETS {
        let class = bucket_class(bucket);
        let mut c = args(&[
            "class", "add", "dev", dev, "parent", "10:1", "classid", &class,
        ]);
        c.extend(args(&["htb"]));
        c.extend(args(&unlimited));
        cmds.push(c);
        cmds.push(args(&[
            "qdisc",
            "add",
            "dev",
            dev,
            "parent",
            &class,
            "bfifo",
            "limit",
            &queue_bytes.to_string(),
        ]));
    }
    // A hash table of FAIR_BUCKETS buckets keyed on the peer address's last four bits, each
    // bucket sending to its class; packets that are not IPv4 (ARP) take the default class.
    let filter = ["filter", "add", "dev", dev, "parent", "10:", "prio", "1"];
    let mut table = args(&filter);
    table.extend(args(&[
        "handle",
        "2:",
        "protocol",
        "ip",
        "u32",
        "divisor",
        &FAIR_BUCKETS.to_string(),
    ]));
    cmds.push(table);
    for bucket in 0..FAIR_BUCKETS {
        let mut c = args(&filter);
        c.extend(args(&[
            "protocol",
            "ip",
            "u32",
            "ht",
            &format!("2:{bucket:x}:"),
            "match",
            "u32",
            "0",
            "0",
            "flowid",
            &bucket_class(bucket),
        ]));
        cmds.push(c);
    }
    let mut link = args(&filter);
    link.extend(args(&[
        "protocol",
        "ip",
        "u32",
        "ht",
        "800::",
        "match",
        "u32",
        "0",
        "0",
        "hashkey",
        "mask",
        &format!("0x{:08x}", FAIR_BUCKETS - 1),
        "at",
        &peer.offset().to_string(),
        "link",
        "2:",
    ]));
    cmds.push(link);
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

    fn line(c: &[String]) -> String {
        c.join(" ")
    }

    #[test]
    fn rate_is_a_token_bucket_over_a_fair_queue_of_peers() {
        let c = tc_commands("p3", &Shaping::rate(100.0), Peer::Source);
        assert_eq!(
            line(&c[0]),
            "qdisc add dev p3 root handle 1: tbf rate 100000kbit burst 125000 latency 100ms"
        );
        assert_eq!(
            line(&c[1]),
            "qdisc add dev p3 parent 1:1 handle 10: htb default 10"
        );
        assert_eq!(
            line(&c[2]),
            "class add dev p3 parent 10: classid 10:1 htb rate 100gbit quantum 65536"
        );
        // Every bucket: a class under 10:1 with a byte FIFO of 100 ms at the link's rate.
        let classes: Vec<String> = c.iter().map(|c| line(c)).collect();
        for b in 0..FAIR_BUCKETS {
            let id = format!("10:{:x}", 0x10 + b);
            assert!(classes.contains(&format!(
                "class add dev p3 parent 10:1 classid {id} htb rate 100gbit quantum 65536"
            )));
            assert!(classes.contains(&format!("qdisc add dev p3 parent {id} bfifo limit 1250000")));
            assert!(classes.contains(&format!(
                "filter add dev p3 parent 10: prio 1 protocol ip u32 ht 2:{b:x}: match u32 0 0 flowid {id}"
            )));
        }
        // The hash table exists before its buckets' filters; the root filter links last.
        let table = "filter add dev p3 parent 10: prio 1 handle 2: protocol ip u32 divisor 16";
        let at = |l: &str| classes.iter().position(|c| c == l).unwrap();
        assert!(at(table) < at("filter add dev p3 parent 10: prio 1 protocol ip u32 ht 2:0: match u32 0 0 flowid 10:10"));
        assert_eq!(
            classes.last().unwrap(),
            "filter add dev p3 parent 10: prio 1 protocol ip u32 ht 800:: match u32 0 0 hashkey mask 0x0000000f at 12 link 2:"
        );
        // On the host's own interface the other host is the destination.
        let own = tc_commands("eth0", &Shaping::rate(100.0), Peer::Destination);
        assert!(line(own.last().unwrap()).contains("hashkey mask 0x0000000f at 16 link 2:"));
    }

    #[test]
    fn slow_links_keep_a_minimum_bucket() {
        let c = tc_commands("p1", &Shaping::rate(1.0), Peer::Source);
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
        let c = tc_commands("eth0", &s, Peer::Destination);
        assert_eq!(c.len(), 2, "delay replaces the fair queue: {c:?}");
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
        let c = tc_commands("eth0", &s, Peer::Destination);
        assert_eq!(c.len(), 1);
        assert_eq!(&c[0][4..6], &args(&["root", "handle"])[..]);
        assert!(tc_commands("eth0", &Shaping::default(), Peer::Destination).is_empty());
    }
}
