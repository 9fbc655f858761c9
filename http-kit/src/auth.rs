//! Bearer tokens: who may call, and whether only to read.
//!
//! A realm accepts its main token, optionally a second one while an operator rotates it, and
//! optionally a read-only token (`GET`/`HEAD` only). Configured tokens shorter than
//! `MIN_TOKEN_BYTES` are refused as a misconfiguration, so an empty variable never opens the
//! API. Tokens are compared as SHA-256 digests in constant time, every configured token every
//! time: neither the content nor the length of a token shows in how long a check takes.

use sha2::{Digest, Sha256};
use spin_sdk::http::Method;

use crate::problem::Problem;

/// The shortest token a realm accepts: 32 bytes, e.g. `openssl rand -hex 16`.
pub const MIN_TOKEN_BYTES: usize = 32;

/// What a token of a realm allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Everything the realm serves.
    Full,
    /// `GET` and `HEAD` only.
    ReadOnly,
}

/// How a token variable is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenVariable {
    /// Must be set: the realm's main token.
    Required,
    /// Empty means unset: a second full token, for rotation.
    Optional,
    /// Empty means unset: a token that may only read.
    ReadOnly,
}

/// The public API's token variables, which both components accept.
pub const API_TOKENS: &[(&str, TokenVariable)] = &[
    ("api_token", TokenVariable::Required),
    ("api_token_next", TokenVariable::Optional),
    ("api_read_token", TokenVariable::ReadOnly),
];

struct Token {
    digest: [u8; 32],
    access: Access,
}

/// The tokens one realm accepts.
pub struct Credentials {
    realm: &'static str,
    tokens: Vec<Token>,
}

impl Credentials {
    /// Reads `realm`'s tokens through `get` (a Spin variable by name). An error names the
    /// variable, never its value.
    pub fn load(
        realm: &'static str,
        variables: &[(&str, TokenVariable)],
        get: impl Fn(&str) -> Result<String, String>,
    ) -> Result<Self, String> {
        let mut tokens = Vec::new();
        for (name, kind) in variables {
            let value = get(name)?;
            if value.is_empty() && *kind != TokenVariable::Required {
                continue;
            }
            check_token(name, &value)?;
            tokens.push(Token {
                digest: digest(value.as_bytes()),
                access: match kind {
                    TokenVariable::ReadOnly => Access::ReadOnly,
                    TokenVariable::Required | TokenVariable::Optional => Access::Full,
                },
            });
        }
        Ok(Self { realm, tokens })
    }

    /// Checks `Authorization: Bearer <token>` for a request with `method`: 401 without a valid
    /// token, 403 for a read-only token on anything but `GET`/`HEAD`.
    pub fn authorize(&self, authorization: Option<&str>, method: &Method) -> Result<(), Problem> {
        match self.access(authorization)? {
            Access::Full => Ok(()),
            Access::ReadOnly if matches!(method, Method::Get | Method::Head) => Ok(()),
            Access::ReadOnly => Err(Problem::forbidden(
                "this token may only read (GET, HEAD); writing needs the API token",
            )),
        }
    }

    fn access(&self, authorization: Option<&str>) -> Result<Access, Problem> {
        let Some(header) = authorization else {
            return Err(Problem::unauthorized(
                self.realm,
                "send Authorization: Bearer <token>",
                false,
            ));
        };
        let presented = match header.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                // RFC 9110 allows only spaces and tabs around a field value: any other
                // character, U+00A0 included, is part of the token.
                token.trim_matches([' ', '\t'])
            }
            _ => {
                return Err(Problem::unauthorized(
                    self.realm,
                    "the Authorization scheme must be Bearer",
                    true,
                ));
            }
        };
        let presented = digest(presented.as_bytes());
        // Every configured token is compared, whichever matches: no early exit.
        let (mut full, mut read_only) = (false, false);
        for token in &self.tokens {
            let equal = digests_equal(&presented, &token.digest);
            full |= equal & (token.access == Access::Full);
            read_only |= equal & (token.access == Access::ReadOnly);
        }
        if full {
            Ok(Access::Full)
        } else if read_only {
            Ok(Access::ReadOnly)
        } else {
            Err(Problem::unauthorized(
                self.realm,
                "the bearer token is not valid",
                true,
            ))
        }
    }
}

