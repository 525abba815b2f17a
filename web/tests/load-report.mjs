// A forum-bench load report, opened in a real headless Chromium with the network cut: its
// charts must draw (goose's template loads ECharts from a CDN; forum-bench inlines it). Fails
// when any request leaves the file, when ECharts is missing, or when a chart has no canvas.
//
// node load-report.mjs <report.html>...
import { resolve } from "node:path";
import { chromium } from "playwright-core";

const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
const problems = [];
for (const file of process.argv.slice(2)) {
  const page = await browser.newPage();
  page.on("pageerror", (e) => problems.push(`${file}: page error: ${e.message}`));
  // Offline: anything but the file itself is refused, and said.
  await page.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith("file://")) return route.continue();
    problems.push(`${file}: requested ${url}`);
    return route.abort();
  });
  await page.goto(`file://${resolve(file)}`);
  await page.waitForTimeout(500);
  const charts = await page.evaluate(() => {
    if (typeof echarts === "undefined") return null;
    return [...document.querySelectorAll("div")]
      .map((div) => echarts.getInstanceByDom(div))
      .filter(Boolean)
      .map((chart) => {
        const canvas = chart.getDom().querySelector("canvas");
        return { drawn: !!canvas && canvas.width > 0 && canvas.height > 0, series: chart.getOption().series.length };
      });
  });
  if (charts === null) problems.push(`${file}: ECharts is not loaded`);
  else if (charts.length === 0) problems.push(`${file}: no chart`);
  else if (charts.some((c) => !c.drawn)) problems.push(`${file}: a chart has no drawn canvas`);
  else console.log(`${file}: ${charts.length} charts drawn offline`);
  await page.close();
}
await browser.close();
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
