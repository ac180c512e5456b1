//! The rig's network: a "switch" namespace holding a bridge, and one namespace per host joined
//! to it by a veth pair, all on `10.77.0.0/24`. Nothing is created in the machine's own
//! network namespace. Each host's link can be shaped, cut (the switch port goes down, as if the
//! cable were pulled) and restored.

use std::net::Ipv4Addr;

use crate::error::{Result, RigError};
use crate::link_shaping::{nft_loss_ruleset, tc_commands, Peer, Shaping, LOSS_TABLE};
use crate::netns::Netns;

/// The rig's subnet; addresses exist only inside the rig's namespaces.
pub const SUBNET_PREFIX_LEN: u8 = 24;

/// Name of every host's interface inside its namespace.
pub const HOST_IF: &str = "eth0";
const BRIDGE: &str = "br0";

/// One host: its namespace, address, and the switch port its cable plugs into.
#[derive(Debug)]
pub struct Host {
    pub label: String,
    pub ip: Ipv4Addr,
    port: String,
    netns: Netns,
}

impl Host {
    pub fn netns(&self) -> &Netns {
        &self.netns
    }
}

/// The switch and the hosts plugged into it. Dropping it deletes every namespace (hosts first,
/// then the switch), killing whatever still runs inside.
#[derive(Debug)]
pub struct Network {
    stem: String,
    hosts: Vec<Host>,
    switch: Netns,
}

/// Index of a host in its [`Network`].
pub type HostId = usize;

impl Network {
    pub fn new(stem: &str) -> Result<Network> {
        let switch = Netns::create(&format!("{stem}-sw"))?;
        switch.exec("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        switch.exec("ip", &["link", "set", BRIDGE, "up"])?;
        Ok(Network {
            stem: stem.to_owned(),
            hosts: Vec::new(),
            switch,
        })
    }

    /// Creates a host namespace `<stem>-<label>` with `eth0` at `ip`, plugged into the switch.
    pub fn add_host(&mut self, label: &str, ip: Ipv4Addr) -> Result<HostId> {
        let id = self.hosts.len();
        let netns = Netns::create(&format!("{}-{label}", self.stem))?;
        let port = format!("p{id}");
        // Both ends are created straight inside their namespaces, so no interface ever exists
        // in the machine's own namespace (and parallel rigs cannot clash on names).
        crate::netns::run(
            "ip",
            &[
                "link",
                "add",
                HOST_IF,
                "netns",
                netns.name(),
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                self.switch.name(),
            ],
        )?;
        self.switch
            .exec("ip", &["link", "set", &port, "master", BRIDGE, "up"])?;
        netns.exec(
            "ip",
            &[
                "addr",
                "add",
                &format!("{ip}/{SUBNET_PREFIX_LEN}"),
                "dev",
                HOST_IF,
            ],
        )?;
        netns.exec("ip", &["link", "set", HOST_IF, "up"])?;
        self.hosts.push(Host {
            label: label.to_owned(),
            ip,
            port,
            netns,
        });
        Ok(id)
    }

    pub fn host(&self, id: HostId) -> &Host {
        &self.hosts[id]
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Shapes the host's link in both directions: its own egress (upload) and the switch
    /// port's egress (download). `Shaping::default()` removes all shaping.
    pub fn shape(&self, id: HostId, shaping: &Shaping) -> Result<()> {
        let host = &self.hosts[id];
        apply(&host.netns, HOST_IF, shaping, Peer::Destination)?;
        apply(&self.switch, &host.port, shaping, Peer::Source)?;
        // Loss: one rule set on the host covers both directions.
        let _ = host
            .netns
            .exec("nft", &["delete", "table", "inet", LOSS_TABLE]);
        if let Some(rules) = nft_loss_ruleset(HOST_IF, shaping) {
            let file = std::env::temp_dir().join(format!("{}-loss.nft", host.netns.name()));
            std::fs::write(&file, rules).map_err(RigError::io("writing a loss rule set"))?;
            let applied = host.netns.exec("nft", &["-f", &file.display().to_string()]);
            let _ = std::fs::remove_file(&file);
            applied?;
        }
        Ok(())
    }

    /// Pulls the host's cable: the switch port goes down and the host's interface loses
    /// carrier. Its address and sockets stay, as on a real Pi.
    pub fn cut(&self, id: HostId) -> Result<()> {
        self.switch
            .exec("ip", &["link", "set", &self.hosts[id].port, "down"])
            .map(drop)
    }

    /// Plugs the cable back in.
    pub fn restore(&self, id: HostId) -> Result<()> {
        self.switch
            .exec("ip", &["link", "set", &self.hosts[id].port, "up"])
            .map(drop)
    }

    pub fn switch(&self) -> &Netns {
        &self.switch
    }
}

fn apply(ns: &Netns, dev: &str, shaping: &Shaping, peer: Peer) -> Result<()> {
    // Deleting a root that does not exist fails; that is the unshaped starting point.
    let _ = ns.exec("tc", &["qdisc", "del", "dev", dev, "root"]);
    let cmds = tc_commands(dev, shaping, peer);
    if cmds.is_empty() {
        return Ok(());
    }
    // One `tc -batch` for the dozens of commands of a fair queue: one process, not one each.
    let batch: String = cmds.iter().map(|c| c.join(" ") + "\n").collect();
    let file = std::env::temp_dir().join(format!("{}-{dev}-tc.batch", ns.name()));
    std::fs::write(&file, &batch).map_err(RigError::io("writing a tc batch"))?;
    let applied = ns.exec("tc", &["-batch", &file.display().to_string()]);
    let _ = std::fs::remove_file(&file);
    applied.map(drop).map_err(|e| match e {
        RigError::Command { ref stderr, .. }
            if stderr.contains("unknown") && batch.contains(" netem") =>
        {
            RigError::KernelLacks {
                qdisc: "netem",
                feature: "delay",
            }
        }
        other => other,
    })
}
