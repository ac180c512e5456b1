//! A bounded HTTP fuzz test against both real services: random methods, paths built from
//! the real routes with hostile segments, random headers and bodies (valid JSON with
//! hostile values, broken JSON, random bytes), all with valid credentials so the requests
//! reach the handlers. Any 5xx, a dropped connection or a dead process fails the test,
//! naming the request. `CAMRIG_HTTP_FUZZ_SEED` replays a run; `CAMRIG_HTTP_FUZZ_SECONDS`
//! (default 10 per service) bounds it.

use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::harness::{RigBuilder, API_TOKEN, NODE_PORT, TOKEN};

/// xorshift64*: small, seedable, good enough to pick test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const SEGMENTS: &[&str] = &[
    "t1",
    "fuzz_take",
    "a",
    "..",
    ".",
    "-rf",
    "%2e%2e",
    "%00",
    "a%2Fb",
    "current",
    "0",
    "1",
    "2",
    "-1",
    "18446744073709551616",
    "99999999999",
    "%ff%fe",
    "%E2%82%AC",
    "x.y-z_",
    "take%20name",
    "%",
];

fn segment(rng: &mut Rng) -> String {
    match rng.below(5) {
        0 => "x".repeat(1 + rng.below(300)),
        1 => format!("fz_{}", rng.next() % 1000),
        _ => rng.pick(SEGMENTS).to_string(),
    }
}

fn value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 2 { 9 } else { 11 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(i64::MAX),
        3 => json!(i64::MIN),
        4 => json!(rng.next() as i64),
        5 => json!(-1),
        6 => json!(1e308),
        7 => json!(segment(rng)),
        8 => json!("\u{0}\u{202e}😀\n\"'"),
        9 => Value::Array((0..rng.below(4)).map(|_| value(rng, depth + 1)).collect()),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.below(4) {
                m.insert(rng.pick(FIELDS).to_string(), value(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// Field names of both APIs' bodies, so objects reach past "unknown field".
const FIELDS: &[&str] = &[
    "name",
    "allow_partial",
    "override_clock",
    "note",
    "nodes",
    "password",
    "token",
    "current",
    "new",
    "take",
    "command_id",
    "start_at_ns",
    "stop_at_ns",
    "at_ns",
    "reason",
    "files",
    "path",
    "sha256",
    "size",
    "bogus",
];

fn body(rng: &mut Rng) -> Vec<u8> {
    match rng.below(8) {
        0 => Vec::new(),
        1 => b"{}".to_vec(),
        2 => (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
        3 => b"{\"name\":".to_vec(),
        4 => {
            let mut m = serde_json::Map::new();
            m.insert(rng.pick(FIELDS).to_string(), value(rng, 0));
            serde_json::to_vec(&Value::Object(m)).unwrap()
        }
        _ => serde_json::to_vec(&value(rng, 0)).unwrap(),
    }
}

struct Target {
    base: String,
    bearer: &'static str,
    routes: &'static [&'static str],
}

fn fuzz(target: &Target, http: &Client, rng: &mut Rng, seconds: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut sent = 0;
    while Instant::now() < deadline {
        let route = rng.pick(target.routes);
        let path: String = route
            .split('/')
            .map(|p| if p == "*" { segment(rng) } else { p.to_owned() })
            .collect::<Vec<_>>()
            .join("/");
        let path = if rng.below(10) == 0 {
            format!("{path}?{}={}", segment(rng), segment(rng))
        } else {
            path
        };
        let method = *rng.pick(&[
            "GET", "GET", "POST", "POST", "POST", "PUT", "DELETE", "PATCH", "HEAD",
        ]);
        let bytes = body(rng);
        let ctype = *rng.pick(&[
            "application/json",
            "application/json",
            "text/plain",
            "application/json; charset=utf-8",
        ]);
        let url = format!("{}{path}", target.base);
        let req = http
            .request(method.parse().unwrap(), &url)
            .bearer_auth(target.bearer)
            .header("content-type", ctype)
            .body(bytes.clone());
        let what = format!(
            "{method} {path} ({ctype}) body {:?}",
            String::from_utf8_lossy(&bytes)
        );
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("no answer to {what}: {e}"));
        let status = resp.status();
        // An event stream never ends: the status line is the answer.
        let text = if path.starts_with("/api/events") && status.is_success() {
            String::new()
        } else {
            resp.text().unwrap_or_default()
        };
        assert!(!status.is_server_error(), "{status} for {what}: {text}");
        sent += 1;
    }
    sent
}

#[test]
fn random_requests_never_get_a_server_error() {
    let seed: u64 = std::env::var("CAMRIG_HTTP_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| camrig_protocol::now_unix_ns() as u64 | 1);
    let seconds: u64 = std::env::var("CAMRIG_HTTP_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    eprintln!("http fuzz seed {seed} (CAMRIG_HTTP_FUZZ_SEED={seed} replays it)");
    let rig = RigBuilder::new().nodes(1).start();
    let http = Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut rng = Rng(seed);
    let node = Target {
        base: format!("http://{}:{NODE_PORT}", rig.nodes[0].ip),
        bearer: TOKEN,
        routes: &[
            "/v1/status",
            "/v1/time",
            "/v1/takes",
            "/v1/takes/start",
            "/v1/takes/stop",
            "/v1/takes/mark",
            "/v1/takes/abort",
            "/v1/takes/*/manifest",
            "/v1/takes/*",
            "/v1/cameras/*/preview.jpg",
            "/v1/*",
            "/*",
        ],
    };
    let controller = Target {
        base: rig.url(""),
        bearer: API_TOKEN,
        routes: &[
            "/",
            "/login",
            "/api/rig",
            "/api/takes",
            "/api/takes/*",
            "/api/takes/current/mark",
            "/api/takes/current/stop",
            "/api/takes/*/download",
            "/api/takes/*/delete-from-nodes",
            "/api/downloads",
            "/api/nodes/*/cameras/*/preview.jpg",
            "/api/login",
            "/api/logout",
            "/api/password",
            "/api/*",
            "/*",
        ],
    };
    let n = fuzz(&node, &http, &mut rng, seconds);
    let c = fuzz(&controller, &http, &mut rng, seconds);
    eprintln!("http fuzz: {n} requests to the node, {c} to the controller, no 5xx");
    // Both still serve.
    assert_eq!(rig.get("/api/rig").0, 200, "{}", rig.logs());
    assert_eq!(rig.node_get(0, "/v1/status").0, 200, "{}", rig.logs());
}
