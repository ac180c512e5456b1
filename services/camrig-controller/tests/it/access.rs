//! Access control over real HTTP: a stranger on the LAN and a page on another site try to
//! drive a recording rig; nothing they send does anything, while the API token does.

use reqwest::blocking::RequestBuilder;
use serde_json::json;

use crate::harness::{RigBuilder, API_TOKEN};

fn status(req: RequestBuilder) -> u16 {
    req.send().expect("controller answers").status().as_u16()
}

#[test]
fn strangers_and_other_sites_cannot_drive_the_rig() {
    let rig = RigBuilder::new().nodes(1).start();
    rig.start_take("guarded_01");
    rig.wait_recording(&[0], 10);
    let http = &rig.http;
    let stop = rig.url("/api/takes/current/stop");

    // A stranger with no credentials: nothing to read, nothing to stop.
    assert_eq!(status(http.get(rig.url("/api/rig"))), 401);
    assert_eq!(status(http.get(rig.url("/api/takes"))), 401);
    assert_eq!(status(http.get(rig.url("/api/events"))), 401);
    assert_eq!(
        status(http.get(rig.url("/api/nodes/0/cameras/1/preview.jpg"))),
        401
    );
    assert_eq!(status(http.post(&stop).json(&json!({}))), 401);
    assert_eq!(
        status(
            http.post(&stop)
                .json(&json!({}))
                .bearer_auth("guess-guess-guess")
        ),
        401
    );
    // A page on another site, through a browser that holds a credential: a form, a
    // text/plain body, or JSON with a foreign Origin; and a rebound DNS name.
    let token = |r: RequestBuilder| r.bearer_auth(API_TOKEN);
    let form = token(http.post(&stop))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "http://evil.example")
        .body("a=b");
    assert_eq!(status(form), 403);
    let plain = token(http.post(&stop))
        .header("content-type", "text/plain")
        .body("{}");
    assert_eq!(status(plain), 415);
    let foreign = token(http.post(&stop))
        .json(&json!({}))
        .header("origin", "http://evil.example")
        .header("sec-fetch-site", "cross-site");
    assert_eq!(status(foreign), 403);
    let rebound = token(http.post(&stop))
        .json(&json!({}))
        .header("host", "evil.example:8080");
    assert_eq!(status(rebound), 421);
    assert_eq!(
        rig.take("guarded_01")["state"],
        "recording",
        "nothing stopped it"
    );

    // The UI's own origin with a session, and the API token, work.
    let login = http
        .post(rig.url("/api/login"))
        .json(&json!({ "token": API_TOKEN }))
        .send()
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let r = http
        .get(rig.url("/api/rig"))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, body) = rig.post("/api/takes/current/stop", json!({}));
    assert_eq!(s, 200, "{body}");
}
