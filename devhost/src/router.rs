//! Spin's HTTP routing: exact routes, `:name` parameters and trailing `/...` wildcards, the most
//! specific route winning segment by segment (exact over parameter over wildcard), and the
//! `spin-*` headers a matched request carries.

use anyhow::{Result, bail};

use crate::manifest::{HttpTrigger, RouteSpec};

#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
}

#[derive(Debug, Clone)]
struct Route {
    component: String,
    /// The route as written in the manifest.
    raw: String,
    /// The route with the application base in front.
    based: String,
    segments: Vec<Segment>,
    wildcard: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Exact(String),
    Param(String),
}

impl Segment {
    fn rank(&self) -> u8 {
        match self {
            Segment::Exact(_) => 2,
            Segment::Param(_) => 1,
        }
    }
}

/// What a request matched, with what Spin derives from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub component: String,
    pub based_route: String,
    pub raw_route: String,
    pub path_info: String,
    pub params: Vec<(String, String)>,
}

impl Router {
    /// Builds the router for the served components; a later duplicate route replaces an earlier
    /// one, as in Spin.
    pub fn build(triggers: &[HttpTrigger], served: impl Fn(&str) -> bool) -> Result<Self> {
        let mut routes: Vec<Route> = Vec::new();
        for trigger in triggers.iter().filter(|t| served(&t.component)) {
            let raw = match &trigger.route {
                RouteSpec::Path(path) => path.clone(),
                RouteSpec::Private { private: true } => continue,
                RouteSpec::Private { private: false } => bail!(
                    "route must be a string pattern or '{{ private = true }}': '{}' has {{ private = false }}",
                    trigger.component
                ),
            };
            // Spin 3.6 accepts no base but "/", so the based route is the route made absolute.
            let based = strip_trailing_slash(&absolute(&raw)).to_owned();
            let (pattern, wildcard) = match based.strip_suffix("/...").or_else(|| based.strip_suffix("/*")) {
                Some(prefix) => (prefix.to_owned(), true),
                None => (based.clone(), false),
            };
            let segments = pattern
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| match s.strip_prefix(':') {
                    Some("") => bail!(
                        "route {raw:?} of component {:?}: parameters must be named",
                        trigger.component
                    ),
                    Some(name) => Ok(Segment::Param(name.to_owned())),
                    None if s.contains('*') => {
                        bail!(
                            "route {raw:?} of component {:?}: a wildcard may only end a route",
                            trigger.component
                        )
                    }
                    None => Ok(Segment::Exact(s.to_owned())),
                })
                .collect::<Result<Vec<_>>>()?;
            routes.retain(|r| r.raw != raw);
            routes.push(Route {
                component: trigger.component.clone(),
                raw,
                based,
                segments,
                wildcard,
            });
        }
        Ok(Self { routes })
    }

    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.routes
            .iter()
            .filter_map(|route| route.matches(&parts).map(|params| (route, params)))
            .max_by(|(a, _), (b, _)| a.specificity_cmp(b))
            .map(|(route, params)| RouteMatch {
                component: route.component.clone(),
                based_route: route.based.clone(),
                raw_route: route.raw.clone(),
                path_info: route.path_info(&parts, path.ends_with('/')),
                params,
            })
    }

    /// `(component, route)` pairs for the start-up listing.
    pub fn routes(&self) -> impl Iterator<Item = (&str, String)> {
        self.routes.iter().map(|r| {
            let shown = match r.based.strip_suffix("/...") {
                Some(prefix) => format!("{prefix} (wildcard)"),
                None => r.based.clone(),
            };
            (r.component.as_str(), shown)
        })
    }
}

impl Route {
    fn matches(&self, parts: &[&str]) -> Option<Vec<(String, String)>> {
        if parts.len() < self.segments.len() || (!self.wildcard && parts.len() != self.segments.len()) {
            return None;
        }
        let mut params = Vec::new();
        for (segment, part) in self.segments.iter().zip(parts) {
            match segment {
                Segment::Exact(exact) if exact == part => {}
                Segment::Exact(_) => return None,
                Segment::Param(name) => params.push((name.clone(), (*part).to_owned())),
            }
        }
        Some(params)
    }

    /// Segment by segment, exact beats parameter beats wildcard; when one route's segments are
    /// a prefix of the other's, the shorter (an exact route over its own wildcard) wins.
    fn specificity_cmp(&self, other: &Route) -> std::cmp::Ordering {
        let own = self.ranks();
        let theirs = other.ranks();
        for (a, b) in own.iter().zip(&theirs) {
            if a != b {
                return a.cmp(b);
            }
        }
        theirs.len().cmp(&own.len())
    }

