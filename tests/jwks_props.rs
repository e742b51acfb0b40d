//! Property tests for the JWKS parser (issue 12): the auth service's answer is not trusted, so
//! arbitrary bytes never panic, and a valid key set of n keys reads as n keys, in order.

use proptest::prelude::*;
use serde_json::{Value, json};
use vigil::checks::jwks;

const CASES: u32 = 256;

const FIXTURE: &str = include_str!("fixtures/jwks.json");

fn fixture_keys() -> Vec<Value> {
    let document: Value = serde_json::from_str(FIXTURE).unwrap();
    document["keys"].as_array().unwrap().clone()
}

/// One generated key, and whether jsonwebtoken must be able to use it (`None`: not asserted).
#[derive(Debug, Clone)]
struct Key {
    json: Value,
    usable: Option<bool>,
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-zA-Z0-9_-]{1,12}", "\\PC{0,8}"]
}

fn extra_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        text().prop_map(Value::from),
        Just(Value::Null),
        prop::collection::vec(any::<u8>(), 0..4).prop_map(|v| json!(v)),
    ]
}

fn key() -> impl Strategy<Value = Key> {
    let fixture = fixture_keys();
    let n = fixture.len();
    prop_oneof![
        // A real RSA or EC key, its kid renamed or dropped: still usable.
        (0..n, prop::option::of(text())).prop_map(move |(i, kid)| {
            let mut json = fixture[i].clone();
            match kid {
                Some(kid) => json["kid"] = Value::from(kid),
                None => {
                    json.as_object_mut().unwrap().remove("kid");
                }
            }
            Key {
                json,
                usable: Some(true),
            }
        }),
        // A key of a type no verifier knows, with odd members: counted, never usable.
        (
            "[A-Z]{1,4}|\\PC{0,6}",
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::collection::btree_map("[a-z]{1,3}", extra_value(), 0..4),
        )
            .prop_filter("a known kty", |(kty, ..)| !["RSA", "EC", "oct", "OKP"]
                .contains(&kty.as_str()))
            .prop_map(|(kty, kid, alg, crv, key_use, extra)| {
                let mut json = json!({});
                for (name, value) in extra {
                    json[name] = value;
                }
                json["kty"] = Value::from(kty);
                for (name, value) in [("kid", kid), ("alg", alg), ("crv", crv), ("use", key_use)] {
                    if let Some(value) = value {
                        json[name] = Value::from(value);
                    }
                }
                Key {
                    json,
                    usable: Some(false),
                }
            }),
        // A shared-secret key: well formed, usability left to jsonwebtoken.
        ("[A-Za-z0-9_-]{0,40}", prop::option::of(text())).prop_map(|(k, kid)| {
            let mut json = json!({"kty": "oct", "k": k});
            if let Some(kid) = kid {
                json["kid"] = Value::from(kid);
            }
            Key { json, usable: None }
        }),
    ]
}

fn member(key: &Value, name: &str) -> Option<String> {
    key.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// A valid document serialized compact or pretty, or one cut or with a byte changed.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        any::<String>().prop_map(String::into_bytes),
        (
            prop::collection::vec(key(), 0..4),
            any::<prop::sample::Index>(),
            any::<u8>(),
            any::<bool>()
        )
            .prop_map(|(keys, at, byte, cut)| {
                let keys: Vec<Value> = keys.into_iter().map(|k| k.json).collect();
                let mut body = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
                let at = at.index(body.len());
                if cut {
                    body.truncate(at);
                } else {
                    body[at] = byte;
                }
                body
            }),
        prop::collection::vec(extra_value(), 0..4)
            .prop_map(|keys| serde_json::to_vec(&json!({ "keys": keys })).unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_errors_say_why(body in hostile_bytes()) {
        if let Err(message) = jwks::parse(&body) {
            let known = message.starts_with("invalid JSON (")
                || message == "no \"keys\" array"
                || (message.starts_with("key ") && message.ends_with(" has no \"kty\""));
            prop_assert!(known, "{message}");
        }
    }

    #[test]
    fn a_valid_set_of_n_keys_reads_as_n_keys_in_order(
        keys in prop::collection::vec(key(), 0..8),
        pretty in any::<bool>(),
        extra in prop::collection::btree_map("[a-z]{1,6}", extra_value(), 0..3),
    ) {
        let mut document = json!({});
        for (name, value) in extra {
            document[name] = value;
        }
        document["keys"] = Value::Array(keys.iter().map(|k| k.json.clone()).collect());
        let body = if pretty { serde_json::to_vec_pretty(&document) } else { serde_json::to_vec(&document) }.unwrap();
        let parsed = jwks::parse(&body).map_err(TestCaseError::fail)?;
        prop_assert_eq!(parsed.len(), keys.len());
        for (info, key) in parsed.iter().zip(&keys) {
            prop_assert_eq!(Some(info.kty.clone()), member(&key.json, "kty"));
            prop_assert_eq!(&info.kid, &member(&key.json, "kid"));
            prop_assert_eq!(&info.alg, &member(&key.json, "alg"));
            prop_assert_eq!(&info.crv, &member(&key.json, "crv"));
            prop_assert_eq!(&info.key_use, &member(&key.json, "use"));
            if let Some(usable) = key.usable {
                prop_assert_eq!(info.usable, usable, "{}", key.json);
            }
        }
    }

    #[test]
    fn a_key_without_kty_is_named_by_its_index(
        keys in prop::collection::vec(key(), 1..6),
        missing in any::<prop::sample::Index>(),
    ) {
        let missing = missing.index(keys.len());
        let mut values: Vec<Value> = keys.into_iter().map(|k| k.json).collect();
        values[missing].as_object_mut().unwrap().remove("kty");
        let body = serde_json::to_vec(&json!({ "keys": values })).unwrap();
        prop_assert_eq!(jwks::parse(&body), Err(format!("key {missing} has no \"kty\"")));
    }
}
