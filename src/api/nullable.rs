//! [`Nullable`]: an optional enum or object field, sent as `null` when unset, declared the way
//! generated clients accept.
//!
//! poem-openapi declares an `Option<T>` field whose `T` is a named schema (an enum, an object)
//! as a bare `$ref`, which says nothing about the `null` the field is sent as; and once the
//! field has a description or `#[oai(nullable)]` it becomes `allOf` of the `$ref` and an inline
//! schema, which openapi-python-client refuses ("Cannot take allOf a non-object"). This type
//! declares `{"allOf": [{"$ref": …}], "nullable": true}` instead: one reference, nullable, which
//! openapi-python-client, TypeScript generators and schemathesis read as "T or null".

use std::borrow::Cow;

use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef, Registry},
    types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type},
};
use serde_json::Value;

/// `T` or `null` (see the module doc). Compares equal to the `Option<T>` it wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Nullable<T>(pub Option<T>);

impl<T> From<Option<T>> for Nullable<T> {
    fn from(value: Option<T>) -> Self {
        Self(value)
    }
}

impl<T: PartialEq> PartialEq<Option<T>> for Nullable<T> {
    fn eq(&self, other: &Option<T>) -> bool {
        self.0 == *other
    }
}

impl<T: Type> Type for Nullable<T> {
    const IS_REQUIRED: bool = false;

    type RawValueType = T::RawValueType;

    type RawElementValueType = T::RawElementValueType;

    fn name() -> Cow<'static, str> {
        format!("nullable_{}", T::name()).into()
    }

    fn schema_ref() -> MetaSchemaRef {
        match T::schema_ref() {
            MetaSchemaRef::Reference(name) => MetaSchemaRef::Inline(Box::new(MetaSchema {
                all_of: vec![MetaSchemaRef::Reference(name)],
                nullable: true,
                ..MetaSchema::ANY
            })),
            MetaSchemaRef::Inline(schema) => MetaSchemaRef::Inline(Box::new(MetaSchema {
                nullable: true,
                ..*schema
            })),
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        self.0.as_ref().and_then(Type::as_raw_value)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        match &self.0 {
            Some(value) => value.raw_element_iter(),
            None => Box::new(std::iter::empty()),
        }
    }

    fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

impl<T: ParseFromJSON> ParseFromJSON for Nullable<T> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::Null => Ok(Self(None)),
            value => Ok(Self(Some(
                T::parse_from_json(Some(value)).map_err(ParseError::propagate)?,
            ))),
        }
    }
}

impl<T: ToJSON> ToJSON for Nullable<T> {
    fn to_json(&self) -> Option<Value> {
        Some(
            self.0
                .as_ref()
                .and_then(ToJSON::to_json)
                .unwrap_or(Value::Null),
        )
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::Enum;

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
    enum Colour {
        Red,
    }

    #[test]
    fn a_reference_is_one_nullable_all_of_and_none_is_null() {
        let schema = serde_json::to_value(Nullable::<Colour>::schema_ref()).unwrap();
        assert_eq!(
            schema,
            serde_json::json!({"allOf": [{"$ref": "#/components/schemas/Colour"}], "nullable": true})
        );
        assert_eq!(Nullable::<Colour>(None).to_json(), Some(Value::Null));
        assert_eq!(
            Nullable(Some(Colour::Red)).to_json(),
            Some(Value::from("Red"))
        );
        assert_eq!(
            Nullable::<Colour>::parse_from_json(Some(Value::Null)).unwrap(),
            None
        );
    }
}
