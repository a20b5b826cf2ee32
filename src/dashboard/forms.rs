//! The forms (POST): incident transitions, retrying a failed rotation, rotating a tenant's
//! secrets by hand. Each takes [`Act`], so it runs only for a live session of a role that may
//! act with the session's CSRF token; each answers with a redirect to the page that shows the
//! result (post/redirect/get), so a reload never repeats an action.

use super::actions;
use super::error::PageError;
use super::pages::is_id;
use super::session::{Act, NoFields};
use crate::event::TenantId;
use crate::http::AppState;
use crate::store;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct NoteForm {
    #[serde(default)]
    note: String,
    /// Minutes to suppress a false positive's findings for; empty for none.
    #[serde(default)]
    suppress: String,
}

/// `POST /incidents/{id}/acknowledge|resolve|false-positive` with a note.
pub async fn incident_action(
    State(app): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    Act { session, form }: Act<NoteForm>,
) -> Result<Response, PageError> {
    let action = actions::parse_transition(&action).ok_or(PageError::NotFound("action"))?;
    if !is_id(&id) {
        return Err(PageError::NotFound("incident"));
    }
    let suppress_minutes = match form.suppress.trim() {
        "" => None,
        m => Some(
            m.parse()
                .map_err(|_| PageError::Invalid("suppress must be a number of minutes".into()))?,
        ),
    };
    actions::transition_incident(&app, &session.actor(), &id, action, &form.note, suppress_minutes).await?;
    Ok(Redirect::to(&format!("/incidents/{id}")).into_response())
}

/// `POST /rotations/{id}/retry`: a new attempt at a failed rotation.
pub async fn retry_rotation(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Act { session, .. }: Act<NoFields>,
) -> Result<Response, PageError> {
    if !is_id(&id) {
        return Err(PageError::NotFound("rotation"));
    }
    let retry = actions::retry_rotation(&app, &session.actor(), &id).await?;
    let back = match &retry.incident_id {
        Some(incident) => format!("/incidents/{incident}"),
        None => format!("/rotations?tenant={}", retry.tenant_id),
    };
    Ok(Redirect::to(&back).into_response())
}

#[derive(Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    tools: String,
    #[serde(default)]
    reason: String,
    /// Set when the form is on an incident's page, so the rotations are listed there.
    #[serde(default)]
    incident: String,
}

/// `POST /tenants/{id}/rotate`: rotate the tenant's secrets bound to `tools` (or all).
pub async fn rotate_tenant(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Act { session, form }: Act<RotateForm>,
) -> Result<Response, PageError> {
    let tenant = TenantId::parse(&id).map_err(|_| PageError::NotFound("tenant"))?;
    let tools = form.tools.trim();
    if tools.chars().count() > 200 || tools.chars().any(char::is_control) {
        return Err(PageError::Invalid(
            "Tools is a glob of at most 200 printable characters.".into(),
        ));
    }
    let incident = match form.incident.trim() {
        "" => None,
        i if is_id(i) => {
            let incident = store::incidents::get(&app.pool, i)
                .await?
                .filter(|inc| inc.tenant_id == tenant)
                .ok_or_else(|| PageError::Invalid("The incident does not belong to this tenant.".into()))?;
            Some(incident.incident_id)
        }
        _ => return Err(PageError::Invalid("The incident id is not valid.".into())),
    };
    actions::manual_rotate(
        &app,
        &session.actor(),
        &tenant,
        (!tools.is_empty()).then_some(tools),
        &form.reason,
    )
    .await?;
    let back = match incident {
        Some(incident) => format!("/incidents/{incident}"),
        None => format!("/rotations?tenant={tenant}"),
    };
    Ok(Redirect::to(&back).into_response())
}
