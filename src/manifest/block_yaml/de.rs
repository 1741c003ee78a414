//! serde over the events of [`super::parse`], deciding every type hint as serde_yaml_ng does
//! for untagged scalars: plain scalars are resolved (`null`, `true`, `80`), every other style
//! is a string, an empty plain scalar is also an empty sequence or mapping. Where a plain
//! scalar might be a number in a form this module does not parse (`0x1F`, `1e3`, `+5`,
//! `.inf`), it gives up and the caller asks serde_yaml_ng. Any error here means "ask
//! serde_yaml_ng": it is never shown to a user, so it carries no message.

use super::{Event, Style};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use std::fmt;

/// `Some(value)` when the fast reader read the document and `T` deserialized from it; `None`
/// means the caller must use serde_yaml_ng (also for documents that are simply wrong, whose
/// diagnostics serde_yaml_ng words).
pub(in crate::manifest) fn from_str<T: DeserializeOwned>(doc: &str) -> Option<T> {
    let events = super::parse(doc).ok()?;
    let mut de = Events {
        events: &events,
        pos: 0,
    };
    let value = T::deserialize(&mut de).ok()?;
    (de.pos == events.len()).then_some(value)
}

#[derive(Debug)]
pub(super) struct GiveUp;

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("left to serde_yaml_ng")
    }
}

impl std::error::Error for GiveUp {}

impl de::Error for GiveUp {
    fn custom<T: fmt::Display>(_: T) -> Self {
        GiveUp
    }
}

type Result<T> = std::result::Result<T, GiveUp>;

pub(super) struct Events<'e, 'a> {
    pub(super) events: &'e [Event<'a>],
    pub(super) pos: usize,
}

fn is_null(v: &str) -> bool {
    matches!(v, "" | "~" | "null" | "Null" | "NULL")
}

fn as_bool(v: &str) -> Option<bool> {
    match v {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// `0` or digits without a leading zero: the only integers read here.
fn plain_decimal(v: &str) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.iter().all(u8::is_ascii_digit) && (b[0] != b'0' || b.len() == 1)
}

fn unsigned(v: &str) -> Option<u64> {
    plain_decimal(v).then(|| v.parse().ok()).flatten()
}

fn negative(v: &str) -> Option<i64> {
    let digits = v.strip_prefix('-')?;
    (plain_decimal(digits) && digits != "0")
        .then(|| v.parse().ok())
        .flatten()
}

fn signed(v: &str) -> Option<i64> {
    unsigned(v)
        .and_then(|u| i64::try_from(u).ok())
        .or_else(|| negative(v))
}

/// Could serde_yaml_ng read this plain scalar as a number in a form not handled here (radix
/// prefixes, signs, fractions, exponents, `.inf`, integers past 64 bits)? Then the fast path
/// gives up. `500m`, `128Mi`, `10%` and `1.27-alpine` are strings to both.
fn maybe_other_number(v: &str) -> bool {
    let unsigned = v.strip_prefix(['+', '-']).unwrap_or(v);
    let b = unsigned.as_bytes();
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1], b'x' | b'o' | b'b') {
        return true;
    }
    if unsigned.eq_ignore_ascii_case(".inf") || unsigned.eq_ignore_ascii_case(".nan") {
        return true;
    }
    b.iter().any(u8::is_ascii_digit)
        && b.iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-' | b'_'))
}

impl<'e, 'a> Events<'e, 'a> {
    fn next(&mut self) -> Result<&'e Event<'a>> {
        let e = self.events.get(self.pos).ok_or(GiveUp)?;
        self.pos += 1;
        Ok(e)
    }

    fn peek(&self) -> Result<&'e Event<'a>> {
        self.events.get(self.pos).ok_or(GiveUp)
    }

    fn plain(&mut self) -> Result<&'e str> {
        match self.next()? {
            Event::Scalar(v, Style::Plain) => Ok(v),
            _ => Err(GiveUp),
        }
    }

    /// Skips one node.
    fn skip(&mut self) -> Result<()> {
        let mut depth = 0usize;
        loop {
            match self.next()? {
                Event::MapStart | Event::SeqStart => depth += 1,
                Event::MapEnd | Event::SeqEnd => depth = depth.checked_sub(1).ok_or(GiveUp)?,
                Event::Scalar(..) => {}
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }

    /// An empty plain scalar stands for an empty collection (`resources:`).
    fn collection<V: Visitor<'static>>(&mut self, map: bool, visitor: V) -> Result<V::Value> {
        let empty = match (self.next()?, map) {
            (Event::MapStart, true) | (Event::SeqStart, false) => false,
            (Event::Scalar(v, Style::Plain), _) if v.is_empty() => true,
            _ => return Err(GiveUp),
        };
        let mut access = Access { de: self, empty };
        let value = if map {
            visitor.visit_map(&mut access)
        } else {
            visitor.visit_seq(&mut access)
        }?;
        // A visitor that stopped before the end would leave the events out of step.
        if access.at_end()? {
            Ok(value)
        } else {
            Err(GiveUp)
        }
    }
}

