//! A BCD store seen through a regf hive (bcd.md §1, §3): `Objects\{guid}` keys with a
//! `Description\Type` and `Elements\XXXXXXXX\Element` values; resolving `{default}`;
//! creating objects and setting elements the way bcdedit does.

use regf::{Hive, Key, Value};
use uuid::Uuid;

use crate::element::{element_format, ids, ElementValue};
use crate::error::{Error, Result};

/// `{bootmgr}`.
pub const BOOTMGR: Uuid = uuid::uuid!("9dea862c-5cdd-4e70-acc1-f32b344d4795");
/// Object type bcdedit gives `/create ... /device` objects (bcd.md §3).
pub const OBJECT_TYPE_DEVICE_OPTIONS: u32 = 0x3000_0000;

const OBJECTS: &str = "Objects";

/// Key name of an object: the GUID in lower case with braces, as bcdedit writes it.
pub fn object_key_name(id: &Uuid) -> String {
    format!("{{{id}}}")
}

/// Key name of an element: 8 lower-case hex digits, as bcdedit writes it.
pub fn element_key_name(id: u32) -> String {
    format!("{id:08x}")
}

/// Read access to a store.
#[derive(Debug, Clone, Copy)]
pub struct Store<'h> {
    objects: &'h Key,
}

/// One object of a store.
#[derive(Debug, Clone, Copy)]
pub struct Object<'h> {
    key: &'h Key,
}

/// One element of an object: its id and the raw registry value.
#[derive(Debug, Clone, Copy)]
pub struct Element<'h> {
    /// The element id (the key name read as hex).
    pub id: u32,
    /// The key's `Element` value; None when the key has none.
    pub value: Option<&'h Value>,
}

impl<'h> Store<'h> {
    /// Views `hive` as a BCD store; fails when it has no `Objects` key.
    pub fn open(hive: &'h Hive) -> Result<Store<'h>> {
        let objects = hive.key(OBJECTS).ok_or_else(|| {
            Error::NotAStore(format!(
                "root {} has no Objects key",
                crate::error::quote(&hive.root.name)
            ))
        })?;
        Ok(Store { objects })
    }

    /// Every object, in stored order.
    pub fn objects(&self) -> Vec<Object<'h>> {
        self.objects
            .subkeys
            .iter()
            .map(|key| Object { key })
            .collect()
    }

    /// The object with identifier `id`, if present (key names compare case-insensitively).
    pub fn object(&self, id: &Uuid) -> Option<Object<'h>> {
        self.objects
            .subkey(&object_key_name(id))
            .map(|key| Object { key })
    }

    /// What `{default}` stands for: `{bootmgr}`'s element 23000003 (bcd.md §3).
    pub fn default_object(&self) -> Result<Uuid> {
        let bootmgr = self
            .object(&BOOTMGR)
            .ok_or_else(|| Error::NoDefault("the store has no {bootmgr} object".into()))?;
        let element = bootmgr.element(ids::DEFAULT_OBJECT).ok_or_else(|| {
            Error::NoDefault("{bootmgr} has no default element (23000003)".into())
        })?;
        match element.decode() {
            Ok(ElementValue::Object(g)) => Ok(g),
            Ok(other) => Err(Error::NoDefault(format!(
                "{{bootmgr}} default element holds {other:?}"
            ))),
            Err(e) => Err(Error::NoDefault(format!(
                "{{bootmgr}} default element: {e}"
            ))),
        }
    }
}

