// The dashboard in real headless Chromium, with JavaScript on (hydrated) or off (plain forms),
// as SWITCHYARD_UI_JS says. Started by tests/tests/browser.rs against a fresh gateway:
// SWITCHYARD_URL, SWITCHYARD_MASTER_KEY, SWITCHYARD_VIEWER ("name:password"), SWITCHYARD_SCREENSHOTS.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const base = process.env.SWITCHYARD_URL;
const master = process.env.SWITCHYARD_MASTER_KEY;
const [viewerName, viewerPassword] = (process.env.SWITCHYARD_VIEWER || ":").split(":");
const js = process.env.SWITCHYARD_UI_JS !== "off";
const shots = `${process.env.SWITCHYARD_SCREENSHOTS || "target/ui-screenshots"}/${js ? "js" : "nojs"}`;
mkdirSync(shots, { recursive: true });

let browser;
let page;
const state = {};

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const context = await browser.newContext({ javaScriptEnabled: js, viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.on("pageerror", (e) => {
    state.pageErrors = (state.pageErrors || []).concat(String(e));
  });
});

after(async () => {
  await browser?.close();
});

/// With JavaScript on, waits until the bundle has hydrated the page.
async function ready() {
  if (js) {
    await page.waitForSelector("body[data-hydrated=true]", { timeout: 20000 });
  }
}

async function signIn(user, password) {
  await page.goto(`${base}/ui/keys`);
  assert.match(page.url(), /\/ui\/login\?next=/, "a page without a session sends to the sign-in page");
  await page.fill("#user", user);
  await page.fill("#password", password);
  await Promise.all([page.waitForURL(/\/ui\/keys$/), page.click("button[type=submit]")]);
  await ready();
}

async function chat(key, content, requestId, model = "chat") {
  const headers = { authorization: `Bearer ${key}`, "content-type": "application/json" };
  if (requestId) headers["x-request-id"] = requestId;
  const r = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers,
    body: JSON.stringify({ model, max_tokens: 50, messages: [{ role: "user", content }] }),
  });
  const text = await r.text();
  if (r.status !== 200 && r.status !== 401) console.log(`chat ${model}: ${r.status} ${text}`);
  return r.status;
}

test("a wrong password is refused next to the form", async () => {
  await page.goto(`${base}/ui/login`);
  await page.screenshot({ path: `${shots}/login.png` });
  await page.fill("#password", "not the master key");
  await Promise.all([page.waitForURL(/error=/), page.click("button[type=submit]")]);
  assert.match(await page.textContent("#login-error"), /Wrong user or password/);
});

test("sign in with the master key", async () => {
  await signIn("", master);
  assert.equal(await page.textContent("h1"), "Keys");
  assert.match(await page.textContent("header.top"), /master key · admin/);
});

test("create a key with a budget and see its secret once", async () => {
  await page.click("details summary");
  await page.fill("#new-name", "browser-key");
  await page.fill("#new-budget", "5.00");
  await page.selectOption("#new-period", "monthly");
  const before = page.url();
  await page.click("form button:has-text('Create key')");
  await page.waitForSelector("#new-secret", { timeout: 15000 });
  const secret = await page.inputValue("#new-secret");
  assert.match(secret, /^sk-sy-[A-Za-z0-9]{20,}$/);
  state.secret = secret;
  if (js) {
    assert.equal(page.url(), before, "with JavaScript the form is sent without leaving the page");
    await page.click("button:has-text('Copy')").catch(() => {});
  }
  const row = page.locator("tr", { hasText: "browser-key" });
  await row.waitFor({ timeout: 15000 });
  assert.match(await row.textContent(), /of \$5\.00 monthly/);
  await page.screenshot({ path: `${shots}/keys-created.png`, fullPage: true });
  await page.goto(`${base}/ui/keys`);
  await ready();
  assert.equal(await page.locator("#new-secret").count(), 0, "the secret is not shown again");
});

