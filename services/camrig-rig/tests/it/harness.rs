//! The harness on its own, with real sshd, ssh and rsync but no camrig services.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use camrig_rig::netns::{self, Netns};
use camrig_rig::rig::{CONTROLLER_IP, OPERATOR_IP};
use camrig_rig::{Rig, RigError, Shaping};

fn network_rig(nodes: usize) -> Rig {
    Rig::builder()
        .nodes(nodes)
        .network_only()
        .build()
        .expect("building a network-only rig")
}

fn namespaces_with(stem_part: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(stem_part))
                .collect()
        })
        .unwrap_or_default()
}

fn stem_of(rig: &Rig) -> String {
    rig.scratch_dir()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn ssh_runs_commands_inside_the_node_host_with_strict_host_keys() {
    let rig = network_rig(2);
    for i in 0..2 {
        let out = rig
            .ssh_from_controller(i, "ip -4 -o addr show dev eth0")
            .unwrap();
        assert!(
            out.contains(&format!("{}/24", rig.node(i).ip)),
            "ssh to node {i} did not land in its namespace: {out}"
        );
    }
    // The known_hosts is pre-filled: nothing was added on first use.
    let kh = std::fs::read_to_string(&rig.known_hosts).unwrap();
    assert_eq!(kh.lines().count(), 2, "{kh}");
}

#[test]
fn rsync_pulls_a_file_over_ssh_and_resumes_a_partial_one() {
    let rig = network_rig(1);
    let src = rig.node(0).recordings().join("blob.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let dst = rig.controller_dir.join("pulled");
    std::fs::create_dir_all(&dst).unwrap();
    // A partial copy (the first third) as an interrupted transfer leaves it.
    std::fs::write(dst.join("blob.bin"), &data[..1_000_000]).unwrap();
    rig.rsync_from_node(0, &src, &dst).unwrap();
    assert_eq!(std::fs::read(dst.join("blob.bin")).unwrap(), data);
}

#[test]
fn a_wrong_host_key_is_refused() {
    let rig = network_rig(2);
    // Swap the two nodes' keys: each address now lists the other node's key.
    let kh = std::fs::read_to_string(&rig.known_hosts).unwrap();
    let lines: Vec<&str> = kh.lines().collect();
    let key = |l: &str| l.split_once(' ').unwrap().1.to_owned();
    let swapped = format!(
        "{} {}\n{} {}\n",
        rig.node(0).ip,
        key(lines[1]),
        rig.node(1).ip,
        key(lines[0])
    );
    std::fs::write(&rig.known_hosts, swapped).unwrap();
    match rig.ssh_from_controller(0, "true") {
        Err(RigError::Command { stderr, .. }) => assert!(
            stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
                || stderr.contains("Host key verification failed"),
            "{stderr}"
        ),
        other => panic!("ssh to a host with the wrong key must fail, got {other:?}"),
    }
    // A host missing from known_hosts is refused too (no trust on first use).
    std::fs::write(&rig.known_hosts, "").unwrap();
    let err = rig.ssh_from_controller(1, "true").unwrap_err().to_string();
    assert!(err.contains("Host key verification failed"), "{err}");
}

/// Sends `bytes` from `from`'s namespace to a listener in `to`'s and returns the rate in Mbit/s.
fn measure_mbit(from: &Netns, to: &Netns, to_ip: std::net::Ipv4Addr, bytes: usize) -> f64 {
    let addr = SocketAddr::from((to_ip, 5001));
    let listener = to.run_inside(|| TcpListener::bind(addr).unwrap()).unwrap();
    std::thread::scope(|s| {
        let rx = s.spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 1 << 16];
            let mut got = 0;
            let start = Instant::now();
            while got < bytes {
                let n = c.read(&mut buf).unwrap();
                assert!(n > 0, "connection closed early");
                got += n;
            }
            start.elapsed()
        });
        from.run_inside(|| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(&vec![0x5a; bytes]).unwrap();
        })
        .unwrap();
        let elapsed = rx.join().unwrap();
        bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e6
    })
}