impl<'h> Object<'h> {
    /// The key name as stored (normally `{guid}`).
    pub fn key_name(&self) -> &'h str {
        &self.key.name
    }

    /// The identifier parsed from the key name.
    pub fn id(&self) -> Option<Uuid> {
        let n = self.key.name.trim();
        let n = n
            .strip_prefix('{')
            .and_then(|x| x.strip_suffix('}'))
            .unwrap_or(n);
        Uuid::parse_str(n).ok()
    }

    /// `Description\Type`.
    pub fn object_type(&self) -> Option<u32> {
        self.key
            .subkey("Description")
            .and_then(|d| d.value("Type"))
            .and_then(Value::as_u32)
    }

    /// Every element whose key name is 8 hex digits, sorted by id.
    pub fn elements(&self) -> Vec<Element<'h>> {
        let Some(elements) = self.key.subkey("Elements") else {
            return Vec::new();
        };
        let mut out: Vec<Element<'h>> = elements
            .subkeys
            .iter()
            .filter(|k| is_element_key(&k.name))
            .filter_map(|k| {
                u32::from_str_radix(&k.name, 16).ok().map(|id| Element {
                    id,
                    value: k.value("Element"),
                })
            })
            .collect();
        out.sort_by_key(|e| e.id);
        out
    }

    /// Names of keys under `Elements` that are not element ids (eight hex digits); a store
    /// Windows wrote has none.
    pub fn stray_keys(&self) -> Vec<&'h str> {
        self.key
            .subkey("Elements")
            .map_or_else(Vec::new, |elements| {
                elements
                    .subkeys
                    .iter()
                    .filter(|k| !is_element_key(&k.name))
                    .map(|k| k.name.as_str())
                    .collect()
            })
    }

    /// The element with this id.
    pub fn element(&self, id: u32) -> Option<Element<'h>> {
        self.key
            .subkey("Elements")
            .and_then(|e| e.subkey(&element_key_name(id)))
            .map(|k| Element {
                id,
                value: k.value("Element"),
            })
    }
}

impl Element<'_> {
    /// The decoded value.
    pub fn decode(&self) -> std::result::Result<ElementValue, String> {
        let v = self
            .value
            .ok_or_else(|| "the element key has no \"Element\" value".to_string())?;
        ElementValue::decode(self.id, v.kind, &v.data)
    }
}

fn object_key_mut<'h>(hive: &'h mut Hive, id: &Uuid) -> Result<&'h mut Key> {
    hive.key_mut(&format!("{OBJECTS}\\{}", object_key_name(id)))
        .ok_or(Error::NoSuchObject(*id))
}

/// `bcdedit /create {id} [/d description]` with an object type: refuses an existing id.
pub fn create_object(
    hive: &mut Hive,
    id: &Uuid,
    object_type: u32,
    description: Option<&str>,
) -> Result<()> {
    let store = Store::open(hive)?;
    if store.object(id).is_some() {
        return Err(Error::ObjectExists(*id));
    }
    let key = hive.create_key(&format!("{OBJECTS}\\{}", object_key_name(id)));
    key.create_subkey("Description")
        .set_u32("Type", object_type);
    key.create_subkey("Elements");
    if let Some(d) = description {
        set_element(
            hive,
            id,
            ids::DESCRIPTION,
            &ElementValue::String(d.to_string()),
        )?;
    }
    Ok(())
}

/// `bcdedit /delete {id}`: removes the object and its elements; false when there is none.
pub fn delete_object(hive: &mut Hive, id: &Uuid) -> bool {
    hive.delete_key(&format!("{OBJECTS}\\{}", object_key_name(id)))
}

/// `bcdedit /set {object} <element> <value>`: creates or replaces the element.
pub fn set_element(hive: &mut Hive, object: &Uuid, id: u32, value: &ElementValue) -> Result<()> {
    if element_format(id) != value.format() {
        return Err(Error::InvalidArgument(format!(
            "element {id:08x} has format {}, the value is format {}",
            element_format(id),
            value.format()
        )));
    }
    let (kind, data) = value.encode();
    object_key_mut(hive, object)?
        .create_subkey("Elements")
        .create_subkey(&element_key_name(id))
        .set_value("Element", kind, data);
    Ok(())
}

/// Whether a key name under `Elements` is an element id: eight hex digits.
fn is_element_key(name: &str) -> bool {
    name.len() == 8 && name.bytes().all(|b| b.is_ascii_hexdigit())
}
