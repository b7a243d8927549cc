//! Settings (`/settings`, admin only): users (add, change role, reset password, disable,
//! delete), API keys (create with scopes — the key shown once — and revoke), whether reps
//! see the unassigned pool, sales teams, and secrets (write-only: a generated one is shown
//! once).

use std::sync::Arc;

use axum::Form;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use leadscore_app::time::format_time;
use leadscore_app::users::{self, NewUser, UserChanges};
use leadscore_app::{keys, settings};
use leadscore_store::Role;
use maud::{Markup, html};
use serde::Deserialize;

use crate::pages::{Page, app_error, error_page, layout, url_encode};
use crate::{SignedIn, Web};

/// A signed-in admin; anyone else gets the 403 page (and nobody the sign-in form).
pub struct Admin(SignedIn);

impl FromRequestParts<Arc<Web>> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Self::Rejection> {
        let signed = SignedIn::from_request_parts(parts, web).await?;
        if signed.user.role != Role::Admin {
            return Err(error_page(StatusCode::FORBIDDEN, "Settings are for admins."));
        }
        Ok(Admin(signed))
    }
}

/// A one-time message on top of the page: what was done, or a secret to copy now.
pub struct Notice {
    text: String,
    secret: Option<String>,
}

pub async fn page(State(web): State<Arc<Web>>, Admin(signed): Admin) -> Response {
    render(&web, &signed, None).await
}

