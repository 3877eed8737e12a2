/**
 * The dashboard in a real browser: Debian's chromium driven by playwright-core, loopback only.
 * `tsmicro web` and services run as child processes on the default mdns registry and http broker.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { it, type TestContext } from "node:test";
import { chromium, type Page } from "playwright-core";
import { cleanEnv, startGreeter, tsmicroProcess } from "../helpers/cli.ts";
import { freePort, skipOrFail, startTs, type Proc } from "../helpers/net.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = fileURLToPath(new URL("../../test-artifacts/", import.meta.url));
/**
 * The screenshot docs/cli.md shows. The fleet test always saves it in test-artifacts/, and over the
 * committed one only with TSMICRO_UPDATE_DOCS=1, so a test run leaves the clone unchanged.
 */
const DOCS_SCREENSHOT = process.env.TSMICRO_UPDATE_DOCS === "1" ? fileURLToPath(new URL("../../docs/img/dashboard.png", import.meta.url)) : path.join(ARTIFACTS, "dashboard-fleet.png");
const FLEET = fileURLToPath(new URL("./fixtures/fleet.ts", import.meta.url));
const WAIT_MS = 15_000;
/** Rates need two scrapes (2 s apart) after the traffic started, on a busy machine. */
const METRICS_WAIT_MS = 40_000;

/** `tsmicro web` on a free port, and chromium with the page open and live; both end with the test. */
async function openDashboard(t: TestContext): Promise<{ web: Proc; page: Page; pageErrors: string[] } | undefined> {
  if (!existsSync(CHROMIUM)) {
    skipOrFail(t, `no chromium at ${CHROMIUM} (apt-get install chromium; .ci/setup/chromium.sh does it in CI)`, true);
    return undefined;
  }
  const port = await freePort();
  const web = tsmicroProcess(["web", "--address", `127.0.0.1:${port}`]);
  t.after(() => web.signal("SIGKILL"));
  assert.match(await web.waitForLine(/^dashboard on /), new RegExp(`http://127\\.0\\.0\\.1:${port}/`));

  const profile = mkdtempSync(path.join(os.tmpdir(), "tsmicro-chromium-"));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1366, height: 768 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  // The profile goes once the browser has closed: chromium writes into it until then.
  t.after(async () => {
    await browser.close();
    rmSync(profile, { recursive: true, force: true, maxRetries: 3 });
  });
  const page = browser.pages()[0] ?? (await browser.newPage());
  page.setDefaultTimeout(WAIT_MS);
  const pageErrors: string[] = [];
  page.on("pageerror", (err) => pageErrors.push(err.message));
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.locator('#connection[data-state="live"]').waitFor();
  return { web, page, pageErrors };
}

/** Saves the page as it failed and names it in the error. */
async function failed(page: Page, web: Proc, pageErrors: string[], err: unknown, name: string): Promise<never> {
  await page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true });
  throw new Error(`${(err as Error).message}\n(page at failure: test-artifacts/${name}; page errors: ${pageErrors.join("; ") || "none"}; tsmicro web stderr: ${web.stderr().slice(-2000) || "none"})`, { cause: err });
}

/**
 * Waits until the number a cell holds in data-value is within [min, max] (the first windows after
 * traffic starts can hold a partial count), and returns it; a timeout names the last value seen.
 */
async function statValue(page: Page, selector: string, min: number, max = Infinity): Promise<number> {
  try {
    const handle = await page.waitForFunction(
      ([sel, lo, hi]) => {
        const raw = document.querySelector(sel)?.getAttribute("data-value");
        const value = raw ? Number(raw) : NaN;
        return value >= lo && value <= hi ? value : undefined;
      },
      [selector, min, max] as const,
      { timeout: METRICS_WAIT_MS },
    );
    return (await handle.jsonValue()) as number;
  } catch (err) {
    const last = await page.locator(selector).getAttribute("data-value", { timeout: 1000 }).catch(() => "(no cell)");
    throw new Error(`${selector}: no value in [${min}, ${max}] within ${METRICS_WAIT_MS} ms; last ${last}`, { cause: err });
  }
}

it("dashboard: services appear and disappear live, an endpoint is called from its form, a topic is tailed", async (t) => {
  const opened = await openDashboard(t);
  if (!opened) return;
  const { web, page, pageErrors } = opened;
  try {
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
    await failed(page, web, pageErrors, err, "dashboard-failure.png");
  }
  assert.deepEqual(pageErrors, []);
  web.signal("SIGTERM");
  assert.equal(await web.exited(), 0, `tsmicro web exit; stderr: ${web.stderr()}`);
});

