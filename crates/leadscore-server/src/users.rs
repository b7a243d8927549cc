//! Users of the web app over the API (admin, contract §8): `GET/POST /users`,
//! `PATCH/DELETE /users/{id}` with `{ email, password, role, name? }`. Password hashes
//! never leave the server.

use std::sync::Arc;

use crate::input::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use leadscore_app::users::{self, NewUser, UserChanges, UserView};
use leadscore_store::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::CanAdmin;
use crate::error::{ApiError, ApiResult};
use crate::input::Body;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/users", get(list_users).post(add_user)).route("/users/{id}", get(get_user).patch(change_user).delete(delete_user))
}

/// The web app's users.
#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserView>,
}

fn role(text: &str) -> ApiResult<Role> {
    Role::parse(text).ok_or_else(|| ApiError::invalid(format!("role {text:?} is not admin, marketing or sales")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    email: String,
    password: String,
    role: String,
    name: Option<String>,
}

async fn add_user(State(state): State<Arc<AppState>>, _: CanAdmin, body: Body) -> ApiResult<(StatusCode, Json<UserView>)> {
    let body: NewUserBody = body.json()?;
    let new = NewUser { email: body.email, password: body.password, role: role(&body.role)?, name: body.name };
    let user = users::add_user(&state, new).await?;
    Ok((StatusCode::CREATED, Json(UserView::from(&user))))
}

async fn list_users(State(state): State<Arc<AppState>>, _: CanAdmin) -> ApiResult<Json<UserList>> {
    Ok(Json(UserList { users: users::list_users(&state).await?.iter().map(UserView::from).collect() }))
}

async fn get_user(State(state): State<Arc<AppState>>, _: CanAdmin, Path(id): Path<String>) -> ApiResult<Json<UserView>> {
    Ok(Json(UserView::from(&users::get_user(&state, &id).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    email: Option<String>,
    #[serde(default, deserialize_with = "some")]
    name: Option<Option<String>>,
    role: Option<String>,
    password: Option<String>,
    disabled: Option<bool>,
}

fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

async fn change_user(State(state): State<Arc<AppState>>, _: CanAdmin, Path(id): Path<String>, body: Body) -> ApiResult<Json<UserView>> {
    let body: ChangeBody = body.json()?;
    let changes =
        UserChanges { email: body.email, name: body.name, role: body.role.as_deref().map(role).transpose()?, password: body.password, disabled: body.disabled };
    Ok(Json(UserView::from(&users::update_user(&state, &id, changes).await?)))
}

async fn delete_user(State(state): State<Arc<AppState>>, _: CanAdmin, Path(id): Path<String>) -> ApiResult<StatusCode> {
    users::delete_user(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