async fn render(web: &Web, signed: &SignedIn, notice: Option<Notice>) -> Response {
    let (users, keys, teams, secrets, webhooks) = match tokio::try_join!(
        users::list_users(&web.engine),
        keys::list(&web.engine),
        settings::list_teams(&web.engine),
        settings::list_secrets(&web.engine),
        settings::list_subscriptions(&web.engine)
    ) {
        Ok(all) => all,
        Err(err) => return app_error(err),
    };
    let content = html! {
        h1 { "Settings" }
        @if let Some(notice) = &notice {
            section.card.notice role="status" {
                p { (notice.text) }
                @if let Some(secret) = &notice.secret {
                    p { code.secret { (secret) } }
                    p { small { "It is shown only this once: copy it now." } }
                }
            }
        }
        section.card id="users" {
            h2 { "Users" }
            table {
                thead { tr { th scope="col" { "E-mail" } th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "State" } th scope="col" { "Change" } } }
                tbody {
                    @for user in &users {
                        tr {
                            td { (user.email) }
                            td { (user.name.as_deref().unwrap_or("")) }
                            td { (user.role.as_str()) }
                            td { @if user.disabled { "disabled" } @else { "active" } }
                            td {
                                form.inline method="post" action={"/settings/users/" (url_encode(&user.id))} {
                                    label.visually-hidden for={"role-" (user.id)} { "Role of " (user.email) }
                                    select id={"role-" (user.id)} name="role" { @for role in Role::ALL { option value=(role.as_str()) selected[role == user.role] { (role.as_str()) } } }
                                    button type="submit" name="action" value="role" { "Set role" }
                                    @if user.disabled {
                                        button type="submit" name="action" value="enable" { "Enable" }
                                    } @else {
                                        button type="submit" name="action" value="disable" { "Disable" }
                                    }
                                    label.visually-hidden for={"password-" (user.id)} { "New password for " (user.email) }
                                    input id={"password-" (user.id)} name="password" type="password" autocomplete="new-password" placeholder="new password";
                                    button type="submit" name="action" value="password" { "Reset password" }
                                    button.danger type="submit" name="action" value="delete" { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
            form.stack method="post" action="/settings/users" {
                h3 { "Add a user" }
                label for="new-email" { "E-mail" } input id="new-email" name="email" type="email" required;
                label for="new-name" { "Name" } input id="new-name" name="name" type="text";
                label for="new-role" { "Role" } select id="new-role" name="role" { @for role in Role::ALL { option value=(role.as_str()) selected[role == Role::Sales] { (role.as_str()) } } }
                label for="new-password" { "Password (at least " (users::MIN_PASSWORD_CHARS) " characters)" } input id="new-password" name="password" type="password" autocomplete="new-password" required;
                button type="submit" { "Add user" }
            }
        }
        section.card id="keys" {
            h2 { "API keys" }
            table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Starts with" } th scope="col" { "Scopes" } th scope="col" { "Created" } th scope="col" { "" } } }
                tbody {
                    @for key in &keys {
                        tr {
                            td { (key.name) }
                            td { code { (key.prefix) "…" } }
                            td { (key.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")) }
                            td { (format_time(key.created_at).get(..10).unwrap_or("")) }
                            td {
                                @if let Some(at) = key.revoked_at {
                                    "revoked " (format_time(at).get(..10).unwrap_or(""))
                                } @else {
                                    form.inline method="post" action={"/settings/keys/" (url_encode(&key.id)) "/revoke"} { button.danger type="submit" { "Revoke" } }
                                }
                            }
                        }
                    }
                }
            }
            form.stack method="post" action="/settings/keys" {
                h3 { "Create a key" }
                label for="key-name" { "Name" } input id="key-name" name="name" type="text" required placeholder="website, CRM sync, …";
                fieldset {
                    legend { "Scopes" }
                    label { input type="checkbox" name="ingest" value="1"; " ingest (safe in a web page)" }
                    label { input type="checkbox" name="identify" value="1"; " identify (ingest, and merge or re-address known contacts: server-side only)" }
                    label { input type="checkbox" name="read" value="1"; " read" }
                    label { input type="checkbox" name="admin" value="1"; " admin" }
                }
                button type="submit" { "Create key" }
            }
        }
        section.card id="pool" {
            h2 { "Unassigned leads" }
            form.stack method="post" action="/settings/pool" {
                label {
                    input type="checkbox" name="allowed" value="1" checked[web.engine.sales_pool()];
                    " Sales reps also see leads without an owner (the pool), on Today, in the lead list and by link"
                }
                p { small { "Otherwise a rep sees only the leads assigned to them. Another rep's lead stays out of reach either way." } }
                button type="submit" { "Save" }
            }
        }
        section.card id="teams" {
            h2 { "Sales teams" }
            ul {
                @for team in &teams {
                    li {
                        strong { (team.name) } ": " (team.members.join(", "))
                        form.inline method="post" action={"/settings/teams/" (url_encode(&team.name)) "/delete"} { button.danger type="submit" { "Delete" } }
                    }
                }
            }
            form.stack method="post" action="/settings/teams" {
                h3 { "Add or replace a team" }
                label for="team-name" { "Name" } input id="team-name" name="name" type="text" required;
                label for="team-members" { "Members (e-mails, comma-separated)" } input id="team-members" name="members" type="text" required;
                button type="submit" { "Save team" }
            }
        }
        section.card id="secrets" {
            h2 { "Secrets" }
            p { small { "Webhook signing secrets. They are never shown again once stored." } }
            ul { @for (name, _, updated) in &secrets { li { strong { (name) } " — changed " (format_time(*updated).get(..10).unwrap_or("")) form.inline method="post" action={"/settings/secrets/" (url_encode(name)) "/delete"} { button.danger type="submit" { "Delete" } } } } }
            form.stack method="post" action="/settings/secrets" {
                h3 { "Store a secret" }
                label for="secret-name" { "Name" } input id="secret-name" name="name" type="text" required;
                label for="secret-value" { "Value (whsec_…; leave empty to have one generated)" } input id="secret-value" name="value" type="password" autocomplete="off";
                button type="submit" { "Store secret" }
            }
        }
        section.card id="webhooks" {
            h2 { "Webhooks" }
            p { small { "Subscriptions to score changes (batched per contact after the debounce) and nurture changes, signed with a stored secret (Standard Webhooks)." } }
            @if webhooks.is_empty() {
                p { "No webhook subscriptions yet." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "URL" } th scope="col" { "Events" } th scope="col" { "Fields" } th scope="col" { "Secret" } th scope="col" { "" } } }
                    tbody {
                        @for hook in &webhooks {
                            tr {
                                td { (hook.name) }
                                td { small { (hook.url) } }
                                td { (hook.events.join(", ")) }
                                td { small { @for (from, to) in &hook.fields { (from) " → " (to) br; } } }
                                td { (hook.secret_ref.as_deref().unwrap_or("unsigned")) }
                                td { form.inline method="post" action={"/settings/webhooks/" (url_encode(&hook.name)) "/delete"} { button.danger type="submit" { "Delete" } } }
                            }
                        }
                    }
                }
            }
            form.stack method="post" action="/settings/webhooks" {
                h3 { "Add or replace a webhook" }
                label for="hook-name" { "Name" } input id="hook-name" name="name" type="text" required placeholder="crm";
                label for="hook-url" { "URL" } input id="hook-url" name="url" type="url" required placeholder="https://crm.example.com/hooks/leadscore";
                fieldset {
                    legend { "Events" }
                    @for event in settings::SUBSCRIBABLE { label { input type="checkbox" name=(event) value="1"; " " (event) } }
                }
                label for="hook-fields" { "Fields for score.changed (leadscore field = your field, comma-separated; e.g. b2b.total = lead_score__c)" }
                input id="hook-fields" name="fields" type="text" placeholder="total = lead_score, band = lead_band";
                label for="hook-secret" { "Signing secret (the name of a stored secret)" }
                select id="hook-secret" name="secret_ref" { option value="" { "unsigned" } @for (name, _, _) in &secrets { option value=(name) { (name) } } }
                label for="hook-debounce" { "Debounce (e.g. 30s, 1m)" } input id="hook-debounce" name="debounce" type="text" placeholder="1m";
                button type="submit" { "Save webhook" }
            }
        }
    };
    Page(StatusCode::OK, settings_layout(signed, content)).into_response()
}

fn settings_layout(signed: &SignedIn, content: Markup) -> Markup {
    layout(Some(&signed.user), "Settings", "settings", content)
}

/// What an admin did, as a notice on the page, or the error as a page.
async fn done(web: &Web, signed: &SignedIn, result: Result<Notice, impl Into<leadscore_app::AppError>>) -> Response {
    match result.map_err(Into::into) {
        Ok(notice) => {
            // The notice says what was done in words; a generated secret or key is kept
            // apart from it and never logged.
            leadscore_app::audit::record(&web.engine, &signed.user.id, "settings", &notice.text).await;
            render(web, signed, Some(notice)).await
        }
        Err(err) => app_error(err),
    }
}

fn said(text: impl Into<String>) -> Notice {
    Notice { text: text.into(), secret: None }
}

#[derive(Deserialize)]
pub struct AddUserForm {
    email: String,
    #[serde(default)]
    name: String,
    role: String,
    password: String,
}

pub async fn add_user(State(web): State<Arc<Web>>, Admin(signed): Admin, Form(form): Form<AddUserForm>) -> Response {
    let Some(role) = Role::parse(&form.role) else { return error_page(StatusCode::UNPROCESSABLE_ENTITY, "That role does not exist.") };
    let new = NewUser { email: form.email, password: form.password, role, name: Some(form.name) };
    let result = users::add_user(&web.engine, new).await.map(|user| said(format!("Added {} as {}.", user.email, user.role.as_str())));
    done(&web, &signed, result).await
}

#[derive(Deserialize)]
pub struct ChangeUserForm {
    action: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

pub async fn change_user(State(web): State<Arc<Web>>, Admin(signed): Admin, Path(id): Path<String>, Form(form): Form<ChangeUserForm>) -> Response {
    let changes = match form.action.as_str() {
        "role" => match Role::parse(&form.role) {
            Some(role) => UserChanges { role: Some(role), ..UserChanges::default() },
            None => return error_page(StatusCode::UNPROCESSABLE_ENTITY, "That role does not exist."),
        },
        "disable" => UserChanges { disabled: Some(true), ..UserChanges::default() },
        "enable" => UserChanges { disabled: Some(false), ..UserChanges::default() },
        "password" => UserChanges { password: Some(form.password), ..UserChanges::default() },
        "delete" => {
            let result = users::delete_user(&web.engine, &id).await.map(|()| said("The user is deleted."));
            return done(&web, &signed, result).await;
        }
        _ => return error_page(StatusCode::UNPROCESSABLE_ENTITY, "Unknown action."),
    };
    let result = users::update_user(&web.engine, &id, changes).await.map(|user| said(format!("Changed {}.", user.email)));
    done(&web, &signed, result).await
}

#[derive(Deserialize)]
pub struct KeyForm {
    name: String,
    ingest: Option<String>,
    identify: Option<String>,
    read: Option<String>,
    admin: Option<String>,
}

pub async fn create_key(State(web): State<Arc<Web>>, Admin(signed): Admin, Form(form): Form<KeyForm>) -> Response {
    let scopes: Vec<String> = [("ingest", &form.ingest), ("identify", &form.identify), ("read", &form.read), ("admin", &form.admin)]
        .iter()
        .filter(|(_, on)| on.is_some())
        .map(|(s, _)| s.to_string())
        .collect();
    let result = keys::create_key(&web.engine, &form.name, &scopes)
        .await
        .map(|(record, key)| Notice { text: format!("Created the key {:?} ({}).", record.name, scopes.join(", ")), secret: Some(key) });
    done(&web, &signed, result).await
}

pub async fn revoke_key(State(web): State<Arc<Web>>, Admin(signed): Admin, Path(id): Path<String>) -> Response {
    // A user is not a key: no key here is the one asking.
    let result = keys::revoke_key(&web.engine, &id, "").await.map(|()| said("The key is revoked."));
    done(&web, &signed, result).await
}

#[derive(Deserialize)]
pub struct PoolForm {
    /// Present (`1`) when the box is ticked; a browser sends nothing for an unticked box.
    #[serde(default)]
    allowed: Option<String>,
}

pub async fn set_pool(State(web): State<Arc<Web>>, Admin(signed): Admin, Form(form): Form<PoolForm>) -> Response {
    let allowed = form.allowed.is_some();
    let result = settings::set_sales_pool(&web.engine, allowed)
        .await
        .map(|()| said(if allowed { "Sales reps now also see the leads without an owner." } else { "Sales reps now see only the leads assigned to them." }));
    done(&web, &signed, result).await
}

#[derive(Deserialize)]
pub struct TeamForm {
    name: String,
    members: String,
}

pub async fn put_team(State(web): State<Arc<Web>>, Admin(signed): Admin, Form(form): Form<TeamForm>) -> Response {
    let members: Vec<String> = form.members.split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::to_string).collect();
    let result = settings::put_team(&web.engine, form.name.trim(), members).await.map(|(team, _)| said(format!("Saved the team {}.", team.name)));
    done(&web, &signed, result).await
}

pub async fn delete_team(State(web): State<Arc<Web>>, Admin(signed): Admin, Path(name): Path<String>) -> Response {
    let result = settings::delete_team(&web.engine, &name).await.map(|()| said(format!("Deleted the team {name}.")));
    done(&web, &signed, result).await
}

#[derive(Deserialize)]
pub struct SecretForm {
    name: String,
    #[serde(default)]
    value: String,
}

pub async fn put_secret(State(web): State<Arc<Web>>, Admin(signed): Admin, Form(form): Form<SecretForm>) -> Response {
    let value = Some(form.value.trim().to_string()).filter(|v| !v.is_empty());
    let result = settings::put_secret(&web.engine, form.name.trim(), value)
        .await
        .map(|stored| Notice { text: format!("Stored the secret {}.", form.name.trim()), secret: stored.generated });
    done(&web, &signed, result).await
}

pub async fn delete_secret(State(web): State<Arc<Web>>, Admin(signed): Admin, Path(name): Path<String>) -> Response {
    let result = settings::delete_secret(&web.engine, &name).await.map(|()| said(format!("Deleted the secret {name}.")));
    done(&web, &signed, result).await
}

#[derive(Deserialize)]
pub struct WebhookForm {
    name: String,
    url: String,
    #[serde(default)]
    fields: String,
    #[serde(default)]
    secret_ref: String,
    #[serde(default)]
    debounce: String,
    #[serde(default, rename = "score.changed")]
    score_changed: Option<String>,
    #[serde(default, rename = "nurture.changed")]
    nurture_changed: Option<String>,
}

pub async fn put_webhook(State(web): State<Arc<Web>>, Admin(signed): Admin, Form(form): Form<WebhookForm>) -> Response {
    let mut fields = std::collections::BTreeMap::new();
    let mut unreadable = Vec::new();
    for pair in form.fields.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((from, to)) => {
                fields.insert(from.trim().to_string(), to.trim().to_string());
            }
            None => unreadable.push(pair.to_string()),
        }
    }
    if !unreadable.is_empty() {
        let message = format!("Each field is written `leadscore field = your field`; these are not: {}", unreadable.join(", "));
        return app_error(leadscore_app::AppError::invalid(message));
    }
    let events = [("score.changed", &form.score_changed), ("nurture.changed", &form.nurture_changed)]
        .into_iter()
        .filter(|(_, ticked)| ticked.is_some())
        .map(|(event, _)| event.to_string())
        .collect();
    let input = settings::SubscriptionInput {
        url: form.url.trim().to_string(),
        secret_ref: Some(form.secret_ref.trim().to_string()).filter(|s| !s.is_empty()),
        events,
        fields,
        debounce: Some(form.debounce.trim().to_string()).filter(|s| !s.is_empty()),
    };
    let name = form.name.trim();
    let result = settings::put_subscription(&web.engine, name, input).await.map(|(hook, _)| said(format!("Saved the webhook {} to {}.", hook.name, hook.url)));
    done(&web, &signed, result).await
}

pub async fn delete_webhook(State(web): State<Arc<Web>>, Admin(signed): Admin, Path(name): Path<String>) -> Response {
    let result = settings::delete_subscription(&web.engine, &name).await.map(|()| said(format!("Deleted the webhook {name}.")));
    done(&web, &signed, result).await
}
