//! The dependency rule of ARCHITECTURE.md, checked on the source: each layer imports only from
//! the layers before it (`core ← metrics, config ← net ← kube ← checks ← engine ← fleet ← http
//! ← agent`), so that a change can never tie a lower layer to a higher one (a check kind named
//! in the network layer, the state owning the fleet) without this test saying which file did it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each top-level module and the modules its production code may name.
const ALLOWED: &[(&str, &[&str])] = &[
    ("core", &[]),
    ("logging", &[]),
    ("promtext", &[]),
    ("metrics", &["core"]),
    ("config", &["core"]),
    ("net", &["core"]),
    ("kube", &["core", "config", "net"]),
    ("checks", &["core", "config", "metrics", "net", "kube", "promtext"]),
    ("engine", &["core", "config", "metrics", "net", "kube", "checks"]),
    ("fleet", &["core", "config", "metrics", "net", "checks", "engine"]),
    ("http", &["core", "config", "metrics", "engine", "fleet"]),
    (
        "agent",
        &[
            "core", "config", "metrics", "net", "kube", "checks", "engine", "fleet", "http",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `text` without its `#[cfg(test)]` items (a `mod tests { … }`, a `use`, a helper `fn`), wherever
/// they stand: code after a test-only item is production code too.
fn production_part(text: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut kept = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        kept.push_str(&rest[..at]);
        let item = &rest[at + MARK.len()..];
        rest = &item[item_len(item)..];
    }
    kept.push_str(rest);
    kept
}

/// The length of the item at the start of `text`: up to its `;`, or to the brace that closes
/// its body (braces inside strings, character literals and comments do not count).
fn item_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i += text[i..].find('\n').unwrap_or(text.len() - i);
                continue;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'\'' if bytes.get(i + 2) == Some(&b'\'') => i += 2,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            b';' if depth == 0 => return i + 1,
            _ => {}
        }
        i += 1;
    }
    text.len()
}

/// The top-level modules named as `crate::<module>` or in `crate::{<module>, …}` in the
/// production part of `text` (unit tests may reach further, to build what they test).
fn named_modules(text: &str) -> BTreeSet<String> {
    let production = production_part(text);
    let mut named = BTreeSet::new();
    let ident = |text: &str| -> String {
        text.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for line in production.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                // A group: each top-level name in it (nested groups belong to their module).
                let mut depth = 0;
                let mut start = true;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => start = true,
                        c if c.is_whitespace() => {}
                        _ if start => {
                            let module = ident(&group[i..]);
                            if !module.is_empty() {
                                named.insert(module);
                            }
                            start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                let module = ident(after);
                if !module.is_empty() {
                    named.insert(module);
                }
            }
            rest = after;
        }
    }
    named
}

#[test]
fn every_layer_imports_only_from_the_layers_before_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut breaches = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src/");
        let Some(top) = relative.components().next() else {
            continue;
        };
        let top = top.as_os_str().to_string_lossy();
        let module = top.trim_end_matches(".rs");
        if relative.file_name().is_some_and(|n| n == "tests.rs") || matches!(module, "main" | "lib") {
            continue;
        }
        let Some((_, allowed)) = ALLOWED.iter().find(|(name, _)| *name == module) else {
            breaches.push(format!(
                "{}: a top-level module this test does not know: add it to ALLOWED",
                relative.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("a source file is readable");
        for named in named_modules(&text) {
            if named != module && !allowed.contains(&named.as_str()) {
                breaches.push(format!("{} names crate::{named}", relative.display()));
            }
        }
    }
    assert!(
        breaches.is_empty(),
        "imports that run against the layers (ARCHITECTURE.md, \"The layers\"):\n{}",
        breaches.join("\n")
    );
}

#[test]
fn the_rule_sees_an_upward_import() {
    let named = named_modules("use crate::checks::Wake;\n// use crate::agent;\n#[cfg(test)]\nuse crate::http;");
    assert_eq!(named.into_iter().collect::<Vec<_>>(), ["checks"]);
}

#[test]
fn the_rule_reads_past_a_test_only_item_and_into_groups() {
    let text = "#[cfg(test)]\nmod tests {\n    use crate::agent;\n    const B: &str = \"}\";\n    fn f() { let _ = '}'; }\n}\n\
                #[cfg(test)]\nfn helper() -> u8 { crate::fleet::x() }\n\
                use crate::{core::text, engine::{State, Wake}};\nfn later() { crate::http::serve(); }\n";
    assert_eq!(
        named_modules(text).into_iter().collect::<Vec<_>>(),
        ["core", "engine", "http"]
    );
}

/// ARCHITECTURE.md, "Two threads, two single-threaded runtimes": the shipped binary has no
/// work-stealing scheduler (it woke a second worker per request and alone kept `libm` loaded).
/// Only the dev-dependencies may bring tokio's `rt-multi-thread`, for tests that stall a thread.
#[test]
fn the_shipped_build_has_no_work_stealing_runtime() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .expect("Cargo.toml reads")
        .parse()
        .expect("Cargo.toml parses");
    let features = manifest["dependencies"]["tokio"]["features"]
        .as_array()
        .expect("tokio lists its features");
    assert!(
        !features.iter().any(|f| f.as_str() == Some("rt-multi-thread")),
        "[dependencies] tokio must not enable rt-multi-thread: {features:?}"
    );
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a source file reads");
        assert!(
            !production_part(&text).contains("new_multi_thread"),
            "{} builds a multi-threaded runtime",
            file.display()
        );
    }
}
