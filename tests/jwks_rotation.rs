//! JWKS rotations (SPEC "Upstream answers, client certificates, keys"): an auth service on
//! 127.0.0.1 whose key set changes between runs. A change of the set of key ids is a
//! rotation: `vigil_jwks_rotations_total` counts it and one log line names the ids added and
//! removed. The first fetch, the same ids in another order, and a failed fetch followed by
//! the same set again are not rotations.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{FakeServer, Response, Vigil, poll_until};

const JWKS: &str = include_str!("fixtures/jwks.json");

/// How long a test waits for the agent to see a change (runs are 300 ms apart).
const DEADLINE: Duration = Duration::from_secs(10);

fn config(url: &str) -> String {
    format!(
        "[system]\nenabled = false\n[jwt]\ninterval = \"300ms\"\ntimeout = \"300ms\"\nfailure_threshold = 1\n\
         algorithm = \"RS256\"\njwks_url = \"{url}\"\n"
    )
}

/// The fixture's keys (rsa-1, rsa-2, ec-1) by kid.
fn key(kid: &str) -> Value {
    let set: Value = serde_json::from_str(JWKS).unwrap();
    set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .cloned()
        .unwrap_or_else(|| panic!("no {kid} in the fixture"))
}

/// A set of the fixture's keys under the kids given: `("rsa-3", "rsa-1")` is rsa-1's key
/// published under the id rsa-3.
fn set(keys: &[(&str, &str)]) -> Response {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, from)| {
            let mut k = key(from);
            k["kid"] = json!(kid);
            k
        })
        .collect();
    Response::json(200, &json!({ "keys": keys }))
}

fn rotations(vigil: &Vigil) -> Option<f64> {
    vigil.get("/metrics").body.lines().find_map(|l| {
        l.strip_prefix("vigil_jwks_rotations_total ")
            .and_then(|v| v.parse().ok())
    })
}

/// Waits until the auth service has been asked `more` more times (so that what is shown comes
/// from runs that read the current set).
#[track_caller]
fn wait_for_fetches(auth: &FakeServer, more: usize) {
    let target = auth.requests() + more;
    support::wait_until(DEADLINE, "more JWKS fetches", || auth.requests() >= target);
}

#[track_caller]
fn wait_for_rotations(vigil: &Vigil, n: f64) {
    if !poll_until(DEADLINE, || rotations(vigil) == Some(n)) {
        panic!(
            "vigil_jwks_rotations_total is {:?}, expected {n}\nlogs:\n{}",
            rotations(vigil),
            vigil.logs()
        );
    }
}

/// The text of every log line (JSON objects flattened to `key=value` pairs) that names `kid`.
fn lines_naming(vigil: &Vigil, kid: &str) -> Vec<String> {
    vigil
        .log_lines()
        .iter()
        .map(flatten)
        .filter(|text| text.contains(kid))
        .collect()
}

fn flatten(value: &Value) -> String {
    match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", flatten(v)))
            .collect::<Vec<_>>()
            .join(" "),
        Value::Array(items) => items.iter().map(flatten).collect::<Vec<_>>().join(","),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What `text` says after each "added" (up to the next "added" or "removed"), and after each
/// "removed": `("=rsa-3 ", "=rsa-1")` for `added=rsa-3 removed=rsa-1`, whether the ids come
/// in fields or in the message.
fn added_and_removed(text: &str) -> (String, String) {
    let mut marks: Vec<(usize, &str)> = text
        .match_indices("added")
        .chain(text.match_indices("removed"))
        .collect();
    marks.sort();
    let (mut added, mut removed) = (String::new(), String::new());
    for (i, (at, word)) in marks.iter().enumerate() {
        let end = marks.get(i + 1).map_or(text.len(), |next| next.0);
        let said = &text[at + word.len()..end];
        if *word == "added" {
            added.push_str(said);
            added.push('|');
        } else {
            removed.push_str(said);
            removed.push('|');
        }
    }
    (added, removed)
}

/// The one log line of a rotation: it names each added id after "added" and each removed id
/// after "removed", and no id that stayed.
#[track_caller]
fn assert_rotation_logged(vigil: &Vigil, added: &[&str], removed: &[&str], kept: &[&str]) {
    let witness = added.first().or(removed.first()).expect("a rotation changes something");
    let lines: Vec<String> = lines_naming(vigil, witness)
        .into_iter()
        .filter(|l| (added.is_empty() || l.contains("added")) && (removed.is_empty() || l.contains("removed")))
        .filter(|l| added.iter().chain(removed).all(|kid| l.contains(kid)))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one log line names added {added:?} and removed {removed:?}:\n{}",
        vigil.logs()
    );
    let line = &lines[0];
    let (added_part, removed_part) = added_and_removed(line);
    for kid in added {
        assert!(added_part.contains(kid), "{kid} not named as added: {line}");
        assert!(!removed_part.contains(kid), "{kid} named as removed: {line}");
    }
    for kid in removed {
        assert!(removed_part.contains(kid), "{kid} not named as removed: {line}");
        assert!(!added_part.contains(kid), "{kid} named as added: {line}");
    }
    for kid in kept {
        assert!(
            !added_part.contains(kid) && !removed_part.contains(kid),
            "{kid} stayed but is named: {line}"
        );
    }
}

#[test]
fn a_change_of_key_ids_is_a_rotation_counted_and_logged_with_the_ids() {
    let auth = FakeServer::fixed(set(&[("rsa-1", "rsa-1"), ("rsa-2", "rsa-2"), ("ec-1", "ec-1")]));
    let vigil = Vigil::start(&config(&auth.url("/.well-known/jwks.json")));
    vigil.wait_for_status("/readyz", 200, DEADLINE);

    // The first set is no rotation, nor are the same ids in another order.
    wait_for_fetches(&auth, 3);
    assert_eq!(
        rotations(&vigil),
        Some(0.0),
        "exported from the start, 0 after the first fetch"
    );
    auth.set_response(set(&[("ec-1", "ec-1"), ("rsa-2", "rsa-2"), ("rsa-1", "rsa-1")]));
    wait_for_fetches(&auth, 3);
    assert_eq!(rotations(&vigil), Some(0.0), "reordered keys are the same set");

    // The auth service rotates: rsa-1 retired, rsa-3 published.
    auth.set_response(set(&[("rsa-2", "rsa-2"), ("ec-1", "ec-1"), ("rsa-3", "rsa-1")]));
    wait_for_rotations(&vigil, 1.0);
    assert_rotation_logged(&vigil, &["rsa-3"], &["rsa-1"], &["rsa-2", "ec-1"]);
    assert!(
        vigil
            .get("/metrics")
            .body
            .contains("# TYPE vigil_jwks_rotations_total counter"),
        "a counter"
    );

    // A broken answer, then the same set again: the last good set is what is compared.
    auth.set_response(Response::text(200, "<html>maintenance</html>"));
    wait_for_fetches(&auth, 3);
    auth.set_response(set(&[("rsa-2", "rsa-2"), ("ec-1", "ec-1"), ("rsa-3", "rsa-1")]));
    wait_for_fetches(&auth, 3);
    assert_eq!(
        rotations(&vigil),
        Some(1.0),
        "a failed fetch is no rotation:\n{}",
        vigil.logs()
    );

    // Keys only removed: still a rotation.
    auth.set_response(set(&[("rsa-3", "rsa-1")]));
    wait_for_rotations(&vigil, 2.0);
    assert_rotation_logged(&vigil, &[], &["rsa-2", "ec-1"], &["rsa-3"]);
    support::assert_promtool_accepts(&vigil.get("/metrics").body);
}