    fn ranks(&self) -> Vec<u8> {
        let mut ranks: Vec<u8> = self.segments.iter().map(Segment::rank).collect();
        if self.wildcard {
            ranks.push(0);
        }
        ranks
    }

    fn path_info(&self, parts: &[&str], trailing_slash: bool) -> String {
        if !self.wildcard {
            return String::new();
        }
        let rest = parts[self.segments.len()..].join("/");
        match (rest.is_empty(), trailing_slash) {
            (true, false) => String::new(),
            (true, true) => "/".into(),
            (false, false) => format!("/{rest}"),
            (false, true) => format!("/{rest}/"),
        }
    }
}

impl RouteMatch {
    /// The match Spin synthesises for a service-chained request: the whole app as `/...`.
    pub fn chained(component: &str, path: &str) -> Self {
        Self {
            component: component.to_owned(),
            based_route: "/...".into(),
            raw_route: "/...".into(),
            path_info: path.to_owned(),
            params: Vec::new(),
        }
    }

    /// The route without its `/...` suffix.
    pub fn component_route(&self) -> &str {
        self.raw_route.strip_suffix("/...").unwrap_or(&self.raw_route)
    }
}

fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

fn strip_trailing_slash(path: &str) -> &str {
    path.strip_suffix('/').unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        let triggers: Vec<HttpTrigger> = routes
            .iter()
            .map(|(route, component)| HttpTrigger {
                route: RouteSpec::Path(route.to_string()),
                component: component.to_string(),
            })
            .collect();
        Router::build(&triggers, |_| true).unwrap()
    }

    fn component(router: &Router, path: &str) -> Option<String> {
        router.route(path).map(|m| m.component)
    }

    #[test]
    fn exact_beats_wildcard_and_longer_prefix_wins() {
        let r = router(&[
            ("/...", "catch-all"),
            ("/events/...", "events"),
            ("/events", "list"),
            ("/events/special", "special"),
        ]);
        assert_eq!(component(&r, "/events").as_deref(), Some("list"));
        assert_eq!(component(&r, "/events/").as_deref(), Some("list"));
        assert_eq!(component(&r, "/events/42").as_deref(), Some("events"));
        assert_eq!(component(&r, "/events/special").as_deref(), Some("special"));
        assert_eq!(component(&r, "/events/special/x").as_deref(), Some("events"));
        assert_eq!(component(&r, "/other").as_deref(), Some("catch-all"));
        assert_eq!(component(&r, "/").as_deref(), Some("catch-all"));
    }

    #[test]
    fn no_match_without_catch_all() {
        let r = router(&[("/events/...", "events")]);
        assert_eq!(component(&r, "/eventsx"), None);
        assert_eq!(component(&r, "/"), None);
        assert_eq!(component(&r, "/events").as_deref(), Some("events"));
    }

    #[test]
    fn path_info_and_routes_as_spin_computes_them() {
        let r = router(&[("/events/...", "events")]);
        let m = r.route("/events/42/").unwrap();
        assert_eq!(m.path_info, "/42/");
        assert_eq!(m.based_route, "/events/...");
        assert_eq!(m.raw_route, "/events/...");
        assert_eq!(m.component_route(), "/events");
        assert_eq!(r.route("/events").unwrap().path_info, "");
        assert_eq!(r.route("/events/").unwrap().path_info, "/");
    }

    #[test]
    fn parameters_are_captured_and_rank_below_exact() {
        let r = router(&[("/users/:id", "by-id"), ("/users/me", "me")]);
        assert_eq!(component(&r, "/users/me").as_deref(), Some("me"));
        let m = r.route("/users/7").unwrap();
        assert_eq!(m.component, "by-id");
        assert_eq!(m.params, vec![("id".to_string(), "7".to_string())]);
    }

    #[test]
    fn private_routes_are_not_routed_and_duplicates_replace() {
        let triggers = vec![
            HttpTrigger {
                route: RouteSpec::Private { private: true },
                component: "hidden".into(),
            },
            HttpTrigger {
                route: RouteSpec::Path("/a".into()),
                component: "first".into(),
            },
            HttpTrigger {
                route: RouteSpec::Path("/a".into()),
                component: "second".into(),
            },
        ];
        let r = Router::build(&triggers, |_| true).unwrap();
        assert_eq!(component(&r, "/a").as_deref(), Some("second"));
        assert_eq!(r.routes().count(), 1);
    }
}
