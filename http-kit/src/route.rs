//! Route tables: each component lists its resources as `Route`s, the single source of the
//! paths its router serves and of the methods each allows (`Allow`, `OPTIONS`, and the check
//! against openapi.yaml in the end-to-end tests).

use std::future::Future;
use std::rc::Rc;

use futures::FutureExt;
use futures::future::Map;
use spin_sdk::http::{Params, Request, Response};

use crate::id::parse_id;
use crate::problem::{Problem, Reply, respond};

/// A resource: its path pattern for `spin_sdk::http::Router` (`:name` for a segment) and the
/// methods it allows, as an `Allow` header lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub path: &'static str,
    pub allow: &'static str,
}

impl Route {
    pub const fn new(path: &'static str, allow: &'static str) -> Self {
        Self { path, allow }
    }

    /// The 405 of this resource, naming what it allows.
    pub fn method_not_allowed(&self) -> Problem {
        Problem::method_not_allowed(self.allow)
    }

    /// The methods it allows, one by one.
    pub fn methods(&self) -> impl Iterator<Item = &'static str> {
        self.allow.split(',').map(str::trim)
    }
}

/// A handler for `Router::any_async`: `handler` gets the request's `context` (a component's
/// configuration) first, and its problem becomes the response.
pub fn with<C: 'static, F, Fut>(
    context: &Rc<C>,
    handler: F,
) -> impl Fn(Request, Params) -> Map<Fut, fn(Reply) -> Response> + 'static
where
    F: Fn(Rc<C>, Request, Params) -> Fut + 'static,
    Fut: Future<Output = Reply> + 'static,
{
    let context = context.clone();
    move |request, params| handler(context.clone(), request, params).map(respond as fn(Reply) -> Response)
}

/// The `:id` of a route: a canonical positive integer, or the 404 of a `thing` it cannot name.
pub fn id(params: &Params, thing: &str) -> Result<i64, Problem> {
    let id = params.get("id").unwrap_or_default();
    parse_id(id).ok_or_else(|| Problem::not_found(format!("there is no {thing} {id:?}")))
}

/// The answer for a path no route of the component matches.
pub fn unknown_path(request: Request, _: Params) -> Response {
    Problem::not_found(format!("{} is not a resource of this API", request.path())).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_of_a_route() {
        let route = Route {
            path: "/things/:id",
            allow: "GET, HEAD, DELETE",
        };
        assert_eq!(route.methods().collect::<Vec<_>>(), ["GET", "HEAD", "DELETE"]);
        assert_eq!(route.method_not_allowed().status(), 405);
    }
}
