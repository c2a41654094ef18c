//! The accessibility checks of `testkit::browser` on a page built to hold
//! known failures beside near misses that pass, so each check is shown to
//! find what it should and nothing else (the pages that use them, the
//! kiosk's and the dashboard's, have none left to find).

use testkit::browser::Browser;

/// Every colour here is `rgb()`, ratios against white worked out by hand
/// (WCAG relative luminance).
const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>a11y fixture</title>
<style>
body { margin: 0; background: rgb(255, 255, 255); color: rgb(17, 17, 17); font-size: 20px; }
button, input { font-size: 20px; }
:focus { outline: 3px solid rgb(0, 0, 0); outline-offset: 2px; }
.low { color: rgb(150, 150, 150); }
.large { color: rgb(130, 130, 130); font-size: 24px; }
.large-bold { color: rgb(130, 130, 130); font-size: 19px; font-weight: 700; }
.small-bold { color: rgb(130, 130, 130); font-size: 18px; font-weight: 700; }
.veil { background: rgba(0, 0, 0, 0.5); }
.veil span { color: rgb(60, 60, 60); }
.dark { background: rgb(0, 0, 0); color: rgb(255, 255, 255); }
.tiny { font-size: 12px; }
button:disabled { color: rgb(200, 200, 200); }
#no-ring:focus { outline: none; }
#faint:focus { outline-color: rgb(240, 240, 240); }
#always, #always:focus { outline: 3px solid rgb(0, 0, 0); }
#shadow:focus { outline: none; box-shadow: 0 0 0 4px rgb(0, 0, 0); }
input.pale { color: rgb(170, 170, 170); }
.menu:hover .sub { display: block; }
.menu:hover { color: rgb(0, 0, 0); }
@media (min-width: 1px) { .tip:hover { opacity: 1; } }
</style></head>
<body>
<p id="plain">Plain text, 18.9:1.</p>
<p class="low">Grey on white, 2.96:1: fails.</p>
<p class="large">Large grey, 3.95:1: passes at 24px.</p>
<p class="large-bold">Bold grey, 3.95:1: passes at 19px bold.</p>
<p class="small-bold">Bold grey, 3.95:1: fails at 18px bold.</p>
<div class="veil"><span>Dark grey under a half-black veil: fails.</span></div>
<p class="dark">White on black.</p>
<p class="tiny">Tiny but black.</p>
<p class="low" hidden>Hidden, so not checked.</p>
<button id="ok" type="button">OK</button>
<button id="no-ring" type="button">No ring</button>
<button id="faint" type="button">Faint ring</button>
<button id="always" type="button">Always ringed</button>
<button id="shadow" type="button">Shadow ring</button>
<button id="off" type="button" disabled>Disabled</button>
<div tabindex="0" id="div" aria-label="a focusable div">Div</div>
<input id="field" class="pale" value="typed">
<div inert><button id="inert" type="button">Inert</button></div>
</body></html>"#;

/// A `data:` URL for `html`.
fn data_url(html: &str) -> String {
    let mut url = String::from("data:text/html;charset=utf-8,");
    for c in html.chars() {
        match c {
            '%' => url.push_str("%25"),
            '#' => url.push_str("%23"),
            '\n' => url.push_str("%0A"),
            c => url.push(c),
        }
    }
    url
}

/// The failures, each cut to what it starts with (the element) so the
/// assertion names elements, not wording.
fn heads(failures: &[String]) -> Vec<String> {
    failures
        .iter()
        .map(|f| f.split([' ', ':']).next().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_accessibility_check_finds_its_failures_and_passes_the_near_misses() {
    let Some(b) = Browser::start("a11y-fixture", "en").await else {
        return;
    };
    b.goto(&data_url(PAGE)).await;
    b.until_js("the fixture", "return !!document.getElementById('field');")
        .await;

    let contrast = b.contrast_failures().await;
    assert_eq!(
        heads(&contrast),
        ["p.low", "p.small-bold", "span", "input#field.pale"],
        "{contrast:#?}"
    );
    assert!(contrast[0].contains("2.96:1, needs 4.5:1"), "{contrast:#?}");
    assert!(
        contrast[1].contains("needs 4.5:1"),
        "18px bold is not large"
    );

    let small = b.small_text(18.0).await;
    assert_eq!(heads(&small), ["p.tiny"], "{small:#?}");

    let walk = b.keyboard_walk(30).await;
    let ids: Vec<&str> = walk
        .iter()
        .map(|d| d.split([' ', '.']).next().unwrap_or(""))
        .collect();
    assert_eq!(
        ids,
        [
            "button#ok",
            "button#no-ring",
            "button#faint",
            "button#always",
            "button#shadow",
            "div#div",
            "input#field",
        ],
        "{walk:#?}"
    );
    assert!(
        walk[5].contains("aria-label=\"a focusable div\""),
        "{walk:#?}"
    );

    let focus = b.focus_visible_failures().await;
    assert_eq!(
        heads(&focus),
        [
            "button#no-ring",
            "button#faint",
            "button#always",
            "button#inert"
        ],
        "{focus:#?}"
    );
    assert!(focus[0].contains("no focus indicator"), "{focus:#?}");
    assert!(focus[1].contains("needs 3:1"), "{focus:#?}");
    assert!(focus[2].contains("looks the same"), "{focus:#?}");
    assert!(focus[3].contains("Tab never reached it"), "{focus:#?}");

    let hover = b.hover_reveal_rules().await;
    assert_eq!(hover.len(), 2, "{hover:#?}");
    assert!(hover[0].starts_with(".menu:hover .sub { display: block }"));
    assert!(hover[1].starts_with(".tip:hover { opacity: 1 }"));

    // Keys reach the page: Enter and Space click the focused button.
    b.js(
        "['ok', 'shadow'].forEach(function (id) { var e = document.getElementById(id); \
         e.addEventListener('click', function () { e.textContent = 'pressed'; }); });",
        vec![],
    )
    .await;
    b.tab_to("#ok", 5).await;
    b.press_enter().await;
    b.until_text("#ok", "pressed").await;
    b.tab_to("#shadow", 10).await;
    b.press_space().await;
    b.until_text("#shadow", "pressed").await;
    // Tab into a field selects its text, so what is typed replaces it.
    b.tab_to("#field", 10).await;
    b.type_keys("4.5").await;
    let value = b
        .js("return document.getElementById('field').value;", vec![])
        .await;
    assert_eq!(value, "4.5");
    b.close().await;
}
