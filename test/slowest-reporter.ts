/**
 * Vitest reporter (next to the default one, vitest.config.ts) printing at the end of every run:
 *  - the ten slowest tests, so CI's log shows where the time goes (budget: none above 20 s on an idle
 *    2-core machine; tests over it are marked);
 *  - how many tests were skipped because the fixtures folder is missing (suites made with
 *    describeFixtures, test/paths.ts), loudly, so such a run is never mistaken for a complete one.
 */
import { existsSync } from 'node:fs';

import type { Reporter, TestCase, TestModule, Vitest } from 'vitest/node';

/** Per-test budget (ms) on an idle 2-core machine (issue 8, item 7). */
const BUDGET_MS = 20_000;
const TOP = 10;

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1).padStart(6)} s`;
}

export default class SlowestReporter implements Reporter {
  private log: (msg: string) => void = (m) => console.log(m);

  onInit(vitest: Vitest): void {
    this.log = (m) => vitest.logger.log(m);
  }

  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const timed: Array<{ ms: number; state: string; test: TestCase }> = [];
    const fixtureSkips = new Map<string, number>();
    let folder: string | undefined;
    for (const m of testModules) {
      for (const t of m.children.allTests()) {
        const r = t.result();
        const need = t.meta().needsFixtures;
        if (r.state === 'skipped' && need && !existsSync(need)) {
          fixtureSkips.set(m.relativeModuleId, (fixtureSkips.get(m.relativeModuleId) ?? 0) + 1);
          folder = need;
        }
        const d = t.diagnostic();
        if (d && (r.state === 'passed' || r.state === 'failed')) timed.push({ ms: d.duration, state: r.state, test: t });
      }
    }
    if (timed.length > 0) {
      timed.sort((a, b) => b.ms - a.ms);
      const over = timed.filter((x) => x.ms > BUDGET_MS).length;
      this.log('');
      this.log(`Slowest ${Math.min(TOP, timed.length)} of ${timed.length} tests${over ? ` (${over} over the ${BUDGET_MS / 1000} s budget)` : ''}:`);
      for (const { ms, state, test } of timed.slice(0, TOP)) {
        const mark = `${state === 'failed' ? 'FAIL' : '    '}${ms > BUDGET_MS ? ' >20s' : '     '}`;
        this.log(`  ${seconds(ms)} ${mark}  ${test.module.relativeModuleId} > ${test.fullName}`);
      }
    }
    if (fixtureSkips.size > 0) {
      const n = [...fixtureSkips.values()].reduce((a, b) => a + b, 0);
      this.log('');
      this.log(`WARNING: ${n} tests in ${fixtureSkips.size} files were SKIPPED because the fixtures folder ${folder} is missing`);
      this.log('         (set MCLIP_FIXTURES, or put the fixtures at ../shared/fixtures next to the checkout):');
      for (const [file, k] of [...fixtureSkips].sort()) this.log(`           ${String(k).padStart(3)}  ${file}`);
    }
  }
}
