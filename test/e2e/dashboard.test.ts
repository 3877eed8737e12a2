/**
 * The dashboard in a real browser: Debian's chromium driven by playwright-core, loopback only.
 * `tsmicro web` and a service run as child processes on the default mdns registry and http broker.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { it } from "node:test";
import { chromium } from "playwright-core";
import { startGreeter, tsmicroProcess } from "../helpers/cli.ts";
import { freePort, skipOrFail } from "../helpers/net.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = fileURLToPath(new URL("../../test-artifacts/", import.meta.url));
const WAIT_MS = 15_000;

it("dashboard: services appear and disappear live, an endpoint is called from its form, a topic is tailed", async (t) => {
  if (!existsSync(CHROMIUM)) return skipOrFail(t, `no chromium at ${CHROMIUM} (apt-get install chromium; .ci/setup/chromium.sh does it in CI)`, true);

  const port = await freePort();
  const web = tsmicroProcess(["web", "--address", `127.0.0.1:${port}`]);
  t.after(() => web.signal("SIGKILL"));
  assert.match(await web.waitForLine(/^dashboard on /), new RegExp(`http://127\\.0\\.0\\.1:${port}/`));

  const profile = mkdtempSync(path.join(os.tmpdir(), "tsmicro-chromium-"));
  t.after(() => rmSync(profile, { recursive: true, force: true }));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1366, height: 768 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  t.after(() => browser.close());
  const page = browser.pages()[0] ?? (await browser.newPage());
  page.setDefaultTimeout(WAIT_MS);
  const pageErrors: string[] = [];
  page.on("pageerror", (err) => pageErrors.push(err.message));

  mkdirSync(ARTIFACTS, { recursive: true });
  try {
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.locator('#connection[data-state="live"]').waitFor();

    // A service started after the page loaded shows up without a reload.
    const name = `dashboard_greeter_${randomUUID().slice(0, 8)}`;
    const serviceLink = page.locator(`#service-list [data-service="${name}"]`);
    assert.equal(await serviceLink.count(), 0);
    // A short TTL bounds the wait below even if the goodbye datagram of its deregistration were lost.
    const greeter = await startGreeter(name, ["--register_ttl=10", "--register_interval=3"]);
    t.after(() => greeter.proc.signal("SIGKILL"));
    await serviceLink.waitFor();
    assert.match((await serviceLink.textContent()) ?? "", /v1\.2\.3 · 1 node/);

    await serviceLink.click();
    await page.locator(`td[data-health="${greeter.nodeId}"][data-status="ok"]`).waitFor();
    assert.equal(await page.locator(`tr[data-node="${greeter.nodeId}"] td`).nth(1).textContent(), greeter.address);

    // The form is built from the advertised request shape and writes the request JSON.
    const hello = page.locator('[data-endpoint="Greeter.Hello"]');
    await hello.locator('[data-field="name"]').fill("Ada");
    await hello.locator('[data-field="times"]').fill("2");
    await hello.locator('[data-field="excited"]').selectOption("true");
    assert.deepEqual(JSON.parse(await hello.locator("textarea.request-json").inputValue()), { name: "Ada", times: 2, excited: true });
    await hello.locator('button[type="submit"]').click();
    await hello.locator(".result-title.ok").waitFor();
    assert.deepEqual(JSON.parse((await hello.locator(".result-body").textContent()) ?? ""), { greeting: "Hello Ada! Hello Ada!" });

    // An endpoint without a shape takes raw JSON.
    const echo = page.locator('[data-endpoint="Greeter.Echo"]');
    assert.equal(await echo.locator("[data-field]").count(), 0);
    await echo.locator("textarea.request-json").fill('{"answer":42}');
    await echo.locator('button[type="submit"]').click();
    await echo.locator(".result-title.ok").waitFor();
    assert.deepEqual(JSON.parse((await echo.locator(".result-body").textContent()) ?? ""), { answer: 42 });

    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: path.join(ARTIFACTS, "dashboard.png"), fullPage: true });

    // A handler error shows as the go-micro error.
    await hello.locator('[data-field="name"]').fill("");
    await hello.locator('button[type="submit"]').click();
    await hello.locator(".result-title.error").waitFor();
    assert.equal((JSON.parse((await hello.locator(".result-body").textContent()) ?? "") as { code: number }).code, 400);

    // The service stops: it leaves the list, and its view says so.
    greeter.proc.signal("SIGTERM");
    assert.equal(await greeter.proc.exited(), 0);
    await serviceLink.waitFor({ state: "detached" });
    await page.locator(".notice", { hasText: `${name} has no node` }).waitFor();

    // The topic view tails a topic; a message published from the page arrives in it.
    const topic = `dashboard.events.${randomUUID().slice(0, 8)}`;
    await page.locator("#topic-form input").fill(topic);
    await page.locator("#topic-form button").click();
    await page.locator('.tail-status[data-state="live"]').waitFor();
    await page.locator('textarea[name="message"]').fill('{"name":"davie","grade":80}');
    await page.locator('input[name="header"]').fill("name=davie");
    await page.locator('.publish-form button[type="submit"]').click();
    const event = page.locator(".events .event").first();
    await event.waitFor();
    assert.deepEqual(JSON.parse((await event.locator("pre").textContent()) ?? ""), { name: "davie", grade: 80 });
    assert.match((await event.textContent()) ?? "", /name=davie/);

  } catch (err) {
    await page.screenshot({ path: path.join(ARTIFACTS, "dashboard-failure.png"), fullPage: true });
    throw new Error(`${(err as Error).message}\n(page at failure: test-artifacts/dashboard-failure.png; page errors: ${pageErrors.join("; ") || "none"}; tsmicro web stderr: ${web.stderr().slice(-2000) || "none"})`, { cause: err });
  }
  assert.deepEqual(pageErrors, []);
  web.signal("SIGTERM");
  assert.equal(await web.exited(), 0, `tsmicro web exit; stderr: ${web.stderr()}`);
});
