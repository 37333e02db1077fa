//! A JSON object whose member values stay raw: the shape of `params`, of a tool definition, of
//! a result. The gateway reads and replaces the members it owns (`name`, `_meta`, `cursor`) and
//! forwards the rest untouched, in their original order.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// An ordered JSON object with raw member values. An object that names a member twice is
/// refused when read: which of the two a peer would act on is anyone's guess (see
/// [`crate::strict`]).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(transparent)]
pub struct RawObject(IndexMap<String, Box<RawValue>>);

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut out = IndexMap::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(key) = map.next_key::<String>()? {
                    if out.contains_key(&key) {
                        return Err(de::Error::custom(format!("duplicate member `{key}`")));
                    }
                    let value: Box<RawValue> = map.next_value()?;
                    out.insert(key, value);
                }
                Ok(RawObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Request and notification parameters.
pub type Params = RawObject;

/// A member could not be read or written as the expected type.
#[derive(Debug, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct MemberError {
    /// The member name.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl RawObject {
    /// An empty object.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a raw JSON value that must be an object.
    pub fn from_raw(raw: &RawValue) -> Result<Self, serde_json::Error> {
        serde_json::from_str(raw.get())
    }

    /// Reads an object from a JSON text.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Builds an object from a `serde_json` map (each member serialised once).
    pub fn from_map(map: &Map<String, Value>) -> Self {
        let mut out = Self::new();
        for (k, v) in map {
            if let Ok(raw) = serde_json::value::to_raw_value(v) {
                out.0.insert(k.clone(), raw);
            }
        }
        out
    }

    /// The raw member, if present.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.0.get(key).map(AsRef::as_ref)
    }

    /// Whether the member is present (even as `null`).
    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Decodes a member. `Ok(None)` when absent.
    pub fn get_as<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, MemberError> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => serde_json::from_str(raw.get()).map(Some).map_err(|e| MemberError {
                key: key.to_owned(),
                message: e.to_string(),
            }),
        }
    }

    /// A string member; `None` when absent or not a string.
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.get(key)
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
    }

    /// An object member decoded as a `serde_json` map; `None` when absent or not an object.
    pub fn get_object(&self, key: &str) -> Option<Map<String, Value>> {
        self.get(key)
            .and_then(|raw| serde_json::from_str::<Map<String, Value>>(raw.get()).ok())
    }

    /// Sets a member to an already-encoded value, keeping its position if it existed.
    pub fn insert_raw(&mut self, key: impl Into<String>, value: Box<RawValue>) {
        self.0.insert(key.into(), value);
    }

    /// Sets a member, encoding the value.
    pub fn insert<T: Serialize + ?Sized>(&mut self, key: impl Into<String>, value: &T) -> Result<(), MemberError> {
        let key = key.into();
        let raw = serde_json::value::to_raw_value(value).map_err(|e| MemberError {
            key: key.clone(),
            message: e.to_string(),
        })?;
        self.0.insert(key, raw);
        Ok(())
    }

    /// Removes a member, preserving the order of the others.
    pub fn remove(&mut self, key: &str) -> Option<Box<RawValue>> {
        self.0.shift_remove(key)
    }

    /// Iterates over the members in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RawValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_ref()))
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Encodes the object as raw JSON.
    pub fn to_raw(&self) -> Box<RawValue> {
        // Keys are strings and members valid JSON, so encoding cannot fail.
        serde_json::value::to_raw_value(self).unwrap_or_default()
    }

    /// Decodes the whole object into a `serde_json` value (for inspection, never for forwarding).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.to_raw().get()).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_naming_a_member_twice_is_refused() {
        let e = RawObject::from_json(r#"{"name":"a","arguments":{},"name":"b"}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate member `name`"), "{e}");
    }

    #[test]
    fn members_keep_their_bytes_and_order() {
        let text = r#"{"z":1.50,"name":"a","x-unknown":{"deep":[1,2e3]},"big":123456789012345678901234567890}"#;
        let mut o = RawObject::from_json(text).unwrap();
        o.insert("name", "b").unwrap();
        let out = serde_json::to_string(&o).unwrap();
        assert_eq!(
            out,
            r#"{"z":1.50,"name":"b","x-unknown":{"deep":[1,2e3]},"big":123456789012345678901234567890}"#
        );
    }

    #[test]
    fn remove_keeps_order() {
        let mut o = RawObject::from_json(r#"{"a":1,"b":2,"c":3}"#).unwrap();
        o.remove("b");
        assert_eq!(serde_json::to_string(&o).unwrap(), r#"{"a":1,"c":3}"#);
    }

    #[test]
    fn typed_reads() {
        let o = RawObject::from_json(r#"{"s":"x","n":3,"o":{"k":true}}"#).unwrap();
        assert_eq!(o.get_str("s").as_deref(), Some("x"));
        assert_eq!(o.get_str("n"), None);
        assert_eq!(o.get_as::<u32>("n").unwrap(), Some(3));
        assert!(o.get_as::<u32>("s").is_err());
        assert_eq!(o.get_object("o").unwrap()["k"], Value::Bool(true));
    }
}
