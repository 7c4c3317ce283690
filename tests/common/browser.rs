//! A real browser for the UI tests: Debian's headless Chromium driven over
//! WebDriver (chromedriver on a free loopback port), with waits that poll the
//! page until what a person would see is there, or a deadline passes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a page may take to show what a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A chromedriver process and one headless Chromium session on it.
pub struct Browser {
    driver: Child,
    pub client: Client,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Browser {
    /// Start chromedriver and a headless Chromium. Panics with how to install
    /// them when they are missing: a UI test never passes without a browser.
    pub async fn start() -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the UI tests need a real browser; install it with \
                 `apt-get install -y chromium chromium-driver` (.ci/run does) [{package}]"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000",
                         "--no-first-run", "--disable-extensions"],
            }
        });
        let caps = caps.as_object().unwrap().clone();
        let deadline = Instant::now() + PATIENCE;
        let client = loop {
            match ClientBuilder::rustls()
                .expect("a TLS setup")
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "chromedriver on {url} gave no browser session: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        Browser { driver, client }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page opens");
    }

    /// Poll until `css` matches an element and return it.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                return e;
            }
            self.give_up_after(deadline, &format!("no element {css}"))
                .await;
        }
    }

    /// The visible text of every element `css` matches, in page order.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
        {
            out.push(e.text().await.unwrap_or_default());
        }
        out
    }

    /// Poll until the visible text of `css` is exactly `want`.
    pub async fn wait_text(&self, css: &str, want: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let got = self.texts(css).await;
            if got.first().map(String::as_str) == Some(want) {
                return;
            }
            self.give_up_after(deadline, &format!("{css} reads {got:?}, not {want:?}"))
                .await;
        }
    }

    /// Poll until the page's URL path is `path`.
    pub async fn wait_path(&self, path: &str) -> url::Url {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let url = self.client.current_url().await.expect("a URL");
            if url.path() == path {
                return url;
            }
            self.give_up_after(deadline, &format!("at {url}, not {path}"))
                .await;
        }
    }

    async fn give_up_after(&self, deadline: Instant, what: &str) {
        if Instant::now() >= deadline {
            let source = self.client.source().await.unwrap_or_default();
            panic!("{what} within {PATIENCE:?}; the page:\n{source}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Click the element `css` matches.
    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("a click");
    }

    /// Type `text` into the field `css` matches.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.expect("a clear field");
        e.send_keys(text).await.expect("typing");
    }

    /// Save what the browser shows as `target/ui-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshot folder");
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("the screenshot is written");
    }

    /// Run `script` in the page and return its value.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, vec![])
            .await
            .expect("the script runs")
    }

    /// End the browser session; dropping the `Browser` ends chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("ui-screenshots")
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
