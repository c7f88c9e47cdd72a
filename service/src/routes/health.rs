//! `GET /healthz`: liveness plus which build and which instance answered, so a person (or the
//! load generator) can tell the canary from the release fleet.

use actix_web::{web, HttpResponse};

use super::AppState;

pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "flavor": state.flavor,
        "instance": state.instance,
    }))
}
