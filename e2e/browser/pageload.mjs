// Loads a page with a large client bundle in a real browser (Debian's
// chromium through playwright-core) through each of several front ends, and
// prints one JSON line per load: the navigation timing, the bundle's
// transfer, what the front end said of it (X-Cache-Status,
// Content-Encoding) and whether the bytes the browser got are the bundle
// named by its content-hashed URL (sha1, as Meteor names its bundles).
//
//   node e2e/browser/pageload.mjs name=http://10.77.0.11:8080 nginx=http://10.77.0.11:8082
//
// Each front end gets VISITS (default 2) loads, each in a fresh browser
// context (an empty browser cache: a new visitor), so the second load of a
// caching front end is served from its cache, not from the browser's.
// Environment: CHROMIUM (default /usr/bin/chromium), STEP_TIMEOUT_MS
// (default 120000), VISITS. Exits non-zero when a page does not load, the
// bundle does not run, or its bytes do not match its name.
import { chromium } from "playwright-core";
import { createHash } from "node:crypto";

const timeout = parseInt(process.env.STEP_TIMEOUT_MS || "120000", 10);
const visits = parseInt(process.env.VISITS || "2", 10);
const targets = process.argv.slice(2).map((a) => {
  const i = a.indexOf("=");
  if (i <= 0) {
    console.error("usage: node pageload.mjs name=url ...");
    process.exit(2);
  }
  return { name: a.slice(0, i), url: a.slice(i + 1).replace(/\/+$/, "") + "/" };
});
if (targets.length === 0) {
  console.error("usage: node pageload.mjs name=url ...");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-dev-shm-usage"],
});
let failed = false;
try {
  for (const t of targets) {
    for (let visit = 1; visit <= visits; visit++) {
      const ctx = await browser.newContext();
      const page = await ctx.newPage();
      page.setDefaultTimeout(timeout);
      let bundle = null;
      page.on("response", (r) => {
        const m = new URL(r.url()).pathname.match(/^\/([0-9a-f]{40})\.js$/);
        if (m) bundle = { resp: r, hash: m[1] };
      });
      const nav = await page.goto(t.url, { waitUntil: "load", timeout });
      if (!nav || nav.status() !== 200) throw new Error(`${t.name}: page status ${nav && nav.status()}`);
      const ran = await page.waitForFunction(() => window.__bundle, null, { timeout });
      const modules = (await ran.jsonValue()).modules;
      if (!bundle) throw new Error(`${t.name}: no bundle response seen`);
      const body = await bundle.resp.body();
      const sha1 = createHash("sha1").update(body).digest("hex");
      const h = await bundle.resp.allHeaders();
      const timing = await page.evaluate(() => {
        const n = performance.getEntriesByType("navigation")[0];
        const b = performance.getEntriesByType("resource").find((e) => /\/[0-9a-f]{40}\.js/.test(e.name));
        return {
          load_ms: n.loadEventEnd, dom_ms: n.domContentLoadedEventEnd, ttfb_ms: n.responseStart,
          bundle_ms: b ? b.responseEnd - b.startTime : -1,
          bundle_transfer: b ? b.transferSize : -1, bundle_decoded: b ? b.decodedBodySize : -1,
        };
      });
      const line = {
        target: t.name, visit, status: bundle.resp.status(), modules,
        bundle_bytes: body.length, sha1_ok: sha1 === bundle.hash,
        cache: h["x-cache-status"] || "", encoding: h["content-encoding"] || "", ...timing,
      };
      console.log(JSON.stringify(line));
      if (!line.sha1_ok || line.status !== 200 || !(modules > 0)) failed = true;
      await ctx.close();
    }
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
