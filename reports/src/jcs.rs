//! Canonical JSON (RFC 8785, JCS) for the signed statement, through
//! `serde_json_canonicalizer`, with the project's extra rule: no floating-point numbers, so
//! that every number is an exact integer and the bytes never depend on float formatting.

use serde_json::Value;

/// The largest integer JCS (and I-JSON) represents exactly: 2^53 - 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value cannot be put in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JcsError {
    /// A number that is not an integer within +-(2^53 - 1), at a JSON pointer.
    #[error("{pointer}: {number} is not an integer within +-(2^53 - 1); write it as a decimal string")]
    Number { pointer: String, number: String },
}

/// Checks that every number in `value` is an integer JCS writes exactly.
pub fn check_integers(value: &Value) -> Result<(), JcsError> {
    fn walk(value: &Value, pointer: &mut String) -> Result<(), JcsError> {
        match value {
            Value::Number(n) => {
                let exact = n.as_u64().is_some_and(|u| u <= MAX_SAFE_INTEGER)
                    || n.as_i64().is_some_and(|i| i.unsigned_abs() <= MAX_SAFE_INTEGER);
                if exact {
                    Ok(())
                } else {
                    Err(JcsError::Number { pointer: pointer.clone(), number: n.to_string() })
                }
            }
            Value::Array(items) => items.iter().enumerate().try_for_each(|(i, item)| {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                let result = walk(item, pointer);
                pointer.truncate(len);
                result
            }),
            Value::Object(map) => map.iter().try_for_each(|(key, item)| {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                let result = walk(item, pointer);
                pointer.truncate(len);
                result
            }),
            _ => Ok(()),
        }
    }
    walk(value, &mut String::new())
}

/// The RFC 8785 canonical bytes of `value`, which must hold integers only.
pub fn canonical(value: &Value) -> Result<Vec<u8>, JcsError> {
    check_integers(value)?;
    Ok(serde_json_canonicalizer::to_vec(value).expect("a serde_json::Value always serialises"))
}

/// Whether `bytes` are exactly the canonical form of the JSON they hold (integers only).
pub fn is_canonical(bytes: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) => canonical(&value).is_ok_and(|c| c == bytes),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_by_utf16_and_whitespace_removed() {
        let value = json!({"b": 1, "a": [true, null, "x"], "\u{e9}": 2, "Z": {"y": -3, "x": 0}});
        let expected = "{\"Z\":{\"x\":0,\"y\":-3},\"a\":[true,null,\"x\"],\"b\":1,\"\u{e9}\":2}";
        assert_eq!(canonical(&value).unwrap(), expected.as_bytes());
    }

    #[test]
    fn floats_and_huge_integers_are_refused_with_their_place() {
        let error = canonical(&json!({"a": {"b": [1, 2.5]}})).unwrap_err();
        assert_eq!(error, JcsError::Number { pointer: "/a/b/1".into(), number: "2.5".into() });
        assert!(canonical(&json!({"n": MAX_SAFE_INTEGER + 1})).is_err());
        assert!(canonical(&json!({"n": MAX_SAFE_INTEGER})).is_ok());
        assert!(canonical(&json!({"n": -(MAX_SAFE_INTEGER as i64)})).is_ok());
    }

    #[test]
    fn pretty_or_reordered_json_is_not_canonical() {
        assert!(is_canonical(br#"{"a":1,"b":[2,3]}"#));
        assert!(!is_canonical(br#"{"b":[2,3],"a":1}"#));
        assert!(!is_canonical(b"{\"a\": 1}"));
        assert!(!is_canonical(br#"{"a":1.0}"#));
        assert!(!is_canonical(br#"{"a":1"#));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(MAX_SAFE_INTEGER as i64)..=MAX_SAFE_INTEGER as i64).prop_map(|n| json!(n)),
            "\\PC{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("\\PC{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Canonical bytes parse back to the same value, are canonical themselves, and do
        /// not depend on how the input was laid out.
        #[test]
        fn canonical_form_is_a_fixed_point(value in json_value()) {
            let bytes = canonical(&value).unwrap();
            let back: Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(&back, &value);
            prop_assert!(is_canonical(&bytes));
            let pretty = serde_json::to_vec_pretty(&value).unwrap();
            let reparsed: Value = serde_json::from_slice(&pretty).unwrap();
            prop_assert_eq!(canonical(&reparsed).unwrap(), bytes);
        }

        /// Any change to a canonical document's value changes its bytes.
        #[test]
        fn different_values_have_different_bytes(a in json_value(), b in json_value()) {
            prop_assume!(a != b);
            prop_assert_ne!(canonical(&a).unwrap(), canonical(&b).unwrap());
        }
    }
}
