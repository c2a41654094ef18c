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
//! Accessibility checks (WCAG 2.1 AA) for any page, each returning a
//! description of every failure: [`Browser::contrast_failures`],
//! [`Browser::small_text`], [`Browser::keyboard_walk`] (with
//! [`Browser::tab_to`], [`Browser::press_enter`], [`Browser::press_space`],
//! [`Browser::type_keys`] to use a page by keyboard alone),
//! [`Browser::focus_visible_failures`] and [`Browser::hover_reveal_rules`].
//! Their page-side half is `a11y.js`, plain JavaScript.
//!
//! Chromium missing: under `CI=true` the test fails (`scripts/test`
//! installs `chromium` and `chromium-driver`); elsewhere [`Browser::start`]
//! returns `None` after a loud warning, and the test returns.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// The longest one WebDriver command (or the connection) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Fresh chromedrivers [`Browser::start`] tries before it fails ...
pub const START_ATTEMPTS: u32 = 3;
/// ... and how long each may take to hand out a session.
pub const START_ATTEMPT: Duration = Duration::from_secs(90);

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
        // A driver that never hands out a session (its port taken by
        // another test between `free_port` and its bind, or a browser that
        // hangs at start on a loaded machine) is killed and a fresh one
        // started on another port; each attempt's log is kept beside the
        // screenshots and the last one's tail is in the failure.
        let mut last_error = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let log = artefact_dir().join(format!("{prefix}-chromedriver-{attempt}.log"));
            let _ = std::fs::create_dir_all(artefact_dir());
            let driver = {
                use std::os::unix::process::CommandExt;
                Command::new(&chromedriver)
                    .arg(format!("--port={port}"))
                    .arg("--allowed-ips=")
                    .arg(format!("--log-path={}", log.display()))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .process_group(0)
                    .spawn()
                    .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()))
            };
            let driver = Driver(driver);
            let url = format!("http://127.0.0.1:{port}");
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            let deadline = tokio::time::Instant::now() + START_ATTEMPT;
            // chromedriver takes a moment to listen: retry the connection
            // until it answers, each try bounded.
            while tokio::time::Instant::now() < deadline {
                let mut builder = ClientBuilder::new(connector.clone());
                builder.capabilities(caps.clone());
                match tokio::time::timeout(COMMAND_TIMEOUT, builder.connect(&url)).await {
                    Ok(Ok(client)) => {
                        return Some(Browser {
                            client: Some(client),
                            _driver: driver,
                            prefix: prefix.to_string(),
                        });
                    }
                    Ok(Err(e)) => last_error = e.to_string(),
                    Err(_) => last_error = format!("no session within {COMMAND_TIMEOUT:?}"),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let tail: String = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!(
                "browser test {prefix}: chromedriver attempt {attempt} on {url} gave no session: {last_error}\n{tail}"
            );
            drop(driver);
        }
        panic!(
            "browser test {prefix}: no chromedriver session in {START_ATTEMPTS} attempts; last: {last_error} (logs: {}/{prefix}-chromedriver-*.log)",
            artefact_dir().display()
        );
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

    // --- accessibility checks (WCAG 2.1 AA), in one place for every page --
    //
    // Each runs `a11y.js` in the page and returns a description of every
    // failure, so a test asserts the list is empty and its failure message
    // says what to fix. Approximations (named in `a11y.js` too): an
    // element's background is the composite of its and its DOM ancestors'
    // `background-color`s, not of what absolute positioning paints under
    // it; ancestors' `opacity` is folded into the text's alpha; shadow
    // roots, pseudo-elements and placeholders are not walked.

    /// Runs one function of `a11y.js` with `args`.
    async fn a11y(&self, call: &str, args: Vec<Value>) -> Value {
        let script = format!("{A11Y_JS}\nreturn a11y.{call};");
        bounded(&format!("a11y.{call}"), self.c().execute(&script, args)).await
    }

    /// WCAG 1.4.3 (contrast, minimum): every visible element with text of
    /// its own (a text node child, or a text field's value) whose computed
    /// `color` has less than 4.5:1 against its effective background (3:1
    /// for large text: at least 24px, or 18.66px and weight 700 or more).
    /// The background is found by walking up the ancestors, compositing
    /// each `background-color` (with its alpha) until one is opaque, over
    /// white if none is; a background image under the text is a failure
    /// too (no ratio can be computed). Disabled controls are exempt, as in
    /// WCAG. Each failure names the element, its text, the ratio and the
    /// colours.
    pub async fn contrast_failures(&self) -> Vec<String> {
        strings(self.a11y("contrastFailures()", vec![]).await)
    }

    /// Visible text (as [`Browser::contrast_failures`] walks it) whose
    /// computed font size is below `min_px`: for a screen read from a
    /// distance.
    pub async fn small_text(&self, min_px: f64) -> Vec<String> {
        strings(
            self.a11y("smallText(arguments[0])", vec![json!(min_px)])
                .await,
        )
    }

    /// Presses Tab from the top of the page up to `max` times and describes
    /// each element that took focus, in order (`tag#id.class "text"
    /// aria-label="…"`); stops early when focus leaves the page's last stop
    /// or comes back to its first. A test asserts every control it cares
    /// about is in the list.
    pub async fn keyboard_walk(&self, max: usize) -> Vec<String> {
        self.a11y("toTop()", vec![]).await;
        let mut walk = Vec::new();
        for _ in 0..max {
            self.press(Key::Tab).await;
            let now = self.a11y("focused()", vec![]).await;
            if now["none"] == true {
                if walk.is_empty() {
                    continue;
                }
                break;
            }
            if now["wrapped"] == true {
                break;
            }
            walk.push(now["desc"].as_str().unwrap_or("?").to_string());
        }
        walk
    }

    /// Presses Tab from the top of the page until the focused element
    /// matches `css` (at most `max` times); panics naming the elements Tab
    /// went through when it never does.
    pub async fn tab_to(&self, css: &str, max: usize) {
        self.a11y("toTop()", vec![]).await;
        let mut seen = Vec::new();
        for _ in 0..max {
            self.press(Key::Tab).await;
            if truthy(&self.a11y("matches(arguments[0])", vec![json!(css)]).await) {
                return;
            }
            let now = self.a11y("focused()", vec![]).await;
            seen.push(now["desc"].as_str().unwrap_or("(the page)").to_string());
        }
        panic!("{max} Tabs never focused {css:?}; they went through {seen:?}");
    }

    /// Presses Enter on whatever has focus (a button's click, a form's
    /// submit).
    pub async fn press_enter(&self) {
        self.press(Key::Enter).await;
    }

    /// Presses Space on whatever has focus (a button's click, a check
    /// box's toggle).
    pub async fn press_space(&self) {
        self.press(Key::Space).await;
    }

    /// Types `text` key by key into whatever has focus.
    pub async fn type_keys(&self, text: &str) {
        let mut keys = KeyActions::new("keyboard".to_string());
        for c in text.chars() {
            keys = keys
                .then(KeyAction::Down { value: c })
                .then(KeyAction::Up { value: c });
        }
        bounded("type keys", self.c().perform_actions(keys)).await;
    }

    /// One key press (down and up) through WebDriver actions, sent to
    /// whatever has focus, as a keyboard would.
    async fn press(&self, key: Key) {
        let value: char = key.into();
        let keys = KeyActions::new("keyboard".to_string())
            .then(KeyAction::Down { value })
            .then(KeyAction::Up { value });
        bounded(&format!("press {key:?}"), self.c().perform_actions(keys)).await;
    }

    /// WCAG 2.4.7 (focus visible) and 1.4.11 (non-text contrast) for focus:
    /// notes every visible, enabled, tabbable element, then Tabs through the
    /// page from the top; each element focused must show an outline or a
    /// box-shadow that paints (not `none`, not 0px, not transparent), looks
    /// different from the element unfocused, and has at least 3:1 against
    /// the background around the element. A focusable element Tab never
    /// reaches is a failure too.
    pub async fn focus_visible_failures(&self) -> Vec<String> {
        let count = self.a11y("focusPrepare()", vec![]).await;
        let count = count.as_u64().unwrap_or(0) as usize;
        let mut failures = Vec::new();
        let mut focused_any = false;
        for _ in 0..count * 2 + 4 {
            self.press(Key::Tab).await;
            let now = self.a11y("focusCheck()", vec![]).await;
            if now["none"] == true {
                if focused_any {
                    break;
                }
                continue;
            }
            focused_any = true;
            if now["wrapped"] == true {
                break;
            }
            if let Some(f) = now["failure"].as_str() {
                failures.push(f.to_string());
            }
        }
        failures.extend(strings(self.a11y("unreached()", vec![]).await));
        failures
    }

    /// Style rules whose selector has `:hover` (or whose nesting parent's
    /// has) and that set `display`, `visibility` or `opacity`: content only
    /// a pointer reveals, out of reach by touch and keyboard. (Finding
    /// hover-only controls themselves is hard; this finds the usual way of
    /// making one.) A style sheet whose rules cannot be read (another
    /// origin) is listed too: it went unchecked.
    pub async fn hover_reveal_rules(&self) -> Vec<String> {
        strings(self.a11y("hoverRevealRules()", vec![]).await)
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

/// The page-side half of the accessibility checks.
const A11Y_JS: &str = include_str!("a11y.js");

/// A script's array of strings (anything else in it shown as JSON).
fn strings(v: Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .collect(),
        other => panic!("an accessibility check returned {other}, not a list"),
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