/// A token the component sends or accepts must be at least `MIN_TOKEN_BYTES` long; the error
/// names the variable, never its value.
pub fn check_token(variable: &str, value: &str) -> Result<(), String> {
    if value.len() < MIN_TOKEN_BYTES {
        let what = if value.is_empty() {
            "is empty"
        } else {
            "is too short"
        };
        return Err(format!(
            "variable {variable} {what}: a token must be at least {MIN_TOKEN_BYTES} bytes \
             (e.g. openssl rand -hex 32)"
        ));
    }
    Ok(())
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Compares without an early exit: the time taken does not depend on where digests differ.
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = "main-token-of-at-least-thirty-two-bytes";
    const NEXT: &str = "next-token-of-at-least-thirty-two-bytes";
    const READ: &str = "read-token-of-at-least-thirty-two-bytes";

    fn credentials(values: &[(&'static str, &'static str)]) -> Result<Credentials, String> {
        let variables = [
            ("api_token", TokenVariable::Required),
            ("api_token_next", TokenVariable::Optional),
            ("api_read_token", TokenVariable::ReadOnly),
        ];
        Credentials::load("events", &variables, |name| {
            Ok(values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default())
        })
    }

    fn status(credentials: &Credentials, header: &str, method: Method) -> u16 {
        match credentials.authorize(Some(header), &method) {
            Ok(()) => 200,
            Err(problem) => problem.status(),
        }
    }

    #[test]
    fn the_main_token_is_required_and_at_least_32_bytes() {
        for short in ["", " ", "s3cret", &"x".repeat(31)] {
            let error = check_token("api_token", short).unwrap_err();
            assert!(error.contains("api_token"), "{error}");
            assert!(short.trim().is_empty() || !error.contains(short), "{error}");
        }
        assert!(check_token("api_token", &"x".repeat(32)).is_ok());
        let error = credentials(&[("api_token", "")]).err().unwrap();
        assert!(error.contains("api_token is empty"), "{error}");
        let error = credentials(&[("api_token", "tiny-secret-value")]).err().unwrap();
        assert!(error.contains("api_token") && !error.contains("tiny-secret-value"));
        // Optional tokens may be unset, but a set one follows the same rule.
        assert!(credentials(&[("api_token", MAIN)]).is_ok());
        let error = credentials(&[("api_token", MAIN), ("api_read_token", "short")])
            .err()
            .unwrap();
        assert!(error.contains("api_read_token"), "{error}");
    }

    #[test]
    fn bearer_tokens() {
        let credentials = credentials(&[("api_token", MAIN)]).unwrap();
        assert_eq!(status(&credentials, &format!("Bearer {MAIN}"), Method::Post), 200);
        assert_eq!(status(&credentials, &format!("bearer {MAIN}"), Method::Get), 200);
        // Spaces and tabs around the value are not part of it.
        assert_eq!(
            status(&credentials, &format!("Bearer \t{MAIN} \t"), Method::Get),
            200
        );
        for bad in [
            format!("Bearer {}", &MAIN[1..]),
            format!("Bearer {MAIN}x"),
            format!("Basic {MAIN}"),
            MAIN.to_owned(),
            "Bearer ".to_owned(),
            "Bearer \u{a0}".to_owned(),
            // Other Unicode white space is part of the token, not around it.
            format!("Bearer {MAIN}\u{a0}"),
            format!("Bearer \u{a0}{MAIN}"),
            format!("Bearer {MAIN}\u{2003}"),
        ] {
            assert_eq!(status(&credentials, &bad, Method::Get), 401, "{bad:?}");
        }
        let anonymous = credentials.authorize(None, &Method::Get).unwrap_err();
        assert_eq!(anonymous.status(), 401);
    }

    #[test]
    fn rotation_accepts_both_tokens_of_a_realm() {
        let rolling = credentials(&[("api_token", MAIN), ("api_token_next", NEXT)]).unwrap();
        for token in [MAIN, NEXT] {
            assert_eq!(status(&rolling, &format!("Bearer {token}"), Method::Delete), 200);
        }
        let rolled = credentials(&[("api_token", NEXT)]).unwrap();
        assert_eq!(status(&rolled, &format!("Bearer {MAIN}"), Method::Get), 401);
        assert_eq!(status(&rolled, &format!("Bearer {NEXT}"), Method::Get), 200);
    }

    #[test]
    fn a_read_only_token_only_reads() {
        let credentials = credentials(&[("api_token", MAIN), ("api_read_token", READ)]).unwrap();
        let read = format!("Bearer {READ}");
        assert_eq!(status(&credentials, &read, Method::Get), 200);
        assert_eq!(status(&credentials, &read, Method::Head), 200);
        for method in [
            Method::Post,
            Method::Put,
            Method::Patch,
            Method::Delete,
            Method::Options,
        ] {
            assert_eq!(status(&credentials, &read, method.clone()), 403, "{method}");
        }
        assert_eq!(
            status(&credentials, &format!("Bearer {MAIN}"), Method::Delete),
            200
        );
        // The same value as the main token and as the read token: the full access wins.
        let same = super::Credentials::load(
            "events",
            &[("a", TokenVariable::Required), ("b", TokenVariable::ReadOnly)],
            |_| Ok(MAIN.to_owned()),
        )
        .unwrap();
        assert_eq!(status(&same, &format!("Bearer {MAIN}"), Method::Delete), 200);
    }

    #[test]
    fn digests_compare_whole() {
        let a = digest(b"a");
        let mut b = a;
        assert!(digests_equal(&a, &b));
        b[31] ^= 1;
        assert!(!digests_equal(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!digests_equal(&a, &b));
        // Equal lengths are not needed for equal-sized digests.
        assert!(!digests_equal(&digest(b"a"), &digest(b"aa")));
    }
}
