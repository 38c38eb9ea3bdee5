//! Strings with variables: `${nonce}`, `${env.NAME}`, `${account}` and captures
//! such as `${id}`. Templates are parsed when the journey is loaded, so a typo in
//! a variable is a `check` error with a position, not a failed run at 3 a.m.
//! `$${` writes a literal `${`.

use std::fmt;

/// A variable a template refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Var {
    /// Unique per run: the journey's own marker on what it creates.
    Nonce,
    /// The probe account's user name on the step's instance.
    Account,
    /// An environment variable of the probe process.
    Env(String),
    /// A value captured by an earlier step.
    Capture(String),
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Var::Nonce => f.write_str("${nonce}"),
            Var::Account => f.write_str("${account}"),
            Var::Env(name) => write!(f, "${{env.{name}}}"),
            Var::Capture(name) => write!(f, "${{{name}}}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(Var),
}

/// A parsed string template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Why a template could not be parsed; `offset` is in characters from its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
    pub hint: Option<String>,
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Template {
    /// A template with no variables.
    pub fn literal(text: impl Into<String>) -> Self {
        Template { parts: vec![Part::Literal(text.into())] }
    }

    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '$' && chars.get(i + 1) == Some(&'$') && chars.get(i + 2) == Some(&'{') {
                literal.push_str("${");
                i += 3;
                continue;
            }
            if chars[i] == '$' && chars.get(i + 1) == Some(&'{') {
                let start = i;
                let Some(len) = chars[i + 2..].iter().position(|&c| c == '}') else {
                    return Err(TemplateError {
                        offset: start,
                        message: "`${` is never closed".into(),
                        hint: Some("close the variable with `}`, or write `$${` for a literal `${`".into()),
                    });
                };
                let name: String = chars[i + 2..i + 2 + len].iter().collect();
                let var = Self::parse_var(name.trim()).map_err(|(message, hint)| TemplateError {
                    offset: start,
                    message,
                    hint,
                })?;
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(Part::Var(var));
                i += 2 + len + 1;
                continue;
            }
            literal.push(chars[i]);
            i += 1;
        }
        if !literal.is_empty() || parts.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    fn parse_var(name: &str) -> Result<Var, (String, Option<String>)> {
        match name {
            "nonce" => Ok(Var::Nonce),
            "account" => Ok(Var::Account),
            "" => Err((
                "empty variable `${}`".into(),
                Some("name a variable: `${nonce}`, `${env.NAME}` or a capture".into()),
            )),
            _ => {
                if let Some(env) = name.strip_prefix("env.") {
                    if is_identifier(env) {
                        return Ok(Var::Env(env.to_owned()));
                    }
                    return Err((format!("`{env}` is not an environment variable name"), None));
                }
                if is_identifier(name) {
                    Ok(Var::Capture(name.to_owned()))
                } else {
                    Err((
                        format!("`${{{name}}}` is not a variable"),
                        Some("variables are `${nonce}`, `${account}`, `${env.NAME}`, or a capture name".into()),
                    ))
                }
            }
        }
    }

    /// The variables used, in order.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v),
            Part::Literal(_) => None,
        })
    }

    /// Whether the template uses `var`.
    pub fn uses(&self, var: &Var) -> bool {
        self.vars().any(|v| v == var)
    }

    /// Fills the variables in with `lookup`; the first one it can't fill is the error.
    pub fn render<E>(&self, mut lookup: impl FnMut(&Var) -> Result<String, E>) -> Result<String, E> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Var(var) => out.push_str(&lookup(var)?),
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    /// The template as written (with variables, never their values).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(text) => f.write_str(&text.replace("${", "$${"))?,
                Part::Var(var) => write!(f, "{var}")?,
            }
        }
        Ok(())
    }
}

/// A JSON body whose strings are templates.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonTemplate {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(Template),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    pub fn vars(&self) -> Vec<&Var> {
        let mut out = Vec::new();
        self.collect_vars(&mut out);
        out
    }

    fn collect_vars<'a>(&'a self, out: &mut Vec<&'a Var>) {
        match self {
            JsonTemplate::String(t) => out.extend(t.vars()),
            JsonTemplate::Array(items) => items.iter().for_each(|i| i.collect_vars(out)),
            JsonTemplate::Object(entries) => entries.iter().for_each(|(_, v)| v.collect_vars(out)),
            _ => {}
        }
    }

    pub fn render<E>(&self, lookup: &mut impl FnMut(&Var) -> Result<String, E>) -> Result<serde_json::Value, E> {
        Ok(match self {
            JsonTemplate::Null => serde_json::Value::Null,
            JsonTemplate::Bool(b) => serde_json::Value::Bool(*b),
            JsonTemplate::Number(n) => serde_json::Value::Number(n.clone()),
            JsonTemplate::String(t) => serde_json::Value::String(t.render(&mut *lookup)?),
            JsonTemplate::Array(items) => {
                serde_json::Value::Array(items.iter().map(|i| i.render(lookup)).collect::<Result<_, _>>()?)
            }
            JsonTemplate::Object(entries) => serde_json::Value::Object(
                entries.iter().map(|(k, v)| Ok((k.clone(), v.render(lookup)?))).collect::<Result<_, E>>()?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &Template) -> String {
        t.render(|v| {
            Ok::<_, ()>(match v {
                Var::Nonce => "N1".into(),
                Var::Account => "probe".into(),
                Var::Env(n) => format!("env:{n}"),
                Var::Capture(n) => format!("cap:{n}"),
            })
        })
        .unwrap()
    }

    #[test]
    fn renders_every_kind_of_variable() {
        let t = Template::parse("/api/v1/statuses/${id}?q=${nonce}&a=${account}&e=${env.HOME}").unwrap();
        assert_eq!(render(&t), "/api/v1/statuses/cap:id?q=N1&a=probe&e=env:HOME");
        assert!(t.uses(&Var::Nonce));
    }

    #[test]
    fn dollar_dollar_escapes() {
        let t = Template::parse("price $${x} $5").unwrap();
        assert_eq!(render(&t), "price ${x} $5");
        assert_eq!(t.vars().count(), 0);
        assert_eq!(t.to_string(), "price $${x} $5");
    }

    #[test]
    fn bad_templates_are_errors_with_offsets() {
        let e = Template::parse("ab${nonce").unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(Template::parse("${env.1x}").is_err());
        assert!(Template::parse("${a b}").is_err());
        assert!(Template::parse("${}").is_err());
    }
}
