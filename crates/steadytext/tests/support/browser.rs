//! A headless Chromium driven through `chromedriver` (WebDriver, with fantoccini) for the
//! dashboard's tests; the driver process is killed on drop. Calls are blocking: each runs on the
//! browser's own single-threaded runtime.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use tokio::runtime::Runtime;

use super::daemon::wait_until;

/// One browser session.
pub struct Browser {
    rt: Runtime,
    client: Option<Client>,
    driver: Child,
}

impl Browser {
    /// Starts `chromedriver` and a headless Chromium at 1280×800.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver, installed by scripts/setup)");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                // root in CI: Chromium's sandbox refuses to run as root
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,800"]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let client =
            wait_until(Duration::from_secs(30), "chromedriver to accept a session", || {
                rt.block_on(async {
                    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                    ClientBuilder::new(connector)
                        .capabilities(caps.clone())
                        .connect(&url)
                        .await
                        .ok()
                })
            });
        Self { rt, client: Some(client), driver }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("open")
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.rt.block_on(self.c().goto(url)).unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The address of the page shown.
    pub fn url(&self) -> String {
        self.rt.block_on(self.c().current_url()).unwrap().to_string()
    }

    /// The text of the first element matching `css`, if there is one.
    pub fn text(&self, css: &str) -> Option<String> {
        self.rt.block_on(async {
            let el = self.c().find(Locator::Css(css)).await.ok()?;
            el.text().await.ok()
        })
    }

    /// The texts of every element matching `css`.
    pub fn texts(&self, css: &str) -> Vec<String> {
        self.rt.block_on(async {
            let mut out = Vec::new();
            for el in self.c().find_all(Locator::Css(css)).await.unwrap() {
                out.push(el.text().await.unwrap());
            }
            out
        })
    }

    /// The value of attribute `name` of every element matching `css`.
    pub fn attributes(&self, css: &str, name: &str) -> Vec<Option<String>> {
        self.rt.block_on(async {
            let mut out = Vec::new();
            for el in self.c().find_all(Locator::Css(css)).await.unwrap() {
                out.push(el.attr(name).await.unwrap());
            }
            out
        })
    }

    /// Clicks the first element matching `css`.
    pub fn click(&self, css: &str) {
        self.rt
            .block_on(async {
                self.c()
                    .find(Locator::Css(css))
                    .await
                    .unwrap_or_else(|e| panic!("{css}: {e}"))
                    .click()
                    .await
            })
            .unwrap();
    }

    /// Types `text` into the first element matching `css`.
    pub fn type_into(&self, css: &str, text: &str) {
        self.rt
            .block_on(async {
                self.c().find(Locator::Css(css)).await.unwrap().send_keys(text).await
            })
            .unwrap();
    }

    /// The value `script` returns (a function body, as WebDriver's execute script takes it).
    pub fn eval(&self, script: &str) -> serde_json::Value {
        self.rt.block_on(self.c().execute(script, vec![])).unwrap()
    }

    /// Saves a PNG of the window as `target/ui-screenshots/<name>.png`; returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.rt.block_on(self.c().screenshot()).unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Resizes the window.
    pub fn resize(&self, width: u32, height: u32) {
        self.rt.block_on(self.c().set_window_size(width, height)).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self.rt.block_on(c.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
