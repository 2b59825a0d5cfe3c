//! The support console over real HTTP, on both backends: `serve --console-addr`, staff made with
//! `console-user`, a client that keeps cookies as a browser does. Sessions, CSRF, the Origin
//! check, roles, the lockout, escaping, an action with its preview landing in the change history,
//! the revenue figures against `report revenue`, and the setup link.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};

use crate::common::http::{free_port, read_response};
use crate::common::TestDb;

/// A response: status, headers (lower-case names; several `set-cookie`), the body as text.
#[derive(Debug)]
struct Page {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of the first hidden `csrf` input.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field in {}", self.body));
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap_or(0)].to_string()
    }
}

/// `serve` with the console on, and a cookie jar.
struct Console {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Console {
    fn start(db: &TestDb) -> Console {
        Console::start_with(db, &[])
    }

    /// `serve` with these flags too.
    fn start_with(db: &TestDb, flags: &[&str]) -> Console {
        let port = free_port();
        let http_port = (0..100)
            .map(|_| free_port())
            .find(|p| *p != port)
            .unwrap_or(port + 1);
        let log = std::env::temp_dir().join(format!(
            "plan-invoicer-console-{}-{port}.log",
            std::process::id()
        ));
        let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("log: {e}"));
        let child = db
            .command()
            .env("RUST_LOG", "info")
            .args([
                "serve",
                "--schedule",
                "0 0 0 1 1 *",
                "--http-addr",
                &format!("127.0.0.1:{http_port}"),
                "--console-addr",
                &format!("127.0.0.1:{port}"),
            ])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn serve: {e}"));
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "no console");
            std::thread::sleep(Duration::from_millis(50));
        }
        Console { child, port, log }
    }

    /// A new client (no cookies) on the same server.
    fn fresh(&self) -> Jar<'_> {
        Jar {
            console: self,
            cookies: HashMap::new(),
        }
    }
}

/// A browser's view: its cookies.
struct Jar<'a> {
    console: &'a Console,
    cookies: HashMap<String, String>,
}

