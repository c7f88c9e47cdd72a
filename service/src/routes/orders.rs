//! `GET /api/orders/{id}`: the victim. An ordinary fast handler that awaits a simulated
//! dependency (a tokio timer, `DEPENDENCY_MS`). It never blocks; when its latency grows, it is
//! because another handler pinned the worker it shares.
//!
//! It deliberately has no span of its own: the request's root span already carries the
//! request id, and one span per request is cheaper than two.

use actix_web::{web, HttpResponse};

use super::AppState;

pub async fn get_order(path: web::Path<u64>, state: web::Data<AppState>) -> HttpResponse {
    let order_id = path.into_inner();
    if !state.dependency.is_zero() {
        tokio::time::sleep(state.dependency).await;
    }
    HttpResponse::Ok().json(serde_json::json!({
        "order_id": order_id,
        "status": "shipped",
        "instance": state.instance,
    }))
}
