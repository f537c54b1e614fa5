//! The dashboard, `/ui` on `steadytext serve`'s listener: the queue as PostgreSQL holds it (so
//! one dashboard shows every worker on every machine) and this daemon's engine. Plain
//! server-rendered HTML: lists and details work without JavaScript, and one small script
//! (`assets/ui/live.js`) updates a request's status while it runs. Every asset is compiled into
//! the binary. `--token` guards every page (`access.rs`); `--ui-actions` enables the actions
//! (cancel or retry a request, pause or resume a derivation).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::Deserialize;
use tokio_postgres::Config;

use crate::db_session::Session;
use crate::error::DaemonError;
use crate::http::AppState;

mod access;
mod data;
mod pages;

pub use access::Access;
use data::{is_uuid, Filters, UiStatements};
use pages::{EngineFigures, LoginPage, MessagePage, OverviewPage, RequestPage, RequestsPage};

/// What the dashboard needs: its connection (when the daemon has a database), its access
/// rules, and whether actions are on.
pub struct Ui {
    /// The dashboard's own connection, `None` without `--database-url`.
    db: Option<Session<UiStatements>>,
    /// Token and CSRF.
    access: Access,
    /// `--ui-actions`.
    actions: bool,
}

impl Ui {
    /// The dashboard on the database of `db` (none: pages say it needs one).
    pub fn new(db: Option<Config>, token: Option<String>, actions: bool) -> Arc<Self> {
        let db = db.map(|mut config| {
            // how its statements show in pg_stat_activity and the server's log
            config.application_name("steadytext-dashboard");
            Session::new(config)
        });
        Arc::new(Self { db, access: Access::new(token), actions })
    }
}

/// The stylesheet.
const CSS: &str = include_str!("../../assets/ui/ui.css");
/// The live-status script.
const LIVE_JS: &str = include_str!("../../assets/ui/live.js");
/// The overview's chart script.
const CHARTS_JS: &str = include_str!("../../assets/ui/charts.js");
/// uPlot 1.6.32 (MIT, `assets/ui/vendor/uplot/LICENSE`), from npm by `scripts/vendor-ui-assets`:
/// a maintained chart library small enough to serve from the binary, rather than charting
/// code of our own.
const UPLOT_JS: &str = include_str!("../../assets/ui/vendor/uplot/uPlot.iife.min.js");
/// uPlot's stylesheet.
const UPLOT_CSS: &str = include_str!("../../assets/ui/vendor/uplot/uPlot.min.css");

/// The pages' routes, on the daemon's router (outside its bearer-token check: the dashboard
/// has its own, [`guard`]).
pub fn routes(state: AppState) -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/ui", get(overview))
        .route("/ui/requests", get(requests))
        .route("/ui/requests/{id}", get(request))
        .route("/ui/requests/{id}/status", get(status))
        .route("/ui/requests/{id}/cancel", post(cancel))
        .route("/ui/requests/{id}/retry", post(retry))
        .route("/ui/derivations/{id}/{action}", post(operate))
        .route("/ui/logout", post(logout))
        .route_layer(axum::middleware::from_fn_with_state(state, guard))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/assets/ui.css", get(|| async { ([(header::CONTENT_TYPE, "text/css")], CSS) }))
        .route("/ui/assets/live.js", get(|| async { javascript(LIVE_JS) }))
        .route("/ui/assets/charts.js", get(|| async { javascript(CHARTS_JS) }))
        .route("/ui/assets/uplot.js", get(|| async { javascript(UPLOT_JS) }))
        .route(
            "/ui/assets/uplot.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css")], UPLOT_CSS) }),
        )
}

/// A script, as a response.
fn javascript(body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript")], body)
}

/// Sends a visitor without the token's cookie to the login form.
async fn guard(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if s.ui.access.allows(req.headers()) {
        next.run(req).await
    } else {
        Redirect::to("/ui/login").into_response()
    }
}

/// A rendered page, or a plain error if the template fails (it cannot for these types, but
/// askama's API says it may).
fn html(page: impl Template, status: StatusCode) -> Response {
    match page.render() {
        Ok(body) => (status, [(header::CACHE_CONTROL, "no-store")], Html(body)).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("page: {e}")).into_response(),
    }
}

/// A page that only says something.
fn message(status: StatusCode, heading: &str, text: String) -> Response {
    html(MessagePage { page: "", heading: heading.to_owned(), message: text }, status)
}

/// The dashboard's connection, or the page that says why there is none.
async fn db(ui: &Ui) -> Result<(Arc<tokio_postgres::Client>, Arc<UiStatements>), Response> {
    let Some(session) = &ui.db else {
        return Err(message(
            StatusCode::SERVICE_UNAVAILABLE,
            "No database",
            "The dashboard shows the queue in PostgreSQL: start steadytext serve with \
             --database-url (or the STEADYTEXT_DB_* settings)."
                .into(),
        ));
    };
    session.get().await.map_err(|e| failed(&e))
}