impl Jar<'_> {
    fn send(
        &mut self,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> Page {
        self.send_with(method, path, form, origin, &[])
    }

    fn send_with(
        &mut self,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Page {
        let body = serde_urlencoded::to_string(form).unwrap_or_default();
        self.exchange(method, path, body.as_bytes(), origin, extra)
    }

    /// A request with this body as it is (bytes a browser would not send).
    fn raw(&mut self, method: &str, path: &str, body: &[u8], origin: Option<&str>) -> Page {
        self.exchange(method, path, body, origin, &[])
    }

    fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
        origin: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Page {
        let mut stream = TcpStream::connect(("127.0.0.1", self.console.port))
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
        let host = format!("127.0.0.1:{}", self.console.port);
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if method == "POST" {
            head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        if let Some(o) = origin {
            head.push_str(&format!("Origin: {o}\r\n"));
        }
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            head.push_str(&format!("Cookie: {}\r\n", c.join("; ")));
        }
        head.push_str("\r\n");
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
        let (status, headers, body) = read_response(&mut stream);
        let page = Page {
            status,
            headers,
            body,
        };
        for c in page.cookies() {
            let pair = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || c.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        page
    }

    fn get(&mut self, path: &str) -> Page {
        self.send("GET", path, &[], None)
    }

    /// A form posted from the console's own page.
    fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let origin = format!("http://127.0.0.1:{}", self.console.port);
        self.send("POST", path, form, Some(&origin))
    }

    fn login(&mut self, email: &str, password: &str) -> Page {
        let form = self.get("/login");
        let csrf = form.csrf();
        self.post(
            "/login",
            &[
                ("csrf", &csrf),
                ("email", email),
                ("password", password),
                ("next", "/"),
            ],
        )
    }
}

const PASSWORD: &str = "correct horse battery staple";

fn staff(db: &TestDb, email: &str, role: &str) {
    let mut child = db
        .command()
        .args([
            "--json",
            "console-user",
            "create",
            "--email",
            email,
            "--role",
            role,
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut stdin) = child.stdin.take() {
        let _ = writeln!(stdin, "{PASSWORD}");
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn iso(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Acme with a monthly plan of 10 licenses that follow the seats, anchored ten days ago; a
/// customer whose name is a script; staff of each role.
fn setup(db: &TestDb) -> (i64, i64) {
    let ten_days_ago = iso(Utc::now() - chrono::Duration::days(10));
    let acme = db.id(
        Some(&ten_days_ago),
        &[
            "customer",
            "create",
            "--name",
            "Acme",
            "--email",
            "billing@acme.test",
        ],
    );
    let plan = db.id(
        Some(&ten_days_ago),
        &[
            "plan",
            "create",
            "--customer",
            &acme.to_string(),
            "--tier",
            "cloud_standard",
            "--schedule",
            "monthly",
            "--licenses",
            "10",
            "--automanage-licenses",
        ],
    );
    db.id(
        Some(&ten_days_ago),
        &["customer", "create", "--name", "<script>alert(1)</script>"],
    );
    staff(db, "admin@staff.test", "admin");
    staff(db, "support@staff.test", "support");
    staff(db, "viewer@staff.test", "viewer");
    (acme, plan)
}

fn sessions_csrf_origin_and_roles(db: &TestDb) {
    let (acme, plan) = setup(db);
    let console = Console::start(db);
    let mut anon = console.fresh();
    // Every page but the login page sends a stranger to log in; the headers are on every answer.
    let r = anon.get(&format!("/customers/{acme}"));
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some(format!("/login?next=%2Fcustomers%2F{acme}").as_str())
    );
    let login = anon.get("/login");
    assert_eq!(login.status, 200);
    for (name, value) in [
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        ("x-content-type-options", "nosniff"),
    ] {
        assert_eq!(login.header(name), Some(value), "{name}");
    }
    let csp = login.header("content-security-policy").unwrap_or("");
    assert!(
        csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let cookie = login.cookies().join(" | ");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "loopback: no Secure flag: {cookie}"
    );

    // The login form needs its token and an Origin of the console.
    let csrf = login.csrf();
    let creds = [
        ("csrf", csrf.as_str()),
        ("email", "support@staff.test"),
        ("password", PASSWORD),
    ];
    let r = anon.send("POST", "/login", &creds, None);
    assert_eq!(r.status, 403, "no Origin: {r:?}");
    let r = anon.send("POST", "/login", &creds, Some("http://evil.test"));
    assert_eq!(r.status, 403, "another Origin: {r:?}");
    let r = anon.post(
        "/login",
        &[
            ("csrf", "forged"),
            ("email", "support@staff.test"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(r.status, 403, "a forged token: {r:?}");
    let r = anon.login("support@staff.test", "not the password!");
    assert_eq!(r.status, 401);
    assert!(r.body.contains("wrong email or password"), "{}", r.body);

    // Support logs in and searches.
    let mut support = console.fresh();
    let r = support.login("Support@Staff.test", PASSWORD);
    assert_eq!(r.status, 303, "{r:?}");
    assert!(
        r.cookies().iter().any(|c| c.starts_with("pi_session=")),
        "{r:?}"
    );
    let r = support.get("/?q=acme");
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains(&format!("href=\"/customers/{acme}\"")),
        "{}",
        r.body
    );
    let r = support.get(&format!("/?q={plan}"));
    assert!(
        r.body.contains(&format!("plan {plan}")),
        "a plan id finds its customer"
    );
    // What a customer or the host application wrote is shown as text.
    let r = support.get("/?q=%3Cscript%3E");
    assert!(
        r.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<script>alert(1)"), "escaped");

    // The customer's page: its plan, the next invoice as `plan preview` computes it, the chart.
    let page = support.get(&format!("/customers/{acme}"));
    assert_eq!(page.status, 200);
    for text in [
        &format!("Plan {plan}") as &str,
        "Next invoice",
        "<svg",
        "Change history",
        "plan.create",
    ] {
        assert!(page.body.contains(text), "{text} in {}", page.body);
    }

    // An action: the preview first (nothing written), then the confirmation.
    let csrf = page.csrf();
    let seats = format!("/plans/{plan}/seats");
    let no_reason = support.post(&seats, &[("csrf", &csrf), ("count", "15"), ("reason", "")]);
    assert_eq!(no_reason.status, 400);
    assert!(
        no_reason.body.contains("field-error"),
        "the refusal beside its field"
    );
    let bad = support.post(
        &seats,
        &[("csrf", &csrf), ("count", "-3"), ("reason", "ticket 42")],
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    let preview = support.post(
        &seats,
        &[("csrf", &csrf), ("count", "15"), ("reason", "ticket 42")],
    );
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert!(
        preview
            .body
            .contains(&format!("The next invoice of plan {plan} goes from")),
        "{}",
        preview.body
    );
    assert_eq!(db.plan(plan)["licenses"], 10, "a preview writes nothing");
    // Without the token, or from another site: refused, nothing written.
    let r = support.post(
        &seats,
        &[("count", "15"), ("reason", "ticket 42"), ("confirm", "yes")],
    );
    assert_eq!(r.status, 403);
    let r = support.send(
        "POST",
        &seats,
        &[
            ("csrf", &csrf),
            ("count", "15"),
            ("reason", "x"),
            ("confirm", "yes"),
        ],
        Some("http://evil.test"),
    );
    assert_eq!(r.status, 403);
    assert_eq!(db.plan(plan)["licenses"], 10);
    let done = support.post(
        &seats,
        &[
            ("csrf", &csrf),
            ("count", "15"),
            ("reason", "ticket 42"),
            ("confirm", "yes"),
        ],
    );
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(db.plan(plan)["licenses"], 15);
    let changes = db.ok(
        None,
        &[
            "changes",
            "list",
            "--plan",
            &plan.to_string(),
            "--operation",
            "plan.seats",
        ],
    );
    let change = &changes[0];
    assert_eq!(change["actor"], "console:support@staff.test");
    assert_eq!(change["reason"], "ticket 42");
    assert_eq!(change["after"]["licenses"], 15);
    let page = support.get(&format!("/customers/{acme}"));
    assert!(page.body.contains("console:support@staff.test") && page.body.contains("ticket 42"));

    // A customer's action: the minimum licenses are refused while a plan is live (Zulip's guard),
    // the refusal shown with the form; an offer is made and recorded.
    let minimum = format!("/customers/{acme}/minimum-licenses");
    let r = support.post(
        &minimum,
        &[("csrf", &csrf), ("count", "25"), ("reason", "deal")],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("notice error") || r.body.contains("field-error"),
        "{}",
        r.body
    );
    let offer = format!("/customers/{acme}/offer");
    let form = [
        ("csrf", csrf.as_str()),
        ("tier", "cloud_plus"),
        ("fixed_price_cents", "500000"),
        ("reason", "annual deal"),
    ];
    let r = support.post(&offer, &form);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("goes from"),
        "the live plan's next invoice is shown: {}",
        r.body
    );
    let mut confirmed = form.to_vec();
    confirmed.push(("confirm", "yes"));
    assert_eq!(support.post(&offer, &confirmed).status, 303);
    let made = db.ok(None, &["changes", "list", "--operation", "offer.create"]);
    assert_eq!(made[0]["actor"], "console:support@staff.test", "{made}");
    // Retrying a plan that is not parked is refused with the CLI's words.
    let r = support.post(
        &format!("/plans/{plan}/retry"),
        &[("csrf", &csrf), ("reason", "x"), ("confirm", "yes")],
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("nothing to retry"), "{}", r.body);

    // A viewer reads but may not act, nor see the staff page; support may not see it either.
    let mut viewer = console.fresh();
    assert_eq!(viewer.login("viewer@staff.test", PASSWORD).status, 303);
    let page = viewer.get(&format!("/customers/{acme}"));
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains("/seats\""),
        "no action forms for a viewer"
    );
    let csrf = page.csrf();
    let r = viewer.post(
        &seats,
        &[
            ("csrf", &csrf),
            ("count", "20"),
            ("reason", "x"),
            ("confirm", "yes"),
        ],
    );
    assert_eq!(r.status, 403);
    assert_eq!(db.plan(plan)["licenses"], 15);
    assert_eq!(viewer.get("/staff").status, 403);
    assert_eq!(support.get("/staff").status, 403);
    let mut admin = console.fresh();
    assert_eq!(admin.login("admin@staff.test", PASSWORD).status, 303);
    let r = admin.get("/staff");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("viewer@staff.test"));

    // Admins manage staff and API tokens from the Staff page, with a reason; support may not.
    let csrf_admin = admin.get("/staff").csrf();
    let r = support.post(
        "/staff/create-user",
        &[
            ("csrf", &csrf),
            ("email", "new@staff.test"),
            ("role", "viewer"),
            ("reason", "x"),
        ],
    );
    assert_eq!(r.status, 403);
    let r = admin.post(
        "/staff/create-user",
        &[
            ("csrf", &csrf_admin),
            ("email", "new@staff.test"),
            ("role", "viewer"),
            ("reason", ""),
        ],
    );
    assert_eq!(r.status, 400, "a reason is required");
    let r = admin.post(
        "/staff/create-user",
        &[
            ("csrf", &csrf_admin),
            ("email", "new@staff.test"),
            ("role", "viewer"),
            ("reason", "hired"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("/setup/"),
        "the setup link is shown once: {}",
        r.body
    );
    let r = admin.post(
        "/staff/set-role",
        &[
            ("csrf", &csrf_admin),
            ("email", "new@staff.test"),
            ("role", "support"),
            ("reason", "promoted"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = admin.post(
        "/staff/set-role",
        &[
            ("csrf", &csrf_admin),
            ("email", "admin@staff.test"),
            ("role", "disable"),
            ("reason", "oops"),
        ],
    );
    assert_eq!(r.status, 400, "not one's own account");
    let r = admin.post(
        "/staff/create-token",
        &[
            ("csrf", &csrf_admin),
            ("name", "billing-page"),
            ("scope", "write"),
            ("reason", "host app"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("pit_"),
        "the token is shown once: {}",
        r.body
    );
    let r = admin.post(
        "/staff/revoke-token",
        &[
            ("csrf", &csrf_admin),
            ("name", "billing-page"),
            ("reason", "rotated"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let tokens = db.ok(None, &["api-token", "list"]);
    assert!(tokens[0]["revoked_at"].is_string(), "{tokens}");
    let users = db.ok(None, &["console-user", "list"]);
    assert!(
        users.as_array().is_some_and(|u| u
            .iter()
            .any(|u| u["email"] == "new@staff.test" && u["role"] == "support")),
        "{users}"
    );
    let made = db.ok(
        None,
        &["changes", "list", "--actor", "console:admin@staff.test"],
    );
    let ops: Vec<&str> = made
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["operation"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        ops,
        [
            "console_user.create",
            "console_user.set_role",
            "api_token.create",
            "api_token.revoke"
        ]
    );

    // Revenue: the page and `report revenue` agree (15 licenses × $8 a month × 12).
    let report = db.ok(None, &["report", "revenue"]);
    assert_eq!(report["arr_cents"], 15 * 800 * 12, "{report}");
    assert_eq!(report["mrr_cents"], 15 * 800);
    let r = admin.get("/revenue");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("$1,440.00"), "{}", r.body);
    for path in ["/attention", "/revenue", "/"] {
        assert_eq!(viewer.get(path).status, 200, "{path}");
    }
    assert_eq!(viewer.get("/customers/999999").status, 404);
    assert_eq!(viewer.get("/customers/x").status, 404);
    assert_eq!(viewer.get("/invoices/999999").status, 404);
    assert_eq!(viewer.get("/no/such/page").status, 404);

    // Logout ends the session on the server: the old cookie no longer opens a page.
    let stolen = support.cookies.clone();
    let csrf = support.get("/").csrf();
    assert_eq!(support.post("/logout", &[("csrf", &csrf)]).status, 303);
    let mut replay = console.fresh();
    replay.cookies = stolen;
    assert_eq!(replay.get("/").status, 303, "the session is gone");
    // A disabled account's sessions end at once.
    db.ok(None, &["console-user", "disable", "viewer@staff.test"]);
    assert_eq!(viewer.get("/").status, 303);
    assert_eq!(viewer.login("viewer@staff.test", PASSWORD).status, 401);
    drop(console);
}

fn lockout_and_setup_link(db: &TestDb) {
    staff(db, "ada@staff.test", "support");
    let console = Console::start(db);
    let mut c = console.fresh();
    for _ in 0..5 {
        assert_eq!(c.login("ada@staff.test", "wrong password!!").status, 401);
    }
    // Locked out: even the right password is refused, and the lockout is logged.
    let r = c.login("ada@staff.test", PASSWORD);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("too many failed logins"));
    let log = std::fs::read_to_string(&console.log).unwrap_or_default();
    assert!(log.contains("locked out"), "{log}");
    // Another account is not locked.
    staff(db, "bob@staff.test", "viewer");
    assert_eq!(
        console.fresh().login("bob@staff.test", PASSWORD).status,
        303
    );

    // A setup link sets the password once.
    let made = db.ok(
        None,
        &[
            "console-user",
            "create",
            "--email",
            "cy@staff.test",
            "--role",
            "viewer",
        ],
    );
    let path = made["setup_path"].as_str().unwrap_or_default().to_string();
    assert!(path.starts_with("/setup/"), "{made}");
    assert_eq!(
        db.ok(None, &["console-user", "list"])
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let mut cy = console.fresh();
    let form = cy.get(&path);
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form.csrf();
    let short = cy.post(&path, &[("csrf", &csrf), ("password", "short")]);
    assert_eq!(short.status, 400);
    let set = cy.post(&path, &[("csrf", &csrf), ("password", PASSWORD)]);
    assert_eq!(set.status, 303, "{}", set.body);
    assert_eq!(cy.get(&path).status, 404, "a setup link works once");
    assert_eq!(cy.login("cy@staff.test", PASSWORD).status, 303);
    let changes = db.ok(
        None,
        &["changes", "list", "--operation", "console_user.setup"],
    );
    assert_eq!(changes[0]["actor"], "console:cy@staff.test");
}

/// Behind an SSO proxy: the email header signs a staff member in, from the trusted address only;
/// the header and the proxies go together.
fn single_sign_on_from_trusted_proxies_only(db: &TestDb) {
    staff(db, "ada@staff.test", "support");
    let header = [("X-Email", "Ada@staff.test")];
    let trusted = Console::start_with(
        db,
        &[
            "--console-sso-email-header",
            "X-Email",
            "--console-trusted-proxy",
            "127.0.0.1",
        ],
    );
    let mut c = trusted.fresh();
    let r = c.send_with("GET", "/", &[], None, &header);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("ada@staff.test (support)"));
    let r = c.send_with("GET", "/", &[], None, &[("X-Email", "nobody@staff.test")]);
    assert_eq!(r.status, 403, "an email without an account");
    drop(trusted);
    let elsewhere = Console::start_with(
        db,
        &[
            "--console-sso-email-header",
            "X-Email",
            "--console-trusted-proxy",
            "10.9.9.9",
        ],
    );
    let r = elsewhere.fresh().send_with("GET", "/", &[], None, &header);
    assert_eq!(
        r.status, 303,
        "the header from an untrusted address is ignored"
    );
    drop(elsewhere);
    let (code, _, err) = db.run(
        None,
        &[
            "serve",
            "--console-addr",
            "127.0.0.1:1",
            "--console-sso-email-header",
            "X-Email",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("go together"), "{err}");
}

/// Hostile input at every door of the console: integer limits, far dates, control characters,
/// broken encodings, an oversized form. Nothing answers 5xx, nothing is written, and the
/// console still answers afterwards.
fn hostile_input_is_refused_cleanly(db: &TestDb) {
    let (acme, plan) = setup(db);
    let console = Console::start(db);
    let mut c = console.fresh();
    assert_eq!(c.login("support@staff.test", PASSWORD).status, 303);
    let csrf = c.get("/").csrf();
    let long = "x".repeat(10_000);
    let gets = [
        "/customers/9223372036854775807".to_string(),
        "/customers/9223372036854775808".to_string(),
        "/customers/-1".to_string(),
        "/customers/0".to_string(),
        "/customers/%00".to_string(),
        "/customers/%FF%FE".to_string(),
        "/invoices/99999999999999999999".to_string(),
        "/?q=%FF%FE%00".to_string(),
        "/?q=%1B%5B31m".to_string(),
        format!("/?q={long}"),
        "/?q=%25%5F%5C".to_string(),
        "/?q=-9223372036854775808".to_string(),
        "/login?next=%FF".to_string(),
        "/setup/%FF_%00".to_string(),
        "/setup/9223372036854775807_x".to_string(),
    ];
    for path in &gets {
        let r = c.get(path);
        assert!(r.status < 500 && r.status != 0, "GET {path}: {}", r.status);
    }
    let seats = format!("/plans/{plan}/seats");
    let end = format!("/plans/{plan}/end-date");
    let discount = format!("/customers/{acme}/discount");
    let offer = format!("/customers/{acme}/offer");
    let max = i64::MAX.to_string();
    let min = i64::MIN.to_string();
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        (seats.clone(), vec![("count", &max)]),
        (seats.clone(), vec![("count", &min)]),
        (seats.clone(), vec![("count", "99999999999999999999")]),
        (seats.clone(), vec![("count", "1e3")]),
        (
            seats.clone(),
            vec![("count", "12"), ("reason", "\u{1b}[31mred\u{0}")],
        ),
        (seats.clone(), vec![("count", "12"), ("reason", &long)]),
        (end.clone(), vec![("date", "9999-12-31T23:59:59Z")]),
        (end.clone(), vec![("date", "+275760-09-13T00:00:00Z")]),
        (end.clone(), vec![("date", "0000-01-01T00:00:00Z")]),
        (end.clone(), vec![("date", "2026-02-30T00:00:00Z")]),
        (
            discount.clone(),
            vec![
                ("monthly_discounted_price_cents", &max),
                ("annual_discounted_price_cents", &max),
            ],
        ),
        (
            offer.clone(),
            vec![("tier", "cloud_plus"), ("fixed_price_cents", &max)],
        ),
        (
            offer.clone(),
            vec![("tier", "\u{0}"), ("fixed_price_cents", "1")],
        ),
        (
            "/plans/99999999999999999999/seats".to_string(),
            vec![("count", "3")],
        ),
        ("/plans/1/no-such-action".to_string(), vec![("count", "3")]),
        ("/customers/1/no-such-action".to_string(), vec![]),
    ];
    for (path, fields) in &posts {
        for confirm in [false, true] {
            let mut form = vec![("csrf", csrf.as_str()), ("reason", "hostile")];
            form.extend(fields.iter().copied());
            if confirm {
                form.push(("confirm", "yes"));
            }
            let r = c.post(path, &form);
            assert!(
                r.status < 500 && r.status != 0,
                "POST {path} {fields:?}: {} {}",
                r.status,
                r.body
            );
        }
    }
    // Broken encodings and an oversized form.
    let origin = format!("http://127.0.0.1:{}", console.port);
    for body in [
        format!("csrf={csrf}&count=%FF%FE&reason=%ZZ"),
        format!("csrf={csrf}&count=3&reason=a%00b"),
        format!("csrf={csrf}&{}", "a=b&".repeat(10_000)),
    ] {
        let r = c.raw("POST", &seats, body.as_bytes(), Some(&origin));
        assert!(r.status < 500 && r.status != 0, "raw POST: {}", r.status);
    }
    assert_eq!(db.plan(plan)["licenses"], 10, "nothing was written");
    assert_eq!(c.get("/").status, 200, "the console still answers");
}

on_both_backends!(
    hostile_input_is_refused_cleanly,
    sessions_csrf_origin_and_roles,
    lockout_and_setup_link,
    single_sign_on_from_trusted_proxies_only
);