#[test]
fn a_shaped_link_carries_its_rate_in_both_directions() {
    let rig = network_rig(1);
    let node_ns = rig.network().host(rig.node(0).host).netns();
    let ctl_ns = rig.network().host(rig.controller_host).netns();
    rig.shape_node(0, &Shaping::rate(20.0)).unwrap();
    let up = measure_mbit(node_ns, ctl_ns, CONTROLLER_IP, 3_000_000);
    let down = measure_mbit(ctl_ns, node_ns, rig.node(0).ip, 3_000_000);
    for (dir, rate) in [("upload", up), ("download", down)] {
        assert!(
            // The cap is what shaping guarantees; below it, a loaded two-core machine may
            // simply not keep up, so the floor only proves the link carries traffic.
            (4.0..=23.0).contains(&rate),
            "{dir} over a 20 Mbit/s link ran at {rate:.1} Mbit/s"
        );
    }
    // Unshaped again, the veth is far faster.
    rig.shape_node(0, &Shaping::default()).unwrap();
    let free = measure_mbit(node_ns, ctl_ns, CONTROLLER_IP, 3_000_000);
    assert!(free > 60.0, "unshaped link ran at {free:.1} Mbit/s");
}

#[test]
fn a_shaped_link_serves_its_peers_in_turn_not_behind_one_full_queue() {
    let rig = network_rig(2);
    let ctl_ns = rig.network().host(rig.controller_host).netns();
    let flooder = rig.network().host(rig.node(0).host).netns();
    let other = rig.network().host(rig.node(1).host).netns();
    // 10 Mbit/s: a full queue (100 ms of the link) holds 125 kB.
    rig.shape_controller(&Shaping::rate(10.0)).unwrap();
    let sink = SocketAddr::from((CONTROLLER_IP, 5004));
    let _sink = ctl_ns
        .run_inside(|| UdpSocket::bind(sink).unwrap())
        .unwrap();
    let listener = ctl_ns
        .run_inside(|| TcpListener::bind((CONTROLLER_IP, 5005)).unwrap())
        .unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let connects = std::thread::scope(|s| {
        s.spawn(|| {
            flooder
                .run_inside(|| {
                    let tx = UdpSocket::bind((rig.node(0).ip, 0)).unwrap();
                    let datagram = [0x5au8; 1400];
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let _ = tx.send_to(&datagram, sink);
                    }
                })
                .unwrap();
        });
        s.spawn(|| {
            while listener.accept().is_ok() && !stop.load(std::sync::atomic::Ordering::Relaxed) {}
        });
        // Node 0 has filled the controller's queue by now (far faster than 10 Mbit/s).
        std::thread::sleep(Duration::from_millis(300));
        let took: Vec<Duration> = (0..5)
            .map(|_| {
                other
                    .run_inside(|| {
                        let t = Instant::now();
                        let addr = SocketAddr::from((CONTROLLER_IP, 5005));
                        TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
                        t.elapsed()
                    })
                    .unwrap()
            })
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Wakes the accept loop, which sees the stop.
        ctl_ns
            .run_inside(|| TcpStream::connect((CONTROLLER_IP, 5005)))
            .unwrap()
            .unwrap();
        took
    });
    // Behind node 0's 125 kB a SYN would wait 100 ms; in its own bucket it waits for one
    // packet of node 0's.
    let fastest = connects.iter().min().unwrap();
    assert!(
        *fastest < Duration::from_millis(50),
        "node 1 waited behind node 0's queue: connects took {connects:?}"
    );
}

#[test]
fn a_lossy_link_drops_its_share_of_packets() {
    let rig = network_rig(1);
    let op = rig.network().host(rig.operator_host).netns();
    let node_ns = rig.network().host(rig.node(0).host).netns();
    let addr = SocketAddr::from((rig.node(0).ip, 5003));
    let rx = node_ns
        .run_inside(|| UdpSocket::bind(addr).unwrap())
        .unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let tx = op
        .run_inside(|| UdpSocket::bind((OPERATOR_IP, 0)).unwrap())
        .unwrap();
    // Sent in bursts of 50 and drained in between, so the receive buffer never overflows
    // and only the loss rule drops anything.
    let count = |n: usize| {
        let mut got = 0;
        let mut buf = [0u8; 8];
        for burst in 0..n / 50 {
            for _ in 0..50 {
                tx.send_to(b"x", addr).unwrap();
            }
            let deadline = Instant::now() + Duration::from_millis(150);
            while got < (burst + 1) * 50 && Instant::now() < deadline {
                if rx.recv(&mut buf).is_ok() {
                    got += 1;
                }
            }
        }
        got
    };
    assert_eq!(count(200), 200, "a clean link lost packets");
    rig.shape_node(
        0,
        &Shaping {
            loss_percent: Some(30.0),
            ..Shaping::default()
        },
    )
    .unwrap();
    let got = count(1000);
    assert!(
        (600..=800).contains(&got),
        "30% loss let {got} of 1000 through"
    );
    rig.shape_node(0, &Shaping::default()).unwrap();
    assert_eq!(count(200), 200, "loss stayed after unshaping");
}