/// The page for an id that is not a uuid's text form.
fn not_a_request_id(id: &str) -> Response {
    message(StatusCode::NOT_FOUND, "Not a request id", format!("{id:?} is not a uuid."))
}

/// The page for a connection that could not be opened or a query without an answer (the
/// connection is opened again next time), for a database whose extension is missing or too
/// old, or for a statement PostgreSQL refused (with its SQLSTATE; the connection is kept).
fn failed(e: &DaemonError) -> Response {
    let status = e.http_status();
    if let Some(refusal) = e.refusal() {
        let text = format!("{} (SQLSTATE {})", refusal.message(), refusal.code().code());
        return message(status, "PostgreSQL refused it", text);
    }
    match e {
        DaemonError::ExtensionMissing => {
            message(status, "pg_steadytext is not installed", e.to_string())
        }
        DaemonError::ExtensionOutdated { .. } => {
            message(status, "The extension needs an update", e.to_string())
        }
        _ => message(status, "PostgreSQL did not answer", e.to_string()),
    }
}

/// Runs `query` on the dashboard's connection. A failure other than PostgreSQL refusing the
/// statement (a lost connection) resets it.
async fn with_db<T>(
    ui: &Ui,
    query: impl AsyncFnOnce(&tokio_postgres::Client, &UiStatements) -> Result<T, DaemonError>,
) -> Result<T, Response> {
    let (client, sql) = db(ui).await?;
    match query(&client, &sql).await {
        Ok(v) => Ok(v),
        Err(e) => {
            if e.refusal().is_none() {
                if let Some(session) = &ui.db {
                    session.reset().await;
                }
            }
            Err(failed(&e))
        }
    }
}

/// `GET /ui`.
async fn overview(State(s): State<AppState>) -> Response {
    let o = match with_db(&s.ui, async |c, sql| sql.overview(c).await).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let engine = EngineFigures::from(&s.service.metrics);
    let csrf = s.ui.actions.then(|| s.ui.access.csrf());
    html(OverviewPage::new(o, now, engine, csrf), StatusCode::OK)
}

/// The list's query string.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    status: Option<String>,
    function: Option<String>,
    priority: Option<String>,
    age: Option<String>,
    before: Option<String>,
    /// A request id to go to.
    id: Option<String>,
}

/// `GET /ui/requests`: filtered, newest first, paginated by id (a keyset: the same cost on
/// every page).
async fn requests(State(s): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    if let Some(id) = q.id.as_deref().map(str::trim).filter(|i| !i.is_empty()) {
        return if is_uuid(id) {
            Redirect::to(&format!("/ui/requests/{}", id.to_ascii_lowercase())).into_response()
        } else {
            not_a_request_id(id)
        };
    }
    let pick = |v: &Option<String>, allowed: &[&str]| {
        v.as_deref().filter(|v| allowed.contains(v)).map(str::to_owned)
    };
    let priority_text = q.priority.clone().unwrap_or_default();
    let age = q.age.clone().unwrap_or_default();
    let filters = Filters {
        status: pick(&q.status, &pages::STATUSES),
        function: pick(&q.function, &pages::FUNCTIONS),
        priority: priority_text.trim().parse().ok(),
        max_age_secs: pages::AGES.iter().find(|(v, _)| *v == age).and_then(|(v, _)| v.parse().ok()),
    };
    let before: Option<i64> = q.before.as_deref().and_then(|b| b.parse().ok());
    let f = filters.clone();
    let (rows, next) = match with_db(&s.ui, async move |c, sql| sql.list(c, &f, before).await).await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let link = |before: Option<i64>| {
        let mut parts = Vec::new();
        for (k, v) in [
            ("status", filters.status.clone().unwrap_or_default()),
            ("function", filters.function.clone().unwrap_or_default()),
            ("priority", filters.priority.map(|p| p.to_string()).unwrap_or_default()),
            ("age", age.clone()),
            ("before", before.map(|b| b.to_string()).unwrap_or_default()),
        ] {
            if !v.is_empty() {
                parts.push(format!("{k}={v}"));
            }
        }
        format!("/ui/requests?{}", parts.join("&"))
    };
    let next_page = next.map(|id| link(Some(id)));
    let scanned_only = rows.len() < data::PAGE as usize && next.is_some();
    let first_page = before.map(|_| link(None));
    html(
        RequestsPage {
            page: "requests",
            statuses: pages::STATUSES,
            functions: pages::FUNCTIONS,
            ages: pages::AGES,
            filters,
            priority_text,
            age,
            rows,
            first_page,
            next_page,
            scanned_only,
            scan: data::SCAN,
        },
        StatusCode::OK,
    )
}

