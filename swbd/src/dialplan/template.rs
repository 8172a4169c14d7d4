//! `${name}` templates in action parameters.
//!
//! A template is parsed once at load time (so an unterminated `${` or an
//! undefined name is a load error) and rendered per call against the
//! call's [`Variables`]. `$$` is a literal `$`.

use std::collections::BTreeMap;

use super::Error;

/// Built-in variables every call has.
pub const BUILTIN_VARIABLES: &[&str] = &[
    "destination",
    "caller",
    "source_ip",
    "domain",
    "from_domain",
    "route_id",
    // The transferor's user when a transfer (REFER) is routed; empty
    // otherwise (not in a call's variables until then).
    "referrer",
];

/// Variables of one call: built-ins, regex captures, `set` ones.
pub type Variables = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parse `text`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(idx) = rest.find('$') {
            literal.push_str(rest.get(..idx).unwrap_or_default());
            let after = rest.get(idx + 1..).unwrap_or_default();
            if let Some(more) = after.strip_prefix('$') {
                literal.push('$');
                rest = more;
            } else if let Some(inner) = after.strip_prefix('{') {
                let end = inner.find('}').ok_or_else(|| Error::BadTemplate {
                    text: text.to_string(),
                    reason: "`${` is never closed by `}`".into(),
                })?;
                let name = inner.get(..end).unwrap_or_default();
                if !is_variable_name(name)
                    && (name.is_empty() || !name.chars().all(|c| c.is_ascii_digit()))
                {
                    return Err(Error::BadTemplate {
                        text: text.to_string(),
                        reason: format!(
                            "`${{{name}}}` is not a variable name (expected letters, digits and `_`, like ${{destination}} or ${{1}})"
                        ),
                    });
                }
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(Part::Var(name.to_string()));
                rest = inner.get(end + 1..).unwrap_or_default();
            } else {
                return Err(Error::BadTemplate {
                    text: text.to_string(),
                    reason: "a `$` must start `${name}` (write `$$` for a literal `$`)".into(),
                });
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self {
            source: text.to_string(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Names of the variables used, in order.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Whether the template has no variables.
    pub fn is_literal(&self) -> bool {
        self.variables().next().is_none()
    }

    /// Substitute; a variable missing at run time renders empty (the loader
    /// already refused undefined names).
    pub fn render(&self, vars: &Variables) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => out.push_str(vars.get(v).map(String::as_str).unwrap_or("")),
            }
        }
        out
    }
}

impl Template {
    /// Substitute, passing each variable's value through `escape` (the
    /// template's own text is trusted, values come from the INVITE).
    pub fn render_escaped(&self, vars: &Variables, escape: impl Fn(&str, &mut String)) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => escape(vars.get(v).map(String::as_str).unwrap_or(""), &mut out),
            }
        }
        out
    }
}

/// Escape a value for the user part of a SIP URI (RFC 3261 §25.1 `user`):
/// unreserved and user-unreserved characters stay, everything else
/// (`@`, `:`, `<`, `>`, spaces, control characters, non-ASCII) is `%XX`.
pub fn escape_sip_user(value: &str, out: &mut String) {
    for b in value.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_'
                    | b'.'
                    | b'!'
                    | b'~'
                    | b'*'
                    | b'\''
                    | b'('
                    | b')'
                    | b'&'
                    | b'='
                    | b'+'
                    | b'$'
                    | b','
                    | b';'
                    | b'?'
                    | b'/'
            );
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Make a value safe for a reason phrase: control characters become spaces.
pub fn escape_reason(value: &str, out: &mut String) {
    out.extend(value.chars().map(|c| if c.is_control() { ' ' } else { c }));
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_variables_and_dollars() {
        let t = Template::parse("user/${destination}-$$-${1}").expect("ok");
        assert_eq!(t.variables().collect::<Vec<_>>(), ["destination", "1"]);
        let mut v = Variables::new();
        v.insert("destination".into(), "1001".into());
        v.insert("1".into(), "x".into());
        assert_eq!(t.render(&v), "user/1001-$-x");
        assert!(Template::parse("plain").expect("ok").is_literal());
    }

    #[test]
    fn values_are_escaped_not_the_template() {
        let t = Template::parse("sip:${x}@example.com").expect("ok");
        let mut v = Variables::new();
        v.insert("x".into(), "a@evil.com>\r\nVia: x +1;p=é".into());
        assert_eq!(
            t.render_escaped(&v, escape_sip_user),
            "sip:a%40evil.com%3E%0D%0AVia%3A%20x%20+1;p=%C3%A9@example.com"
        );
        let r = Template::parse("Busy ${x}").expect("ok");
        assert_eq!(
            r.render_escaped(&v, escape_reason),
            "Busy a@evil.com>  Via: x +1;p=é"
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        for t in ["${destination", "$x", "${}", "${a-b}", "tail$"] {
            assert!(Template::parse(t).is_err(), "{t:?}");
        }
    }
}