#[test]
fn delay_uses_netem_or_says_the_kernel_lacks_it() {
    let rig = network_rig(1);
    let s = Shaping {
        rate_mbit: Some(50.0),
        delay: Some(Duration::from_millis(20)),
        loss_percent: None,
    };
    match rig.shape_node(0, &s) {
        Ok(()) => {
            // 20 ms each way: a TCP connect takes at least one 40 ms round trip.
            let addr = SocketAddr::from((rig.node(0).ip, 22));
            let rtt = rig
                .network()
                .host(rig.operator_host)
                .netns()
                .run_inside(|| {
                    let t = Instant::now();
                    TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
                    t.elapsed()
                })
                .unwrap();
            assert!(rtt >= Duration::from_millis(38), "rtt {rtt:?}");
        }
        Err(e) => {
            assert!(
                matches!(e, RigError::KernelLacks { qdisc: "netem", .. }),
                "{e}"
            );
            assert!(e.to_string().contains("no netem"), "{e}");
        }
    }
}

#[test]
fn a_cut_link_drops_traffic_and_a_restored_one_carries_open_connections_on() {
    let rig = network_rig(1);
    let op = rig.network().host(rig.operator_host).netns();
    let node_ns = rig.network().host(rig.node(0).host).netns();
    let addr = SocketAddr::from((rig.node(0).ip, 5002));
    let listener = node_ns
        .run_inside(|| TcpListener::bind(addr).unwrap())
        .unwrap();
    let mut conn = op.run_inside(|| TcpStream::connect(addr).unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    conn.write_all(b"before").unwrap();
    let mut buf = [0u8; 6];
    server.read_exact(&mut buf).unwrap();

    rig.cut_node(0).unwrap();
    let refused = op
        .run_inside(|| TcpStream::connect_timeout(&addr, Duration::from_millis(700)))
        .unwrap();
    assert!(refused.is_err(), "a new connection crossed a cut link");
    // Written while cut: held in the sender's retransmission queue, not lost.
    conn.write_all(b"during").unwrap();

    rig.restore_node(0).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"during");
    op.run_inside(|| TcpStream::connect_timeout(&addr, Duration::from_secs(3)))
        .unwrap()
        .expect("a new connection after restore");
}

#[test]
fn nothing_is_left_behind_even_when_a_test_panics() {
    let dir = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let rig = network_rig(2);
        *dir.lock().unwrap() = Some(stem_of(&rig));
        panic!("a scenario failing mid-way");
    });
    assert!(result.is_err());
    let stem = dir.lock().unwrap().clone().unwrap();
    assert_eq!(namespaces_with(&format!("{stem}-")), Vec::<String>::new());
    // The scratch directory is kept for inspection after a panic; this one was on purpose.
    let kept = netns::scratch_root().join(&stem);
    assert!(kept.join("controller/known_hosts").exists());
    std::fs::remove_dir_all(kept).unwrap();

    let rig = network_rig(1);
    let stem = stem_of(&rig);
    let sshd_pid = rig.node(0).sshd.process.pid();
    assert_eq!(namespaces_with(&format!("{stem}-")).len(), 4); // switch, ctl, op, n0
    drop(rig);
    assert_eq!(namespaces_with(&format!("{stem}-")), Vec::<String>::new());
    assert!(
        !Path::new(&format!("/proc/{sshd_pid}")).exists() || {
            // A zombie would show as a /proc entry; its state says it is gone.
            std::fs::read_to_string(format!("/proc/{sshd_pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
        }
    );
    assert!(!netns::scratch_root().join(&stem).exists());
}

#[test]
fn leftovers_of_a_killed_run_are_removed() {
    // A pid that certainly ran and is certainly gone.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let name = format!("{}{dead}-0-sw", netns::PREFIX);
    let ns = Netns::create(&name).unwrap();
    std::mem::forget(ns); // as if the run had been killed before its drop guards ran
    let scratch = netns::scratch_root().join(format!("{}{dead}-0", netns::PREFIX));
    std::fs::create_dir_all(&scratch).unwrap();

    netns::remove_leftovers(&netns::scratch_root());
    assert_eq!(namespaces_with(&name), Vec::<String>::new());
    assert!(!scratch.exists());
}
