//! Static checks of a page served from the binary (the kiosk page, the
//! dashboard), for their unit tests: nothing inline for the CSP to refuse,
//! nothing from another origin, text set safely, and both languages' phrase
//! tables alike. Each returns what it found wrong (empty: all well).

/// `html`'s scripts and handlers: every `<script>` has a `src` under
/// `asset_prefix` (e.g. `/kiosk/`) and no body; no inline handler, no
/// `javascript:` URL, no `style=` attribute; no other origin named.
pub fn inline_problems(html: &str, asset_prefix: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut problems = Vec::new();
    for (i, _) in lower.match_indices("<script") {
        let Some(tag_end) = lower[i..].find('>').map(|e| i + e) else {
            problems.push("an unclosed <script> tag".into());
            continue;
        };
        let tag = &lower[i..=tag_end];
        if !tag.contains(&format!("src=\"{asset_prefix}")) {
            problems.push(format!("a script not from {asset_prefix}: {tag}"));
        }
        if !lower[tag_end + 1..].starts_with("</script>") {
            problems.push(format!("a script with a body: {tag}"));
        }
    }
    for attr in [
        " onclick=",
        " onload=",
        " onsubmit=",
        "javascript:",
        " style=",
    ] {
        if lower.contains(attr) {
            problems.push(format!("the page has {attr}"));
        }
    }
    problems.extend(other_origins("the page", html, &[]));
    problems
}

/// `text` names another origin (`http://` or `https://`), other than the
/// names in `allowed` (e.g. SVG's namespace, a name and not a fetch).
pub fn other_origins(name: &str, text: &str, allowed: &[&str]) -> Vec<String> {
    let named = text.matches("http://").count() + text.matches("https://").count();
    let allowed_count: usize = allowed.iter().map(|a| text.matches(a).count()).sum();
    if named > allowed_count {
        vec![format!("{name} names another origin")]
    } else {
        Vec::new()
    }
}

/// A script sets text only with `textContent` and evaluates nothing.
pub fn unsafe_script(js: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if js.contains("innerHTML") {
        problems.push("text set with innerHTML, not textContent".into());
    }
    if js.contains("eval(") {
        problems.push("eval".into());
    }
    problems
}

/// The keys of the phrase table `    <lang>: {` … `\n    }` in `js`, sorted.
pub fn phrase_keys(js: &str, lang: &str) -> Vec<String> {
    let Some(start) = js.find(&format!("    {lang}: {{")) else {
        return Vec::new();
    };
    let Some(len) = js[start..].find("\n    }") else {
        return Vec::new();
    };
    let mut keys: Vec<String> = js[start..start + len]
        .lines()
        .skip(1)
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k.to_string()))
        .collect();
    keys.sort();
    keys
}

/// The `data-t="…"` labels of `html` that `keys` has no phrase for.
pub fn unlabelled(html: &str, keys: &[String]) -> Vec<String> {
    html.match_indices("data-t=\"")
        .filter_map(|(i, _)| {
            let rest = &html[i + 8..];
            let key = &rest[..rest.find('"')?];
            (!keys.iter().any(|k| k == key)).then(|| format!("no phrase for {key}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_check_finds_what_it_is_for() {
        let good = r#"<html><script src="/p/app.js" defer></script><p data-t="a">A</p></html>"#;
        assert!(inline_problems(good, "/p/").is_empty());
        for bad in [
            r#"<script>alert(1)</script>"#,
            r#"<script src="https://cdn.example/x.js"></script>"#,
            r#"<script src="/other/x.js"></script>"#,
            r#"<button onclick="x()">"#,
            r#"<a href="javascript:x()">"#,
            r#"<p style="color:red">"#,
        ] {
            assert!(!inline_problems(bad, "/p/").is_empty(), "{bad}");
        }
        assert!(
            other_origins(
                "x",
                "ns http://www.w3.org/2000/svg",
                &["http://www.w3.org/2000/svg"]
            )
            .is_empty()
        );
        assert!(!other_origins("x", "fetch('https://evil.example')", &[]).is_empty());
        assert_eq!(unsafe_script("e.innerHTML = t; eval(x)").len(), 2);
        let js = "  var T = {\n    en: {\n      a: 'A',\n      b: 'B'\n    },\n    id: {\n      a: 'A'\n    }\n  };";
        assert_eq!(phrase_keys(js, "en"), ["a", "b"]);
        assert_eq!(phrase_keys(js, "id"), ["a"]);
        assert!(phrase_keys(js, "fr").is_empty());
        assert!(unlabelled(good, &phrase_keys(js, "en")).is_empty());
        assert_eq!(
            unlabelled(r#"<p data-t="c">"#, &phrase_keys(js, "en")),
            ["no phrase for c"]
        );
    }
}
