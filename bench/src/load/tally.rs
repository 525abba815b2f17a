//! What users were answered, per route: latency percentiles and answers by status and error
//! code, with rate limiting (429) counted apart from failures.

use crate::stats::percentile;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Default)]
pub struct Tally {
    routes: BTreeMap<&'static str, Route>,
}

#[derive(Default)]
struct Route {
    latencies: Vec<Duration>,
    /// (status, error code): 0 is a transport failure (no answer).
    answers: BTreeMap<(u16, String), u64>,
}

pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

impl Tally {
    pub fn record(&mut self, route: &'static str, status: u16, code: &str, latency: Duration) {
        let entry = self.routes.entry(route).or_default();
        entry.latencies.push(latency);
        *entry.answers.entry((status, code.to_string())).or_default() += 1;
    }

    /// Requests made to these routes.
    pub fn count(&self, routes: &[&str]) -> usize {
        routes
            .iter()
            .filter_map(|r| self.routes.get(r))
            .map(|r| r.latencies.len())
            .sum()
    }

    pub fn requests(&self) -> usize {
        self.routes.values().map(|r| r.latencies.len()).sum()
    }

    /// Answers that are neither a success nor a rate limit: what a run must explain.
    pub fn failures(&self) -> u64 {
        self.routes
            .values()
            .flat_map(|r| r.answers.iter())
            .filter(|((status, _), _)| !(200..400).contains(status) && *status != 429)
            .map(|(_, n)| n)
            .sum()
    }

    /// The per-route table, then every non-success answer by route, status and code.
    pub fn print(&mut self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64().max(0.001);
        println!(
            "{:<22} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6} {:>6} {:>6}",
            "route", "n", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "2xx/3xx", "429", "4xx", "5xx/io"
        );
        let mut odd = Vec::new();
        for (name, route) in &mut self.routes {
            route.latencies.sort_unstable();
            let count = |pred: &dyn Fn(u16) -> bool| -> u64 {
                route
                    .answers
                    .iter()
                    .filter(|((s, _), _)| pred(*s))
                    .map(|(_, n)| n)
                    .sum()
            };
            println!(
                "{:<22} {:>7} {:>7.1} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6} {:>6} {:>6}",
                name,
                route.latencies.len(),
                route.latencies.len() as f64 / secs,
                ms(percentile(&route.latencies, 50.0)),
                ms(percentile(&route.latencies, 95.0)),
                ms(percentile(&route.latencies, 99.0)),
                ms(route.latencies.last().copied().unwrap_or_default()),
                count(&|s| (200..400).contains(&s)),
                count(&|s| s == 429),
                count(&|s| (400..500).contains(&s) && s != 429),
                count(&|s| s == 0 || s >= 500),
            );
            for ((status, code), n) in &route.answers {
                if !(200..400).contains(status) {
                    odd.push(format!("  {name}: {status} {code} x{n}"));
                }
            }
        }
        let total = self.requests();
        println!("{:<22} {:>7} {:>7.1}", "all", total, total as f64 / secs);
        if !odd.is_empty() {
            println!("answers other than success, by route, status and code (0 = no answer):");
            for line in odd {
                println!("{line}");
            }
        }
    }
}
