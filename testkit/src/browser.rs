//! A real browser for page tests: Debian's headless Chromium driven over
//! WebDriver (`chromedriver`, started on a free loopback port, killed with
//! its browser when the [`Browser`] is dropped), through `fantoccini`.
//!
//! Every WebDriver call is bounded ([`COMMAND_TIMEOUT`]; connecting too), so
//! a wedged browser fails the test instead of hanging it. Waits poll a
//! condition with [`crate::DEADLINE`] and say in the failure what was
//! awaited. Screenshots are PNG files under `target/browser-artefacts/`
//! (or `$CARGO_TARGET_DIR/browser-artefacts/`).
//!
//! Chromium missing: under `CI=true` the test fails (`scripts/test`
//! installs `chromium` and `chromium-driver`); elsewhere [`Browser::start`]
//! returns `None` after a loud warning, and the test returns.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// The longest one WebDriver command (or the connection) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Debian's Chromium and its driver (override with `PAHLAWAN_CHROMIUM`,
/// `PAHLAWAN_CHROMEDRIVER`).
fn programs() -> (PathBuf, PathBuf) {
    let get = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(default))
    };
    (
        get("PAHLAWAN_CHROMIUM", "/usr/bin/chromium"),
        get("PAHLAWAN_CHROMEDRIVER", "/usr/bin/chromedriver"),
    )
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| matches!(v.trim(), "true" | "1"))
}

/// Where screenshots go.
pub fn artefact_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("browser-artefacts")
}

/// Runs one WebDriver command with a bound.
async fn bounded<T, E: std::fmt::Debug>(what: &str, fut: impl Future<Output = Result<T, E>>) -> T {
    match tokio::time::timeout(COMMAND_TIMEOUT, fut).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("WebDriver: {what}: {e:?}"),
        Err(_) => panic!("WebDriver: {what}: no answer within {COMMAND_TIMEOUT:?}"),
    }
}

