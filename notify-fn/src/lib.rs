//! notify-fn: notifications about event changes, as a Spin HTTP component.

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle_notifications(request: Request) -> Response {
    let _ = request;
    Response::builder().status(404).build()
}