/// `GET /ui/requests/{id}`.
async fn request(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    if !is_uuid(&id) {
        return not_a_request_id(&id);
    }
    let lookup = id.clone();
    let found = with_db(&s.ui, async move |c, sql| {
        let Some(row) = sql.detail(c, &lookup).await? else { return Ok(None) };
        let target = match RequestPage::serves(&row) {
            Some((d, _)) => sql.derivation_of(c, d).await?,
            None => None,
        };
        Ok(Some((row, target)))
    })
    .await;
    match found {
        Ok(Some((row, target))) => {
            let page = RequestPage::new(&row, s.ui.actions, s.ui.access.csrf(), target);
            html(page, StatusCode::OK)
        }
        Ok(None) => message(StatusCode::NOT_FOUND, "No such request", format!("No request {id}.")),
        Err(r) => r,
    }
}

/// `GET /ui/requests/{id}/status`: `{"status": …}` for the live update.
async fn status(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    if !is_uuid(&id) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match with_db(&s.ui, async move |c, sql| sql.status(c, &id).await).await {
        Ok(Some(status)) => {
            ([(header::CACHE_CONTROL, "no-store")], Json(serde_json::json!({ "status": status })))
                .into_response()
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(r) => r,
    }
}

/// An action's form.
#[derive(Deserialize)]
struct ActionForm {
    csrf: String,
}

/// An action on one request.
#[derive(Clone, Copy)]
enum Action {
    /// `steadytext_queue_cancel`.
    Cancel,
    /// `steadytext_queue_retry`.
    Retry,
}

/// `POST /ui/requests/{id}/cancel` (with `--ui-actions`).
async fn cancel(state: State<AppState>, id: Path<String>, form: Form<ActionForm>) -> Response {
    act(state, id, form, Action::Cancel).await
}

/// `POST /ui/requests/{id}/retry` (with `--ui-actions`).
async fn retry(state: State<AppState>, id: Path<String>, form: Form<ActionForm>) -> Response {
    act(state, id, form, Action::Retry).await
}

/// Runs `action` on request `id` if actions are on and the form came from this dashboard; back
/// to the request's page, which shows what happened.
async fn act(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
    action: Action,
) -> Response {
    if let Some(refused) = refuse_action(&s, &form) {
        return refused;
    }
    if !is_uuid(&id) {
        return not_a_request_id(&id);
    }
    let target = id.clone();
    let done = with_db(&s.ui, async move |c, sql| match action {
        Action::Cancel => sql.cancel(c, &target).await,
        Action::Retry => sql.retry(c, &target).await,
    })
    .await;
    match done {
        Ok(_) => Redirect::to(&format!("/ui/requests/{id}")).into_response(),
        Err(r) => r,
    }
}

/// `POST /ui/derivations/{id}/pause` or `…/resume` (with `--ui-actions`): as the declarer's own
/// `steadytext_derivation_pause`/`_resume` would; back to the overview.
async fn operate(
    State(s): State<AppState>,
    Path((id, action)): Path<(i64, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refused) = refuse_action(&s, &form) {
        return refused;
    }
    if action != "pause" && action != "resume" {
        return message(StatusCode::NOT_FOUND, "No such action", format!("{action:?}"));
    }
    match with_db(&s.ui, async move |c, sql| sql.operate(c, id, &action).await).await {
        Ok(_) => Redirect::to("/ui#derivations").into_response(),
        Err(r) => r,
    }
}

/// The page that refuses an action: actions off, or a form from elsewhere.
fn refuse_action(s: &AppState, form: &ActionForm) -> Option<Response> {
    if !s.ui.actions {
        return Some(message(
            StatusCode::FORBIDDEN,
            "Actions are off",
            "Start steadytext serve with --ui-actions to cancel or retry requests and pause or \
             resume derivations from the dashboard."
                .into(),
        ));
    }
    if !s.ui.access.csrf_ok(&form.csrf) {
        return Some(message(
            StatusCode::FORBIDDEN,
            "Refused",
            "The form did not come from this dashboard (its CSRF value does not match).".into(),
        ));
    }
    None
}

/// `GET /ui/login`.
async fn login_form(State(s): State<AppState>) -> Response {
    if !s.ui.access.protected() {
        return Redirect::to("/ui").into_response();
    }
    html(LoginPage { failed: false }, StatusCode::OK)
}

/// The login form.
#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// `POST /ui/login`: sets the cookie when the token is right.
async fn login(State(s): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    match s.ui.access.login(&form.token) {
        Some(cookie) => {
            let mut headers = HeaderMap::new();
            if let Ok(v) = cookie.parse() {
                headers.insert(header::SET_COOKIE, v);
            }
            (headers, Redirect::to("/ui")).into_response()
        }
        None if !s.ui.access.protected() => Redirect::to("/ui").into_response(),
        None => html(LoginPage { failed: true }, StatusCode::UNAUTHORIZED),
    }
}

/// `POST /ui/logout`.
async fn logout() -> Response {
    ([Access::logout()], Redirect::to("/ui/login")).into_response()
}
