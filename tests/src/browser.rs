//! A real browser for the console's tests: Debian's `chromium`, headless,
//! driven through `chromedriver` over the W3C WebDriver protocol (JSON over
//! HTTP, spoken with `ureq`: a few commands need no client crate).
//!
//! `cargo xtask tools` / `cargo xtask test` install `chromium` and
//! `chromium-driver` when missing. As root, Chromium needs `--no-sandbox`;
//! `--disable-dev-shm-usage` keeps it off a small `/dev/shm`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::free_port;

/// The key WebDriver names an element reference by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The Enter key, for `send_keys`.
pub const ENTER: &str = "\u{E007}";

/// A headless Chromium session; the driver is killed on drop.
pub struct Browser {
    driver: Child,
    url: String,
    agent: ureq::Agent,
}

impl Browser {
    /// Start `chromedriver` and a headless Chromium window of `width` ×
    /// `height` CSS pixels.
    pub fn start(width: u32, height: u32) -> Self {
        let port = free_port();
        let driver = Command::new(program("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start chromedriver ({e}); run `cargo xtask tools` to install Debian's chromium-driver")
            });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = agent
                .get(&format!("{base}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": program("chromium"),
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=1",
                         format!("--window-size={width},{height}")],
            },
        }}});
        let mut response = agent
            .post(&format!("{base}/session"))
            .send_json(&caps)
            .unwrap();
        let v: Value = response.body_mut().read_json().unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused a session: {v}"))
            .to_string();
        let mut browser = Self {
            driver,
            url: format!("{base}/session/{session}"),
            agent,
        };
        browser.set_viewport(width, height);
        browser
    }

    /// The window's inner size as asked (headless windows count the
    /// frame).
    fn set_viewport(&mut self, width: u32, height: u32) {
        let inner = self.execute("return [window.innerWidth, window.innerHeight];", &[]);
        let dw = width as i64 - inner[0].as_i64().unwrap_or(width as i64);
        let dh = height as i64 - inner[1].as_i64().unwrap_or(height as i64);
        if dw != 0 || dh != 0 {
            let rect = self.command("GET", "/window/rect", None);
            let w = rect["width"].as_i64().unwrap() + dw;
            let h = rect["height"].as_i64().unwrap() + dh;
            self.command(
                "POST",
                "/window/rect",
                Some(json!({"width": w, "height": h})),
            );
        }
    }

    /// One WebDriver command; panics with the driver's message on error.
    pub fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn try_command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.url);
        let response = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self.agent.post(&url).send_json(body.unwrap_or(json!({}))),
        };
        let mut response = response.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let v: Value = response.body_mut().read_json().map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("{} {}", v["value"]["error"], v["value"]["message"]));
        }
        Ok(v["value"].clone())
    }

    /// Open `url`.
    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({"url": url})));
    }

    /// The first element matching `css`, if any.
    pub fn try_find(&self, css: &str) -> Option<String> {
        let body = json!({"using": "css selector", "value": css});
        self.try_command("POST", "/element", Some(body))
            .ok()
            .and_then(|v| v[ELEMENT].as_str().map(str::to_string))
    }

    /// The first element matching `css`, waiting up to 20 s for it.
    pub fn find(&self, css: &str) -> String {
        self.wait(&format!("an element `{css}`"), || self.try_find(css))
    }

    /// Poll `f` every 100 ms until it returns `Some`, for up to 20 s.
    pub fn wait<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                let body = self.execute("return document.body.innerText;", &[]);
                panic!(
                    "timed out waiting for {what}; the page shows:\n{}",
                    body.as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The visible text of the first element matching `css`.
    pub fn text(&self, css: &str) -> String {
        let id = self.find(css);
        let v = self.command("GET", &format!("/element/{id}/text"), None);
        v.as_str().unwrap_or("").to_string()
    }

    /// Wait until the text of `css` satisfies `ok`; return it.
    pub fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.wait(what, || {
            let id = self.try_find(css)?;
            let v = self
                .try_command("GET", &format!("/element/{id}/text"), None)
                .ok()?;
            let text = v.as_str().unwrap_or("").to_string();
            ok(&text).then_some(text)
        })
    }

    /// Click the first element matching `css`.
    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.command("POST", &format!("/element/{id}/click"), None);
    }

    /// Type `text` into the first element matching `css` (a file input
    /// takes a path).
    pub fn send_keys(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.command(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        );
    }

    /// Clear the field `css`, then type `text`.
    pub fn fill(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.command("POST", &format!("/element/{id}/clear"), None);
        self.send_keys(css, text);
    }

    /// Run `script` (a function body) with `args`; its return value.
    pub fn execute(&self, script: &str, args: &[Value]) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// A PNG of the whole page, written to `path`: the window is made as
    /// tall as the page for the shot, then restored.
    pub fn screenshot_page(&self, path: &Path) {
        let rect = self.command("GET", "/window/rect", None);
        let inner = self
            .execute("return window.innerHeight;", &[])
            .as_i64()
            .unwrap();
        let page = self
            .execute("return document.documentElement.scrollHeight;", &[])
            .as_i64()
            .unwrap();
        let frame = rect["height"].as_i64().unwrap() - inner;
        let tall = json!({"width": rect["width"], "height": page.max(inner) + frame});
        self.command("POST", "/window/rect", Some(tall));
        self.screenshot(path);
        let back = json!({"width": rect["width"], "height": rect["height"]});
        self.command("POST", "/window/rect", Some(back));
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        let v = self.command("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or(""))
            .unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.try_command("DELETE", "", None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `name` on `PATH`, else its Debian path.
fn program(name: &str) -> String {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    found
        .unwrap_or_else(|| Path::new("/usr/bin").join(name))
        .display()
        .to_string()
}
