// Type-checked (tsc --strict --noEmit) by web/test/types.test.mjs: the package's declarations
// give a page author the formats' types (generated from the Rust types) and the binding's.
import init, { PreparedPlan, quote, validate, costCurve, cheapestPlan } from '../pkg/ratecard_wasm.js';
import type { Invoice, Plan, Usage, Report, CurvePoint, RankedPlan, RatecardError } from '../pkg/ratecard_wasm.js';

export async function example(plan: Plan, usage: Usage): Promise<string> {
  await init();
  const prepared = new PreparedPlan(plan);
  const invoice: Invoice = prepared.quote(usage);
  const lineAmounts: string[] = invoice.lines.map((line) => line.amount);
  const total: string = prepared.total({ api_calls: '2350000' });
  const report: Report = validate(JSON.stringify(plan));
  const curve: CurvePoint[] = costCurve(plan, 'api_calls', '0', '1000000', 50, undefined);
  const ranked: RankedPlan[] = cheapestPlan([plan], {});
  const again: Invoice = quote(plan, usage);
  try {
    prepared.quote('{');
  } catch (error) {
    const problem = error as RatecardError;
    return `${problem.path ?? '$'}: ${problem.code}`;
  }
  return [total, again.total, report.errors.length, curve.length, ranked[0]?.total, ...lineAmounts].join(' ');
}
