//! Records as DynamoDB Streams and the Lambda event source mapping hand them over: images in
//! DynamoDB's attribute-value JSON (`{"S": "x"}`, `{"N": "1"}`, ...).

use crate::item::Item;
use serde_json::{Map, Value};

/// A stream image (`NewImage` / `OldImage`) as a plain JSON item; `None` when it is not an
/// attribute-value map (an absent image is an empty map).
pub fn image_to_item(image: &Value) -> Option<Item> {
    let map = image.as_object()?;
    map.iter()
        .map(|(k, v)| Some((k.clone(), attribute_value(v)?)))
        .collect::<Option<Map<String, Value>>>()
}

/// One attribute value in DynamoDB JSON → plain JSON (sets become arrays; binaries stay their
/// base64 text).
pub fn attribute_value(v: &Value) -> Option<Value> {
    let (tag, inner) = v.as_object().filter(|m| m.len() == 1)?.iter().next()?;
    Some(match tag.as_str() {
        "S" | "B" => Value::String(inner.as_str()?.to_string()),
        "N" => crate::dynamo::number_from_av(inner.as_str()?),
        "BOOL" => Value::Bool(inner.as_bool()?),
        "NULL" => Value::Null,
        "M" => Value::Object(image_to_item(inner)?),
        "L" => Value::Array(
            inner
                .as_array()?
                .iter()
                .map(attribute_value)
                .collect::<Option<Vec<_>>>()?,
        ),
        "SS" | "BS" => Value::Array(
            inner
                .as_array()?
                .iter()
                .map(|s| s.as_str().map(|s| Value::String(s.to_string())))
                .collect::<Option<Vec<_>>>()?,
        ),
        "NS" => Value::Array(
            inner
                .as_array()?
                .iter()
                .map(|s| s.as_str().map(crate::dynamo::number_from_av))
                .collect::<Option<Vec<_>>>()?,
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn images_convert_like_the_sdk_adapter() {
        let image = json!({
            "pk": {"S": "PORTAL#m"}, "n": {"N": "42"}, "f": {"N": "1.5"}, "b": {"BOOL": true},
            "z": {"NULL": true}, "m": {"M": {"x": {"S": "y"}}}, "l": {"L": [{"N": "1"}, {"S": "a"}]},
            "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2"]}
        });
        let item = image_to_item(&image).unwrap();
        assert_eq!(
            Value::Object(item),
            json!({"pk": "PORTAL#m", "n": 42, "f": 1.5, "b": true, "z": null, "m": {"x": "y"},
                   "l": [1, "a"], "ss": ["a", "b"], "ns": [1, 2]})
        );
        assert!(image_to_item(&json!({"x": {"Q": 1}})).is_none());
        assert!(image_to_item(&json!("x")).is_none());
        assert_eq!(image_to_item(&json!({})), Some(Item::new()));
    }
}
