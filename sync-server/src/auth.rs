//! Bearer tokens and the tenants they stand for.

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sync_core::{Error, RepoKey};

use crate::error::ApiError;
use crate::state::AppState;

/// Who may call the API: bearer tokens, each standing for one tenant.
///
/// Tokens are kept only as BLAKE3 hashes and compared in constant time (the hashes'
/// equality is constant-time, and every configured token is compared), so neither a
/// token nor its length leaks through timing, `Debug` or logs.
///
/// Without tokens ([`Auth::open`]) every request is served as the local operator, who
/// sees the projects of every tenant: for a server reachable from this machine only
/// (`projsync serve` refuses to listen elsewhere without tokens).
#[derive(Clone, Default)]
pub struct Auth {
    tokens: Vec<(blake3::Hash, String)>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens.len())
            .field(
                "tenants",
                &self.tokens.iter().map(|(_, t)| t).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Auth {
    /// No tokens: every request is the local operator.
    pub fn open() -> Self {
        Self::default()
    }

    /// Adds `token` for `tenant`. Fails on an invalid tenant name (see
    /// [`RepoKey::with_tenant`]) or an empty token.
    pub fn with_token(mut self, tenant: &str, token: &str) -> Result<Self, Error> {
        check_tenant(tenant)?;
        if token.trim().is_empty() {
            return Err(Error::invalid_input(format!(
                "the token of tenant `{tenant}` is empty; give every tenant a non-empty secret"
            )));
        }
        self.tokens
            .push((blake3::hash(token.as_bytes()), tenant.to_owned()));
        Ok(self)
    }

    /// Parses `tenant:token,tenant:token,…` (the format of `PROJSYNC_TOKENS`). Blank items
    /// are skipped; the error never repeats a token.
    pub fn parse_list(list: &str) -> Result<Self, Error> {
        let mut auth = Self::open();
        for (n, item) in list.split(',').enumerate() {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let Some((tenant, token)) = item.split_once(':') else {
                return Err(Error::invalid_input(format!(
                    "item {} of the token list has no `:`; write `tenant:token,tenant:token`",
                    n + 1
                )));
            };
            auth = auth.with_token(tenant.trim(), token.trim())?;
        }
        Ok(auth)
    }

    /// Adds the tokens of `other`.
    #[must_use]
    pub fn merge(mut self, other: Self) -> Self {
        self.tokens.extend(other.tokens);
        self
    }

    /// Whether no token is configured (every request is the local operator).
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The caller presenting `authorization` (the header's value, if any).
    pub(crate) fn caller(&self, authorization: Option<&[u8]>) -> Result<Caller, Error> {
        if self.is_open() {
            return Ok(Caller::Local);
        }
        let Some(header) = authorization else {
            return Err(Error::unauthorized(
                "this API needs a token: send `Authorization: Bearer TOKEN`",
            ));
        };
        let token = std::str::from_utf8(header)
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                Error::unauthorized(
                    "the Authorization header is not `Bearer TOKEN`; send the token that way",
                )
            })?;
        let presented = blake3::hash(token.as_bytes());
        let mut found = None;
        // Compare with every token, without stopping at a match.
        for (hash, tenant) in &self.tokens {
            if *hash == presented {
                found = Some(tenant);
            }
        }
        found
            .map(|t| Caller::Tenant(t.clone()))
            .ok_or_else(|| Error::unauthorized("the token is not valid; check the token you sent"))
    }
}

fn check_tenant(tenant: &str) -> Result<(), Error> {
    RepoKey::new("tenant-check")
        .and_then(|k| k.with_tenant(tenant))
        .map(drop)
}

/// Who is calling: the local operator of a server without tokens, or a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// No tokens are configured: sees every project.
    Local,
    /// Sees the projects of this tenant only.
    Tenant(String),
}

impl Caller {
    /// Whether the caller may see a project kept under `tenant`.
    pub(crate) fn sees(&self, tenant: &str) -> bool {
        match self {
            Self::Local => true,
            Self::Tenant(t) => t == tenant,
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes());
        Ok(state.auth().caller(header)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_tenants() {
        let auth = Auth::parse_list("acme:s3cret, beta:other ,").unwrap();
        assert_eq!(
            auth.caller(Some(b"Bearer s3cret")).unwrap(),
            Caller::Tenant("acme".into())
        );
        assert_eq!(
            auth.caller(Some(b"Bearer other")).unwrap(),
            Caller::Tenant("beta".into())
        );
        assert!(auth.caller(Some(b"Bearer s3cre")).is_err());
        assert!(auth.caller(Some(b"s3cret")).is_err());
        assert!(auth.caller(None).is_err());
        assert_eq!(Auth::open().caller(None).unwrap(), Caller::Local);
    }

    #[test]
    fn bad_lists_are_refused_without_echoing_tokens() {
        let e = Auth::parse_list("acme-s3cret").unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(Auth::parse_list("bad tenant:x").is_err());
        assert!(Auth::parse_list("acme:").is_err());
        let debug = format!("{:?}", Auth::parse_list("acme:s3cret").unwrap());
        assert!(!debug.contains("s3cret"), "{debug}");
    }
}
