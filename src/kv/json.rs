//! Reading config.json fields with errors that name the field.

use serde_json::Value;

/// A JSON object, with an optional parent to fall back to (text_config
/// inherits torch_dtype and friends from the wrapper).
#[derive(Clone, Copy)]
pub struct Obj<'a> {
    map: &'a serde_json::Map<String, Value>,
    fallback: Option<&'a serde_json::Map<String, Value>>,
    path: &'static str,
}

impl<'a> Obj<'a> {
    pub fn root(v: &'a Value) -> Result<Obj<'a>, String> {
        v.as_object()
            .map(|map| Obj {
                map,
                fallback: None,
                path: "",
            })
            .ok_or_else(|| "config.json: not a JSON object".to_string())
    }

    pub fn child(&self, key: &str) -> Result<Option<Obj<'a>>, String> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Obj {
                map,
                fallback: None,
                path: "text_config.",
            })),
            Some(_) => Err(self.bad(key, "must be an object")),
        }
    }

    pub fn with_fallback(self, parent: Obj<'a>) -> Obj<'a> {
        Obj {
            fallback: Some(parent.map),
            ..self
        }
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        match self.map.get(key) {
            Some(Value::Null) | None => self
                .fallback
                .and_then(|f| f.get(key))
                .filter(|v| !v.is_null()),
            Some(v) => Some(v),
        }
    }

    /// The field's presence, even when null (null can mean "off").
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub fn bad(&self, key: &str, why: &str) -> String {
        format!("config.json: {}{key} {why}", self.path)
    }

    /// The largest integer kvscope takes from a config: far beyond any real
    /// size, and small enough that the model's arithmetic cannot overflow.
    pub const MAX_INT: u64 = 1 << 32;

    /// The first of `keys` present, as a non-negative integer up to MAX_INT.
    pub fn opt_u64(&self, keys: &[&str]) -> Result<Option<u64>, String> {
        for k in keys {
            if let Some(v) = self.get(k) {
                return match v {
                    Value::Number(n) => n
                        .as_u64()
                        .or_else(|| {
                            n.as_f64()
                                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                                .map(|f| f as u64)
                        })
                        .ok_or_else(|| {
                            self.bad(k, &format!("must be a non-negative integer, not {n}"))
                        })
                        .and_then(|x| {
                            if x > Self::MAX_INT {
                                Err(self.bad(
                                    k,
                                    // As written: a float beyond u64 was cast to u64::MAX.
                                    &format!("{n} is out of range (at most {})", Self::MAX_INT),
                                ))
                            } else {
                                Ok(Some(x))
                            }
                        }),
                    _ => Err(self.bad(k, &format!("must be a number, not {v}"))),
                };
            }
        }
        Ok(None)
    }

    pub fn req_u64(&self, keys: &[&str]) -> Result<u64, String> {
        self.opt_u64(keys)?.ok_or_else(|| {
            let alt = if keys.len() > 1 {
                format!(" (or {})", keys[1..].join(", "))
            } else {
                String::new()
            };
            format!("config.json: missing {}{}{alt}", self.path, keys[0])
        })
    }

    pub fn f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(|v| v.as_f64())
    }

    pub fn str(&self, key: &str) -> Option<String> {
        self.get(key).and_then(|v| v.as_str()).map(String::from)
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(|v| v.as_bool())
    }

    pub fn array(&self, key: &str) -> Option<&'a Vec<Value>> {
        self.get(key).and_then(|v| v.as_array())
    }

    pub fn object(&self, key: &str) -> Option<&'a serde_json::Map<String, Value>> {
        self.get(key).and_then(|v| v.as_object())
    }
}
