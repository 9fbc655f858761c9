//! Spin's HTTP routing: exact routes, `:name` parameters and trailing `/...` wildcards, the most
//! specific route winning segment by segment (exact over parameter over wildcard), and the
//! request a component receives: its `spin-*` headers (set here only), and Spin's refusal of a
//! header value that is not UTF-8.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Result, bail};
use http::{HeaderName, HeaderValue, Request, Uri};

use crate::manifest::{HttpTrigger, RouteSpec};

/// The client address Spin gives a service-chained request.
pub const CHAINED_CLIENT_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

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

/// Why a routed request cannot be given to its component.
#[derive(Debug)]
pub enum Refusal {
    /// A header value is not UTF-8. Spin 3.6 copies every header of the request into a string
    /// before the component is instantiated (`spin_trigger_http::headers::prepare_request_headers`),
    /// fails on such a value, logs "Error processing request" and answers an empty 500.
    HeaderNotUtf8 {
        name: HeaderName,
        error: std::str::Utf8Error,
    },
    /// The URL the `spin-*` headers are made from is not valid (an unusable `Host` header).
    BadUrl(anyhow::Error),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::HeaderNotUtf8 { name, error } => write!(f, "header {name}: {error}"),
            Refusal::BadUrl(error) => write!(f, "{error:#}"),
        }
    }
}

/// The request as the component of `route_match` receives it, as Spin prepares it: every
/// header value is UTF-8 (checked first, over the headers the client sent), the URI is absolute
/// (wasi-http needs an authority) and the `spin-*` headers are set, replacing any the client
/// sent.
pub fn prepare_request<B>(
    mut request: Request<B>,
    route_match: &RouteMatch,
    client_addr: SocketAddr,
) -> Result<Request<B>, Refusal> {
    for (name, value) in request.headers() {
        if let Err(error) = std::str::from_utf8(value.as_bytes()) {
            return Err(Refusal::HeaderNotUtf8 {
                name: name.clone(),
                error,
            });
        }
    }
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_owned());
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    let scheme = request.uri().scheme_str().unwrap_or("http").to_owned();
    let full_url = format!("{scheme}://{host}{path_and_query}");
    *request.uri_mut() = full_url.parse::<Uri>().map_err(|e| Refusal::BadUrl(e.into()))?;
    set_spin_headers(request.headers_mut(), route_match, &full_url, client_addr).map_err(Refusal::BadUrl)?;
    Ok(request)
}

fn set_spin_headers(
    headers: &mut http::HeaderMap,
    route_match: &RouteMatch,
    full_url: &str,
    client_addr: SocketAddr,
) -> Result<()> {
    let mut set = |name: &str, value: &str| -> Result<()> {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(value)?,
        );
        Ok(())
    };
    set("spin-path-info", &route_match.path_info)?;
    set("spin-full-url", full_url)?;
    set("spin-matched-route", &route_match.based_route)?;
    set("spin-base-path", "/")?;
    set("spin-raw-component-route", &route_match.raw_route)?;
    set("spin-component-route", route_match.component_route())?;
    set("spin-client-addr", &client_addr.to_string())?;
    for (name, value) in &route_match.params {
        set(&format!("spin-path-match-{}", name.to_ascii_lowercase()), value)?;
    }
    Ok(())
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

    fn client() -> SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    #[test]
    fn a_prepared_request_carries_spins_headers_and_not_the_clients() {
        let r = router(&[("/users/:id/...", "users")]);
        let m = r.route("/users/7/posts").unwrap();
        let request = Request::get("/users/7/posts?x=1")
            .header("host", "example.test:3000")
            .header("spin-path-info", "/forged")
            .body(())
            .unwrap();
        let prepared = prepare_request(request, &m, client()).unwrap();
        assert_eq!(prepared.uri(), "http://example.test:3000/users/7/posts?x=1");
        let header = |name: &str| prepared.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(
            header("spin-full-url"),
            "http://example.test:3000/users/7/posts?x=1"
        );
        assert_eq!(header("spin-path-info"), "/posts");
        assert_eq!(header("spin-matched-route"), "/users/:id/...");
        assert_eq!(header("spin-raw-component-route"), "/users/:id/...");
        assert_eq!(header("spin-component-route"), "/users/:id");
        assert_eq!(header("spin-base-path"), "/");
        assert_eq!(header("spin-client-addr"), "127.0.0.1:4000");
        assert_eq!(header("spin-path-match-id"), "7");
        assert_eq!(prepared.headers().get_all("spin-path-info").iter().count(), 1);
    }

    #[test]
    fn a_chained_request_is_the_whole_path_of_a_synthetic_route() {
        let m = RouteMatch::chained("private", "/hello");
        let request = Request::get("http://private.spin.internal/hello")
            .body(())
            .unwrap();
        let prepared = prepare_request(request, &m, CHAINED_CLIENT_ADDR).unwrap();
        let header = |name: &str| prepared.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("spin-path-info"), "/hello");
        assert_eq!(header("spin-raw-component-route"), "/...");
        assert_eq!(header("spin-component-route"), "");
        assert_eq!(header("spin-client-addr"), "0.0.0.0:0");
        assert_eq!(header("spin-full-url"), "http://private.spin.internal/hello");
    }

    #[test]
    fn a_header_value_that_is_not_utf8_is_refused_whichever_header_it_is() {
        let r = router(&[("/...", "all")]);
        let m = r.route("/").unwrap();
        for name in ["idempotency-key", "host", "spin-path-info"] {
            let request = Request::get("/")
                .header(name, HeaderValue::from_bytes(b"caf\xe9!").unwrap())
                .body(())
                .unwrap();
            let refusal = prepare_request(request, &m, client()).unwrap_err();
            assert!(
                matches!(refusal, Refusal::HeaderNotUtf8 { .. }),
                "{name}: {refusal:?}"
            );
            assert_eq!(
                refusal.to_string(),
                format!("header {name}: invalid utf-8 sequence of 1 bytes from index 3")
            );
        }
        // Other bytes outside ASCII are fine when they are UTF-8.
        let request = Request::get("/")
            .header("x-name", HeaderValue::from_bytes("café".as_bytes()).unwrap())
            .body(())
            .unwrap();
        assert!(prepare_request(request, &m, client()).is_ok());
    }
}
