// Drives the Shoal dashboard in a real browser (Debian's chromium through
// playwright-core): log in, see the instances, kill one and watch it be
// replaced, run a deploy and watch its progress, roll back with
// confirmation, look at every view, log out.
//
//   node e2e/browser/run.mjs http://127.0.0.1:8089
//
// Environment:
//   SHOAL_TOKEN        admin token (default "dev")
//   SHOAL_APP          the app to act on (default: the first group shown)
//   KILL_URL / KILL_CMD     how to kill an instance: POST KILL_URL?id=<id>,
//                           or run KILL_CMD in a shell with INSTANCE=<id>
//   DEPLOY_URL / DEPLOY_CMD how to start a deploy: POST DEPLOY_URL?app=<app>,
//                           or run DEPLOY_CMD in a shell with APP=<app>
//   LOG_MIN_LINES      lines the log tail must show (default 3)
//   SKIP_DEPLOY=1      skip the deploy and the rollback (a source without deploys)
//   SHOAL_SCREENSHOTS=1 save screenshots to SCREENSHOT_DIR (default
//                       docs/screenshots in this repository)
//   CHROMIUM            browser binary (default /usr/bin/chromium)
//   STEP_TIMEOUT_MS     how long each wait may take (default 60000)
//
// Every wait is on a selector or a condition in the page, never a sleep.
import { chromium } from "playwright-core";
import { execSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const base = (process.argv[2] || process.env.SHOAL_URL || "").replace(/\/+$/, "");
if (!base) {
  console.error("usage: node run.mjs <base url>");
  process.exit(2);
}
const token = process.env.SHOAL_TOKEN || "dev";
const timeout = parseInt(process.env.STEP_TIMEOUT_MS || "60000", 10);
const shots = process.env.SHOAL_SCREENSHOTS === "1";
const logMinLines = parseInt(process.env.LOG_MIN_LINES || "3", 10);
const here = dirname(fileURLToPath(import.meta.url));
const shotDir = process.env.SCREENSHOT_DIR || resolve(here, "../../docs/screenshots");

function step(msg) { console.log("ok: " + msg); }

async function trigger(kind, urlVar, cmdVar, param, value) {
  const url = process.env[urlVar], cmd = process.env[cmdVar];
  if (url) {
    const res = await fetch(url + "?" + new URLSearchParams({ [param]: value }), { method: "POST" });
    const text = await res.text();
    if (!res.ok) throw new Error(`${kind}: ${res.status} ${text}`);
    return text.trim();
  }
  if (cmd) {
    return execSync(cmd, { env: { ...process.env, [param === "id" ? "INSTANCE" : "APP"]: value }, encoding: "utf8", timeout }).trim();
  }
  throw new Error(`set ${urlVar} or ${cmdVar} to ${kind}`);
}

async function shot(page, name, fullPage = true) {
  if (!shots) return;
  mkdirSync(shotDir, { recursive: true });
  await page.screenshot({ path: resolve(shotDir, name + ".png"), fullPage });
  step("screenshot " + name);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic"],
});
let page;
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  ctx.setDefaultTimeout(timeout);
  page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));

  // 1. Log in. A wrong token is refused first.
  await page.goto(base + "/ui/");
  await page.waitForSelector("#token");
  await page.fill("#token", "not-the-token");
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  await page.waitForSelector(".error[role=alert]");
  step("a wrong token is refused");
  await shot(page, "login", false);
  await page.fill("#token", token);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);

  // 2. The instances.
  await page.waitForSelector("table.instances tr[data-instance]");
  await page.waitForSelector("#live-status[data-status=live]");
  const app = process.env.SHOAL_APP || (await page.$eval("[id^=group-]", (el) => el.id.slice("group-".length)));
  const group = `[id="group-${app}"]`;
  const desired = parseInt(await page.$eval(`${group} [data-desired]`, (el) => el.dataset.desired), 10);
  await page.waitForFunction(([g, n]) =>
    document.querySelectorAll(`${g} tr[data-instance][data-state=in_service]`).length >= n, [group, desired]);
  const before = await page.$$eval(`${group} tr[data-instance]`, (rows) => rows.map((r) => r.dataset.instance));
  step(`app ${app}: ${before.length} instances (${desired} desired): ${before.join(", ")}`);
  await shot(page, "overview");

  // 3. Kill one and watch it be replaced, live.
  const victim = await page.$eval(`${group} tr[data-instance][data-state=in_service]`, (r) => r.dataset.instance);
  await trigger("kill an instance", "KILL_URL", "KILL_CMD", "id", victim);
  await page.waitForFunction(([g, id]) => {
    const row = document.querySelector(`${g} tr[data-instance="${id}"]`);
    return !row || row.dataset.state !== "in_service";
  }, [group, victim]);
  step(`${victim} left service`);
  await page.waitForFunction(([g, id, old, n]) => {
    const up = [...document.querySelectorAll(`${g} tr[data-instance][data-state=in_service]`)].map((r) => r.dataset.instance);
    return !up.includes(id) && up.length >= n && up.some((x) => !old.includes(x));
  }, [group, victim, before, desired]);
  const after = await page.$$eval(`${group} tr[data-instance][data-state=in_service]`, (rows) => rows.map((r) => r.dataset.instance));
  step(`${victim} replaced: in service now ${after.join(", ")}`);
  await page.waitForSelector(`[data-events] li[data-kind=replace]`);
  step("the replacement is on the events list");

  // 4. A deploy, watched on the releases page (SKIP_DEPLOY=1 skips 4 and 5).
  await page.goto(base + "/ui/releases");
  await page.waitForSelector(`[id="releases-${app}"] tr[data-status=current]`);
  if (process.env.SKIP_DEPLOY === "1") {
    step("deploy and rollback skipped (SKIP_DEPLOY=1)");
    await shot(page, "releases");
  } else {
    const from = parseInt(await page.$eval(`[id="releases-${app}"] tr[data-status=current]`, (r) => r.dataset.version), 10);
    await trigger("start a deploy", "DEPLOY_URL", "DEPLOY_CMD", "app", app);
    const deploy = `[id="releases-${app}"] [data-deploy][data-active=true]`;
    await page.waitForSelector(deploy);
    const to = parseInt(await page.$eval(deploy, (el) => el.dataset.to), 10);
    step(`deploy v${from} -> v${to} shown`);
    await page.waitForFunction((sel) => {
      const el = document.querySelector(sel);
      return el && parseInt(el.dataset.done, 10) >= 1;
    }, deploy);
    const progress = await page.$eval(`${deploy} progress`, (p) => `${p.value}/${p.max}`);
    step(`deploy progress advanced: ${progress}`);
    await shot(page, "releases-deploying");
    await page.waitForSelector(`[id="releases-${app}"] tr[data-version="${to}"][data-status=current]`);
    await page.waitForSelector(`[id="releases-${app}"] [data-last-deploy="${to}"]`);
    step(`deploy v${to} done`);

    // 5. Roll back to the release before, confirming first.
    await page.click(`[id="releases-${app}"] a[data-rollback="${from}"]`);
    await page.waitForSelector("[data-confirm-rollback]");
    step("rollback asks for confirmation");
    await shot(page, "rollback-confirm", false);
    await Promise.all([page.waitForNavigation(), page.click("[data-confirm-rollback]")]);
    await page.waitForSelector(".flash");
    await page.waitForSelector(`[id="releases-${app}"] tr[data-version="${from}"][data-status=current]`);
    await page.waitForSelector(`[id="releases-${app}"] [data-last-deploy="${from}"]`);
    step(`rolled back to v${from}`);
    await shot(page, "releases");
  }

  // 6. The other views.
  await page.goto(base + "/ui/timeline?kind=deploy");
  await page.waitForSelector("[data-events] li[data-kind=deploy]");
  const others = await page.$$eval("[data-events] li", (rows) => rows.filter((r) => r.dataset.kind !== "deploy").length);
  if (others > 0) throw new Error("the deploy filter shows other kinds");
  step("events filtered by kind");
  await page.goto(base + "/ui/timeline");
  await page.waitForSelector("[data-events] li[data-kind]");
  await shot(page, "events");

  await page.goto(base + "/ui/");
  const row = `${group} tr[data-instance][data-state=in_service]`;
  await page.waitForSelector(row);
  const inst = await page.$eval(row, (r) => r.dataset.instance);
  await Promise.all([page.waitForNavigation(), page.click(`${row} a`)]);
  await page.waitForSelector("pre.log");
  await page.waitForFunction((n) =>
    (document.querySelector("pre.log")?.textContent || "").split("\n").filter(Boolean).length >= n, logMinLines);
  step(`log tail of ${inst} is live`);
  await page.waitForFunction(() => [...document.querySelectorAll("img[data-chart]")].every((i) => i.complete && i.naturalWidth > 0));
  await shot(page, "instance");

  await page.goto(base + "/ui/slow");
  await page.waitForSelector("#slow-body table.routes");
  await shot(page, "slow-requests");

  // 7. A phone-sized screen.
  const phone = await browser.newContext({ viewport: { width: 375, height: 812 }, storageState: await ctx.storageState() });
  phone.setDefaultTimeout(timeout);
  const mp = await phone.newPage();
  for (const [path, sel, name] of [["/ui/", "table.instances tr[data-instance]", "overview-phone"],
    ["/ui/releases", "table.releases tr[data-version]", "releases-phone"],
    ["/ui/slow", "#slow-body", "slow-requests-phone"]]) {
    await mp.goto(base + path);
    await mp.waitForSelector(sel);
    const overflow = await mp.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 1) throw new Error(`${path} is ${overflow}px wider than a 375px screen`);
    await shot(mp, name, false);
  }
  step("every view fits a 375px screen");
  await phone.close();

  // 8. Log out.
  await Promise.all([page.waitForNavigation(), page.click("button.link")]);
  await page.waitForSelector("#token");
  await page.goto(base + "/ui/releases");
  await page.waitForSelector("#token");
  step("logged out; pages need a login again");
  if (errors.length) throw new Error("errors in the page: " + errors.join("; "));
  console.log("browser test passed");
} catch (err) {
  console.error("FAILED: " + (err && err.stack || err));
  if (page) console.error("at " + page.url());
  await browser.close();
  process.exit(1);
}
await browser.close();