/// chromedriver (in its own process group, with its browser), killed on drop.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium it started.
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A headless Chromium session.
pub struct Browser {
    client: Option<Client>,
    _driver: Driver,
    /// Screenshots are named `<prefix>-<name>.png`.
    prefix: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium whose UI language is
    /// `lang`. `None` (after a warning) when Chromium is missing outside CI.
    pub async fn start(prefix: &str, lang: &str) -> Option<Browser> {
        let (chromium, chromedriver) = programs();
        if !chromium.exists() || !chromedriver.exists() {
            let problem = format!(
                "{} or {} is missing",
                chromium.display(),
                chromedriver.display()
            );
            let install = "scripts/test installs them: apt-get install chromium chromium-driver";
            assert!(
                !in_ci(),
                "browser test {prefix}: {problem}; CI=true, where it must be there: {install}"
            );
            eprintln!(
                "\n*** SKIPPED: browser test {prefix}: {problem}. {install} (under CI=true this fails.) ***\n"
            );
            return None;
        }
        let port = free_port();
        let driver = {
            use std::os::unix::process::CommandExt;
            Command::new(&chromedriver)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()))
        };
        let driver = Driver(driver);
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1000,1400", format!("--lang={lang}"), "--no-first-run"],
            }
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!("an object"),
        };
        let url = format!("http://127.0.0.1:{port}");
        // chromedriver takes a moment to listen: retry the connection
        // until it answers, each try bounded, all of them too.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = crate::eventually(&format!("chromedriver on {url}"), || {
            let mut builder = ClientBuilder::new(connector.clone());
            builder.capabilities(caps.clone());
            let url = url.clone();
            async move {
                tokio::time::timeout(COMMAND_TIMEOUT, builder.connect(&url))
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        })
        .await;
        Some(Browser {
            client: Some(client),
            _driver: driver,
            prefix: prefix.to_string(),
        })
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("open until close")
    }

    pub async fn goto(&self, url: &str) {
        bounded(&format!("goto {url}"), self.c().goto(url)).await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        bounded(&format!("execute {script}"), self.c().execute(script, args)).await
    }

    /// Waits until `script` returns something truthy; returns it.
    pub async fn until_js(&self, what: &str, script: &str) -> Value {
        crate::eventually(what, || async {
            let v = self.js(script, vec![]).await;
            truthy(&v).then_some(v)
        })
        .await
    }

    /// The text of the first element matching `css`, if there is one.
    pub async fn text(&self, css: &str) -> Option<String> {
        let script =
            "var e = document.querySelector(arguments[0]); return e ? e.textContent : null;";
        match self.js(script, vec![json!(css)]).await {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Waits until an element matching `css` holds `needle` in its text.
    pub async fn until_text(&self, css: &str, needle: &str) -> String {
        let what = format!("{css:?} to read {needle:?}");
        crate::eventually(&what, || async {
            self.text(css).await.filter(|t| t.contains(needle))
        })
        .await
    }

    /// Waits for a visible, enabled element matching `css` and clicks it.
    /// A page may draw the element anew between the find and the click
    /// (stale, gone, or covered for a moment): the pair is tried again, each
    /// call bounded, until it lands or [`crate::DEADLINE`] passes. A click
    /// that errs did not happen, so none is made twice.
    pub async fn click(&self, css: &str) {
        let shown = format!(
            "var e = document.querySelector({}); return !!(e && !e.disabled && e.offsetParent);",
            json!(css)
        );
        crate::eventually(&format!("a click on {css:?}"), || async {
            if !truthy(&self.js(&shown, vec![]).await) {
                return None;
            }
            let e = self.try_find(css).await?;
            retried(&format!("click {css}"), e.click()).await
        })
        .await;
    }

    /// Types `text` into the element matching `css` (after clearing it),
    /// waiting for it to be there; tried again if the page drew it anew on
    /// the way.
    pub async fn type_into(&self, css: &str, text: &str) {
        crate::eventually(&format!("typing into {css:?}"), || async {
            let e = self.try_find(css).await?;
            retried(&format!("clear {css}"), e.clear()).await?;
            retried(&format!("type into {css}"), e.send_keys(text)).await
        })
        .await;
    }

    /// The element matching `css`, or `None` while there is none.
    async fn try_find(&self, css: &str) -> Option<fantoccini::elements::Element> {
        retried(&format!("find {css}"), self.c().find(Locator::Css(css))).await
    }

    /// Saves a PNG of the page as `<prefix>-<name>.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = bounded(&format!("screenshot {name}"), self.c().screenshot()).await;
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = artefact_dir();
        std::fs::create_dir_all(&dir).expect("the artefact directory");
        let path = dir.join(format!("{}-{name}.png", self.prefix));
        std::fs::write(&path, png).expect("write the screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Ends the session (the drop kills the driver either way).
    pub async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = tokio::time::timeout(COMMAND_TIMEOUT, c.close()).await;
        }
    }
}

/// What JavaScript would call truthy, for what a script returned.
fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false)) && *v != json!(0) && *v != json!("")
}

/// Runs one WebDriver command with a bound; `None` when the page drew the
/// element anew (or not yet, or covered it for a moment) — worth another
/// try, and the command did nothing — and a panic on any other error.
async fn retried<T>(
    what: &str,
    fut: impl Future<Output = Result<T, fantoccini::error::CmdError>>,
) -> Option<T> {
    use fantoccini::error::{CmdError, ErrorStatus};
    match tokio::time::timeout(COMMAND_TIMEOUT, fut).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(CmdError::Standard(w)))
            if matches!(
                w.error,
                ErrorStatus::StaleElementReference
                    | ErrorStatus::NoSuchElement
                    | ErrorStatus::ElementClickIntercepted
                    | ErrorStatus::ElementNotInteractable
            ) =>
        {
            None
        }
        Ok(Err(e)) => panic!("WebDriver: {what}: {e:?}"),
        Err(_) => panic!("WebDriver: {what}: no answer within {COMMAND_TIMEOUT:?}"),
    }
}

/// A free loopback TCP port (bound, then released for the caller).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
