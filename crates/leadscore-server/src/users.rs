//! Users of the web app over the API (admin, contract §8): `GET/POST /users`,
//! `PATCH/DELETE /users/{id}` with `{ email, password, role, name? }`. Password hashes
//! never leave the server.

use std::sync::Arc;

use crate::input::Path;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use leadscore_app::users::{self, NewUser, UserChanges, UserView};
use leadscore_store::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::CanAdmin;
use crate::error::{ApiError, ApiResult};
use crate::input::Body;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list_users, add_user)).routes(routes!(get_user, change_user, delete_user))
}

/// The web app's users.
#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserView>,
}

fn role(text: &str) -> ApiResult<Role> {
    Role::parse(text).ok_or_else(|| ApiError::invalid(format!("role {text:?} is not admin, marketing or sales")))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    email: String,
    /// At least 10 characters.
    password: String,
    /// admin, marketing or sales.
    role: String,
    name: Option<String>,
}

#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    summary = "Add a user {email, password, role, name?}",
    request_body = NewUserBody,
    responses((status = CREATED, description = "The user", body = UserView)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn add_user(State(state): State<Arc<AppState>>, _: CanAdmin, body: Body) -> ApiResult<(StatusCode, Json<UserView>)> {
    let body: NewUserBody = body.json()?;
    let new = NewUser { email: body.email, password: body.password, role: role(&body.role)?, name: body.name };
    let user = users::add_user(&state, new).await?;
    Ok((StatusCode::CREATED, Json(UserView::from(&user))))
}

#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    summary = "List the web app's users (never their passwords)",
    responses((status = OK, description = "The users", body = UserList)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn list_users(State(state): State<Arc<AppState>>, _: CanAdmin) -> ApiResult<Json<UserList>> {
    Ok(Json(UserList { users: users::list_users(&state).await?.iter().map(UserView::from).collect() }))
}

#[utoipa::path(
    get,
    path = "/users/{id}",
    tag = "users",
    summary = "Read a user",
    params(("id" = String, Path, description = "The user's id")),
    responses((status = OK, description = "The user", body = UserView)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn get_user(State(state): State<Arc<AppState>>, _: CanAdmin, Path(id): Path<String>) -> ApiResult<Json<UserView>> {
    Ok(Json(UserView::from(&users::get_user(&state, &id).await?)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    email: Option<String>,
    /// The new name; null clears it.
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>)]
    name: Option<Option<String>>,
    /// admin, marketing or sales.
    role: Option<String>,
    /// A new password signs the user out everywhere.
    password: Option<String>,
    /// Disabling signs the user out everywhere.
    disabled: Option<bool>,
}

fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[utoipa::path(
    patch,
    path = "/users/{id}",
    tag = "users",
    summary = "Change a user's e-mail, name, role, password or disabled; a new password or disabling signs them out",
    params(("id" = String, Path, description = "The user's id")),
    request_body = ChangeBody,
    responses((status = OK, description = "The user as changed", body = UserView)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn change_user(State(state): State<Arc<AppState>>, _: CanAdmin, Path(id): Path<String>, body: Body) -> ApiResult<Json<UserView>> {
    let body: ChangeBody = body.json()?;
    let changes =
        UserChanges { email: body.email, name: body.name, role: body.role.as_deref().map(role).transpose()?, password: body.password, disabled: body.disabled };
    Ok(Json(UserView::from(&users::update_user(&state, &id, changes).await?)))
}

#[utoipa::path(
    delete,
    path = "/users/{id}",
    tag = "users",
    summary = "Delete a user and their sessions",
    params(("id" = String, Path, description = "The user's id")),
    responses((status = NO_CONTENT, description = "Deleted")),
    extensions(("x-scope" = json!("admin"))),
)]
async fn delete_user(State(state): State<Arc<AppState>>, _: CanAdmin, Path(id): Path<String>) -> ApiResult<StatusCode> {
    users::delete_user(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