// Visitors are called with `'static` input: T is owned, so no value borrows the document.
impl<'e, 'a> de::Deserializer<'static> for &mut Events<'e, 'a> {
    type Error = GiveUp;

    fn deserialize_any<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        match self.peek()? {
            Event::MapStart => self.collection(true, visitor),
            Event::SeqStart => self.collection(false, visitor),
            Event::Scalar(v, Style::Other) => {
                self.pos += 1;
                visitor.visit_str(v)
            }
            Event::Scalar(v, Style::Plain) => {
                self.pos += 1;
                if is_null(v) {
                    visitor.visit_unit()
                } else if let Some(b) = as_bool(v) {
                    visitor.visit_bool(b)
                } else if let Some(u) = unsigned(v) {
                    visitor.visit_u64(u)
                } else if let Some(i) = negative(v) {
                    visitor.visit_i64(i)
                } else if maybe_other_number(v) {
                    Err(GiveUp)
                } else {
                    visitor.visit_str(v)
                }
            }
            Event::MapEnd | Event::SeqEnd => Err(GiveUp),
        }
    }

    fn deserialize_bool<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_bool(as_bool(self.plain()?).ok_or(GiveUp)?)
    }

    fn deserialize_i8<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i16<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i32<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i64<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i64(signed(self.plain()?).ok_or(GiveUp)?)
    }

    fn deserialize_u8<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u16<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u32<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u64<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u64(unsigned(self.plain()?).ok_or(GiveUp)?)
    }

    fn deserialize_f32<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        let v = self.plain()?;
        // Integers only: every other float spelling goes to serde_yaml_ng.
        let f: f64 = unsigned(v).and(v.parse().ok()).ok_or(GiveUp)?;
        visitor.visit_f64(f)
    }

    fn deserialize_char<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        match self.next()? {
            Event::Scalar(v, _) => visitor.visit_str(v),
            _ => Err(GiveUp),
        }
    }

    fn deserialize_string<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'static>>(self, _: V) -> Result<V::Value> {
        Err(GiveUp)
    }

    fn deserialize_byte_buf<V: Visitor<'static>>(self, _: V) -> Result<V::Value> {
        Err(GiveUp)
    }

    fn deserialize_option<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        match self.peek()? {
            Event::Scalar(v, Style::Plain) if is_null(v) => {
                self.pos += 1;
                visitor.visit_none()
            }
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        if is_null(self.plain()?) {
            visitor.visit_unit()
        } else {
            Err(GiveUp)
        }
    }

    fn deserialize_unit_struct<V: Visitor<'static>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'static>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        self.collection(false, visitor)
    }

    fn deserialize_tuple<V: Visitor<'static>>(self, _: usize, visitor: V) -> Result<V::Value> {
        self.collection(false, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'static>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.collection(false, visitor)
    }

    fn deserialize_map<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        self.collection(true, visitor)
    }

    fn deserialize_struct<V: Visitor<'static>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.collection(true, visitor)
    }

    /// Only unit variants written as a scalar, as serde_yaml_ng reads untagged enums.
    fn deserialize_enum<V: Visitor<'static>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.next()? {
            Event::Scalar(v, _) if !v.is_empty() => {
                let variant: de::value::StringDeserializer<GiveUp> =
                    v.to_string().into_deserializer();
                visitor.visit_enum(variant)
            }
            _ => Err(GiveUp),
        }
    }

    fn deserialize_identifier<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'static>>(self, visitor: V) -> Result<V::Value> {
        self.skip()?;
        visitor.visit_unit()
    }
}

/// Entries of a mapping or items of a sequence, up to its end event.
struct Access<'d, 'e, 'a> {
    de: &'d mut Events<'e, 'a>,
    empty: bool,
}

impl Access<'_, '_, '_> {
    fn at_end(&mut self) -> Result<bool> {
        if self.empty {
            return Ok(true);
        }
        if matches!(self.de.peek()?, Event::MapEnd | Event::SeqEnd) {
            self.de.pos += 1;
            self.empty = true;
            return Ok(true);
        }
        Ok(false)
    }
}

impl de::MapAccess<'static> for Access<'_, '_, '_> {
    type Error = GiveUp;

    fn next_key_seed<K: DeserializeSeed<'static>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.at_end()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'static>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.de)
    }
}

impl de::SeqAccess<'static> for Access<'_, '_, '_> {
    type Error = GiveUp;

    fn next_element_seed<T: DeserializeSeed<'static>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>> {
        if self.at_end()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }
}
