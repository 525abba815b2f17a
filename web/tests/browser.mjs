// Two people in two browser contexts use the reference client against a running stack:
// A posts with an image through the presigned path; B sees it arrive live with its thumbnail,
// likes it and comments; A sees both live; a refused post shows the API's message. Any console
// error, page error, failed request or unexpected 4xx/5xx fails the run.
//
// node browser.mjs <base URL> <image.png> <screenshot dir>
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const [base, imagePath, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
const problems = [];
const expectedRefusals = []; // [method, url fragment, status] the test causes on purpose
const suffix = Date.now().toString(36);
let step = 0;

async function shot(page, name) {
  await page.screenshot({ path: `${shots}/${String(++step).padStart(2, "0")}-${name}.png`, fullPage: true });
}

async function person(name) {
  const context = await browser.newContext({ viewport: { width: 900, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    // Chrome also logs the refusals the test causes on purpose: those are expected.
    const status = Number(/status of (\d+)/.exec(m.text())?.[1]);
    const expected = expectedRefusals.some(([, url, s]) => m.location().url.includes(url) && status === s);
    if (!expected) problems.push(`${name}: console error: ${m.text()} (${m.location().url})`);
  });
  page.on("pageerror", (e) => problems.push(`${name}: page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`${name}: request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  page.on("response", (r) => {
    const expected = expectedRefusals.some(([m, url, s]) => r.request().method() === m && r.url().includes(url) && r.status() === s);
    if (r.status() >= 400 && !expected) problems.push(`${name}: ${r.request().method()} ${r.url()} answered ${r.status()}`);
  });
  await page.goto(`${base}/`);
  await page.fill("input[name=username]", `${name}${suffix}`);
  await page.click("#mint");
  await page.locator("#live.online").waitFor();
  return page;
}

const check = (ok, what) => {
  if (!ok) throw new Error(what);
};

try {
  const a = await person("ann");
  const b = await person("ben");
  await shot(a, "ann-signed-in");

  // A posts with an image: presigned PUT straight to S3, then the post once it is ready.
  const text = `hello from a browser ${suffix}`;
  await a.fill("#new-post textarea", text);
  await a.setInputFiles("#new-post input[type=file]", imagePath);
  await a.click("#new-post button");
  const bensPost = b.locator(".post", { hasText: text });
  await bensPost.waitFor();
  // B got it live, without reloading, with the image loaded from its URL.
  await b.waitForFunction((t) => {
    const post = [...document.querySelectorAll(".post")].find((p) => p.textContent.includes(t));
    const img = post?.querySelector("img.media");
    return img && !img.hidden && img.complete && img.naturalWidth > 0;
  }, text);
  const srcset = await bensPost.locator("img.media").getAttribute("srcset");
  check(/320w/.test(srcset ?? "") && /1280w/.test(srcset ?? ""), `srcset lists the thumbnails: ${srcset}`);
  await shot(b, "ben-sees-the-post-live");

  // B likes and comments; A sees the count and the comment arrive.
  await bensPost.locator(".like").click();
  await bensPost.locator(".toggle-comments").click();
  await bensPost.locator(".new-comment input").fill("nice picture");
  await bensPost.locator(".new-comment button").click();
  const annsPost = a.locator(".post", { hasText: text });
  await annsPost.locator(".like-count", { hasText: "1" }).waitFor();
  await annsPost.locator(".comment-count", { hasText: "1" }).waitFor();
  await annsPost.locator(".toggle-comments").click();
  await annsPost.locator(".comment", { hasText: "nice picture" }).waitFor();
  await shot(a, "ann-sees-like-and-comment");

  // B edits and then deletes the comment (own comments only); A sees the count drop live.
  const bensComment = bensPost.locator(".comment", { hasText: "nice picture" });
  b.once("dialog", (dialog) => dialog.accept("a very nice picture"));
  await bensComment.locator(".edit-comment").click();
  await bensPost.locator(".comment-text", { hasText: "a very nice picture" }).waitFor();
  check((await annsPost.locator(".edit-comment").count()) === 0, "Ann gets no edit button on Ben's comment");
  b.once("dialog", (dialog) => dialog.accept());
  await bensPost.locator(".delete-comment").click();
  await annsPost.locator(".comment-count", { hasText: "0" }).waitFor();
  await annsPost.locator(".comment").waitFor({ state: "detached" });

  // A refused action shows the API's own message, and what matched.
  expectedRefusals.push(["POST", "/api/forum/posts/", 400]);
  await b.fill("#new-post textarea", "what the fuck is this");
  await b.click("#new-post button");
  const error = b.locator("#error");
  await error.waitFor({ state: "visible" });
  const message = await error.textContent();
  check(message.includes("not allowed") && message.includes("fuck"), `the refusal is explained: ${message}`);
  await shot(b, "ben-refused");
} catch (e) {
  problems.push(`step failed: ${e.message}`);
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(`browser: ${step} steps, screenshots in ${shots}`);