it("dashboard: the fleet live — endpoint rates, errors and latency from the nodes' metrics, a discovered topic, protobuf fields by name, internal services hidden", async (t) => {
  const opened = await openDashboard(t);
  if (!opened) return;
  const { web, page, pageErrors } = opened;
  const id = randomUUID().slice(0, 8);
  const topic = `dashboard.fleet.${id}`;
  const greeter = await startGreeter(`fleet_greeter_${id}`);
  t.after(() => greeter.proc.signal("SIGKILL"));
  const start = async (name: string, role: string[]) => {
    const proc = startTs(FLEET, [`--server_name=${name}`, ...role], { env: cleanEnv() });
    t.after(() => proc.signal("SIGKILL"));
    await proc.waitForLine(/^ready /);
    return name;
  };
  // The subscriber first, so the caller's first events already have a receiver.
  const subscriber = await start(`fleet_subscriber_${id}`, ["subscriber", topic]);
  const caller = await start(`fleet_caller_${id}`, ["caller", `fleet_greeter_${id}`, topic]);
  const hello = `tr[data-endpoint-stats="fleet_greeter_${id} Greeter.Hello"]`;
  const topicRow = `#topic-stats tr[data-topic="${topic}"]`;
  try {
    // Internal services: the http broker's subscriptions register as micro.http.broker; hidden until asked for.
    const brokerLink = page.locator('#service-list [data-service="micro.http.broker"]');
    await page.locator("#internal-count", { hasText: "hidden" }).waitFor();
    assert.equal(await brokerLink.count(), 0);
    await page.locator(`#service-list [data-service="${subscriber}"]`).waitFor();
    await page.locator("#show-internal").check();
    await brokerLink.waitFor();
    await page.locator("#show-internal").uncheck();
    await brokerLink.waitFor({ state: "detached" });

    // The topic is discovered (nobody typed it): listed, with its subscriber from the registry.
    await page.locator(`#topic-list [data-topic-link="${topic}"]`).waitFor();
    await page.locator(`${topicRow} td[data-stat="subscribers"]`, { hasText: subscriber }).waitFor();
    assert.match((await page.locator(topicRow).textContent()) ?? "", /student\.Student/);

    // Numbers from the nodes' /metrics: the endpoint under load has a rate, the failing calls an error share, latencies.
    // The caller makes up to 20 calls/s, every third failing.
    await statValue(page, `${hello} td[data-stat="rate"]`, 1, 100);
    await statValue(page, `${hello} td[data-stat="error-ratio"]`, 0.1, 0.6);
    const p50 = await statValue(page, `${hello} td[data-stat="p50"]`, Number.MIN_VALUE, 5);
    const p99 = await statValue(page, `${hello} td[data-stat="p99"]`, p50, 5);
    assert.ok(p50 <= p99, `p50 ${p50} s, p99 ${p99} s`);
    assert.match((await page.locator(`${hello} svg.sparkline`).getAttribute("aria-label")) ?? "", /requests per second/);
    // The topic's event rate, and its publisher, known from the caller's metrics.
    await statValue(page, `${topicRow} td[data-stat="published"]`, Number.MIN_VALUE);
    await page.locator(`${topicRow} td[data-stat="publishers"]`, { hasText: caller }).waitFor({ timeout: METRICS_WAIT_MS });
    // For the docs' screenshot, a few points of sparkline.
    await page.waitForFunction((sel) => (document.querySelector(sel)?.getAttribute("points") ?? "").split(" ").length >= 5, `${hello} svg.sparkline polyline`, {
      timeout: METRICS_WAIT_MS,
    });
    await page.evaluate(() => window.scrollTo(0, 0));
    mkdirSync(path.dirname(DOCS_SCREENSHOT), { recursive: true });
    await page.screenshot({ path: DOCS_SCREENSHOT, fullPage: true });

    // A node's health history: one square per scrape.
    await page.locator(`#service-list [data-service="fleet_greeter_${id}"]`).click();
    await page.waitForFunction((sel) => document.querySelectorAll(sel).length >= 2, `[data-health-history="${greeter.nodeId}"] i[data-status="ok"]`, { timeout: METRICS_WAIT_MS });
    assert.ok(Number(await page.locator('[data-endpoint="Greeter.Hello"] .endpoint-stats').getAttribute("data-rate")) > 0);
    await page.screenshot({ path: path.join(ARTIFACTS, "dashboard-service.png"), fullPage: true });

    // The topic's protobuf events, decoded with the field names of the shape the subscriber advertises.
    await page.locator(`#topic-list [data-topic-link="${topic}"]`).click();
    const event = page.locator('.events .event[data-encoding="protobuf"]').first();
    await event.waitFor();
    assert.deepEqual(JSON.parse((await event.locator("pre").textContent()) ?? ""), { name: "davie", classes: "软件工程专业", grade: 80, phone: "12345678901" });
    assert.match((await event.textContent()) ?? "", /protobuf student\.Student/);
    await page.screenshot({ path: path.join(ARTIFACTS, "dashboard-topic.png"), fullPage: true });
  } catch (err) {
    await failed(page, web, pageErrors, err, "dashboard-fleet-failure.png");
  }
  assert.deepEqual(pageErrors, []);
});
