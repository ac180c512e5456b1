//! An HTTP client that lives inside a rig host's namespace (a worker thread that entered it),
//! so the test process, itself in the machine's own namespace, can talk to services that
//! listen only on rig addresses.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::error::{Result, RigError};
use crate::netns::Netns;

/// An answer: status and body, whatever the status (4xx answers are results, not errors).
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.body).map_err(|e| {
            RigError::Invalid(format!(
                "unexpected json ({e}) in answer {}: {}",
                self.status, self.body
            ))
        })
    }

    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

type Job = Box<dyn FnOnce(&ureq::Agent) + Send>;

/// A blocking HTTP client whose sockets are opened inside one namespace.
pub struct HttpClient {
    jobs: Option<mpsc::Sender<Job>>,
    worker: Option<JoinHandle<()>>,
}

impl HttpClient {
    pub fn new(ns: &Netns) -> Result<HttpClient> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let name = ns.name().to_owned();
        let worker = std::thread::spawn(move || {
            let entered = crate::netns::enter(&name);
            let ok = entered.is_ok();
            let _ = ready_tx.send(entered);
            if !ok {
                return;
            }
            let agent = ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(3))
                .timeout(Duration::from_secs(30))
                .build();
            for job in rx {
                job(&agent);
            }
        });
        ready_rx
            .recv()
            .map_err(|_| RigError::Invalid("http worker thread died".into()))??;
        Ok(HttpClient {
            jobs: Some(tx),
            worker: Some(worker),
        })
    }

    /// Sends one request from inside the namespace.
    pub fn request(
        &self,
        method: &str,
        url: &str,
        bearer: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply> {
        let (tx, rx) = mpsc::channel();
        let (method, url) = (method.to_owned(), url.to_owned());
        let bearer = bearer.map(str::to_owned);
        let body = body.cloned();
        let job: Job = Box::new(move |agent| {
            let _ = tx.send(send(agent, &method, &url, bearer.as_deref(), body.as_ref()));
        });
        self.jobs
            .as_ref()
            .expect("client alive")
            .send(job)
            .map_err(|_| RigError::Invalid("http worker thread died".into()))?;
        rx.recv()
            .map_err(|_| RigError::Invalid("http worker thread died".into()))?
    }

    pub fn get(&self, url: &str, bearer: Option<&str>) -> Result<Reply> {
        self.request("GET", url, bearer, None)
    }

    pub fn post(&self, url: &str, bearer: Option<&str>, body: &serde_json::Value) -> Result<Reply> {
        self.request("POST", url, bearer, Some(body))
    }
}

impl Drop for HttpClient {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    bearer: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<Reply> {
    let mut req = agent.request(method, url);
    if let Some(token) = bearer {
        req = req.set("Authorization", &format!("Bearer {token}"));
    }
    let result = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => {
            return Err(RigError::Http {
                method: method.to_owned(),
                url: url.to_owned(),
                detail: t.to_string(),
            })
        }
    };
    let status = resp.status();
    let body = resp.into_string().map_err(|e| RigError::Http {
        method: method.to_owned(),
        url: url.to_owned(),
        detail: format!("reading the body: {e}"),
    })?;
    Ok(Reply { status, body })
}
