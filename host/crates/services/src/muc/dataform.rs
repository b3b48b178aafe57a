//! The small part of XEP-0004 data forms the MUC service needs: building `form` and
//! `result` forms and reading the fields of a submitted form.

use crate::xml::{Element, ns};

/// A field of a form being built.
pub struct Field<'a> {
    pub var: &'a str,
    pub kind: &'a str,
    pub label: Option<&'a str>,
    pub values: Vec<String>,
    /// (label, value) options of list fields.
    pub options: &'a [(&'a str, &'a str)],
}

impl<'a> Field<'a> {
    pub fn new(var: &'a str, kind: &'a str, value: impl Into<String>) -> Field<'a> {
        Field {
            var,
            kind,
            label: None,
            values: vec![value.into()],
            options: &[],
        }
    }

    /// A field with several values (`jid-multi`, `text-multi`, `list-multi`).
    pub fn multi(var: &'a str, kind: &'a str, values: Vec<String>) -> Field<'a> {
        Field {
            values,
            ..Field::new(var, kind, String::new())
        }
    }

    pub fn labelled(mut self, label: &'a str) -> Self {
        self.label = Some(label);
        self
    }

    pub fn with_options(mut self, options: &'a [(&'a str, &'a str)]) -> Self {
        self.options = options;
        self
    }

    fn element(&self) -> Element {
        let mut f = Element::new("field", ns::DATA_FORMS)
            .with_attr("var", self.var)
            .with_attr("type", self.kind)
            .with_opt_attr("label", self.label);
        for v in &self.values {
            f.push_child(Element::new("value", ns::DATA_FORMS).with_text(v.clone()));
        }
        for (label, value) in self.options {
            f.push_child(
                Element::new("option", ns::DATA_FORMS)
                    .with_attr("label", *label)
                    .with_child(Element::new("value", ns::DATA_FORMS).with_text(*value)),
            );
        }
        f
    }
}

/// `<x xmlns='jabber:x:data' type=kind>` with a hidden `FORM_TYPE` and the fields.
pub fn form(kind: &str, form_type: &str, title: Option<&str>, fields: &[Field<'_>]) -> Element {
    let mut x = Element::new("x", ns::DATA_FORMS).with_attr("type", kind);
    if let Some(t) = title {
        x.push_child(Element::new("title", ns::DATA_FORMS).with_text(t));
    }
    x.push_child(Field::new("FORM_TYPE", "hidden", form_type).element());
    for f in fields {
        x.push_child(f.element());
    }
    x
}

/// A submitted form: its type and (var, values) of every field, FORM_TYPE included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub kind: String,
    pub fields: Vec<(String, Vec<String>)>,
}

impl Submitted {
    /// Reads `<x xmlns='jabber:x:data'>`.
    pub fn parse(x: &Element) -> Submitted {
        let fields = x
            .children()
            .filter(|c| c.is("field", ns::DATA_FORMS))
            .filter_map(|f| {
                let var = f.attr("var")?.to_string();
                let values = f
                    .children()
                    .filter(|v| v.is("value", ns::DATA_FORMS))
                    .map(|v| v.text())
                    .collect();
                Some((var, values))
            })
            .collect();
        Submitted {
            kind: x.attr("type").unwrap_or("").to_string(),
            fields,
        }
    }

    /// The FORM_TYPE value, if given.
    pub fn form_type(&self) -> Option<&str> {
        self.fields
            .iter()
            .find(|(v, _)| v == "FORM_TYPE")
            .and_then(|(_, vals)| vals.first())
            .map(String::as_str)
    }
}
