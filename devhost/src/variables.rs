//! Application variables as Spin resolves them: a `SPIN_VARIABLE_<NAME>` environment variable
//! wins over the manifest's `default`; a `required` variable without a value stops start-up;
//! `{{ name }}` templates in component variables and `allowed_outbound_hosts` refer to them.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Result, bail};

use crate::manifest::VariableDecl;

/// The resolved value of every application variable.
#[derive(Debug, Clone)]
pub struct AppVariables {
    values: HashMap<String, String>,
}

impl AppVariables {
    /// Resolves every declared variable, reading overrides through `env` (the process
    /// environment in production, a map in unit tests).
    pub fn resolve(
        declared: &BTreeMap<String, VariableDecl>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let mut values = HashMap::new();
        let mut missing = Vec::new();
        for (name, decl) in declared {
            validate_name(name)?;
            if decl.required && decl.default.is_some() {
                bail!("[variables] {name}: a variable cannot be both required and have a default");
            }
            if !decl.required && decl.default.is_none() {
                bail!("[variables] {name}: a variable must either be required or have a default");
            }
            let env_name = format!("SPIN_VARIABLE_{}", name.to_uppercase());
            match env(&env_name).or_else(|| decl.default.clone()) {
                Some(value) => {
                    values.insert(name.clone(), value);
                }
                None => missing.push(format!("{name} (set {env_name})")),
            }
        }
        if !missing.is_empty() {
            bail!(
                "required application variables have no value: {}",
                missing.join(", ")
            );
        }
        Ok(Self { values })
    }

    /// Expands every `{{ name }}` in `template`; a reference to an undeclared variable is an error.
    pub fn expand(&self, template: &str) -> Result<String> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                bail!("unterminated '{{{{' in template {template:?}");
            };
            let name = after[..end].trim();
            validate_name(name)?;
            match self.values.get(name) {
                Some(value) => out.push_str(value),
                None => bail!("template {template:?} refers to {name:?}, which is not in [variables]"),
            }
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Spin's rule for variable names, with its messages: lowercase ASCII letters, digits and
/// single underscores, starting with a letter and ending with a letter or digit.
pub fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "must not be empty".to_owned()
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        format!(
            "invalid character {c:?}. Variable names may contain only lower-case letters, numbers, and underscores."
        )
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        "must start with a lowercase ASCII letter".to_owned()
    } else if name.ends_with('_') {
        "must end with a lowercase ASCII letter or digit".to_owned()
    } else if name.contains("__") {
        "must not contain multiple consecutive underscores".to_owned()
    } else {
        return Ok(());
    };
    bail!("{name:?}: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(default: Option<&str>, required: bool) -> VariableDecl {
        VariableDecl {
            default: default.map(str::to_owned),
            required,
            secret: false,
            description: None,
        }
    }

    fn declared() -> BTreeMap<String, VariableDecl> {
        BTreeMap::from([
            ("db_host".to_owned(), decl(Some("localhost"), false)),
            ("api_token".to_owned(), decl(None, true)),
        ])
    }

    #[test]
    fn environment_overrides_default_and_fills_required() {
        let vars = AppVariables::resolve(&declared(), |name| match name {
            "SPIN_VARIABLE_DB_HOST" => Some("db.internal".into()),
            "SPIN_VARIABLE_API_TOKEN" => Some("secret".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            vars.expand("postgres://{{ db_host }}:{{db_host}}").unwrap(),
            "postgres://db.internal:db.internal"
        );
        assert_eq!(vars.expand("{{ api_token }}").unwrap(), "secret");
    }

    #[test]
    fn missing_required_variable_names_it_and_its_environment_variable() {
        let err = AppVariables::resolve(&declared(), |_| None).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("api_token"), "{message}");
        assert!(message.contains("SPIN_VARIABLE_API_TOKEN"), "{message}");
    }

    #[test]
    fn template_errors() {
        let vars = AppVariables::resolve(&declared(), |_| Some("x".into())).unwrap();
        assert!(vars.expand("{{ nope }}").is_err());
        assert!(vars.expand("{{ db_host").is_err());
        assert!(vars.expand("{{ Bad }}").is_err());
        assert_eq!(vars.expand("no templates").unwrap(), "no templates");
    }

    #[test]
    fn names() {
        for good in ["a", "db_url", "x1_y2"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1a", "_a", "a_", "a__b", "A", "a-b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