test("traffic with the key shows up as spend on the overview", async () => {
  for (let i = 0; i < 3; i++) {
    assert.equal(await chat(state.secret, `hello ${i}`, `browser-${js ? "js" : "nojs"}-${i}`), 200);
  }
  let requests = 0;
  for (let tries = 0; tries < 40 && requests < 3; tries++) {
    await page.goto(`${base}/ui?period=24h`);
    requests = Number(await page.textContent("#stat-requests"));
    if (requests < 3) await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(requests, 3);
  await ready();
  assert.notEqual(await page.textContent("#stat-spend"), "$0.00");
  assert.ok((await page.locator("svg.chart rect").count()) >= 1, "a bar for the spend");
  assert.match(await page.textContent("section.card:has(h2:text('Top keys'))"), /browser-key/);
  // Latency percentiles of the three answers, the cache's rate, and the upstream's reported cost.
  assert.match(await page.textContent("#stat-latency"), /^\d+ ms \/ \d+ ms$/);
  assert.match(await page.textContent("#stat-cache"), /^\d+\.\d %$/);
  assert.equal(await page.textContent("#cost-tracked"), await page.textContent("#stat-spend"));
  assert.equal(await page.textContent("#cost-estimated"), "$0.00");
  assert.match(await page.textContent("#errors"), /No errors/);
  await page.screenshot({ path: `${shots}/overview.png`, fullPage: true });
});

test("change the key's budget on its page", async () => {
  await page.goto(`${base}/ui/keys`);
  await ready();
  await Promise.all([page.waitForURL(/\/ui\/keys\/key_/), page.click("a:has-text('browser-key')")]);
  await ready();
  state.keyId = page.url().split("/ui/keys/")[1];
  await page.fill("#k-budget", "12.50");
  await page.selectOption("#k-period", "weekly");
  await page.click("#settings button[type=submit]");
  // With JavaScript the page updates in place; without, the form comes back after a redirect.
  await page.locator("#key-head", { hasText: "of $12.50 weekly" }).waitFor({ timeout: 15000 });
  const r = await fetch(`${base}/admin/v1/keys/${state.keyId}`, { headers: { authorization: `Bearer ${master}` } });
  const k = await r.json();
  assert.equal(k.limits.budget.limit_usd, "12.500000000");
  assert.equal(k.limits.budget.period, "weekly");
  assert.match(await page.textContent("#key-requests"), /^3$/);
  await page.screenshot({ path: `${shots}/key.png`, fullPage: true });
});

test("a team's invalid limit is shown next to its field, in its own row", async () => {
  const admin = { authorization: `Bearer ${master}`, "content-type": "application/json" };
  const made = [];
  for (const name of [`research-${js ? "js" : "nojs"}`, `support-${js ? "js" : "nojs"}`]) {
    const r = await fetch(`${base}/admin/v1/teams`, { method: "POST", headers: admin, body: JSON.stringify({ name }) });
    assert.equal(r.status, 201);
    made.push(await r.json());
  }
  await page.goto(`${base}/ui/teams`);
  await ready();
  const row = page.locator(`tr[data-team=${made[0].id}]`);
  await row.locator("summary").click();
  await page.fill(`#rpm-${made[0].id}`, "zero");
  await row.locator("button[type=submit]").click();
  const error = page.locator(`tr[data-team=${made[0].id}] .field-error`);
  await error.waitFor({ timeout: 15000 });
  assert.match(await error.textContent(), /whole number/);
  // Next to the field it is about, in the row that was sent, and in no other.
  const next = await page.evaluate((id) => document.querySelector(`#rpm-${id}`).nextElementSibling?.className, made[0].id);
  assert.equal(next, "field-error");
  assert.equal(await page.locator(`tr[data-team=${made[1].id}] .field-error`).count(), 0);
  assert.equal(await page.locator(`tr[data-team=${made[0].id}] details[open]`).count(), 1, "the form stays open");
  await page.screenshot({ path: `${shots}/teams-error.png`, fullPage: true });
});

test("usage by key, and its CSV export's totals equal the admin API's", async () => {
  await page.goto(`${base}/ui/usage?group_by=key`);
  await ready();
  assert.match(await page.textContent("#usage-table"), new RegExp(state.keyId));
  assert.equal(await page.textContent("#usage-requests"), "3");
  const href = await page.getAttribute("#export-csv", "href");
  const csv = await (await page.request.get(`${base}${href}`)).text();
  const [header, ...rows] = csv.trim().split("\n");
  const cols = header.split(",");
  const at = (name) => cols.indexOf(name);
  assert.ok(at("cost_nanos") >= 0 && at("key_id") >= 0, header);
  // The request ids and prompts of this test hold no commas or quotes, so a split is exact here.
  const cells = rows.map((r) => r.split(","));
  const sum = cells.reduce((a, c) => a + BigInt(c[at("cost_nanos")]), 0n);
  const api = await (await fetch(`${base}/admin/v1/usage`, { headers: { authorization: `Bearer ${master}` } })).json();
  assert.equal(rows.length, api.totals.requests);
  assert.equal(sum, BigInt(api.totals.cost_nanos));
  assert.ok(cells.every((c) => c[at("key_id")] === state.keyId));
  // The JSON export of the same filter ends with the same totals.
  const json = await (await page.request.get(`${base}${await page.getAttribute("#export-json", "href")}`)).json();
  assert.equal(json.totals.cost_nanos, api.totals.cost_nanos);
  assert.equal(json.data.length, 3);
  await page.screenshot({ path: `${shots}/usage.png`, fullPage: true });
});

test("the request log lists the key's requests and finds one by its id", async () => {
  await page.goto(`${base}/ui/requests?key_id=${state.keyId}`);
  await ready();
  assert.equal(await page.locator("#request-log tbody tr").count(), 3);
  const wanted = `browser-${js ? "js" : "nojs"}-1`;
  await page.fill("#r-id", wanted);
  await page.fill("#r-key", "");
  await Promise.all([page.waitForURL(/request_id=/), page.click("form[role=search] button[type=submit]")]);
  await ready();
  const rows = page.locator("#request-log tbody tr");
  assert.equal(await rows.count(), 1);
  assert.equal(await rows.first().getAttribute("data-request"), wanted);
  await page.screenshot({ path: `${shots}/requests.png`, fullPage: true });
  await Promise.all([page.waitForURL(/\/ui\/requests\/evt_/), rows.first().locator("a").click()]);
  await ready();
  const detail = await page.textContent("#request-detail");
  assert.match(detail, new RegExp(wanted));
  assert.match(detail, new RegExp(state.keyId));
  assert.match(detail, /success/);
});

test("routed traffic shows in the routing mix and the decision log; the playground explains", async () => {
  for (let i = 0; i < 2; i++) {
    assert.equal(await chat(state.secret, `hi there ${i}`, undefined, "auto"), 200);
  }
  let rows = 0;
  for (let tries = 0; tries < 40 && rows < 2; tries++) {
    await page.goto(`${base}/ui/routing?period=24h`);
    rows = await page.locator("#decisions tbody tr").count();
    if (rows < 2) await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(rows, 2);
  await ready();
  assert.ok((await page.locator("#tier-mix svg rect").count()) >= 1, "a bar of the tier mix");
  assert.match(await page.textContent("#tier-mix .legend"), /cheap 2/);
  assert.match(await page.textContent("#route-table"), /auto/);
  assert.match(await page.textContent("#decisions"), /auto → cheap/);
  await page.selectOption("#pg-route", "auto");
  await page.fill("#pg-prompt", "hello, how are you?");
  await Promise.all([page.waitForURL(/prompt=/), page.click("#pg-submit")]);
  await ready();
  await page.locator("#decision-tier").waitFor({ timeout: 15000 });
  assert.equal(await page.textContent("#decision-tier"), "cheap");
  assert.match(await page.textContent("#decision-reason"), /threshold/);
  await page.screenshot({ path: `${shots}/routing.png`, fullPage: true });
});

test("revoke the key and see its requests refused", async () => {
  await page.goto(`${base}/ui/keys`);
  await ready();
  const row = page.locator("tr", { hasText: "browser-key" });
  // Revoking asks once more.
  await row.locator("summary:has-text('Revoke…')").click();
  await row.locator("button:has-text('Revoke now')").click();
  await page.locator("tr", { hasText: "browser-key" }).locator(".badge.revoked").waitFor({ timeout: 15000 });
  let status = 200;
  for (let tries = 0; tries < 40 && status !== 401; tries++) {
    status = await chat(state.secret, "still there?");
    if (status !== 401) await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(status, 401);
  await page.screenshot({ path: `${shots}/keys-revoked.png`, fullPage: true });
});

test("a viewer can look but not edit", async () => {
  await page.click("button:has-text('Sign out')");
  await page.waitForURL(/\/ui\/login/);
  await signIn(viewerName, viewerPassword);
  assert.match(await page.textContent("header.top"), new RegExp(`${viewerName} · viewer`));
  assert.equal(await page.locator("text=Create a key").count(), 0);
  assert.equal(await page.locator("summary:has-text('Revoke…'), button:has-text('Revoke now')").count(), 0);
  // Sent by hand, an edit is refused too.
  const csrf = await page.getAttribute("form.who input[name=csrf]", "value");
  const r = await page.request.post(`${base}/ui/api/create_key`, {
    form: { csrf, name: "sneaky", team_id: "", tags: "", budget_usd: "", period: "monthly", rpm: "" },
    headers: { accept: "application/json", origin: base },
  });
  assert.equal(r.status(), 403);
  assert.match((await r.json()).message, /viewer/);
});

test("readable at phone width, and a form used by keyboard alone", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  for (const path of ["/ui", "/ui/keys", "/ui/teams", "/ui/usage?group_by=key", "/ui/requests", "/ui/routing", "/ui/providers", "/ui/audit"]) {
    await page.goto(`${base}${path}`);
    await ready();
    const [scroll, width] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(scroll <= width, `${path}: the page is ${scroll}px wide in a ${width}px window`);
  }
  await page.goto(`${base}/ui`);
  await ready();
  await page.screenshot({ path: `${shots}/overview-phone.png`, fullPage: true });
  // Tab to the search field of the keys page, type, press Enter: the filter applies.
  await page.goto(`${base}/ui/keys`);
  await ready();
  let focused = "";
  for (let i = 0; i < 40 && focused !== "q"; i++) {
    await page.keyboard.press("Tab");
    focused = await page.evaluate(() => document.activeElement?.id || "");
  }
  assert.equal(focused, "q", "the search field is reachable with Tab");
  await page.keyboard.type("browser");
  await Promise.all([page.waitForURL(/q=browser/), page.keyboard.press("Enter")]);
  await ready();
  assert.match(await page.textContent("table.keys"), /browser-key/);
  await page.setViewportSize({ width: 1280, height: 900 });
});

test("no errors in the page", () => {
  assert.deepEqual(state.pageErrors || [], []);
});
